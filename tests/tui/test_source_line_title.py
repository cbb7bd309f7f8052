"""Where DWARF line information exists (ld.so's, from libc6-dbg's separate
debug file), the disassembly pane names pc's source line as gdb does:
file:line (issue 15.7)."""

from __future__ import annotations

import re
from pathlib import Path

from loaderdbg.record.replay import ReplaySession
from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.disassembly import DisassemblyPane

from tuihelp import run_pilot, settle, type_command

SAMPLE = Path(__file__).resolve().parents[2] / "recordings" / "execsolib-glibc-entry.ldbg"


def test_disassembly_title_names_the_source_line_inside_ld_so():
    session = ReplaySession(str(SAMPLE))
    ldso_entry = next(e.step for e in session.events() if e.name == "ldso-entry")
    titles = []

    async def scenario(pilot):
        for step in (ldso_entry + 50, ldso_entry + 2000):
            await type_command(pilot, f"goto {step}")
            await settle(pilot)
            expected = session.source_line(session.pc)
            title = str(pilot.app.screen.query_one(DisassemblyPane).border_title)
            titles.append(title)
            assert expected is not None, step  # libc6-dbg has ld.so's line tables
            assert title == f"disassembly · {expected.file.rsplit('/', 1)[-1]}:{expected.line}"

    try:
        run_pilot(LoaderdbgApp(session, title=None), scenario, size=(160, 48))
    finally:
        session.close()
    assert all(re.search(r"\.[chS]:\d+$", title) for title in titles), titles
