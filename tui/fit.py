"""Rows laid out so that no number is ever cut (DESIGN.md §9).

A table's columns are either numbers (addresses, values, perms, offsets,
states, register names: printed whole, always) or free text (paths,
symbols, lists: they may shrink, paths from the left and lists at the
end). When a row does not fit its width even with the free text shrunk,
the columns that do not fit move to a second line, indented; so does the
free text when too little room is left beside the numbers.

plan() decides once per table and width; Layout.lines() then lays a row out
at that plan, so a pane that patches one row per step (relocations) keeps
doing so: every row takes the same number of lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text

GAP = 2
INDENT = 4
ELLIPSIS = "…"
# A cut never falls inside one of these: a shrunk path or list loses whole
# numbers, never half of one.
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]*[0-9][0-9a-fA-F]*")

Cell = Text | str


@dataclass(frozen=True)
class Column:
    name: str
    free: bool = False        # free text: may shrink; numbers never do
    shrink: str = "end"       # where free text loses characters: "end" or "left" (paths)
    minimum: int = 10         # narrower than this, free text moves to a line of its own
    right: bool = False       # right-aligned (counts)


def as_text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(str(cell))


def shrink(cell: Cell, width: int, side: str = "end") -> Text:
    """cell in at most width cells: whole if it fits, else cut at side with
    an ellipsis, never inside a number."""
    text = as_text(cell)
    if text.cell_len <= width:
        return text
    if width <= 1:
        return Text(ELLIPSIS[:width])
    plain = text.plain
    keep = width - 1
    if side == "left":
        cut = len(plain) - keep
        for match in _NUMBER.finditer(plain):
            if match.start() < cut < match.end():
                cut = match.end()
        out = Text(ELLIPSIS, style="dim")
        out.append_text(text[cut:])
    else:
        cut = keep
        for match in _NUMBER.finditer(plain):
            if match.start() < cut < match.end():
                cut = match.start()
        out = text[:cut]
        out.append(ELLIPSIS, style="dim")
    return out


@dataclass(frozen=True)
class Layout:
    """lines[i]: the (column index, width) pairs on a row's line i; lines
    after the first are indented."""

    lines: tuple[tuple[tuple[int, int], ...], ...]
    columns: tuple[Column, ...]

    @property
    def height(self) -> int:
        return len(self.lines)

    @property
    def width(self) -> int:
        """The widest a row's line can be: its cells padded to their columns."""
        return max((INDENT * bool(number) + sum(width for _, width in slots) + GAP * (len(slots) - 1)
                    for number, slots in enumerate(self.lines)), default=0)

    def lines_of(self, cells: Sequence[Cell], style: str = "") -> list[Text]:
        """A row's lines; style applies to the whole row."""
        out = []
        for number, slots in enumerate(self.lines):
            line = Text(" " * INDENT if number else "", style=style, no_wrap=True, overflow="crop")
            for position, (index, width) in enumerate(slots):
                column = self.columns[index]
                cell = as_text(cells[index]) if index < len(cells) else Text()
                if column.free:
                    cell = shrink(cell, width, column.shrink)
                if position:
                    line.append(" " * GAP)
                pad = " " * max(0, width - cell.cell_len)
                if column.right:
                    line.append(pad)
                    line.append_text(cell)
                elif position == len(slots) - 1:
                    line.append_text(cell)  # no trailing blanks
                else:
                    line.append_text(cell)
                    line.append(pad)
            out.append(line)
        return out

    def header(self, style: str = "bold") -> list[Text]:
        return self.lines_of([Text(c.name) for c in self.columns], style)


def natural_widths(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *,
                   with_header: bool = True) -> list[int]:
    widths = [len(c.name) if with_header else 0 for c in columns]
    for row in rows:
        for index, cell in enumerate(row):
            length = cell.cell_len if isinstance(cell, Text) else len(str(cell))
            if length > widths[index]:
                widths[index] = length
    return widths


