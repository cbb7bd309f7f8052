"""Log pane: what commands printed, newest last. The app keeps the lines,
so the pane can be rebuilt (on a layout change) without losing them."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import RichLog


class LogPane(RichLog):
    """Command output."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "log"

    def __init__(self, **kwargs) -> None:
        super().__init__(wrap=True, highlight=False, markup=False, auto_scroll=True, **kwargs)

    def on_mount(self) -> None:
        for renderable in getattr(self.app, "log_lines", ()):
            self.write(renderable)

    def write(self, content, width=None, expand=False, shrink=True, scroll_end=None, animate=False):
        # A table squeezed to 78 columns turns every cell into "…": keep its
        # natural width and let the log scroll sideways instead.
        if isinstance(content, Table):
            shrink = False
        return super().write(content, width, expand, shrink, scroll_end, animate)
