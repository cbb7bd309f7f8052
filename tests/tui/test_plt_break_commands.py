"""The TUI's `b puts@plt` and `until puts@plt` go where gdb's do: the PLT
entry objdump labels <puts@plt> (the .plt.sec entry on lazy-ibt, not its
lazy stub in .plt), where they said no symbol 'puts@plt'. `until` runs
the stop target sym:puts@plt, whose locations are gdb's (a location in
each object: tests/integration/test_plt_break_targets.py); `b` sets one,
the program's, which gdb lists first."""

from __future__ import annotations

import re
import subprocess

import pytest

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import REPO, log_text, live_session, run_pilot, type_command

ZOO = REPO / "build" / "fixtures" / "zoo"


def _since(app, command: str) -> str:
    return log_text(app).split(f"(ldbg) {command}")[-1]


async def _answer(pilot, command: str, awaited: str) -> str:
    """What the log says after ``command``, once it says ``awaited`` (or 5 s on)."""
    await type_command(pilot, command)
    await pilot.pause(0.3)
    for _ in range(50):
        if awaited in _since(pilot.app, command):
            break
        await pilot.pause(0.1)
    return _since(pilot.app, command)


def _objdump_entry(path, label: str) -> int:
    listing = subprocess.run(["objdump", "-d", "-j", ".plt", "-j", ".plt.sec", str(path)],
                             capture_output=True, text=True, check=True).stdout
    return int(re.search(rf"^([0-9a-f]+) <{re.escape(label)}>:$", listing, re.M).group(1), 16)


@pytest.mark.parametrize("name", ["lazy", "lazy-ibt"])
def test_break_and_until_on_a_plt_entry(name):
    path = ZOO / name
    entry = _objdump_entry(path, "puts@plt")
    with live_session(path) as (session, _):

        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, "until main")
            base = next(obj.base for obj in app.view.snapshot.objects if obj.name == name)
            answer = await _answer(pilot, "b puts@plt", "<puts@plt>")
            assert f"at {base + entry:#x} <puts@plt>" in answer
            await type_command(pilot, "delete")
            await type_command(pilot, "until puts@plt")
            assert app.view.pc == base + entry
            text = (await _answer(pilot, "b nosuch@plt", "nosuch@plt")).strip()
            assert "no symbol 'nosuch@plt'" in text and "Traceback" not in text

        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
