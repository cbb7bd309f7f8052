"""Small terminals (DESIGN.md §9: a number prints whole at every size):
what a 60-column terminal found on real programs.

- An instruction wider than the listing's room was cropped at the pane's
  edge when it had no ", " to fold at (`call 0x7ffff7▏` at 60x20, in the
  narrow layout's Code tab), and its folded operands were cut to an
  ellipsis when they did not fit beside the address column.
- The status line, made anew when the screen is recomposed (crossing
  the wide layout's width), kept a stop's whole text on its first row.
- `got` on gdb at AT_ENTRY took ten seconds: its table was laid out whole,
  three times."""

from __future__ import annotations

import re

import pytest
from rich.text import Text

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.disassembly import ADDRESS_WIDTH, fold, label_line
from loaderdbg_tui.fit import FittedTable, Layout
from loaderdbg_tui.output_view import OutputScreen
from loaderdbg_tui.reports import GOT_COLUMNS
from loaderdbg_tui.status import StatusLine

from test_numbers_whole import cut_numbers, known_numbers
from tuihelp import log_text, press_to_stop, run_pilot, screen_lines, settle

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


@pytest.mark.parametrize("spare", [-1, 0, 1, 2, 3])
def test_a_symbol_shrinks_away_from_the_code_before_it(spare):
    """The code fits, its <symbol> does not: the symbol shrinks to " …" or
    goes, never leaving an ellipsis against the code's last number
    (`jmp 0x42fe75…` read as a cut number at 60x20)."""
    line = listing_line(0x42FE61, "jmp 0x42fe75", "__libc_start_call_main+0x85")
    room = INDENT + len("jmp 0x42fe75") + spare
    first, rest = fold(line, room)
    shown = first.plain + (rest.plain if rest is not None else "")
    assert first.cell_len <= room and (rest is None or rest.cell_len <= room)
    assert "0x42fe75" in shown and "0x42fe75…" not in shown, shown


@pytest.mark.parametrize("label, room", [("libc.so+0x778:", 30), ("execsolib_start+0x30:", 28),
                                         ("_dl_start:", 28), ("a_long_symbol_name_indeed+0x1234:", 24)])
def test_a_label_fits_with_its_offset_whole(label, room):
    """A symbol's label over its instructions was cropped at the pane's
    edge (`libc.so+0x778▏` at 60x20, musl's ld.so)."""
    line = label_line(label, INDENT, room)
    assert line.cell_len <= room, line.plain
    offset = label.rpartition("+")[2].rstrip(":") if "+" in label else ""
    assert line.plain.rstrip().endswith(f"{offset}:" if offset else label), line.plain
    assert label_line(label, INDENT, 200).plain == " " * INDENT + label  # room enough: where it always was


def test_the_status_line_is_laid_out_again_when_the_screen_is_recomposed(demo):
    """Crossing the wide layout's width recomposes the screen: the new
    status line was laid out before it had a width, kept the whole stop on
    its first row, and the row was cut at the terminal's edge (`Exited
    with status 0 (addr:0x7f▏` at 80x24 after a 200x60 screen)."""
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await press_to_stop(pilot, "e")
        for width, height in ((80, 24), (60, 20), (160, 48), (80, 24)):
            await pilot.resize_terminal(width, height)
            await settle(pilot)
            lines = screen_lines(app)
            known = known_numbers(app)
            status = app.screen.query_one(StatusLine)
            for row in range(status.size.height):
                assert not cut_numbers([lines[row]], known), (width, lines[:3])
            assert "0x" in status.plain and all(
                Text(line).cell_len <= status.content_size.width for line in status.plain.splitlines()[:1]), \
                (width, status.plain)
    run_pilot(LoaderdbgApp(session), scenario, size=(200, 60))


def test_a_long_table_of_output_is_laid_out_a_screenful_at_a_time(demo, monkeypatch):
    """`got` at gdb's AT_ENTRY (thousands of slots) froze the screen for
    ten seconds: the whole table was laid out three times on the event
    loop (into the log, to count its lines, into the output view). The
    output view lays out the rows on screen, the log keeps the first rows
    and says where the rest are; the rows shown are the table's, whole."""
    session, _ = demo
    rows = [("libfoo.so.6", f"{0x7FFFF7A00000 + 8 * index:#x}", "JUMP_SLOT", f"symbol_{index}",
             f"{0x7FFFF7B00000 + index:#x}", "applied", f"libbar.so:symbol_{index}") for index in range(20_000)]
    table = FittedTable("GOT slots", GOT_COLUMNS, rows)
    laid_out = []
    original = Layout.lines_of
    monkeypatch.setattr(Layout, "lines_of", lambda self, cells, style="": laid_out.append(cells) or
                        original(self, cells, style))

    async def scenario(pilot):
        app = pilot.app
        app.show_output(table, "got")
        await settle(pilot)
        assert isinstance(app.screen, OutputScreen)
        assert len(laid_out) < 1000, f"{len(laid_out)} rows laid out for one screen"
        lines = screen_lines(app)
        assert any(rows[0][1] in line and rows[0][4] in line for line in lines), lines
        await pilot.press("end")
        await settle(pilot)
        lines = screen_lines(app)
        assert any(rows[-1][1] in line and rows[-1][4] in line for line in lines), lines
        # A search finds a row far down.
        await pilot.press("slash", *"symbol_15000", "enter")
        await settle(pilot)
        assert any("symbol_15000" in line for line in screen_lines(app))
        assert len(laid_out) < 30_000  # the search reads rows, laid out once each
        logged = log_text(app)
        assert rows[0][1] in logged and rows[-1][1] not in logged and "20,000 rows" in logged, logged[-400:]
    run_pilot(LoaderdbgApp(session), scenario, size=(120, 40))
