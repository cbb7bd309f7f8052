"""Syscalls tab: strace-like lines, newest last, with the step they
happened at ("~" when only known approximately, after a continue)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.view import StopView


def syscall_line(event) -> Text:
    step = str(event.step) if event.exact and event.step >= 0 else "~"
    text = Text(f"{step:>8}  ", style="dim")
    name, _, rest = event.detail.partition("(")
    text.append(name, style="bold")
    if rest:
        text.append("(" + rest)
    if " = -" in event.detail:  # an error return (strace prints -1 ENOENT…)
        text.stylize("red", len(f"{step:>8}  "))
    return text


class SyscallsPane(ViewPane, RichLog):
    """The syscalls made so far."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "syscalls"

    def __init__(self, **kwargs) -> None:
        # Wrapped at words at the pane's width: a line past its edge would cut the numbers on it.
        super().__init__(wrap=True, highlight=False, markup=False, auto_scroll=True, min_width=1, **kwargs)
        self._shown: tuple = ()

    def draw(self, view: StopView, previous: StopView | None) -> None:
        calls = tuple(e for e in view.snapshot.events if e.kind == "syscall")
        if calls[:len(self._shown)] != self._shown:  # a relaunch: start over
            self.clear()
            self._shown = ()
        for event in calls[len(self._shown):]:
            self.write(syscall_line(event))
        self._shown = calls
        self.set_titles(subtitle=f"{len(calls)} syscalls")
