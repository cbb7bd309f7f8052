"""Every tab shows its part of the snapshot: a live demo run stopped at
AT_ENTRY (ld.so has loaded libc and relocated everything)."""

from __future__ import annotations

import io
import re

from rich.console import Console
from textual.widgets import Input, Static

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.elf import ElfPane
from loaderdbg_tui.events import EventsPane
from loaderdbg_tui.link_map import LinkMapPane
from loaderdbg_tui.maps import MapsPane
from loaderdbg_tui.program_output import NO_OUTPUT, ProgramOutputPane
from loaderdbg_tui.relocations import RelocationsPane
from loaderdbg_tui.stack import StackPane
from loaderdbg_tui.syscalls import SyscallsPane
from loaderdbg_tui.table_view import TableView
from loaderdbg_tui.threads import ThreadsPane

from tuihelp import run_pilot, settle


def _plain(renderable) -> str:
    console = Console(width=200, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def _table_text(table: TableView) -> str:
    return "\n".join(line.plain for line in table.body.lines)


def test_tabs_at_at_entry(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        screen = app.screen
        await pilot.press("e")
        await settle(pilot)
        snap = app.view.snapshot

        async def show(tab: str) -> None:
            screen.show_tab(tab)
            await pilot.pause()

        await show("tab-relocs")
        pane = screen.query_one(RelocationsPane)
        summary = _plain(pane.query_one("#reloc-summary", Static).content)
        assert "libc.so.6" in summary and "(ld.so)" in summary
        table = pane.table
        assert len(table.lines) == len(snap.relocations) * pane.row_height > 100
        pane.query_one("#reloc-filter", Input).value = "libc JUMP_SLOT"
        await pilot.pause()
        await pilot.pause()
        wanted = [r for r in snap.relocations if r.object == "libc.so.6" and r.type_name.endswith("JUMP_SLOT")]
        assert 0 < len(table.lines) == len(wanted) * pane.row_height
        assert all("JUMP_SLOT" in line.plain for line in table.lines[::pane.row_height])
        # What each slot binds to is on its row (issue 15: bindings and reasons in the TUI).
        bound = next(r for r in wanted if r.binding is not None and r.binding.object)
        where = f"{bound.binding.object.rsplit('/', 1)[-1]}:{bound.binding.symbol}"
        assert any(where in line.plain for line in table.lines), where

        await show("tab-maps")
        maps = screen.query_one(MapsPane)
        assert len(maps.rows) == len(snap.maps)
        assert "libc.so.6" in _table_text(maps)

        await show("tab-linkmap")
        link_map = screen.query_one(LinkMapPane)
        assert "libc.so.6" in _table_text(link_map) and "(main program)" in _table_text(link_map)

        await show("tab-syscalls")
        syscalls = screen.query_one(SyscallsPane)
        lines = "\n".join(strip.text for strip in syscalls.lines)
        assert "memfd_create" in lines and "mmap(" in lines
        # One line a syscall, and the lines it wraps to (numbers are never cut).
        firsts = [strip.text for strip in syscalls.lines if re.match(r"\s*(\d+|~)  \w+\(", strip.text)]
        assert len(firsts) == sum(1 for e in snap.events if e.kind == "syscall")

        await show("tab-threads")
        threads = screen.query_one(ThreadsPane)
        assert len(threads.rows) == 1 and str(session.pid) in _table_text(threads)

        await show("tab-events")
        events = _plain(screen.query_one(EventsPane).content)
        assert "AT_ENTRY reached" in events and "memfd_create" in events

        await show("tab-elf")
        elf = "\n".join(line.plain for line in screen.query_one(ElfPane).lines)
        assert "Hand-off check" in elf and "libc.so.6" in elf and "RELRO" in elf

        await show("tab-output")
        output = screen.query_one(ProgramOutputPane)
        assert NO_OUTPUT in "\n".join(strip.text for strip in output.lines)

        await show("tab-stack")
        stack = screen.query_one(StackPane)
        text = "\n".join(line.plain for line in stack.lines)
        assert "AT_ENTRY ✎" in text and "kernel gave" in text  # exec-solib rewrote it
        assert "argv[0]" in text and "/proc/self/fd/" in text

    run_pilot(LoaderdbgApp(session), scenario)
