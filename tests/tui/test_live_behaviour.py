"""Crash display, coalesced stepping, interrupting, program output, palette:
Pilot tests against live runs. The two wrappers here (SlowSteps,
BlockingContinue) delegate to a real LiveSession and only slow or hold one
call, to make the UI's timing behaviour observable."""

from __future__ import annotations

import threading
import time

from textual.widgets import Input, OptionList

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.status import StatusLine
from loaderdbg_tui.timeline import Timeline

from tuihelp import log_text, run_pilot, settle, status_text, type_command, until


class _Delegate:
    def __init__(self, session) -> None:
        self._session = session

    def __getattr__(self, name):
        return getattr(self._session, name)


class SlowSteps(_Delegate):
    """Each step takes 80 ms; counts snapshots and step calls."""

    def __init__(self, session) -> None:
        super().__init__(session)
        self.snapshots = 0
        self.step_calls: list[int] = []

    def step(self, n: int = 1):
        self.step_calls.append(n)
        time.sleep(0.08)
        return self._session.step(n)

    def snapshot(self):
        self.snapshots += 1
        return self._session.snapshot()


class BlockingContinue(_Delegate):
    """cont() runs until interrupt() is called, like a program that never
    reaches its target."""

    def __init__(self, session) -> None:
        super().__init__(session)
        self.released = threading.Event()
        self.interrupts = 0

    def cont(self, until=None):
        if not self.released.wait(timeout=10):
            raise AssertionError("interrupt() never came")
        return self._session.stop_reason

    def interrupt(self) -> None:
        self.interrupts += 1
        self.released.set()


def test_rdxbug_crash_is_said_in_plain_words(rdxbug):
    session, _ = rdxbug

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("l")
        await settle(pilot)
        status = status_text(app)
        assert "CRASHED" in status
        assert "SIGSEGV at pc 0x0, fault address 0x0" in status
        assert "(ldso-entry not reached)" in status
        assert "went to address 0: the hand-off jump to ld.so" in status and "rdx = 0" in status
        assert app.screen.query_one(StatusLine).has_class("-crashed")
        markers = app.screen.query_one(Timeline).markers
        assert markers[-1].name == "crash" and markers[-1].reached
        assert "ldso-entry" not in [m.name for m in markers]
        # Stepping on delivers the signal: the process dies, motion greys out.
        # (The engine may take one extra step to report the death.)
        for _ in range(3):
            await pilot.press("f7")
            await settle(pilot)
            if not session.alive:
                break
        assert not session.alive
        assert "killed by SIGSEGV" in status_text(app)
        assert "starti to relaunch" in status_text(app)
        position = app.view.position
        await pilot.press("f7")  # nothing to step: the status line says why
        await settle(pilot)
        assert app.view.position == position
        assert "the process is gone; starti relaunches it" in status_text(app)

    run_pilot(LoaderdbgApp(session), scenario)


def test_held_f7_is_coalesced(demo):
    session, _ = demo
    slow = SlowSteps(session)
    presses = 12

    async def scenario(pilot):
        app = pilot.app
        before = slow.snapshots
        # A held key: events arrive faster than steps finish.
        for _ in range(presses):
            app.simulate_key("f7")
            await pilot.pause(0.01)
        await settle(pilot)
        assert app.view.position == presses == session.position
        # Presses during a step in flight add up into one step(n).
        assert max(slow.step_calls) > 1
        assert slow.snapshots - before < presses / 2

    run_pilot(LoaderdbgApp(slow), scenario)


def test_ctrl_c_interrupts_a_continue(demo):
    session, _ = demo
    blocking = BlockingContinue(session)

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("f5")
        assert app.busy == "continue"
        await pilot.pause(0.4)  # the busy indicator shows after a moment
        assert "continue… (Ctrl+C interrupts)" in status_text(app)
        await pilot.press("f7")  # refused while a continue runs
        assert app.busy == "continue"
        await pilot.press("ctrl+c")
        await settle(pilot)
        assert blocking.interrupts == 1
        assert app.busy is None
        assert "Ctrl+C" not in status_text(app)
        assert "interrupting continue" in log_text(app)

    run_pilot(LoaderdbgApp(blocking), scenario)


def test_program_output_pane_shows_what_the_tracee_writes(demo):
    session, output_fd = demo
    app = LoaderdbgApp(session, output_fd=output_fd)

    async def scenario(pilot):
        await type_command(pilot, "until syscall:exit_group")
        assert app.view.stop.kind == "syscall"
        deadline = time.monotonic() + 5
        while not app.output_lines and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert any(line.startswith("execsolib: ok argc=1") for line in app.output_lines)

    run_pilot(app, scenario)


def test_palette_has_our_commands(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        names = [name for name, _, _ in app.palette_commands()]
        assert "Run to ld.so entry" in names and "Show GOT" in names
        assert "Step back" not in names  # live: no reverse execution
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", "the command palette")
        palette = app.screen
        palette.query_one(Input).value = "show auxv"
        await until(pilot, lambda: palette.query_one(OptionList).option_count > 0, "the palette's options")
        await pilot.press("enter")
        await settle(pilot)
        assert "AT_ENTRY" in log_text(app)

    run_pilot(LoaderdbgApp(session), scenario)
