"""TableView: a header and rows laid out by fit.plan at the widget's width,
so a row that does not fit wraps instead of cutting a number (DESIGN.md §9).
Lines, not a DataTable: a row restyled or replaced repaints its own lines."""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from loaderdbg_tui.fit import Cell, Column, Layout, natural_widths, plan
from loaderdbg_tui.lines_view import LinesView


class TableView(Vertical):
    """Rows of cells under a header; each row takes layout.height lines."""

    DEFAULT_CSS = """
    TableView > .table-header { height: auto; background: $boost; }
    TableView > LinesView { height: 1fr; }
    """

    def __init__(self, columns: Sequence[Column], **kwargs) -> None:
        super().__init__(**kwargs)
        self.columns = tuple(columns)
        self.rows: list[tuple[Cell, ...]] = []
        self.row_styles: list[str] = []
        self.layout_plan: Layout | None = None
        self._widths: list[int] = []
        self._room = 0
        self._header: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Static(classes="table-header")
        yield LinesView(classes="table-rows")

    @property
    def body(self) -> LinesView:
        return self.query_one(".table-rows", LinesView)

    def room(self) -> int:
        """The width rows are laid out at (the scrollbar's column kept free)."""
        return max(1, self.size.width - self.body.styles.scrollbar_size_vertical)

    def show(self, rows: Sequence[Sequence[Cell]], styles: Sequence[str] | None = None) -> None:
        self.rows = [tuple(row) for row in rows]
        self.row_styles = list(styles) if styles is not None else [""] * len(self.rows)
        self._lay_out()

    def _lay_out(self) -> None:
        self._room = self.room()
        self._widths = natural_widths(self.columns, self.rows)
        layout = self.layout_plan = plan(self.columns, self._widths, self._room)
        header = (layout, tuple(self._widths))
        if header != self._header:
            self._header = header
            self.query_one(".table-header", Static).update(Text("\n").join(layout.header()))
        self.body.set_lines([line for row, style in zip(self.rows, self.row_styles)
                             for line in layout.lines_of(row, style)])

    def restyle(self, index: int, style: str) -> None:
        """Give row index another style, its lines repainted alone."""
        layout = self.layout_plan
        if layout is None or not 0 <= index < len(self.rows):
            return
        self.row_styles[index] = style
        lines = layout.lines_of(self.rows[index], style)
        first = index * layout.height
        self.body.replace_lines({first + offset: line for offset, line in enumerate(lines)})

    def row_of_line(self, line: int) -> int:
        layout = self.layout_plan
        return line // layout.height if layout is not None else line

    def on_resize(self, event: events.Resize) -> None:
        if self.rows and self.room() != self._room:
            self._lay_out()
