"""The `g` prompt: which step to go to."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class GotoScreen(ModalScreen[int | None]):
    """Ask for a step number; dismisses with it, or None."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, current: str, note: str) -> None:
        super().__init__()
        self.current = current
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="goto-box", classes="dialog"):
            yield Label(f"Go to step (now at {self.current}). {self.note}")
            yield Input(placeholder="step number", type="integer", id="goto-input")
            yield Label("", id="goto-error")

    def on_mount(self) -> None:
        self.query_one("#goto-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            step = int(event.value, 0)
        except ValueError:
            self.query_one("#goto-error", Label).update("a whole number, please")
            return
        if step < 0:
            self.query_one("#goto-error", Label).update("steps count from 0")
            return
        self.dismiss(step)

    def action_cancel(self) -> None:
        self.dismiss(None)
