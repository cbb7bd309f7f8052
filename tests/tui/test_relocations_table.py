"""The relocations table at gdb's size (issue 19: 150,950 rows at AT_ENTRY):
only the rows on screen are laid out, the column widths are measured over
the whole table without making its rows, and the filter narrows a list of
indices over plain search texts. Each shortcut must give what laying out
and filtering every row gives."""

from __future__ import annotations

import dataclasses
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.widgets import Input

import loaderdbg_tui.relocations as relocations_module
from loaderdbg.analysis.relocations import Binding, ObjectRelocations, RelocationState, RelocationTable
from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.lines_view import LazyLines
from loaderdbg_tui.relocations import (COLUMNS, ColumnWidths, RelocationSearch, RelocationsPane, RowRuns, matches,
                                       relocation_row, search_text)

from relocation_tables import table_of_rows
from tuihelp import press_to_stop, run_pilot, screen_lines, settle

STATES = ("applied", "pending", "lazy", "unknown")


def state(index: int, **fields) -> RelocationState:
    values = dict(object="libfoo.so.1", address=0x7FFFF7A00000 + 8 * index, type_name="R_X86_64_RELATIVE",
                  symbol=None, addend=0x1000 + index, state="applied", current=0x7FFFF7A01000 + index,
                  expected=0x7FFFF7A01000 + index, link_value=0x1000 + index)
    values.update(fields)
    return RelocationState(**values)


# Cells at their widest and narrowest: negative addends, absent values,
# undefined weaks, versions, reasons with and without a binding, a binding
# only ever seen beside a reason, aarch64's type names (not shortened).
ODD_ONES = [
    state(0),
    state(1, object="ld-linux-x86-64.so.2", type_name="R_X86_64_64", symbol="environ", addend=-0x8,
          binding=Binding("/usr/lib/x86_64-linux-gnu/libc.so.6", "environ", "GLIBC_2.2.5")),
    state(2, type_name="R_X86_64_GLOB_DAT", symbol="__gmon_start__", addend=None, state="pending",
          current=0, expected=None, binding=Binding(None, "__gmon_start__", None)),
    state(3, type_name="R_X86_64_JUMP_SLOT", symbol="a_rather_long_symbol_name_for_a_slot", addend=0,
          state="lazy", current=0xFFFFFFFFFFFFFFFF, expected=None,
          binding=Binding("libbar.so", "a_rather_long_symbol_name_for_a_slot", None)),
    state(4, state="unknown", current=None, expected=None,
          reason="holds 0x1234, neither the file value nor the relocated value"),
    state(5, type_name="R_AARCH64_JUMP_SLOT", symbol="f", addend=-0x7FFFFFFFFFFFFFFF,
          binding=Binding("/lib/libonly_beside_a_reason_and_very_long_indeed.so", "f", "V1"),
          reason="rewritten after relocation"),
    state(6, reason=""),
]


def patched(table, states: dict[int, str]) -> RelocationTable:
    """table with the rows at the keys of states in those states, as a step
    that writes those slots leaves it."""
    rows = list(table)
    for index, new_state in states.items():
        rows[index] = dataclasses.replace(rows[index], state=new_state)
    return table_of_rows(rows)


def widths_of_rows(states) -> list[int]:
    rows = [relocation_row(r) for r in states]
    return [max((len(row[i]) for row in rows), default=0) for i in range(len(COLUMNS))]


def test_column_widths_are_the_widest_cells():
    widths = ColumnWidths()
    for end in range(1, len(ODD_ONES) + 1):
        assert widths.of(table_of_rows(ODD_ONES[:end])) == widths_of_rows(ODD_ONES[:end]), end
    # Without the slot whose reason stands beside it, its long binding is not in the table.
    rest = [r for r in ODD_ONES if r.reason is None]
    assert widths.of(table_of_rows(rest)) == widths_of_rows(rest)
    # Remembered bindings, same answer.
    assert widths.of(table_of_rows(ODD_ONES[::-1])) == widths_of_rows(ODD_ONES)


numbers = st.one_of(st.none(), st.integers(-(1 << 63), (1 << 64) - 1))
bindings = st.one_of(st.none(), st.builds(Binding, st.one_of(st.none(), st.sampled_from(["/a/libx.so", "liby.so.6",
                                                                                          "/odd/", ""])),
                                          st.sampled_from(["f", "g_long_name"]),
                                          st.one_of(st.none(), st.just("GLIBC_2.34"))))
