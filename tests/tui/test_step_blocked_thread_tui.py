"""F7 on a thread blocked in read(2), then Ctrl+C: the step ends, said as
interrupted, and the TUI is free again (it waited for ever: the interrupt
went to the stopped leader). A real program: threads/blocked_reader, whose
worker reads a pipe while main calls marker() every 5 ms."""

from __future__ import annotations

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import REPO, live_session, log_text, run_pilot, settle, status_text, until

BLOCKED_READER = REPO / "build" / "fixtures" / "threads" / "blocked_reader"


def test_ctrl_c_ends_a_step_into_a_blocking_read(reader_in_read):
    with live_session(BLOCKED_READER) as (session, _):
        reader = reader_in_read(session)
        session.select_thread(reader)

        async def scenario(pilot):
            app = pilot.app
            await settle(pilot)
            await pilot.press("f7")
            assert app.busy == "si"
            await pilot.pause(0.5)  # read() blocks: the step does not end by itself
            assert app.busy == "si"
            assert "Ctrl+C interrupts" in status_text(app)
            await pilot.press("ctrl+c")
            await until(pilot, lambda: app.busy is None, "the step's end after Ctrl+C", timeout=10)
            await settle(pilot)
            assert "interrupted" in log_text(app)
            assert f"thread {reader}" in log_text(app)

        run_pilot(LoaderdbgApp(session), scenario)
