"""bt and finish (issue 17.2): frames unwound with .eh_frame CFI through
ld.so and the exec-solib .so, against a live run and a recording; every
caller's pc is a return address (the instruction before it is a call)."""

from __future__ import annotations

import re

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import log_text, run_pilot, settle, type_command

FRAME = re.compile(r"^#(\d+)\s+(0x[0-9a-f]{16}) in (\S+) \(\)")


def _frames(app, command: str = "bt") -> list[tuple[int, int, str]]:
    text = log_text(app).split(f"(ldbg) {command}")[-1]
    return [(int(m.group(1)), int(m.group(2), 16), m.group(3))
            for m in (FRAME.match(line) for line in text.splitlines()) if m]


def _follows_a_call(session, pc: int) -> bool:
    for length in range(2, 8):
        insns = session.disassemble(pc - length, 1)
        if insns and insns[0].is_call and insns[0].address + insns[0].size == pc:
            return True
    return False


def test_bt_through_ld_so_and_finish(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "until ldso-entry")
        await type_command(pilot, "until _dl_relocate_object")
        assert session.symbolize(app.view.pc) == "_dl_relocate_object"
        await type_command(pilot, "bt")
        frames = _frames(app)
        assert [f[0] for f in frames] == list(range(len(frames))) and len(frames) >= 3
        assert frames[0][2] == "_dl_relocate_object" and frames[-1][2] == "_dl_start_user"
        assert all(_follows_a_call(session, pc) for _, pc, _ in frames[1:])
        caller = frames[1]
        cfa = session.backtrace(1)[0].cfa
        await type_command(pilot, "finish")
        assert "Run till exit from #0" in log_text(app)
        assert app.view.pc == caller[1] and app.view.registers.sp == cfa
        await type_command(pilot, "bt 2")
        assert [f[2] for f in _frames(app, "bt 2")] == [caller[2], frames[2][2]]

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_bt_in_the_exec_solib_and_the_outermost_frame(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "finish")  # at the first instruction: nothing to return to
        assert '"finish" not meaningful in the outermost frame.' in log_text(app)
        await type_command(pilot, "until execsolib_self_relocate")
        await type_command(pilot, "si 5")
        await type_command(pilot, "bt")
        frames = _frames(app)
        assert [f[2] for f in frames] == ["execsolib_self_relocate", "execsolib_start"]
        assert _follows_a_call(session, frames[1][1])
        await type_command(pilot, "finish")
        assert app.view.pc == frames[1][1]

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_finish_in_a_recording(rdxbug_recording):
    from loaderdbg.record.replay import ReplaySession

    session = ReplaySession(str(rdxbug_recording))
    try:
        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, "until execsolib_self_relocate")
            entered = app.view.position
            await type_command(pilot, "bt")
            frames = _frames(app)
            assert [f[2] for f in frames] == ["execsolib_self_relocate", "execsolib_start"]
            await type_command(pilot, "finish")
            assert app.view.pc == frames[1][1] and app.view.position > entered
            await pilot.press("shift+f7")  # one step back: the ret
            await settle(pilot)
            assert session.disassemble(app.view.pc, 1)[0].mnemonic == "ret"
        run_pilot(LoaderdbgApp(session, title="rdxbug-crash.ldbg"), scenario, size=(160, 48))
    finally:
        session.close()
