"""The command line: an Input for gdb words, with history (up/down)."""

from __future__ import annotations

from typing import Callable

from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Input

# The way in comes first: on 80 columns the end of the line is cut off.
PLACEHOLDER = ("(ldbg) press : to type · si 5 · ni · c · b main · p $rsp · x/4gx $sp · disas · bt · "
               "info auxv · vmmap · got · explain · help")


class SizedByCss(Input):
    """An Input whose size its CSS sets (the full width, one line)."""

    # Input sets its virtual size to its text's width on every key, and the
    # widget's virtual_size is a layout reactive: each key laid the screen
    # out again (milliseconds) and cost a second frame. Its size never
    # depends on its text: a repaint is enough.
    virtual_size = Reactive(Size(0, 0), layout=False)


class CommandLine(SizedByCss):
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


class PaneInput(SizedByCss):
    """An input inside a pane or a view (a filter, a search): `:` is not
    typed into it but goes to the command line, as everywhere else (an
    input takes the printable keys before the App's priority bindings)."""

    _on_change: Callable[[str], None] | None = None

    def __init__(self, *args, on_change: Callable[[str], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_change = on_change

    def watch_value(self, value: str) -> None:
        # on_change runs as the value changes, inside the key's handler, so
        # what it redraws is in the same frame as the input: the Changed
        # message comes after a frame showing the input alone, and the
        # next frame is paced a frame or two later.
        if self._on_change is not None:
            self._on_change(value)

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character != ":" and super().check_consume_key(key, character)
