"""gdb's `signal SIG`, `signal 0` and `queue-signal` in the TUI, on a
program that says which of its signal handlers ran
(tests/fixtures/zoo/signal-controls.c)."""

from __future__ import annotations

import os

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import REPO, live_session, log_text, run_pilot, settle, status_text, type_command

SIGNAL_CONTROLS = REPO / "build" / "fixtures" / "zoo" / "signal-controls"


def _output(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


async def _typed(pilot, line: str) -> None:
    await type_command(pilot, line)
    await settle(pilot)


def test_signal_commands_change_what_the_program_receives():
    with live_session(SIGNAL_CONTROLS) as (session, output):
        async def scenario(pilot):
            app = pilot.app
            await _typed(pilot, "until signal")
            assert app.view.stop.signal == "SIGUSR1", app.view.stop
            # Said, not run: the program still stands at its SIGUSR1.
            await _typed(pilot, "queue-signal usr2")
            assert "the next resume delivers SIGUSR2" in log_text(app)
            assert app.view.stop.signal == "SIGUSR1"
            await _typed(pilot, "until signal")
            assert app.view.stop.signal == "SIGTERM", app.view.stop
            await _typed(pilot, "signal 0")
            assert app.view.stop.exit_code == 0, app.view.stop  # at its exit, status 0

        run_pilot(LoaderdbgApp(session), scenario)
        said = _output(output)
    # SIGUSR2's handler ran in place of SIGUSR1's; SIGTERM never arrived.
    assert said.splitlines() == ["handler SIGUSR2", "after SIGUSR1", "survived SIGTERM"], said


def test_signal_replaces_the_signal_and_continues():
    with live_session(SIGNAL_CONTROLS) as (session, output):
        async def scenario(pilot):
            app = pilot.app
            await _typed(pilot, "until signal")
            await _typed(pilot, "signal SIGUSR2")
            # On to SIGTERM, which the program does not handle.
            assert app.view.stop.kind == "killed" and app.view.stop.signal == "SIGTERM", app.view.stop
            await _typed(pilot, "signal 0")
            assert "the process is gone" in log_text(app) or "gone" in status_text(app)

        run_pilot(LoaderdbgApp(session), scenario)
        said = _output(output)
    assert said.splitlines() == ["handler SIGUSR2", "after SIGUSR1"], said


def test_a_recording_says_its_signals_are_history(rdxbug_recording):
    from loaderdbg.record.replay import ReplaySession

    with ReplaySession(str(rdxbug_recording)) as session:
        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, "signal 0")
            assert "a recording replays the signals it recorded" in log_text(app)

        run_pilot(LoaderdbgApp(session), scenario)
