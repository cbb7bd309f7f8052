"""Threads tab: every task of the process with fs_base and signal masks.
tids, states and fs_base print whole; names and signal lists shrink."""

from __future__ import annotations

from rich.text import Text

from loaderdbg.printable import printable
from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.fit import Column
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.table_view import TableView
from loaderdbg_tui.view import StopView

COLUMNS = (Column("tid"), Column("name", free=True, minimum=6), Column("state"), Column("fs_base"),
           Column("blocked", free=True, minimum=6), Column("pending", free=True, minimum=6),
           Column("shared pending", free=True, minimum=6), Column("stop", free=True))


class ThreadsPane(ViewPane, TableView):
    """Threads of the process."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "threads"

    def __init__(self, **kwargs) -> None:
        super().__init__(COLUMNS, **kwargs)

    def draw(self, view: StopView, previous: StopView | None) -> None:
        threads = view.snapshot.threads
        if previous is not None and previous.snapshot.threads == threads and self.rows:
            return
        rows = [(str(thread.tid), Text(printable(thread.name)), Text(thread.state), hex_short(thread.fs_base),
                 " ".join(thread.sigmask) or "-", " ".join(thread.sigpend) or "-",
                 " ".join(thread.shdpnd) or "-", Text(thread.stop))
                for thread in threads]
        if not threads:
            rows.append(("", "no threads: the process is gone", "", "", "", "", "", ""))
        self.show(rows)
