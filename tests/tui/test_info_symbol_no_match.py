"""`info symbol` where gdb says "No symbol matches ADDR." says so too (PLT0,
IBT's lazy stubs in .plt): it said `lazy + 4128 in …`, symbolize's
object+offset taken for a symbol; the object and offset follow in
parentheses, as for any mapped address without a symbol."""

from __future__ import annotations

import re
import subprocess

import pytest

from loaderdbg.decode.elf import parse_elf
from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import REPO, log_text, live_session, run_pilot, type_command

ZOO = REPO / "build" / "fixtures" / "zoo"


def _gdb_says(path, address: int) -> str:
    return subprocess.run(["gdb", "-batch", "-nx", "-ex", f"info symbol {address:#x}", str(path)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL).stdout.strip()


@pytest.mark.parametrize("name", ["lazy", "lazy-ibt"])
def test_info_symbol_says_no_symbol_matches_where_gdb_does(name):
    path = ZOO / name
    info = parse_elf(path.read_bytes(), str(path))
    plt0 = info.section_named(".plt")[0]
    assert _gdb_says(path, plt0 + 4) == f"No symbol matches {plt0 + 4:#x}."
    with live_session(path) as (session, _):

        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, "until main")
            base = next(obj.base for obj in app.view.snapshot.objects if obj.name == name)
            command = f"info symbol {base + plt0 + 4:#x}"
            await type_command(pilot, command)
            said = log_text(app).split(f"(ldbg) {command}")[-1].strip().splitlines()[0]
            assert said == f"No symbol matches {base + plt0 + 4:#x}. (in {name}+{plt0 + 4 - info.min_vaddr:#x})"
            await type_command(pilot, "info symbol $pc")
            assert log_text(app).split("(ldbg) info symbol $pc")[-1].strip().startswith("main in ")

        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
