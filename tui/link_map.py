"""link_map tab: ld.so's list of loaded objects (r_debug), per namespace.
Addresses print whole; a name (a path) shrinks from the left."""

from __future__ import annotations

from itertools import groupby

from rich.text import Text

from loaderdbg.printable import printable
from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.fit import Column
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.table_view import TableView
from loaderdbg_tui.view import StopView

COLUMNS = (Column("ns"), Column("name", free=True, shrink="left"), Column("l_addr"), Column("l_ld"),
           Column("kind"), Column("struct at"))
KIND_STYLES = {"main": "bold", "ldso": "magenta", "vdso": "dim", "memfd": "yellow"}
EMPTY = "empty: ld.so has not set up r_debug yet (see it after AT_ENTRY: press e)"


class LinkMapPane(ViewPane, TableView):
    """link_map entries, grouped by namespace."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "link_map"

    def __init__(self, **kwargs) -> None:
        super().__init__(COLUMNS, **kwargs)

    def draw(self, view: StopView, previous: StopView | None) -> None:
        entries = view.snapshot.link_map
        if previous is not None and previous.snapshot.link_map == entries and self.rows:
            return
        if not entries:
            self.show([("", Text(EMPTY, style="dim"), "", "", "", "")])
            self.set_titles(subtitle="")
            return
        rows = []
        for namespace, group in groupby(sorted(entries, key=lambda e: e.namespace), key=lambda e: e.namespace):
            for index, entry in enumerate(group):
                style = KIND_STYLES.get(entry.kind, "")
                rows.append((Text(f"[{namespace}]") if index == 0 else "",
                             Text(printable(entry.name) or "(main program)", style=style),
                             hex_short(entry.l_addr), hex_short(entry.l_ld), entry.kind, hex_short(entry.address)))
        self.show(rows)
        self.set_titles(subtitle=f"{len(entries)} objects")
