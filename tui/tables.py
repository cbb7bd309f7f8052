"""Filling a DataTable in one go, with column widths measured here.

DataTable measures auto-width columns on idle, but caches each cell's
render without the width in the key: a render that happens before that idle
(a cursor move, a refresh in the same frame) stays cut to the header's
width. Fixed widths computed from the content avoid that, and cost one
pass over cells we already hold."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from rich.text import Text
from textual.widgets import DataTable

Cell = Text | str


def cell_width(cell: Cell) -> int:
    if isinstance(cell, Text):
        return max((len(line) for line in cell.plain.split("\n")), default=0) if "\n" in cell.plain \
            else cell.cell_len
    return Text(str(cell)).cell_len


def fill(table: DataTable, columns: Sequence[str], rows: Iterable[tuple[str | None, Sequence[Cell]]],
         *, min_widths: Mapping[str, int] | None = None, max_width: int = 120,
         keep_position: bool = True) -> None:
    """Replace table's columns and rows; rows are (key, cells). The cursor
    row and the scroll position stay where they were (keep_position)."""
    rows = list(rows)
    widths = [cell_width(label) if table.show_header else 1 for label in columns]
    for _, cells in rows:
        for index, cell in enumerate(cells):
            widths[index] = max(widths[index], cell_width(cell))
    minimum = min_widths or {}
    cursor_row, scroll_y = table.cursor_row, table.scroll_y
    table.clear(columns=True)
    for label, width in zip(columns, widths):
        table.add_column(label, width=min(max(width, minimum.get(label, 0)), max_width), key=label)
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if keep_position and rows:
        table.move_cursor(row=min(cursor_row, len(rows) - 1), animate=False, scroll=False)
        table.scroll_to(y=scroll_y, animate=False, immediate=True)
