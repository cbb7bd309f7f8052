"""Threads tab: every task of the process with fs_base and signal masks.
tids, states and fs_base print whole; names and signal lists shrink.
Enter on a row makes that thread current (gdb's `thread N`), where the
session can (Capability.THREADS); the current one is marked `*`."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from rich.text import Text

from loaderdbg.printable import printable
from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.fit import Column
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.table_view import TableView
from loaderdbg_tui.view import StopView


def current_thread(threads) -> tuple[int, object] | None:
    """(gdb's 1-based number, the thread) of the current thread when the
    process has several (a snapshot marks it then), else None."""
    for number, thread in enumerate(threads, 1):
        if thread.current:
            return number, thread
    return None


def thread_number(threads, wanted: int) -> int | None:
    """The tid `thread N` means: gdb's number N as `info threads` lists
    them, else N as a tid; None when neither is a thread."""
    tids = [thread.tid for thread in threads]
    if 1 <= wanted <= len(tids):
        return tids[wanted - 1]
    return wanted if wanted in tids else None

COLUMNS = (Column("tid"), Column("name", free=True, minimum=6), Column("state"), Column("fs_base"),
           Column("blocked", free=True, minimum=6), Column("pending", free=True, minimum=6),
           Column("shared pending", free=True, minimum=6), Column("stop", free=True))


class ThreadsPane(ViewPane, TableView):
    """Threads of the process."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "threads"

    BINDINGS = [Binding("enter", "choose", "make current", show=False)]

    class Chosen(Message):
        """The user picked a thread to make current."""

        def __init__(self, tid: int) -> None:
            super().__init__()
            self.tid = tid

    def __init__(self, **kwargs) -> None:
        super().__init__(COLUMNS, **kwargs)
        self._tids: list[int] = []

    def action_choose(self) -> None:
        row = self.row_of_line(self.body.cursor)
        if 0 <= row < len(self._tids):
            self.post_message(self.Chosen(self._tids[row]))

    def draw(self, view: StopView, previous: StopView | None) -> None:
        threads = view.snapshot.threads
        if previous is not None and previous.snapshot.threads == threads and self.rows:
            return
        self._tids = [thread.tid for thread in threads]
        # `*` marks the current thread, as in gdb's `info threads`: only
        # when there are several (a single thread draws as it always did).
        rows = [(("* " if thread.current else "  ") + str(thread.tid) if thread.current is not None
                 else str(thread.tid), Text(printable(thread.name)), Text(thread.state), hex_short(thread.fs_base),
                 " ".join(thread.sigmask) or "-", " ".join(thread.sigpend) or "-",
                 " ".join(thread.shdpnd) or "-", Text(thread.stop))
                for thread in threads]
        if not threads:
            rows.append(("", "no threads: the process is gone", "", "", "", "", "", ""))
        self.show(rows)
