"""ViewPane: the mixin of every widget that shows part of a StopView.

A pane in a hidden tab keeps only the newest view and draws it when it is
shown, so stepping with twelve tabs costs the work of the visible ones."""

from __future__ import annotations

from textual import events
from textual.screen import Screen

from loaderdbg_tui.view import StopView


class ViewPane:
    """Mix in before the Textual widget class: ``class X(ViewPane, Static)``."""

    _pending_view: StopView | None = None
    _drawn_view: StopView | None = None

    def show_view(self, view: StopView) -> None:
        self._pending_view = view
        if self.is_shown():
            self._flush_view()

    def flush(self) -> None:
        """Draw the view that came while hidden, if shown now (Textual's
        Show event does not always come: not after another screen was up)."""
        if self._pending_view is not None and self.is_shown():
            self._flush_view()

    def redraw(self) -> None:
        """Draw the current view again (after a filter or a width change)."""
        view = self._pending_view or self._drawn_view
        self._drawn_view = None
        if view is not None:
            self._pending_view = view
            if self.is_shown():
                self._flush_view()

    @property
    def drawn_view(self) -> StopView | None:
        """The view the pane shows now (None before its first draw)."""
        return self._drawn_view

    def set_titles(self, title: str | None = None, subtitle: str | None = None) -> None:
        """Set the border title/subtitle only when they change (each set
        repaints the whole pane)."""
        if title is not None and self.border_title != title:
            self.border_title = title
        if subtitle is not None and self.border_subtitle != subtitle:
            self.border_subtitle = subtitle

    def draw(self, view: StopView, previous: StopView | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _flush_view(self) -> None:
        view = self._pending_view
        if view is None:
            return
        self._pending_view = None
        previous = self._drawn_view
        self._drawn_view = view
        self.draw(view, previous)

    def is_shown(self) -> bool:
        if not getattr(self, "is_mounted", False):
            return False
        node = self
        while node is not None and not isinstance(node, Screen):
            if not node.display:
                return False
            node = node.parent
        return True

    def on_mount(self, event: events.Mount) -> None:
        view = getattr(self.app, "view", None)
        if view is not None:
            self.call_after_refresh(self.show_view, view)

    def on_show(self, event: events.Show) -> None:
        self._flush_view()

    def on_resize(self, event: events.Resize) -> None:
        # Some panes choose their columns by width: draw again when it changes.
        width = event.size.width
        if width != getattr(self, "_drawn_width", None):
            first = getattr(self, "_drawn_width", None) is None
            self._drawn_width = width
            if not first or self._drawn_view is not None:
                self.redraw()
