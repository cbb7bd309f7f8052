"""Log pane: what commands printed, newest last. The app keeps the lines,
so the pane can be rebuilt (on a layout change) without losing them.

Everything is laid out at the pane's width (tables wrap their rows, text
wraps at words), never wider: a line past the pane's edge would cut what
is on it. Output wider than the pane also opens the output view."""

from __future__ import annotations

from textual.widgets import RichLog


class LogPane(RichLog):
    """Command output."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "log"

    def __init__(self, **kwargs) -> None:
        # min_width: RichLog lays out at 78 columns at least, which cut
        # every line of a narrower pane.
        super().__init__(wrap=True, highlight=False, markup=False, auto_scroll=True, min_width=1, **kwargs)

    def on_mount(self) -> None:
        for renderable in getattr(self.app, "log_lines", ()):
            self.write(renderable)

    def room(self) -> int:
        """The width output is laid out at."""
        # A log in a tab not shown yet has no size: it will have the screen's.
        return self.scrollable_content_region.width or self.size.width or max(1, self.app.size.width - 2)
