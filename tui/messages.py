"""App-wide messages. Workers post these (post_message is thread-safe); the
App's handlers own the state and update the widgets. Messages that belong to
one widget are nested in that widget's class."""

from __future__ import annotations

from rich.console import RenderableType
from textual.message import Message

from loaderdbg.decode.disasm import Instruction

from loaderdbg_tui.view import StopView


class ViewReady(Message):
    """A motion finished (or failed) and the new stop is decoded."""

    def __init__(self, view: StopView | None, label: str, error: str | None = None) -> None:
        super().__init__()
        self.view = view
        self.label = label
        self.error = error


class CommandOutput(Message):
    """Text or a table for the log pane."""

    def __init__(self, renderable: RenderableType, *, echo: str | None = None,
                 error: bool = False) -> None:
        super().__init__()
        self.renderable = renderable
        self.echo = echo
        self.error = error


class BreakpointsChanged(Message):
    """The session's breakpoints now; note says what changed (the app puts
    the breakpoint's number in front of it: "Breakpoint 2 at …")."""

    def __init__(self, breakpoints: frozenset[int], note: str, *, added: int | None = None,
                 removed: int | None = None, temporary: bool = False) -> None:
        super().__init__()
        self.breakpoints = breakpoints
        self.note = note
        self.added = added
        self.removed = removed
        self.temporary = temporary


class ListingsAhead(Message):
    """Windows of code the next step may show, disassembled between keys
    (view.prefetch_listings): (pc, listing) pairs for the stop `generation`."""

    def __init__(self, generation: int, windows: tuple[tuple[int, tuple[Instruction, ...]], ...]) -> None:
        super().__init__()
        self.generation = generation
        self.windows = windows
