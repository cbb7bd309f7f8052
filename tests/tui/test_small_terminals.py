"""Small terminals (DESIGN.md §9: a number prints whole at every size):
what a 60-column terminal found on real programs.

- An instruction wider than the listing's room was cropped at the pane's
  edge when it had no ", " to fold at (`call 0x7ffff7▏` at 60x20, in the
  narrow layout's Code tab), and its folded operands were cut to an
  ellipsis when they did not fit beside the address column."""

from __future__ import annotations

import re

import pytest
from rich.text import Text

from loaderdbg_tui.disassembly import ADDRESS_WIDTH, fold

HEX = re.compile(r"0x[0-9a-f]+")
INDENT = 2 + 1 + ADDRESS_WIDTH + 1


def listing_line(address: int, code: str, symbol: str = "") -> Text:
    """An instruction's line as the listing lays it out (no <+offset> column)."""
    line = Text("▶ ")
    line.append(" ")
    line.append(f"{address:#x}".ljust(ADDRESS_WIDTH))
    line.append(" ")
    line.append(code)
    if symbol:
        line.append(f"  <{symbol}>")
    return line


@pytest.mark.parametrize("code, symbol", [
    ("call 0x7ffff7fc5960", ""),  # no ", " anywhere
    ("jmp 0x7ffff7e96409", "_exit+0x29"),
    ("mov r8, qword ptr [rip + 0x2d8f]", ""),  # the operand after ", " wider than the room beside the addresses
    ("lea rdi, [rip - 0x16b]", ""),
    ("movabs rax, 0x7ffff7fc5960", "_dl_start"),
])
@pytest.mark.parametrize("room", [28, 30, 34, 40])
def test_an_instruction_folds_with_every_number_whole(code, symbol, room):
    line = listing_line(0x7FFFF7FC9B73, code, symbol)
    first, rest = fold(line, room)
    lines = [first] + ([rest] if rest is not None else [])
    for part in lines:
        assert part.cell_len <= room, f"{part.plain!r} is wider than {room}"
    shown = " ".join(part.plain for part in lines)
    numbers = HEX.findall(f"{0x7FFFF7FC9B73:#x} {code}")
    assert HEX.findall(shown)[:len(numbers)] == numbers, f"numbers of {code!r} not whole in {shown!r}"
    assert "…" not in shown or symbol, shown  # only a <symbol> is shrunk
