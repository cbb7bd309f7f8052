"""Pilot tests on a recording (ReplaySession): no ptrace while replaying,
reverse execution enabled. The recording is made once per test session
(conftest.rdxbug_recording: the rdxbug demo up to its crash), so these
tests only assume what any recording of it holds: step 0 is the first
instruction, the milestones up to the auxv rewrite, then the crash at
pc 0. Step numbers are checked relative to each other, never as constants."""

from __future__ import annotations

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.timeline import Timeline

from tuihelp import log_text, press_to_stop, run_pilot, settle, status_text, type_command


def _replay(path):
    from loaderdbg.record.replay import ReplaySession

    return ReplaySession(str(path))


def test_replay_keys_forward_and_back(rdxbug_recording):
    session = _replay(rdxbug_recording)
    try:
        async def scenario(pilot):
            app = pilot.app
            assert app.check_action("step_back", ()) is True
            assert app.check_action("reverse_cont", ()) is True
            assert "rdxbug-crash.ldbg" in status_text(app) and "step 0" in status_text(app)
            await pilot.press("f7", "f7")
            await settle(pilot)
            assert app.view.position == 2 and app.view.listing
            await pilot.press("shift+f7")
            await settle(pilot)
            assert app.view.position == 1
            # F5 runs to the end of the recording: the crash.
            await pilot.press("f5")
            await settle(pilot)
            crash = app.view.position
            assert app.view.crashed and crash > 1000
            assert "CRASHED" in status_text(app) and "SIGSEGV at pc 0x0" in status_text(app)
            assert app.view.registers.get("rdx") == 0 and app.view.pc == 0
            # One step back: the jump that went to 0, still alive.
            await pilot.press("shift+f7")
            await settle(pilot)
            assert not app.view.crashed and app.view.position == crash - 1
            jump = next(i for i in app.view.listing if i.address == app.view.pc)
            assert jump.mnemonic == "jmp" and jump.symbol.startswith("execsolib_handoff")
            # Back to a milestone from the timeline: a recording goes back, no dialog.
            timeline = app.screen.query_one(Timeline)
            names = [m.name for m in timeline.markers]
            assert "ldso-mapped" in names
            # One step before it, the crash is a marker ahead: the recording knows it comes.
            assert not next(m for m in timeline.markers if m.name == "crash").reached
            mapped = next(m.event.step for m in timeline.markers if m.name == "ldso-mapped")
            timeline.focus()
            await pilot.press("home", *["right"] * names.index("ldso-mapped"), "enter")
            await settle(pilot)
            assert type(app.screen).__name__ == "MainScreen"
            if mapped >= 0:
                assert app.view.position == mapped
            # Shift+F5 with no breakpoint runs back to the start.
            await pilot.press("shift+f5")
            await settle(pilot)
            assert app.view.position == 0
            await type_command(pilot, "goto 10")
            assert app.view.position == 10
            await type_command(pilot, "x/2gx $sp")
            assert f"{app.view.registers.sp:#x}:  0x" in log_text(app).split("(ldbg) x/2gx $sp")[-1]

        run_pilot(LoaderdbgApp(session, title=f"loaderdbg replay {rdxbug_recording}"), scenario)
    finally:
        session.close()


def test_replay_goto_key_and_breakpoint_by_name(rdxbug_recording):
    session = _replay(rdxbug_recording)
    try:
        async def scenario(pilot):
            app = pilot.app
            await pilot.press("g")
            await pilot.pause()
            assert type(app.screen).__name__ == "GotoScreen"
            await press_to_stop(pilot, *"25", "enter")
            assert app.view.position == 25
            # A breakpoint by name in a recording: continue stops there, reverse continue too.
            await type_command(pilot, "b execsolib_handoff")
            address = session.resolve("execsolib_handoff")
            assert address is not None and address in session.breakpoints()
            await press_to_stop(pilot, "f5")
            assert app.view.pc == address
            hit = app.view.position
            await press_to_stop(pilot, "f5")
            assert app.view.crashed
            # Who zeroed the jump target? The step before the jump.
            await type_command(pilot, "who $rdx")
            answer = log_text(app).split("(ldbg) who $rdx")[-1]
            assert "xor edx, edx" in answer and f"step {app.view.position - 2}" in answer
            await press_to_stop(pilot, "shift+f5")
            assert app.view.position == hit and app.view.pc == address

        run_pilot(LoaderdbgApp(session, title="rdxbug-crash.ldbg"), scenario)
    finally:
        session.close()


def test_motion_keys_skip_the_widget_chain_but_not_dialogs(rdxbug_recording):
    """F7 & co. are priority bindings (taken by the App before the focused
    widget): they step with the command line focused, and do nothing while
    a dialog (help) is up; after it closes they step again."""
    session = _replay(rdxbug_recording)
    try:
        async def scenario(pilot):
            app = pilot.app
            await pilot.press("colon")  # the command line has focus
            await pilot.press("f7")
            await settle(pilot)
            assert app.view.position == 1
            assert type(app.focused).__name__ == "CommandLine"
            await pilot.press("escape", "question_mark")
            await settle(pilot)
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("f7", "f8", "shift+f7")
            await settle(pilot)
            assert app.view.position == 1 and app.busy is None
            await pilot.press("escape")
            await settle(pilot)
            assert type(app.screen).__name__ == "MainScreen"
            assert app.check_action("step", ()) is True
            await pilot.press("f7")
            await settle(pilot)
            assert app.view.position == 2

        run_pilot(LoaderdbgApp(session), scenario)
    finally:
        session.close()
