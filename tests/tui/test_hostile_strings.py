"""Strings from a recording never reach the terminal as control codes
(issue 16.3): a recording whose program path, milestone texts, end reason
and map paths carry escape sequences is shown with them escaped, on the
main screen, in the events report and in vmmap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from loaderdbg.printable import printable
from loaderdbg.record.replay import ReplaySession
from loaderdbg_tui.app import LoaderdbgApp

from damaged_recording import edit
from tuihelp import run_pilot, settle, type_command

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "recordings" / "execsolib-rdxbug-crash.ldbg"
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


def test_recording_strings_are_escaped_on_screen(tmp_path):
    path = tmp_path / "hostile.ldbg"
    shutil.copy(SAMPLE, path)
    edit(path, "UPDATE meta SET value = ? WHERE key = 'program'", args=(json.dumps(f"/tmp/{HOSTILE}"),))
    edit(path, "UPDATE events SET detail = ? WHERE kind = 'milestone'", args=(f"detail {HOSTILE}",))
    end = json.dumps({"kind": "signal", "description": f"died {HOSTILE}", "reached": False})
    edit(path, "UPDATE meta SET value = ? WHERE key = 'end'", args=(end,))
    session = ReplaySession(str(path))
    screens = []

    async def scenario(pilot):
        app = pilot.app
        screens.append(app.export_screenshot())
        await type_command(pilot, "goto 1000000000")  # the end: the recording's own end reason
        await settle(pilot)
        for command in ("info events", "vmmap"):
            await type_command(pilot, command)
            await settle(pilot)
            screens.append(app.export_screenshot())

    try:
        run_pilot(LoaderdbgApp(session, title=None), scenario, size=(160, 48))
    finally:
        session.close()
    assert all(e.detail.startswith("detail \\x1b") for e in session.events() if e.kind == "milestone")
    assert printable(HOSTILE) in session.end_reason.description
    for screen in screens:
        assert not any(c in screen for c in RAW_CONTROLS)
    assert any("pwned" in screen for screen in screens)
