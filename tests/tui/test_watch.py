"""watch in a recording (issue 17.2): rc goes back to the last step that
wrote the watched bytes, standing before the write; c goes on to the
first later step that changes them (gdb's Old value / New value), a
breakpoint on the way stopping first; rwatch says why a recording cannot
find reads."""

from __future__ import annotations

import re

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


def test_watch_live_says_why(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "watch $rsp 8")
        assert "which this session cannot set" in status_text(app)
        await type_command(pilot, "rwatch $rsp")
        assert "which this session cannot set" in status_text(app)

    run_pilot(LoaderdbgApp(session), scenario)
