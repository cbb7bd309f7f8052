"""Program output pane: what the tracee writes, when the CLI hands the app a
pipe or pty fd to read (LoaderdbgApp(..., output_fd=FD)). The app reads the
fd on the event loop (add_reader) and keeps the text; this pane shows it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

NO_OUTPUT = "(the program's output is not captured in this session)"


class ProgramOutputPane(RichLog):
    """The tracee's stdout and stderr."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "program output"

    def __init__(self, **kwargs) -> None:
        super().__init__(wrap=True, highlight=False, markup=False, auto_scroll=True, min_width=1, **kwargs)

    def on_mount(self) -> None:
        app = self.app
        if getattr(app, "output_fd", None) is None:
            self.write(NO_OUTPUT)
        for line in getattr(app, "output_lines", ()):
            self.write_output(line)

    def write_output(self, line: str) -> None:
        """One line of the program's output; its colours (ANSI) kept."""
        self.write(Text.from_ansi(line))
