"""The main screen. Two layouts, chosen by width:

- wide (>= WIDE columns): registers | disassembly | stack on top, the tabs
  and the log side by side below;
- narrow (80x24): every pane is a tab, the first one (Code) holding the
  disassembly and the registers.

Crossing WIDE recomposes the screen; the panes redraw from the app's
current view when they mount, and the log keeps its lines in the app."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from loaderdbg_tui.command_line import CommandLine
from loaderdbg_tui.disassembly import DisassemblyPane
from loaderdbg_tui.elf import ElfPane
from loaderdbg_tui.events import EventsPane
from loaderdbg_tui.link_map import LinkMapPane
from loaderdbg_tui.log import LogPane
from loaderdbg_tui.maps import MapsPane
from loaderdbg_tui.program_output import ProgramOutputPane
from loaderdbg_tui.registers import RegistersPane
from loaderdbg_tui.relocations import RelocationsPane
from loaderdbg_tui.stack import StackPane
from loaderdbg_tui.status import StatusLine
from loaderdbg_tui.syscalls import SyscallsPane
from loaderdbg_tui.threads import ThreadsPane
from loaderdbg_tui.timeline import Timeline

WIDE = 120
VERY_WIDE = 180  # CSS only: room for what registers point at


class MainScreen(Screen):
    """Status, panes, timeline, command line, footer."""

    AUTO_FOCUS = "#listing"
    # Alt+1…9, Alt+0: the tabs in order (the `tab NAME` command too).
    BINDINGS = [Binding(f"alt+{digit}", f"tab({index})", show=False)
                for index, digit in enumerate("1234567890")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE, "-wide"), (VERY_WIDE, "-very-wide")]

    def __init__(self, wide: bool) -> None:
        super().__init__(id="main")
        self.wide = wide
        self._targets: tuple | None = None
        self._tabs: tuple[TabbedContent] | None = None  # (the TabbedContent,) once found

    def view_targets(self) -> tuple:
        """(status lines, view panes, timelines): what a new view goes to.
        Queried once per layout: a DOM query per step costs a millisecond."""
        if self._targets is None:
            from loaderdbg_tui.pane import ViewPane

            self._targets = (
                tuple(self.query(StatusLine)),
                tuple(w for w in self.query(".pane") if isinstance(w, ViewPane)),
                tuple(self.query(Timeline)),
            )
        return self._targets

    def _tabbed(self) -> TabbedContent | None:
        """The TabbedContent, queried once per layout like view_targets
        (each step asks which tab is up)."""
        if not self._tabs:  # a miss is not remembered: the tabs may not be composed yet
            found = self.query(TabbedContent)
            self._tabs = (found.first(),) if found else None
        return self._tabs[0] if self._tabs else None

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        if self.wide:
            with Horizontal(id="top"):
                yield RegistersPane(id="registers")
                yield DisassemblyPane(id="disassembly")
                yield StackPane(id="stack")
            with Horizontal(id="bottom"):
                with TabbedContent(id="tabs"):
                    yield from self._common_tabs()
                yield LogPane(id="log")
        else:
            with TabbedContent(id="tabs"):
                with TabPane("Code", id="tab-code"):
                    with Horizontal(id="code-row"):
                        yield DisassemblyPane(id="disassembly")
                        yield RegistersPane(id="registers")
                with TabPane("Stack", id="tab-stack"):
                    yield StackPane(id="stack")
                yield from self._common_tabs()
                with TabPane("Log", id="tab-log"):
                    yield LogPane(id="log")
        yield Timeline(id="timeline")
        yield CommandLine(self.app.history, id="command")
        yield Footer(compact=True)

    def _common_tabs(self) -> ComposeResult:
        short = not self.wide
        with TabPane("ELF" if short else "ELF / hand-off", id="tab-elf"):
            yield ElfPane(id="elf")
        with TabPane("Relocs" if short else "Relocations", id="tab-relocs"):
            yield RelocationsPane(id="relocations")
        with TabPane("Maps", id="tab-maps"):
            yield MapsPane(id="maps")
        with TabPane("Link" if short else "link_map", id="tab-linkmap"):
            yield LinkMapPane(id="link_map")
        with TabPane("Sys" if short else "Syscalls", id="tab-syscalls"):
            yield SyscallsPane(id="syscalls")
        with TabPane("Thr" if short else "Threads", id="tab-threads"):
            yield ThreadsPane(id="threads")
        with TabPane("Events", id="tab-events"):
            yield EventsPane(id="events")
        with TabPane("Out" if short else "Output", id="tab-output"):
            yield ProgramOutputPane(id="output")

    def on_resize(self, event: events.Resize) -> None:
        wide = event.size.width >= WIDE
        if wide != self.wide:
            self.wide = wide
            self.call_later(self._relayout)

    async def _relayout(self) -> None:
        active = self.active_tab()
        command = self.query_one(CommandLine).value
        self._targets = self._tabs = None
        await self.recompose()
        self._targets = self._tabs = None
        if active:
            try:
                self.query_one(TabbedContent).active = active
            except Exception:  # the tab exists in one layout only
                pass
        self.query_one(CommandLine).value = command
        self.query_one("#listing").focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.call_after_refresh(self._flush_panes)

    def on_screen_resume(self) -> None:
        self.call_after_refresh(self._flush_panes)

    def _flush_panes(self) -> None:
        """Draw what the panes now shown were sent while hidden."""
        for pane in self.view_targets()[1]:
            pane.flush()

    def tab_ids(self) -> list[str]:
        """The tabs of this layout, in order."""
        tabs = self._tabbed()
        return [pane.id for pane in tabs.query(TabPane)] if tabs is not None else []

    def tab_labels(self) -> dict[str, str]:
        """tab id -> its label as shown."""
        tabs = self._tabbed()
        if tabs is None:
            return {}
        return {pane.id: str(tabs.get_tab(pane.id).label.plain) for pane in tabs.query(TabPane)}

    def find_tab(self, word: str) -> str | None:
        """The tab a word names: its number (1…), its label or id, or the
        start of either ("rel", "link", "sys")."""
        ids = self.tab_ids()
        if word.isdigit():
            index = int(word) - 1
            return ids[index] if 0 <= index < len(ids) else None
        word = word.lower().replace("_", "").replace("-", "")
        for tab_id, label in self.tab_labels().items():
            names = (tab_id.removeprefix("tab-"), label.lower().replace("_", "").replace(" ", ""))
            if any(name == word for name in names):
                return tab_id
        for tab_id, label in self.tab_labels().items():
            names = (tab_id.removeprefix("tab-"), label.lower().replace("_", "").replace(" ", ""))
            if any(name.startswith(word) for name in names):
                return tab_id
        return None

    def action_tab(self, index: int) -> None:
        ids = self.tab_ids()
        if index < len(ids):
            self.show_tab(ids[index])
        else:
            self.app.refuse(f"no tab {index + 1} here: this layout has {len(ids)}")

    def show_tab(self, tab_id: str) -> bool:
        """Bring tab_id up; False when this layout has no such tab (the log
        and the code have their own panes at full width)."""
        tabs = self._tabbed()
        if tabs is None or not tabs.query(f"TabPane#{tab_id}"):
            return False
        tabs.active = tab_id
        return True

    def active_tab(self) -> str | None:
        tabs = self._tabbed()
        return tabs.active if tabs is not None else None
