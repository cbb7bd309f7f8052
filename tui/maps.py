"""Maps tab: /proc/PID/maps annotated with the object and segment of each
mapping (as `inspect` shows them); the mapping holding pc is highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.tables import fill
from loaderdbg_tui.view import StopView


COLUMNS = ("start", "end", "perms", "offset", "object", "segment", "path")


def _row_cells(annotation, here: bool) -> tuple[Text, ...]:
    entry = annotation.entry
    style = "bold reverse" if here else ("green" if "x" in entry.perms else "")
    cells = (hex_short(entry.start), hex_short(entry.end), entry.perms, hex_short(entry.offset),
             annotation.object or "", annotation.segment or "", entry.path)
    return tuple(Text(cell, style=style) for cell in cells)


def _pc_row(maps, pc: int | None) -> int | None:
    if pc is None:
        return None
    return next((i for i, a in enumerate(maps) if a.entry.start <= pc < a.entry.end), None)


class MapsPane(ViewPane, DataTable):
    """Memory maps."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "maps"

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._drawn: tuple | None = None  # (maps, row holding pc) as drawn

    def draw(self, view: StopView, previous: StopView | None) -> None:
        maps = view.snapshot.maps
        here = _pc_row(maps, view.pc)
        drawn = self._drawn
        if drawn is not None and drawn[0] == maps and self.row_count == len(maps):
            if drawn[1] != here:
                # pc went to another mapping: restyle two rows, not the table
                # (rebuilding a DataTable costs tens of milliseconds a step).
                for index in (drawn[1], here):
                    if index is not None:
                        for column, cell in zip(COLUMNS, _row_cells(maps[index], index == here)):
                            self.update_cell(str(index), column, cell)
                self._drawn = (maps, here)
            return
        rows = [(str(i), _row_cells(annotation, i == here)) for i, annotation in enumerate(maps)]
        fill(self, COLUMNS, rows)
        self._drawn = (maps, here)
        self.set_titles(subtitle=f"{len(maps)} mappings")
