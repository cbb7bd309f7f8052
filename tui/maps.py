"""Maps tab: /proc/PID/maps annotated with the object and segment of each
mapping (as `inspect` shows them); the mapping holding pc is highlighted.
Addresses, perms and offsets print whole; the object and the path shrink
(from the left), or move to a second line."""

from __future__ import annotations

from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.reports import MAP_COLUMNS, map_row
from loaderdbg_tui.table_view import TableView
from loaderdbg_tui.view import StopView

HERE = "bold reverse"


def _style(annotation, here: bool) -> str:
    return HERE if here else ("green" if "x" in annotation.entry.perms else "")


def _pc_row(maps, pc: int | None) -> int | None:
    if pc is None:
        return None
    return next((i for i, a in enumerate(maps) if a.entry.start <= pc < a.entry.end), None)


class MapsPane(ViewPane, TableView):
    """Memory maps."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "maps"

    def __init__(self, **kwargs) -> None:
        super().__init__(MAP_COLUMNS, **kwargs)
        self._drawn: tuple | None = None  # (maps, row holding pc) as drawn

    def draw(self, view: StopView, previous: StopView | None) -> None:
        maps = view.snapshot.maps
        here = _pc_row(maps, view.pc)
        drawn = self._drawn
        if previous is not None and drawn is not None and drawn[0] == maps and len(self.rows) == len(maps):
            if drawn[1] != here:
                # pc went to another mapping: restyle two rows, not the table.
                for index in (drawn[1], here):
                    if index is not None:
                        self.restyle(index, _style(maps[index], index == here))
                self._drawn = (maps, here)
            return
        self.show([map_row(annotation) for annotation in maps],
                  [_style(annotation, i == here) for i, annotation in enumerate(maps)])
        self._drawn = (maps, here)
        self.set_titles(subtitle=f"{len(maps)} mappings")
