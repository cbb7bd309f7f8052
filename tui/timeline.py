"""Timeline: the startup milestones in order along the bottom. Reached ones
are filled, the current one stands out, the ones still ahead are hollow.
Select one (arrows + Enter, or a click) to jump there."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from loaderdbg_tui.describe import Marker
from loaderdbg_tui.view import StopView

SEPARATOR = " ─ "
PREFIX = "timeline "


class Timeline(Widget, can_focus=True):
    """Startup milestones you can jump to."""

    BINDINGS = [
        Binding("left", "move(-1)", "earlier", show=False),
        Binding("right", "move(1)", "later", show=False),
        Binding("home", "move(-99)", show=False),
        Binding("end", "move(99)", show=False),
        Binding("enter", "choose", "jump there", show=False),
    ]

    cursor = reactive(0)

    class Selected(Message):
        """The user picked a milestone."""

        def __init__(self, marker: Marker) -> None:
            super().__init__()
            self.marker = marker

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.markers: tuple[Marker, ...] = ()
        self._spans: list[tuple[int, int, int]] = []  # (start x, end x, marker index)
        self._drawn: tuple[Marker, ...] | None = None

    def on_mount(self) -> None:
        view = getattr(self.app, "view", None)
        if view is not None:
            self.show_view(view)

    def show_view(self, view: StopView) -> None:
        old = self.markers[self.cursor].name if self.markers and self.cursor < len(self.markers) else None
        self.markers = view.markers
        here = next((i for i, m in enumerate(self.markers) if m.here), None)
        last_reached = max((i for i, m in enumerate(self.markers) if m.reached), default=0)
        names = [m.name for m in self.markers]
        before = (self._drawn, self.cursor)
        if self.has_focus and old in names:
            self.cursor = names.index(old)
        else:
            self.cursor = here if here is not None else last_reached
        self._drawn = self.markers
        if (self.markers, self.cursor) != before:
            self.refresh()

    def action_move(self, delta: int) -> None:
        if self.markers:
            self.cursor = max(0, min(len(self.markers) - 1, self.cursor + delta))

    def action_choose(self) -> None:
        if self.markers:
            self.post_message(self.Selected(self.markers[self.cursor]))

    def on_click(self, event: Click) -> None:
        for start, end, index in self._spans:
            if start <= event.x < end:
                self.cursor = index
                self.post_message(self.Selected(self.markers[index]))
                return

    def watch_cursor(self) -> None:
        self.refresh()

    def render(self) -> Text:
        width = self.size.width or 80
        for use_short in (False, True):
            text, spans = self._line(use_short)
            if text.cell_len <= width:
                break
        else:
            text, spans = self._window(width)
        self._spans = spans
        return text

    def _label(self, marker: Marker, short: bool) -> Text:
        title = marker.short if short else marker.title
        if marker.is_crash:
            symbol, style = "✖", "bold red"
        elif marker.here:
            symbol, style = "◉", "bold black on cyan"
        elif marker.reached:
            symbol, style = "●", "green"
        else:
            symbol, style = "○", "dim"
        return Text(f"{symbol} {title}", style=style)

    def _line(self, short: bool, markers: range | None = None) -> tuple[Text, list]:
        text = Text(PREFIX, style="bold", no_wrap=True, overflow="ellipsis")
        spans = []
        indices = markers if markers is not None else range(len(self.markers))
        if not self.markers:
            text.append("(no milestones yet)", style="dim")
        for position, index in enumerate(indices):
            if position:
                text.append(SEPARATOR, style="dim")
            label = self._label(self.markers[index], short)
            if index == self.cursor and self.has_focus:
                label.stylize("reverse underline")
            start = text.cell_len
            text.append_text(label)
            spans.append((start, text.cell_len, index))
        return text, spans

    def _window(self, width: int) -> tuple[Text, list]:
        """Too many markers for the width: the ones around the cursor."""
        low, high = self.cursor, self.cursor + 1
        best = self._line(True, range(low, high))
        while low > 0 or high < len(self.markers):
            grown = False
            for lo, hi in ((low - 1, high), (low, high + 1)):
                if 0 <= lo and hi <= len(self.markers) and (lo, hi) != (low, high):
                    candidate = self._line(True, range(lo, hi))
                    if candidate[0].cell_len <= width - 2:
                        low, high, best, grown = lo, hi, candidate, True
            if not grown:
                break
        text, spans = best
        if low > 0:
            text = Text(PREFIX, style="bold") + Text("‹", style="dim") + text[len(PREFIX):]
            spans = [(s + 1, e + 1, i) for s, e, i in spans]
        if high < len(self.markers):
            text.append("›", style="dim")
        return text, spans

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
