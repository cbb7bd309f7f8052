"""Maps tab: /proc/PID/maps annotated with the object and segment of each
mapping (as `inspect` shows them); the mapping holding pc is highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.tables import fill
from loaderdbg_tui.view import StopView


class MapsPane(ViewPane, DataTable):
    """Memory maps."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "maps"

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def draw(self, view: StopView, previous: StopView | None) -> None:
        if previous is not None and previous.snapshot.maps == view.snapshot.maps \
                and previous.pc == view.pc and self.row_count:
            return
        rows = []
        pc = view.pc
        for annotation in view.snapshot.maps:
            entry = annotation.entry
            here = pc is not None and entry.start <= pc < entry.end
            style = "bold reverse" if here else ("green" if "x" in entry.perms else "")
            cells = (hex_short(entry.start), hex_short(entry.end), entry.perms, hex_short(entry.offset),
                     annotation.object or "", annotation.segment or "", entry.path)
            rows.append((None, tuple(Text(cell, style=style) for cell in cells)))
        fill(self, ("start", "end", "perms", "offset", "object", "segment", "path"), rows)
        self.set_titles(subtitle=f"{len(view.snapshot.maps)} mappings")
