from loaderdbg.cli import main

raise SystemExit(main())
