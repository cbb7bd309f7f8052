"""The TUI (`loaderdbg run`) on an aarch64 program through qemu-user (issue
22): the same session and keys — a step, a continue, the crash said in
plain words with arm64's register names."""

from __future__ import annotations

import shutil

import pytest

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.status import StatusLine

from tuihelp import EXECSOLIB, live_session, run_pilot, settle, status_text

HANDOFFBUG = EXECSOLIB / "aarch64-handoffbug" / "libexecsolib.so"

pytestmark = pytest.mark.skipif(not shutil.which("qemu-aarch64"), reason="needs qemu-user (make sysdeps)")


def test_handoffbug_crash_is_said_in_plain_words():
    with live_session(HANDOFFBUG) as (session, _):
        async def scenario(pilot):
            app = pilot.app
            await pilot.press("f7")
            await settle(pilot)
            assert session.position == 1 and "stepped" in status_text(app)
            await pilot.press("l")  # on to the next milestone: the crash comes first
            await settle(pilot)
            status = status_text(app)
            assert "CRASHED" in status and "SIGSEGV at pc 0x0, fault address 0x0" in status
            assert "the hand-off jump to ld.so" in status and "x0 = 0" in status
            assert app.screen.query_one(StatusLine).has_class("-crashed")
        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
