"""The Textual front end of loaderdbg (installed as ``loaderdbg_tui``)."""
