"""UI logic that needs reverse execution, on the FakeReplaySession TEST
DOUBLE (no ptrace): Shift+F7, Shift+F5 and `g` are enabled and call the
session; the timeline jumps with goto; `b` says why it does nothing for a
session without breakpoints. Replay of real recordings is tested once ReplaySession
exists (issue 5)."""

from __future__ import annotations

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.timeline import Timeline

from tuihelp import run_pilot, settle, status_text, type_command
from tui_fake_replay import FakeReplaySession


def test_reverse_keys_are_enabled_and_reach_the_session():
    session = FakeReplaySession()

    async def scenario(pilot):
        app = pilot.app
        assert app.check_action("step_back", ()) is True
        assert app.check_action("reverse_cont", ()) is True
        assert app.check_action("goto", ()) is True
        await pilot.press("b")  # this session has no breakpoints: the key says so
        await pilot.pause()
        assert "this session cannot set breakpoints" in status_text(app)
        await pilot.press("f7", "f7")
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        assert app.view.position == 3
        await pilot.press("shift+f7")
        await settle(pilot)
        assert app.view.position == 2 and ("step_back", 1) in session.calls
        assert "rax" in app.view.changed
        await pilot.press("e")
        await settle(pilot)
        assert app.view.position == 6
        await pilot.press("shift+f5")
        await settle(pilot)
        assert ("reverse_cont", None) in session.calls and app.view.position == 3
        await pilot.press("g")
        await pilot.pause()
        await pilot.press("1", "enter")
        await settle(pilot)
        assert app.view.position == 1 and ("goto", 1) in session.calls
        assert "step 1" in status_text(app)

    run_pilot(LoaderdbgApp(session, title="fake.ldbg"), scenario)


def test_timeline_jumps_back_with_goto_in_a_recording():
    session = FakeReplaySession()

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("e")
        await settle(pilot)
        assert app.view.stage.name == "at-entry"
        timeline = app.screen.query_one(Timeline)
        timeline.focus()
        await pilot.press("home", "right", "enter")  # jump to ld.so, behind: no dialog
        await settle(pilot)
        assert type(app.screen).__name__ == "MainScreen"
        assert ("goto", 3) in session.calls and app.view.position == 3
        assert "fake.ldbg" in status_text(app)  # no pid: the file is named

    run_pilot(LoaderdbgApp(session, title="fake.ldbg"), scenario)


def test_reverse_commands_in_a_recording():
    session = FakeReplaySession()

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "si 5")
        await type_command(pilot, "rsi 2")
        assert app.view.position == 3
        await type_command(pilot, "rc")
        assert app.view.position == 0
        await type_command(pilot, "goto 7")
        assert app.view.position == 7
        await type_command(pilot, "starti")  # a recording goes back to step 0
        assert app.view.position == 0

    run_pilot(LoaderdbgApp(session), scenario)
