"""watch in a recording (issue 17.2): rc goes back to the last step that
wrote the watched bytes, standing before the write; c goes on to the
first later step that changes them (gdb's Old value / New value), a
breakpoint on the way stopping first; rwatch says why a recording cannot
find reads."""

from __future__ import annotations

import re
import subprocess

import pytest

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import log_text, run_pilot, settle, status_text, type_command


def test_watch_and_rc_in_a_recording(rdxbug_recording):
    from loaderdbg.record.replay import ReplaySession

    session = ReplaySession(str(rdxbug_recording))
    try:
        async def scenario(pilot):
            app = pilot.app
            await pilot.press("f5")  # to the end of the recording: the crash
            await settle(pilot)
            assert app.view.crashed
            stack = app.view.snapshot.stack
            slot = next(e for e in stack.auxv if e.name == "AT_ENTRY").address + 8  # the value after the type
            expected = session.last_memory_write(slot, 8)
            assert expected is not None  # the exec-solib rewrote AT_ENTRY
            await type_command(pilot, f"watch {slot:#x}")
            assert f"Watchpoint 1: [{slot:#x}, +8)" in log_text(app)
            await type_command(pilot, "info breakpoints")
            assert re.search(rf"1\s+watchpoint\s+keep\s+y\s+{slot:#018x}\s+8 bytes", log_text(app))
            await type_command(pilot, "rc")
            assert app.view.position == expected.step
            assert f"Watchpoint 1: [{slot:#x}, +8) written by step {expected.step}" in log_text(app)
            # One step on, the slot holds the rewritten value.
            await pilot.press("f7")
            await settle(pilot)
            before = session.last_memory_write(slot, 8)
            assert before is not None and before.step == expected.step
            await type_command(pilot, "delete 1")
            await type_command(pilot, "info breakpoints")
            assert "No breakpoints or watchpoints." in log_text(app).split("(ldbg) info breakpoints")[-1]
        run_pilot(LoaderdbgApp(session, title="rdxbug-crash.ldbg"), scenario, size=(160, 48))
    finally:
        session.close()


def test_watch_forward_in_a_recording(rdxbug_recording):
    from loaderdbg.record import index
    from loaderdbg.record.replay import ReplaySession

    session = ReplaySession(str(rdxbug_recording))
    try:
        stack = session.snapshot().stack
        slot = next(e for e in stack.auxv if e.name == "AT_ENTRY").address + 8
        kernel_value = int.from_bytes(session.read_memory(slot, 8), "little")
        change = session.next_memory_change(slot, 8)
        assert change is not None and change.kind == "instruction"
        # Every earlier write to the slot (if any) left it as it was.
        assert all(w.new == w.old for w in index.writes_between(session.recording, slot, 8, 0, change.step))

        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, "rwatch $rsp")
            assert "a recording keeps what each step wrote, not what it read" in status_text(app)
            await type_command(pilot, f"watch {slot:#x}")
            assert f"Watchpoint 1: [{slot:#x}, +8)" in log_text(app)
            await type_command(pilot, "c")
            assert app.view.position == change.step + 1
            text = log_text(app).split("(ldbg) c")[-1]
            assert f"Old value = {kernel_value:#x}" in text
            assert f"New value = {change.value(slot, 8):#x}" in text
            assert f"changed by step {change.step}: {change.by.text}" in text
            # Nothing changes it again: c runs to the end (the crash).
            await type_command(pilot, "c")
            assert "no later change to a watched range" in log_text(app)
            assert app.view.crashed
            # A breakpoint before the change stops c first.
            await type_command(pilot, "goto 0")
            await type_command(pilot, f"break *{change.by.pc:#x}")
            await type_command(pilot, "c")
            assert app.view.position == change.step and app.view.pc == change.by.pc
            await type_command(pilot, "c")  # from the breakpoint: the write itself is next
            assert app.view.position == change.step + 1
        run_pilot(LoaderdbgApp(session, title="rdxbug-crash.ldbg"), scenario, size=(160, 48))
    finally:
        session.close()


