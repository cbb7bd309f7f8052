"""The output view: command output wider than the log pane, full width,
scrollable, searchable (`/` then a word, Enter; `n` / `N` the next or
previous match). Escape leaves the search, then the view."""

from __future__ import annotations

from typing import Sequence

from rich.console import RenderableType
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from loaderdbg_tui.command_line import PaneInput
from loaderdbg_tui.elf import rendered_lines
from loaderdbg_tui.fit import FittedTable
from loaderdbg_tui.lines_view import LazyLines, LinesView

MATCH = "black on yellow"


def _marked(line: Text, needle: str) -> Text:
    """line with needle (lower case) marked wherever it is."""
    lowered = line.plain.lower()
    if needle not in lowered:
        return line
    line = line.copy()
    start = lowered.find(needle)
    while start >= 0:
        line.stylize(MATCH, start, start + len(needle))
        start = lowered.find(needle, start + 1)
    return line


def _table_lines(table: FittedTable, width: int) -> LazyLines:
    """table's lines at width, each row laid out when first asked for (a
    GOT of thousands of slots: only the rows on screen, or searched)."""
    layout = table.layout(width)
    head = table.head_lines(layout)
    height = layout.height
    rows: dict[int, list[Text]] = {}  # the same Text for a line asked for again

    def line(index: int) -> Text:
        if index < len(head):
            return head[index]
        number, offset = divmod(index - len(head), height)
        made = rows.get(number)
        if made is None:
            made = rows[number] = table.row_lines(layout, number)
        return made[offset]
    widest = max([layout.width, *(text.cell_len for text in head)])
    return LazyLines(len(head) + height * len(table.rows), widest, line)


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
        self.plain: Sequence[str] = []
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
        laid_out: Sequence[Text]
        if isinstance(self.renderable, FittedTable):
            # A row at a time, as they come on screen (or are searched).
            laid_out = _table_lines(self.renderable, width)
        else:
            laid_out = rendered_lines(self.app.console, self.renderable, width)
        self.plain = LazyLines(len(laid_out), 0, lambda index: laid_out[index].plain)
        needle = self._needle.lower()
        if not needle:
            self.view.set_lines(laid_out)
        elif isinstance(laid_out, LazyLines):
            marked: dict[int, Text] = {}  # the same Text for a line asked for again

            def line(index: int) -> Text:
                hit = marked.get(index)
                if hit is None:
                    hit = marked[index] = _marked(laid_out[index], needle)
                return hit
            self.view.set_lines(LazyLines(len(laid_out), laid_out.width, line))
        else:
            self.view.set_lines([_marked(text, needle) for text in laid_out])

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
