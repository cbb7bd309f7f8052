"""gdb's `info threads` and `thread N`, and Enter on the Threads tab, on a
live multi-threaded program (issue 20): stopped at common_work in one
worker of ctor_threads, another thread made current shows its own pc, and
the status line names it."""

from __future__ import annotations

import re

from loaderdbg.record.replay import ReplaySession
from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.main_screen import MainScreen
from loaderdbg_tui.threads import ThreadsPane

from tuihelp import REPO, live_session, log_text, run_pilot, settle, status_text, type_command

CTOR_THREADS = REPO / "build" / "fixtures" / "threads" / "ctor_threads"
# `* 1    Thread 0x7ffff7dd2740 (LWP 734) "ctor_threads" 0x00007ffff7e5e006 in …`
# (no `Thread 0x…` before the thread has a TLS block: at the first instruction)
GDB_ROW = re.compile(r"^\s*(\*?)\s+(\d+)\s+(?:Thread (0x[0-9a-f]+) )?\(LWP (\d+)\) \"[^\"]+\"\s+(0x[0-9a-f]+)")


def _since(app, command: str) -> str:
    return log_text(app).split(f"(ldbg) {command}")[-1]


async def _back_to_main(pilot) -> None:
    """A wide output opens the full-width output view: close it."""
    if not isinstance(pilot.app.screen, MainScreen):
        await pilot.press("escape")
        await pilot.pause()
    assert isinstance(pilot.app.screen, MainScreen)


def _rows(text: str) -> list[tuple[bool, int, int, int]]:
    """(current, gdb number, tid, pc) of each `info threads` row."""
    return [(m.group(1) == "*", int(m.group(2)), int(m.group(4)), int(m.group(5), 16))
            for m in map(GDB_ROW.match, text.splitlines()) if m]


def test_info_threads_thread_n_and_the_threads_tab():
    with live_session(CTOR_THREADS) as (session, _):
        session.add_breakpoint(session.resolve("common_work"))
        # The first worker may reach common_work before the constructor has
        # started the others: on to a hit with all three workers there.
        for _ in range(10):
            reason = session.cont()
            assert reason.kind == "breakpoint" and reason.thread is not None
            if len(session.threads()) == 4:
                break
        hit = reason.thread

        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, "info threads")
            await settle(pilot)
            rows = _rows(_since(app, "info threads"))
            tids = [t.tid for t in app.view.snapshot.threads]
            assert len(tids) == 4 and [tid for _, _, tid, _ in rows] == tids
            assert [number for _, number, _, _ in rows] == [1, 2, 3, 4]
            await _back_to_main(pilot)
            assert [tid for current, _, tid, _ in rows if current] == [hit]
            assert rows[0][2] == session.pid
            number_of_hit = next(number for _, number, tid, _ in rows if tid == hit)
            assert f"thread {number_of_hit} (LWP {hit})" in status_text(app)

            await type_command(pilot, "thread 1")  # the main thread, in pthread_join
            await settle(pilot)
            await _back_to_main(pilot)
            assert f"[Switching to thread 1 (LWP {session.pid})]" in _since(app, "thread 1")
            assert app.view.pc == rows[0][3]
            assert f"thread 1 (LWP {session.pid})" in status_text(app)
            await type_command(pilot, "thread")
            assert f"[Current thread is 1 (LWP {session.pid})]" in _since(app, "thread")
            await type_command(pilot, "info threads")
            await settle(pilot)
            assert [number for current, number, _, _ in _rows(_since(app, "info threads")) if current] == [1]

            await _back_to_main(pilot)
            await type_command(pilot, "thread 99")
            assert "Invalid thread ID: 99" in _since(app, "thread 99")

            await _back_to_main(pilot)
            # Enter on the third row of the Threads tab makes that thread current.
            app.screen.show_tab("tab-threads")
            await pilot.pause()
            pane = app.screen.query_one(ThreadsPane)
            pane.body.focus()
            pane.body.cursor = 2 * (pane.layout_plan.height if pane.layout_plan else 1)
            await pilot.press("enter")
            await settle(pilot)
            third = rows[2][2]
            assert [t.tid for t in app.view.snapshot.threads if t.current] == [third]
            assert app.view.pc == rows[2][3]
            assert f"thread 3 (LWP {third})" in status_text(app)

        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_a_recording_lists_its_one_thread_and_refuses_to_switch():
    session = ReplaySession(str(REPO / "recordings" / "execsolib-glibc-entry.ldbg"))

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "info threads")
        await settle(pilot)
        rows = _rows(_since(app, "info threads"))
        assert [(current, number) for current, number, _, _ in rows] == [(True, 1)]
        assert rows[0][3] == app.view.pc
        await _back_to_main(pilot)
        await type_command(pilot, "thread 1")
        assert "selecting a thread needs a launched x86-64 program" in _since(app, "thread 1")
        assert "thread 1 (LWP" not in status_text(app)

    try:
        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
    finally:
        session.close()