random_states = st.lists(st.builds(
    lambda i, obj, kind, symbol, addend, now, expected, binding, reason, which: state(
        i, object=obj, type_name=kind, symbol=symbol, addend=addend, current=now, expected=expected,
        binding=binding, reason=reason, state=which),
    st.integers(0, 1 << 20), st.sampled_from(["a.so", "libc.so.6", "ld-linux-x86-64.so.2"]),
    st.sampled_from(["R_X86_64_RELATIVE", "R_X86_64_JUMP_SLOT", "R_AARCH64_ABS64"]),
    st.one_of(st.none(), st.sampled_from(["", "malloc", "_ZN3foo3barEv"])), numbers, numbers, numbers,
    bindings, st.one_of(st.none(), st.sampled_from(["", "why not", "a reason at some length"])),
    st.sampled_from(STATES)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(random_states)
def test_column_widths_match_the_rows_of_any_table(states):
    assert ColumnWidths().of(table_of_rows(states)) == widths_of_rows(states)


TABLE = [state(i, object=["libc.so.6", "libm.so.6", "gdb"][i % 3],
               type_name=["R_X86_64_RELATIVE", "R_X86_64_JUMP_SLOT", "R_X86_64_GLOB_DAT"][i % 7 % 3],
               symbol=None if i % 2 else f"sym_{i % 11}_Pending", state=STATES[i % 5 % 4])
         for i in range(600)]


def kept_by(states, needle: str) -> list[int]:
    return [i for i, r in enumerate(states) if matches(r, needle)]


def typed_and_deleted(text: str) -> list[str]:
    """The filter's value after each key typing text, then deleting it."""
    return [text[:end] for end in range(1, len(text) + 1)] + [text[:end] for end in range(len(text) - 1, -1, -1)]


@pytest.mark.parametrize("text", ["libc jump", "pending libm", "LIBC  RELATIVE 0x7ffff7a0", "sym_1 pend", " ",
                                  "gdb glob_dat sym_3"])
def test_search_keeps_what_matches_keeps(text):
    table = table_of_rows(TABLE)
    rows = list(table)
    search = RelocationSearch()
    search.prepare(table, 100)  # partly made ahead: the rest when first needed
    for needle in typed_and_deleted(text):
        found = search.matching(table, needle)
        assert (list(found) if found is not None else list(range(len(rows)))) == kept_by(rows, needle), needle
        if not needle.split():
            assert found is None


def test_search_follows_a_patched_table():
    table = table_of_rows(TABLE)
    rows = list(table)
    search = RelocationSearch()
    search.prepare(table, len(table))
    kept = search.matching(table, "pending")
    # A step writes three slots: one was pending, two become pending.
    changed = [kept[0], 1, 2]
    after = patched(rows, dict(zip(changed, ["applied", "pending", "pending"])))
    search.patched(table, after, changed, "libc", search.matching(table, "libc"))
    for needle in ("libc", "pending", "libc pending", "lazy"):
        assert list(search.matching(after, needle)) == kept_by(after, needle), needle
    # Patched from a table it was not searching: it starts over.
    again = table_of_rows(rows)
    search.patched(table, again, [], "", None)
    assert list(search.matching(again, "pending")) == kept_by(rows, "pending")


# Texts where a filter's words could go wrong: spaces inside names, case
# that lowercases to other lengths (İ) or by context (a final Σ), words
# that are hex digits (also within an address) or not.
ODD_TEXTS = ["libΣ", "İx", "a b", "A", "0x7f", "dead", "", "x"]
odd_states = st.lists(st.builds(
    lambda i, obj, kind, symbol, which: state(i, object=obj, type_name=kind, symbol=symbol, state=which),
    st.integers(0, 1 << 16), st.sampled_from(["libc.so.6", "/a dir/libΣ.so", "İlib"]),
    st.sampled_from(["R_X86_64_RELATIVE", "R_X86_64_JUMP_SLOT"]), st.one_of(st.none(), st.sampled_from(ODD_TEXTS)),
    st.sampled_from(STATES)), max_size=40)
needle_words = st.sampled_from(["lib", "libς", "libσ", "i̇", "i̇x", "a", "b", "0x7", "7ffff7a0", "ead", "x", "c",
                                "relative", "_slot", "pend", "applied", "zz", "so", "Σ.so"])


@settings(max_examples=200, deadline=None)
@given(odd_states, st.lists(needle_words, min_size=1, max_size=3).map(" ".join))
def test_search_of_odd_names_keeps_what_matches_keeps(states, text):
    """Runs of rows (words that cannot be in an address) and row by row
    search texts (those that can) both keep what matches() keeps."""
    table = table_of_rows(states)
    rows = list(table)
    search = RelocationSearch()
    for needle in typed_and_deleted(text):
        found = search.matching(table, needle)
        assert (list(found) if found is not None else list(range(len(rows)))) == kept_by(rows, needle), needle


def test_a_patch_splits_runs():
    """Rows in a long run (one object, type and state): a patch changes one
    at the start, one inside and one at the end of the run; the filters
    after it keep what matches() keeps."""
    table = table_of_rows([state(i, state="pending" if i < 50 else "applied") for i in range(100)])
    search = RelocationSearch()
    search.prepare(table, len(table))
    assert len(search.matching(table, "pending")) == 50
    changed = [0, 20, 49, 50, 99]
    after = patched(table, {index: "lazy" if index != 50 else "applied" for index in changed})
    search.patched(table, after, changed, "", None)
    for needle in ("pending", "applied", "lazy", "libfoo lazy", "relative", "0x7ffff7a000a0", "lazy 0x7ffff7a000a0"):
        assert list(search.matching(after, needle)) == kept_by(after, needle), needle


@pytest.mark.parametrize("order", ["forwards", "backwards", "from the middle"])
def test_stepping_through_a_run_row_by_row(order):
    """A step applies one pending slot at a time, as ld.so does, in either
    direction and from inside a run: each patched row joins the run of its
    new state beside it, and every filter keeps what matches() keeps."""
    table = table_of_rows([state(i, state="pending") for i in range(120)])
    rows = {"forwards": range(120), "backwards": range(119, -1, -1),
            "from the middle": [*range(60, 120), *range(59, -1, -1)]}[order]
    search = RelocationSearch()
    search.prepare(table, len(table))
    for step, row in enumerate(rows):
        after = patched(table, {row: "applied"})
        search.patched(table, after, [row], "", None)
        table = after
        if step % 17 == 0 or step == 119:
            for needle in ("pending", "applied", "libfoo applied", "relative pending 0x7ffff7a0"):
                assert list(search.matching(table, needle)) == kept_by(table, needle), (step, needle)


def test_row_runs_are_their_rows():
    runs = RowRuns([2, 10, 11, 30], [3, 1, 2, 1])
    rows = [2, 3, 4, 10, 11, 12, 30]
    assert list(runs) == rows and len(runs) == len(rows)
    assert [runs[i] for i in range(len(rows))] == rows and runs[-1] == 30 and runs[1:6:2] == [3, 10, 12]
    assert [bisect_left(runs, row) for row in (0, 4, 5, 12, 30, 31)] == [0, 2, 3, 5, 6, 7]
    with pytest.raises(IndexError):
        runs[7]
    assert len(RowRuns([], [])) == 0 and list(RowRuns([], [])) == []


def test_a_snapshots_table_is_read_by_columns_and_parts(monkeypatch):
    """Widths and filters over a snapshot's table (per-object columns) are
    those of its rows; a part handed back unchanged is not measured again."""
    table = table_of_rows(TABLE + ODD_ONES)
    rows = tuple(table)
    assert ColumnWidths().of(table) == widths_of_rows(rows)
    search = RelocationSearch()
    for needle in ("libc jump", "gdb 0x7ffff7a0", "pending sym_1", "0x", "a"):
        found = search.matching(table, needle)
        assert list(found) == kept_by(rows, needle), needle

    widths = ColumnWidths()
    widths.of(table)
    read = []
    original = ObjectRelocations.column
    monkeypatch.setattr(ObjectRelocations, "column", lambda part, field: read.append(part) or original(part, field))
    libm = table.per_object[1]
    changed = ObjectRelocations.of_rows(libm.object, [dataclasses.replace(r, symbol="a_much_longer_symbol_now")
                                                      for r in libm])
    after = RelocationTable([changed if part is libm else part for part in table.per_object])
    assert widths.of(after) == widths_of_rows(tuple(after))
    assert read and all(part is changed for part in read)


@pytest.mark.parametrize("few_runs", [0, 1, 2, 4096])
def test_rows_of_flags_are_the_rows_flagged(few_runs, monkeypatch):
    monkeypatch.setattr(relocations_module, "FEW_RUNS", few_runs)
    for flags in (b"", b"\0", b"\1", b"\1\1\0\1", b"\0\1\1\0\0\1\1", b"\1" * 5, b"\0\0\1"):
        rows = relocations_module._rows_of_flags(bytearray(flags))
        assert list(rows) == [i for i, flag in enumerate(flags) if flag], flags
        assert len(rows) == flags.count(1)


def test_lazy_lines_make_only_what_is_asked_for():
    made = []
    lines = LazyLines(10, 7, lambda i: made.append(i) or f"line {i}")
    assert len(lines) == 10 and lines.width == 7 and not made
    assert lines[3] == "line 3" and lines[-1] == "line 9" and made == [3, 9]
    assert lines[8:2:-3] == ["line 8", "line 5"]
    with pytest.raises(IndexError):
        lines[10]
    assert list(LazyLines(0, 0, lambda i: "x")) == []


def _big_view(view, copies: int):
    """view with its relocations copied `copies` times over, each copy at
    other addresses (as many relocations as gdb's with a hundred copies)."""
    base = view.snapshot.relocations
    top = max(r.address for r in base) + 0x1000
    big = RelocationTable(ObjectRelocations.of_rows(part.object, [dataclasses.replace(r, address=r.address + copy * top)
                                                                  for r in part])
                          for copy in range(copies) for part in base.per_object)
    return dataclasses.replace(view, snapshot=dataclasses.replace(view.snapshot, relocations=big))


def test_a_big_table_lays_out_the_rows_on_screen_only(demo, monkeypatch):
    session, _ = demo
    rows_made = []

    def counted_row(reloc):
        rows_made.append(reloc)
        return relocation_row(reloc)
    monkeypatch.setattr(relocations_module, "relocation_row", counted_row)

    async def scenario(pilot):
        app = pilot.app
        await press_to_stop(pilot, "e")
        app.screen.show_tab("tab-relocs")
        await pilot.pause()
        pane = app.screen.query_one(RelocationsPane)
        view = _big_view(app.view, 120)
        big = view.snapshot.relocations
        assert len(big) > 50_000
        rows_made.clear()
        pane.show_view(view)
        await pilot.pause()
        table = pane.table
        assert isinstance(table.lines, LazyLines)
        assert len(table.lines) == len(big) * pane.row_height
        assert pane.border_subtitle == f"{len(big)} entries"
        assert 0 < len(rows_made) < 200  # a screenful, not 50,000
        # The last rows, at the end of the table.
        table.focus()
        await pilot.press("end")
        await pilot.pause()
        assert f"{big[-1].address:#x}" in "\n".join(screen_lines(app))
        assert len(rows_made) < 400

        # Typed key by key: the rows kept are those matches() keeps.
        last = big[-1]
        needle = f"{last.address:#x}"
        field = pane.query_one("#reloc-filter", Input)
        field.focus()
        await pilot.pause()
        keys = {" ": "space", ".": "full_stop", "-": "minus", "_": "underscore"}
        texts = [search_text(r) for r in big]
        for end, char in enumerate(needle, 1):
            await pilot.press(keys.get(char, char))
            assert field.value == needle[:end]
            words = field.value.lower().split()
            kept = [i for i, text in enumerate(texts) if all(word in text for word in words)]
            assert pane.border_subtitle == f"{len(kept)} of {len(big)}"
            assert len(table.lines) == len(kept) * pane.row_height
        assert [big[i] for i in kept] == [last] and matches(last, needle)
        assert f"{last.address:#x}" in table.lines[0].plain
        wanted = [r for r in big if matches(r, "jump_slot")]
        field.value = "jump_slot"
        await pilot.pause()
        firsts = table.lines[:5 * pane.row_height:pane.row_height]
        assert len(firsts) == 5 and all(f"{r.address:#x}" in line.plain for r, line in zip(wanted, firsts))
        for _ in range(len("jump_slot")):
            await pilot.press("backspace")
        assert pane.border_subtitle == f"{len(big)} entries"
        assert len(table.lines) == len(big) * pane.row_height
        assert len(rows_made) < 1000
    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_a_long_filter_scrolls_to_its_cursor(demo):
    """The filter's size is fixed by CSS: it repaints as it is typed into
    (no layout), and still scrolls to keep its cursor in view."""
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        app.screen.show_tab("tab-relocs")
        await pilot.pause()
        field = app.screen.query_one(RelocationsPane).query_one("#reloc-filter", Input)
        field.focus()
        field.value = "x" * 99
        await pilot.press("end", "x")
        await settle(pilot)
        assert field.value == "x" * 100
        assert field.scroll_offset.x > 0
        assert field.size.width < 100 and field.size.height == 1
        row = next(line for line in screen_lines(app) if "xxxxxxxxxx" in line)
        assert "filter:" not in row
    run_pilot(LoaderdbgApp(session), scenario, size=(80, 24))
