"""watch and rwatch in the TUI on an aarch64 program under qemu-user
(issue 22): the same words and reports as x86's debug registers (gdb's Old
value / New value), kept by stepping (qemu's stub has no watchpoints)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import REPO, live_session, log_text, run_pilot, type_command

HELLO = REPO / "build" / "fixtures" / "zoo" / "aarch64-hello"
LD_SO = "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1"

pytestmark = pytest.mark.skipif(not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-readelf")),
                                reason="needs qemu-user and binutils-aarch64-linux-gnu (make sysdeps)")


def first_relative_relocation() -> tuple[int, int]:
    out = subprocess.run(["aarch64-linux-gnu-readelf", "-rW", LD_SO], capture_output=True, text=True,
                         check=True).stdout
    fields = next(line.split() for line in out.splitlines()
                  if len(line.split()) == 4 and line.split()[2] == "R_AARCH64_RELATIVE")
    return int(fields[0], 16), int(fields[3], 16)


def test_watch_and_rwatch_live_on_aarch64():
    offset, addend = first_relative_relocation()
    with live_session(HELLO) as (session, _):
        base = next(e.value for e in session.snapshot().stack.auxv if e.name == "AT_BASE")
        sp = session.snapshot().registers["sp"]
        slot = base + offset

        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, f"watch {slot:#x}")
            assert f"Hardware watchpoint 1: [{slot:#x}, +8)" in log_text(app)
            await type_command(pilot, "rwatch $sp")
            assert f"Hardware read watchpoint 2: [{sp:#x}, +8)" in log_text(app)
            await type_command(pilot, f"watch {slot:#x} 5000")
            assert "watch: 5000 bytes is too many (at most 4096)" in log_text(app)
            await type_command(pilot, "info breakpoints")
            listed = log_text(app).split("(ldbg) info breakpoints")[-1]
            assert re.search(rf"1\s+hw watchpoint\s+keep\s+y\s+{slot:#018x}\s+8 bytes", listed)
            await type_command(pilot, "c")  # ld.so relocates itself: the slot's first write
            text = log_text(app).split("(ldbg) c")[-1]
            assert f"Hardware watchpoint 1: [{slot:#x}, +8)" in text
            assert f"Old value = {addend:#x}" in text and f"New value = {base + addend:#x}" in text
            await type_command(pilot, "c")  # argc read, off the initial stack
            text = log_text(app).split("(ldbg) c")[-1]
            assert f"Hardware read watchpoint 2: [{sp:#x}, +8)" in text and "Value = 0x1" in text
            await type_command(pilot, "delete")
            await type_command(pilot, "c")
            assert "about to exit (status 0)" in log_text(app).split("(ldbg) c")[-1]
        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