WATCHED = r"""
#include <stdint.h>
volatile uint64_t counter = 5;
volatile uint64_t other;
volatile uint32_t source = 42;
volatile uint64_t sink;
int main(void) {
    counter = 5;        /* the value it holds: watch passes over it, as gdb's does */
    other = 1;
    counter = 7;
    sink = source;
    counter = 9;
    return 0;
}
"""


@pytest.fixture(scope="module")
def watched_program(tmp_path_factory) -> tuple[str, dict[str, int]]:
    directory = tmp_path_factory.mktemp("watched")
    (directory / "watched.c").write_text(WATCHED)
    path = str(directory / "watched")
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", path, str(directory / "watched.c")], check=True)
    names = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout.splitlines()
    return path, {line.split()[2]: int(line.split()[0], 16) for line in names if len(line.split()) == 3}


def test_hardware_watchpoints_live(watched_program):
    from loaderdbg.live import LiveSession
    from loaderdbg.process.tracee import LaunchSpec

    path, symbols = watched_program
    counter, source = symbols["counter"], symbols["source"]
    session = LiveSession(LaunchSpec(path=path, argv=(path,), env={}, aslr=False))
    try:
        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, "until main")
            await type_command(pilot, f"watch {counter:#x}")
            assert f"Hardware watchpoint 1: [{counter:#x}, +8)" in log_text(app)
            await type_command(pilot, f"rwatch {source:#x} 4")
            assert f"Hardware read watchpoint 2: [{source:#x}, +4)" in log_text(app)
            await type_command(pilot, "info breakpoints")
            listed = log_text(app).split("(ldbg) info breakpoints")[-1]
            assert re.search(rf"1\s+hw watchpoint\s+keep\s+y\s+{counter:#018x}\s+8 bytes", listed)
            assert re.search(rf"2\s+read watchpoint\s+keep\s+y\s+{source:#018x}\s+4 bytes", listed)
            await type_command(pilot, "c")  # counter = 5 changes nothing: on to counter = 7
            text = log_text(app).split("(ldbg) c")[-1]
            assert f"Hardware watchpoint 1: [{counter:#x}, +8)" in text
            assert "Old value = 0x5" in text and "New value = 0x7" in text
            assert session.read_memory(counter, 8) == (7).to_bytes(8, "little")
            await type_command(pilot, "c")
            text = log_text(app).split("(ldbg) c")[-1]
            assert f"Hardware read watchpoint 2: [{source:#x}, +4)" in text and "Value = 0x2a" in text
            # Four at most, said in words (gdb would fall back to single-stepping).
            await type_command(pilot, f"watch {symbols['sink']:#x}")
            await type_command(pilot, f"awatch {symbols['other']:#x}")
            await type_command(pilot, f"watch {counter + 4:#x} 4")
            assert "all 4 debug registers are in use" in log_text(app)
            await type_command(pilot, f"watch {counter + 4:#x} 8")
            assert "needs an address that is a multiple of 8" in log_text(app)
            await type_command(pilot, "delete 2")
            await type_command(pilot, "c")  # sink = source
            text = log_text(app).split("(ldbg) c")[-1]
            assert f"Hardware watchpoint 3: [{symbols['sink']:#x}, +8)" in text
            assert "Old value = 0x0" in text and "New value = 0x2a" in text
            await type_command(pilot, "c")
            text = log_text(app).split("(ldbg) c")[-1]
            assert f"Hardware watchpoint 1: [{counter:#x}, +8)" in text
            assert "Old value = 0x7" in text and "New value = 0x9" in text
            await type_command(pilot, "delete")
            await type_command(pilot, "c")
            assert "about to exit (status 0)" in log_text(app).split("(ldbg) c")[-1]
        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
    finally:
        session.close()
