"""The output view: command output wider than the log pane, full width,
scrollable, searchable (`/` then a word, Enter; `n` / `N` the next or
previous match). Escape leaves the search, then the view."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from loaderdbg_tui.command_line import PaneInput
from loaderdbg_tui.elf import rendered_lines
from loaderdbg_tui.lines_view import LinesView

MATCH = "black on yellow"


class OutputScreen(Screen[None]):
    """One command's output, laid out at the screen's width."""

    BINDINGS = [
        Binding("escape", "leave", "Back", priority=True),
        Binding("slash", "search", "Search"),
        Binding("n", "next(1)", "Next"),
        Binding("N", "next(-1)", "Prev"),
        Binding("q", "leave", show=False),
    ]
    DEFAULT_CSS = """
    OutputScreen #output-title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    OutputScreen #output-lines { height: 1fr; }
    OutputScreen #output-search { height: 1; border: none; padding: 0 1; display: none; }
    OutputScreen #output-search.-shown { display: block; }
    """

    def __init__(self, title: str, renderable: RenderableType) -> None:
        super().__init__()
        self.title_text = title
        self.renderable = renderable
        self.plain: list[str] = []
        self._needle = ""
        self._width = 0

    def compose(self) -> ComposeResult:
        yield Static(Text(self.title_text + "  ·  / search · n next · Esc back", no_wrap=True),
                     id="output-title")
        yield LinesView(id="output-lines")
        yield PaneInput(placeholder="search (Enter; Esc closes)", id="output-search")
        yield Footer(compact=True)

    @property
    def view(self) -> LinesView:
        return self.query_one("#output-lines", LinesView)

    def on_mount(self) -> None:
        self.view.focus()

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._lay_out)

    def _lay_out(self) -> None:
        width = max(1, self.view.scrollable_content_region.width or self.size.width)
        if width == self._width:
            return
        self._width = width
        lines = rendered_lines(self.app.console, self.renderable, width)
        self.plain = [line.plain for line in lines]
        self.view.set_lines(self._marked(lines))

    def _marked(self, lines: list[Text]) -> list[Text]:
        needle = self._needle.lower()
        if not needle:
            return lines
        out = []
        for line in lines:
            lowered = line.plain.lower()
            if needle in lowered:
                line = line.copy()
                start = lowered.find(needle)
                while start >= 0:
                    line.stylize(MATCH, start, start + len(needle))
                    start = lowered.find(needle, start + 1)
            out.append(line)
        return out

    def action_search(self) -> None:
        field = self.query_one("#output-search", Input)
        field.add_class("-shown")
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._needle = event.value.strip()
        self._width = 0
        self._lay_out()
        self.view.focus()
        self.query_one("#output-search", Input).remove_class("-shown")
        self.action_next(1, from_cursor=True)

    def action_next(self, direction: int, from_cursor: bool = False) -> None:
        needle = self._needle.lower()
        if not needle:
            self.notify("/ to search first", timeout=2)
            return
        count = len(self.plain)
        start = self.view.cursor + (0 if from_cursor else direction)
        for step in range(count):
            index = (start + direction * step) % count
            if needle in self.plain[index].lower():
                self.view.move_to(index, center=True)
                return
        self.notify(f"{self._needle!r} not found", severity="warning", timeout=3)

    def action_leave(self) -> None:
        field = self.query_one("#output-search", Input)
        if field.has_focus:
            field.remove_class("-shown")
            self.view.focus()
            return
        self.dismiss(None)
