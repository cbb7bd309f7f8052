"""Threads tab: every task of the process with fs_base and signal masks."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.tables import fill
from loaderdbg_tui.view import StopView


class ThreadsPane(ViewPane, DataTable):
    """Threads of the process."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "threads"

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)

    def draw(self, view: StopView, previous: StopView | None) -> None:
        threads = view.snapshot.threads
        if previous is not None and previous.snapshot.threads == threads and self.row_count:
            return
        rows = [(None, (str(thread.tid), Text(thread.name), Text(thread.state), hex_short(thread.fs_base),
                        " ".join(thread.sigmask) or "-", " ".join(thread.sigpend) or "-",
                        " ".join(thread.shdpnd) or "-", Text(thread.stop)))
                for thread in threads]
        if not threads:
            rows.append((None, ("", "no threads: the process is gone", "", "", "", "", "", "")))
        fill(self, ("tid", "name", "state", "fs_base", "blocked", "pending", "shared pending", "stop"), rows)
