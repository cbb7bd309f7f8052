"""The `?` screen: what the panes show, the keys, the commands."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from loaderdbg_tui.reports import help_report

INTRO = """\
loaderdbg shows a Linux program between execve and main: the kernel's stack \
(argv, envp, auxv), the dynamic loader (ld.so) being mapped and entered, \
relocations being applied, and the jump to the program's entry (AT_ENTRY).

The badge at the top left says which startup milestone you are at (or past); \
the timeline at the bottom lists them, and you can select one to go there. \
Registers that changed since the last stop are highlighted; ▶ marks pc and \
● a breakpoint in the disassembly; ✎ marks auxv entries rewritten since the \
kernel wrote them.

"step ?" in the status line: a live process ran freely (continue, l, e) \
without being single-stepped, so the instruction count is unknown; a \
recording always knows it. After a crash the status line says what \
happened and where to look first; `explain` tells the whole story."""

KEYS = (
    ("F7", "step one instruction (held down: steps are batched)"),
    ("F8", "step over a call"),
    ("F5", "continue to a breakpoint, a signal or the exit"),
    ("Shift+F7 / Shift+F5", "step back / reverse continue (recordings only; live, the status line says so)"),
    ("l", "run to ld.so's entry (the hand-off)"),
    ("e", "run to AT_ENTRY (the program's entry, after ld.so)"),
    ("g", "go to a step number"),
    ("b", "toggle a breakpoint on the selected disassembly line"),
    (":", "type a command, from anywhere (a filter, the output view); Esc leaves any input"),
    ("Alt+1…9, Alt+0", "bring tab 1…10 forward (or `tab NAME`: tab relocs, tab maps…)"),
    ("/ n N (output view)", "output wider than the log opens full width: search, next, previous; Esc returns"),
    ("Ctrl+C", "interrupt a running continue"),
    ("Ctrl+P", "command palette"),
    ("Tab", "move between panes; arrows + Enter on the timeline jump"),
    ("?", "this help"),
    ("q", "quit (a launched program is killed, an attached one detached)"),
)


def keys_table() -> Table:
    table = Table(title="keys", title_justify="left", box=None, pad_edge=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("what it does")
    for key, words in KEYS:
        table.add_row(key, words)
    return table


class HelpScreen(ModalScreen[None]):
    """Help."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss_help", "close", show=True),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Group(Text("loaderdbg — help", style="bold underline"), Text(""),
                               Text(INTRO), Text(""), keys_table(), Text(""), help_report()),
                         id="help-text")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
