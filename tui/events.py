"""Events tab: milestones, signals and breakpoints in step order."""

from __future__ import annotations

from textual.widgets import Static

from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.reports import events_report
from loaderdbg_tui.view import StopView


class EventsPane(ViewPane, Static):
    """Milestones and signals so far."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "events"

    def draw(self, view: StopView, previous: StopView | None) -> None:
        if previous is not None and previous.snapshot.events == view.snapshot.events:
            return
        self.update(events_report(view))
