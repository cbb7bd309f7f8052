"""The bulk paths of the relocation analysis answer as the slot-by-slot
ones: relocations decoded as columns are ElfInfo.relocations; the plan's
one-segment layout (file words fetched by one itemgetter) is the per-slot
layout; RELATIVE slots judged as whole runs give the states judging each
slot gives, before, during and after relocation, with and without the
session cache. Memory images are built from real files as ld.so maps them
(test_relocations.Process) and changed the way ld.so would."""

from __future__ import annotations

import glob
import os

import pytest
from test_relocations import LDSO, LDSO_BASE, LIBC, LIBC_BASE, MAIN_BASE, ZOO, Process, fixture

from loaderdbg.analysis import relocations
from loaderdbg.analysis.relocation_cache import RelocationCache
from loaderdbg.analysis.relocations import relocation_states
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import RelocationColumns, parse_elf

FILES = [p for p in ("/usr/bin/gdb", "/usr/bin/python3", LIBC, LDSO, "/lib/x86_64-linux-gnu/libstdc++.so.6",
                     *sorted(glob.glob(str(ZOO / "*"))))
         if os.path.isfile(p)]


def test_columns_are_the_relocations():
    checked = 0
    for path in FILES:
        info = parse_elf(open(path, "rb").read(), path)
        columns = info.relocation_columns
        again = RelocationColumns.of(info.relocations)
        assert len(columns) == len(info.relocations), path
        for field in ("offsets", "types", "type_names", "symbols", "symbol_indexes", "addends", "tables",
                      "symbol_versions"):
            assert getattr(columns, field) == getattr(again, field), (path, field)
        if len(columns):
            assert columns.relocation(len(columns) - 1) == info.relocations[-1]
            checked += 1
    assert checked >= 5


def test_one_segment_layout_is_the_slot_layout():
    bulk = 0
    for path in FILES:
        data = open(path, "rb").read()
        info = parse_elf(data, path)
        offsets = info.relocation_columns.offsets
        if len(offsets) < 2:
            continue
        for base in (0, MAIN_BASE):
            obj = LoadedObject(path, base, info)
            loads = info.load_segments()
            fast = relocations._one_segment_layout(obj, loads, offsets, data)
            if fast is None:
                continue
            slow = relocations._slot_layout(obj, loads, offsets, data, relocations._file_image(loads, data), 8,
                                            True, True)
            assert fast[0] == slow[0], path
            assert list(fast[1]) == list(slow[1]), path
            assert list(fast[2]) == list(slow[2]) and list(fast[3]) == list(slow[3]), path
            assert not slow[4], path
            bulk += 1
    assert bulk >= 5  # the rule, not the exception


def _apply(proc: Process, index: int, every: int = 1, garbage_every: int = 0) -> None:
    """Write the relocated value of every `every`-th RELATIVE slot, and a
    value that is neither into every `garbage_every`-th of the others."""
    states = proc.states(index)
    relative = [s for s in states if s.type_name == "R_X86_64_RELATIVE" and s.expected is not None]
    for i, state in enumerate(relative):
        if i % every == 0:
            proc.write(state.address, state.expected)
        elif garbage_every and i % garbage_every == 1:
            proc.write(state.address, 0xDEAD0000 + i)


def _slot_by_slot(monkeypatch, proc: Process, index: int):
    with monkeypatch.context() as m:
        m.setattr(relocations, "_WORDS_BULK", False)
        return proc.states(index)


@pytest.mark.parametrize("every,garbage", [(1, 0), (2, 0), (3, 5)], ids=["applied", "half", "rewritten"])
def test_relative_runs_judge_as_each_slot(monkeypatch, every, garbage):
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    plan = relocations._plan(proc.obj(0), proc.files[LIBC], "x86_64", 8, None)
    assert sum(len(run.indices) for run in plan.relative_runs) > len(plan.columns) // 2  # judged in bulk
    assert proc.states(0) == _slot_by_slot(monkeypatch, proc, 0)  # nothing applied: pending
    _apply(proc, 0, every, garbage)
    states = proc.states(0)
    assert states == _slot_by_slot(monkeypatch, proc, 0)
    counted = {s.state for s in states if s.type_name == "R_X86_64_RELATIVE"}
    assert "applied" in counted and (every == 1 or len(counted) > 1)


def test_relative_runs_with_the_session_cache_across_stops(monkeypatch):
    proc = Process((fixture(ZOO / "ifunc-tls"), MAIN_BASE), (LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    cache = RelocationCache()
    table = SymbolTable(proc.objects)

    def cached_states(index):
        obj = proc.obj(index)
        return relocation_states(obj, proc.files[obj.path], proc.image(), table, cache=cache)

    for index in (0, 1):
        assert cached_states(index) == _slot_by_slot(monkeypatch, proc, index)
    _apply(proc, 1, every=2)
    assert cached_states(1) == _slot_by_slot(monkeypatch, proc, 1)  # the second stop: changed slots only
    _apply(proc, 1)
    assert cached_states(1) == _slot_by_slot(monkeypatch, proc, 1)


@pytest.mark.parametrize("types", [
    ["R_X86_64_RELATIVE"] * 6 + ["R_X86_64_GLOB_DAT", "R_X86_64_JUMP_SLOT"],   # in a row, as linkers sort them
    ["R_X86_64_GLOB_DAT", "R_X86_64_RELATIVE", "R_X86_64_RELATIVE", "R_X86_64_64", "R_X86_64_RELATIVE",
     "R_X86_64_RELATIVE", "R_X86_64_RELATIVE64", "R_X86_64_JUMP_SLOT"],          # interleaved
    ["R_X86_64_JUMP_SLOT"] * 3,                                                # none
], ids=["in-a-row", "interleaved", "none"])
def test_relative_runs_take_every_relative_slot_and_only_them(types):
    count = len(types)
    offsets = tuple(0x1000 + 8 * i for i in range(count))
    columns = RelocationColumns(offsets, (0,) * count, tuple(types), (None,) * count, (0,) * count,
                                tuple(range(count)), ("RELA",) * count, (None,) * count)
    links = [0] * count
    runs, others, expected = relocations._relative_runs(columns, [0] * count, [o - 0x1000 for o in offsets], links,
                                                        0x7F0000000000, 8, set())
    relative = [i for i, t in enumerate(types) if t in ("R_X86_64_RELATIVE", "R_X86_64_RELATIVE64")]
    assert sorted(i for run in runs for i in run.indices) == relative
    assert list(others) == [i for i in range(count) if i not in relative]
    assert [i for i, value in enumerate(expected) if value is not None] == relative
    assert all(expected[i] == 0x7F0000000000 + i for i in relative)
