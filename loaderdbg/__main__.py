from loaderdbg.entry import main

raise SystemExit(main())
