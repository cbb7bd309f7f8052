"""Calls into the PLT read as gdb reads them: `disas` shows `call ADDR
<puts@plt>` where objdump's listing of the same function says `<puts@plt>`
(it said `<lazy+0x1040>`), and `bt` stopped in a PLT entry says
`#0 ... in puts@plt ()`, as gdb's own `bt` at the same pc does. On the lazy
fixture (a classic lazy .plt) and lazy-ibt (IBT: calls go through .plt.sec,
named as .plt's lazy stubs are not)."""

from __future__ import annotations

import re
import subprocess

import pytest

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import REPO, log_text, live_session, run_pilot, type_command

ZOO = REPO / "build" / "fixtures" / "zoo"
FRAME = re.compile(r"^#(\d+)\s+(0x[0-9a-f]{16}) in (\S+) \(\)", re.M)
CALL = re.compile(r"\bcall\s.*<(\S+@plt)>")


def _since(app, command: str) -> str:
    return log_text(app).split(f"(ldbg) {command}")[-1]


def _objdump_calls(path, function: str) -> list[str]:
    """The `<name@plt>` targets of the calls objdump -d lists in function."""
    listing = subprocess.run(["objdump", "-d", f"--disassemble={function}", str(path)],
                             capture_output=True, text=True, check=True).stdout
    return CALL.findall(listing)


def _gdb_frames(path, address: int) -> list[tuple[int, str]]:
    """(pc, name) of the innermost two frames of gdb's `bt` stopped at
    address (ASLR off in gdb, as in loaderdbg: the same addresses)."""
    said = subprocess.run(["gdb", "-batch", "-nx", "-ex", "starti", "-ex", f"break *{address:#x}",
                           "-ex", "continue", "-ex", "bt 2", "-ex", "kill", str(path)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL).stdout
    return [(int(pc, 16), name) for _, pc, name in FRAME.findall(said)]


@pytest.mark.parametrize("name", ["lazy", "lazy-ibt"])
def test_disas_and_bt_name_plt_entries_as_gdb_and_objdump(name):
    path = ZOO / name
    expected_calls = _objdump_calls(path, "main")
    assert "puts@plt" in expected_calls and len(expected_calls) >= 6
    with live_session(path) as (session, _):

        async def scenario(pilot):
            app = pilot.app
            await type_command(pilot, "until main")
            await type_command(pilot, "disas")
            text = _since(app, "disas")
            assert "Dump of assembler code for function main:" in text
            assert CALL.findall(text) == expected_calls
            puts = next(insn for insn in session.disassemble(app.view.pc, 200)
                        if insn.is_call and insn.target_symbol == "puts@plt")
            target = puts.branch_target
            await type_command(pilot, f"until *{target:#x}")
            assert app.view.pc == target
            await type_command(pilot, "bt")
            frames = [(int(pc, 16), symbol) for _, pc, symbol in FRAME.findall(_since(app, "bt"))]
            assert frames[0] == (target, "puts@plt") and frames[1][1] == "main"
            assert frames[:2] == _gdb_frames(path, target)
            await type_command(pilot, "info symbol $pc+4")
            assert _since(app, "info symbol $pc+4").strip().startswith("puts@plt + 4 in ")

        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
