"""The command line: an Input for gdb words, with history (up/down)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input

# The way in comes first: on 80 columns the end of the line is cut off.
PLACEHOLDER = ("(ldbg) press : to type · si 5 · ni · c · b main · p $rsp · x/4gx $sp · disas · bt · "
               "info auxv · vmmap · got · explain · help")


class CommandLine(Input):
    """Where commands are typed."""

    BINDINGS = [
        Binding("up", "history(-1)", show=False),
        Binding("down", "history(1)", show=False),
    ]

    def __init__(self, history: list[str], **kwargs) -> None:
        super().__init__(placeholder=PLACEHOLDER, **kwargs)
        self.history = history
        self._index = len(history)

    def remember(self, line: str) -> None:
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
        self._index = len(self.history)

    def action_history(self, delta: int) -> None:
        if not self.history:
            return
        self._index = max(0, min(len(self.history), self._index + delta))
        self.value = self.history[self._index] if self._index < len(self.history) else ""
        self.cursor_position = len(self.value)


class PaneInput(Input):
    """An input inside a pane or a view (a filter, a search): `:` is not
    typed into it but goes to the command line, as everywhere else (an
    input takes the printable keys before the App's priority bindings)."""

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character != ":" and super().check_consume_key(key, character)
