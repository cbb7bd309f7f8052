"""link_map tab: ld.so's list of loaded objects (r_debug), per namespace."""

from __future__ import annotations

from itertools import groupby

from rich.text import Text
from textual.widgets import DataTable

from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.tables import fill
from loaderdbg_tui.view import StopView

COLUMNS = ("namespace", "name", "l_addr", "l_ld", "kind", "struct at")
KIND_STYLES = {"main": "bold", "ldso": "magenta", "vdso": "dim", "memfd": "yellow"}


class LinkMapPane(ViewPane, DataTable):
    """link_map entries, grouped by namespace."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "link_map"

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)

    def draw(self, view: StopView, previous: StopView | None) -> None:
        entries = view.snapshot.link_map
        if previous is not None and previous.snapshot.link_map == entries and self.row_count:
            return
        rows = []
        if not entries:
            empty = Text("empty: ld.so has not set up r_debug yet (see it after AT_ENTRY: press e)", style="dim")
            rows.append((None, ("", empty, "", "", "", "")))
            fill(self, COLUMNS, rows)
            return
        for namespace, group in groupby(sorted(entries, key=lambda e: e.namespace), key=lambda e: e.namespace):
            for index, entry in enumerate(group):
                style = KIND_STYLES.get(entry.kind, "")
                rows.append((None, (Text(f"[{namespace}]") if index == 0 else "",
                                    Text(entry.name or "(main program)", style=style),
                                    hex_short(entry.l_addr), hex_short(entry.l_ld), entry.kind,
                                    hex_short(entry.address))))
        fill(self, COLUMNS, rows)
        self.set_titles(subtitle=f"{len(entries)} objects")