def _spread(room: int, wanted: list[int], minimums: list[int]) -> list[int] | None:
    """Widths for free columns sharing room: each its natural width if all
    fit, else the widest ones shrunk alike (never under their minimum);
    None when even the minimums do not fit."""
    floors = [min(w, m) for w, m in zip(wanted, minimums)]
    if sum(floors) > room:
        return None
    if sum(wanted) <= room:
        return list(wanted)
    low, high = 0, max(wanted)
    while low < high:  # the largest cap that fits
        cap = (low + high + 1) // 2
        if sum(max(f, min(w, cap)) for w, f in zip(wanted, floors)) <= room:
            low = cap
        else:
            high = cap - 1
    return [max(f, min(w, low)) for w, f in zip(wanted, floors)]


def _line_width(widths: Sequence[int]) -> int:
    return sum(widths) + GAP * max(0, len(widths) - 1)


def plan(columns: Sequence[Column], widths: Sequence[int], width: int) -> Layout:
    """Where each column goes at this width (widths: each column's widest cell)."""
    columns = tuple(columns)
    shown = [i for i, w in enumerate(widths) if w > 0 or not columns[i].free]
    fixed = [i for i in shown if not columns[i].free]
    free = [i for i in shown if columns[i].free]
    if _line_width([widths[i] for i in shown]) <= width:
        return Layout((tuple((i, widths[i]) for i in shown),), columns)
    room = width - _line_width([widths[i] for i in shown]) + sum(widths[i] for i in free)
    spread = _spread(room, [widths[i] for i in free], [columns[i].minimum for i in free])
    if spread is not None:
        given = dict(zip(free, spread))
        return Layout((tuple((i, given.get(i, widths[i])) for i in shown),), columns)
    # Numbers first, as many a line as fit; then the free text beside the
    # last of them if it has room enough, else on lines of its own.
    lines: list[list[tuple[int, int]]] = [[]]
    used = 0
    for index in fixed:
        need = widths[index] + (GAP if lines[-1] else 0)
        limit = width - (INDENT if len(lines) > 1 else 0)
        if lines[-1] and used + need > limit:
            lines.append([])
            used, need = 0, widths[index]
        lines[-1].append((index, widths[index]))
        used += need
    if free:
        limit = width - (INDENT if len(lines) > 1 else 0)
        beside = _spread(limit - used - GAP * len(free), [widths[i] for i in free],
                         [columns[i].minimum for i in free])
        if beside is not None and lines[-1]:
            lines[-1].extend(zip(free, beside))
        else:
            room = width - INDENT
            together = _spread(room - GAP * (len(free) - 1), [widths[i] for i in free],
                               [columns[i].minimum for i in free])
            if together is not None:
                lines.append(list(zip(free, together)))
            else:
                lines.extend([(i, min(widths[i], room))] for i in free)
    return Layout(tuple(tuple(line) for line in lines if line), columns)


class FittedTable:
    """A titled table as a Rich renderable that lays itself out at the width
    it is given (the log pane's, the output view's, a console's): rows wrap
    instead of cutting numbers. Its natural width is one line per row."""

    def __init__(self, title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]],
                 styles: Sequence[str] | None = None) -> None:
        self.title = title
        self.columns = tuple(columns)
        self.rows = [tuple(row) for row in rows]
        self.styles = list(styles) if styles is not None else [""] * len(self.rows)
        self.widths = natural_widths(self.columns, self.rows)

    def lines(self, width: int) -> list[Text]:
        layout = self.layout(width)
        out = self.head_lines(layout)
        for row, style in zip(self.rows, self.styles):
            out.extend(layout.lines_of(row, style))
        return out

    def layout(self, width: int) -> Layout:
        return plan(self.columns, self.widths, width)

    def head_lines(self, layout: Layout) -> list[Text]:
        """The title and the header, above the rows."""
        out = [Text(self.title, style="bold", no_wrap=True)] if self.title else []
        out.extend(layout.header())
        return out

    def row_lines(self, layout: Layout, index: int) -> list[Text]:
        """Row index's lines (layout.height of them)."""
        return layout.lines_of(self.rows[index], self.styles[index])

    def first_rows(self, count: int) -> "FittedTable":
        """The table of its first count rows (their own widths)."""
        return FittedTable(self.title, self.columns, self.rows[:count], self.styles[:count])

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines(options.max_width):
            line.end = "\n"
            yield line

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        natural = max(_line_width(self.widths), len(self.title))
        numbers = max((w for c, w in zip(self.columns, self.widths) if not c.free), default=1)
        return Measurement(min(numbers, natural), natural)
