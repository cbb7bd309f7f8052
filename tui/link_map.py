"""link_map tab: ld.so's list of loaded objects (r_debug), per namespace,
with glibc's private l_relocated, l_init_called and TLS module id where
ld.so's DWARF places them (? where it cannot be known). Addresses print
whole; a name (a path) shrinks from the left."""

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
           Column("kind"), Column("struct at"), Column("relocated"), Column("init"), Column("tls", right=True))
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
            self.show([("", Text(EMPTY, style="dim"), "", "", "", "", "", "", "")])
            self.set_titles(subtitle="")
            return
        rows = []
        for namespace, group in groupby(sorted(entries, key=lambda e: e.namespace), key=lambda e: e.namespace):
            for index, entry in enumerate(group):
                style = KIND_STYLES.get(entry.kind, "")
                rows.append((Text(f"[{namespace}]") if index == 0 else "",
                             Text(printable(entry.name) or "(main program)", style=style),
                             hex_short(entry.l_addr), hex_short(entry.l_ld), entry.kind, hex_short(entry.address),
                             *_private_cells(entry.private)))
        self.show(rows)
        unknown = next((e.private.reason for e in entries if e.private is not None and e.private.reason), None)
        self.set_titles(subtitle=f"{len(entries)} objects" + (f"; ?: {_why_unknown(unknown)}" if unknown else ""))


def _private_cells(private) -> tuple[str, str, str]:
    if private is None or private.l_relocated is None:
        return "?", "?", "?"
    modid = private.l_tls_modid
    return ("yes" if private.l_relocated else "no", "yes" if private.l_init_called else "no",
            "?" if modid is None else str(modid) if modid else "")


def _why_unknown(reason: str) -> str:
    """The short form of a private_reason (the JSON has it whole)."""
    if "musl" in reason:
        return "musl's ld.so has no such fields"
    if "debug file" in reason:
        return "no debug info for ld.so (libc6-dbg)"
    if "not among the mapped objects" in reason:
        return "ld.so not found among the objects"
    if "unreadable" in reason:
        return "not readable"
    return "layout unknown (inspect --json says why)"
