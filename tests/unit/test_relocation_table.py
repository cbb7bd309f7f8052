"""The relocation tables (issue 19): relocation_states hands back an
ObjectRelocations and a snapshot a RelocationTable, columns that behave as
sequences of RelocationState. What they hand out row by row must be what
their columns hold, as sequences (len, iteration, indexing, slicing) and in
equality; and a stop that changes nothing must cost nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from loaderdbg.analysis.relocation_cache import RelocationCache
from loaderdbg.analysis.relocations import (RELOCATION_FIELDS, ObjectRelocations, RelocationState, RelocationTable,
                                            relocation_states, relocation_totals)
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import parse_elf
from loaderdbg.decode.memory import MemoryImage
from loaderdbg.snapshot_json import RelocationRows, write_json

from relocation_tables import table_of_rows

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LDSO = "/lib64/ld-linux-x86-64.so.2"
LIBC_BASE = 0x7FFFF7D80000
LDSO_BASE = 0x7FFFF7FC0000


class Image:
    """libc and ld.so mapped as ld.so maps them before relocating."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.objects: list[LoadedObject] = []
        self.regions: dict[int, bytearray] = {}
        for path, base in ((LIBC, LIBC_BASE), (LDSO, LDSO_BASE)):
            data = Path(path).read_bytes()
            info = parse_elf(data, path)
            self.files[path] = data
            self.objects.append(LoadedObject(path, base, info))
            for seg in info.load_segments():
                self.regions[base + seg.vaddr] = bytearray(
                    data[seg.offset:seg.offset + seg.filesz] + bytes(seg.memsz - seg.filesz))
        self.symbols = SymbolTable(self.objects)

    def write(self, address: int, value: int) -> None:
        for start, buf in self.regions.items():
            if start <= address and address + 8 <= start + len(buf):
                buf[address - start:address - start + 8] = value.to_bytes(8, "little")
                return
        raise AssertionError(f"{address:#x} not mapped")

    def states(self, index: int, cache: RelocationCache | None = None) -> ObjectRelocations:
        obj = self.objects[index]
        memory = MemoryImage.of(*((start, bytes(buf)) for start, buf in self.regions.items()))
        return relocation_states(obj, self.files[obj.path], memory, self.symbols, cache=cache)


@pytest.fixture(scope="module")
def image() -> Image:
    return Image()


def rows_of(columns: dict[str, tuple]) -> list[RelocationState]:
    return [RelocationState(*values) for values in zip(*(columns[name] for name in RELOCATION_FIELDS))]


def test_columns_are_the_rows(image):
    libc = image.states(0)
    assert isinstance(libc, ObjectRelocations) and libc.object == LIBC
    assert len(libc) == len(image.objects[0].info.relocations) > 1000
    columns = {name: libc.column(name) for name in RELOCATION_FIELDS}
    assert all(type(values) is tuple and len(values) == len(libc) for values in columns.values())
    # Rows made one by one (before any bulk iteration), then all of them.
    some = [libc[i] for i in (0, 1, len(libc) // 2, -1)]
    rows = list(libc)
    assert rows == rows_of(columns)
    assert [some[0], some[1], some[2], some[3]] == [rows[0], rows[1], rows[len(rows) // 2], rows[-1]]
    assert all(a is b for a, b in zip(some, (rows[0], rows[1], rows[len(rows) // 2], rows[-1])))
    assert libc.column("object") == (LIBC,) * len(libc)
    assert {row.type_name for row in rows} >= {"R_X86_64_RELATIVE", "R_X86_64_GLOB_DAT"}
    with pytest.raises(KeyError):
        libc.column("nonsense")


def test_object_relocations_as_a_sequence(image):
    libc = image.states(0)
    rows = tuple(libc)
    n = len(rows)
    assert libc[-1] is rows[-1] and libc[n - 1] is rows[-1]
    for index in (n, -n - 1):
        with pytest.raises(IndexError):
            libc[index]
    assert libc[:] == rows and libc[3:10] == rows[3:10] and libc[10:3:-2] == rows[10:3:-2]
    assert libc[n:] == () and libc[5:5] == ()
    assert libc.index(rows[7]) == 7 and rows[9] in libc and libc.count(rows[9]) == 1
    assert list(reversed(libc))[:3] == list(rows[::-1][:3])


def test_equality_and_changes(image):
    cache = RelocationCache()
    first = image.states(0, cache)
    assert image.states(0, cache) is first  # nothing changed: the very same table
    fresh = image.states(0)
    assert fresh is not first and fresh == first and first == tuple(fresh) and list(fresh) == list(first)
    assert tuple(fresh) == first  # a tuple compares equal to its table, both ways
    assert hash(fresh) == hash(first) == hash(tuple(first))
    assert first.changed_rows(fresh) == []
    rows = list(first)  # made now: a later stop keeps the unchanged ones
    target = next(i for i, row in enumerate(rows) if row.type_name == "R_X86_64_RELATIVE")
    image_written = Image()
    image_written.write(rows[target].address, rows[target].expected)
    try:
        image.write(rows[target].address, rows[target].expected)
        after = image.states(0, cache)
    finally:
        image.write(rows[target].address, rows[target].link_value)
    assert after is not first and after != first and after != tuple(first)
    assert after.changed_rows(first) == [target]
    assert after[target].state == "applied" and first[target].state == "pending"
    assert after[target + 1] is first[target + 1] and after[-1] is first[-1]
    assert after == image_written.states(0)  # the cached stop is a fresh one's answer
    assert ObjectRelocations.of_rows(LIBC, rows).changed_rows(after) == [target]
    assert first.changed_rows(image.states(1)) is None  # another object


def test_table_of_objects(image):
    libc, ldso = image.states(0), image.states(1)
    empty = ObjectRelocations.of_rows("empty", [])
    table = RelocationTable([empty, libc, empty, ldso, empty])
    rows = (*libc, *ldso)
    assert len(table) == len(rows) and tuple(table) == rows and table == rows and rows == table
    assert table.per_object[1] is libc and len(table.per_object) == 5
    edge = len(libc)
    for index in (0, edge - 1, edge, len(rows) - 1, -1, -edge):
        assert table[index] is rows[index]
    assert table.locate(edge) == (3, 0) and table.locate(0) == (1, 0)
    assert table[edge - 2:edge + 3] == rows[edge - 2:edge + 3]  # across objects
    assert table[edge - 5:edge - 1] == rows[edge - 5:edge - 1] and table[::-997] == rows[::-997]
    for name in RELOCATION_FIELDS:
        assert table.column(name) == tuple(getattr(row, name) for row in rows)
    assert relocation_totals(table) == relocation_totals(rows)
    assert relocation_totals(libc) == relocation_totals(tuple(libc)) == relocation_totals(list(libc), LIBC)
    assert relocation_totals(empty) == relocation_totals(())
    same = RelocationTable([empty, libc, empty, ldso, empty])
    assert same == table and same.changed_rows(table) == []
    changed = list(ldso)
    changed[2] = dataclasses.replace(changed[2], state="unknown", reason="written")
    other = RelocationTable([empty, libc, ObjectRelocations.of_rows(LDSO, changed)])
    assert other != table and other.changed_rows(table) is None  # not the same objects
    other = RelocationTable([empty, libc, empty, ObjectRelocations.of_rows(LDSO, changed), empty])
    assert other != table and other.changed_rows(table) == [edge + 2]
    assert RelocationTable() == () and len(RelocationTable()) == 0 and list(RelocationTable()) == []
    with pytest.raises(IndexError):
        table[len(rows)]


def test_json_rows_from_columns_as_from_states(image):
    libc, ldso = image.states(0), image.states(1)
    table = RelocationTable([libc, ObjectRelocations.of_rows("none", []), ldso])
    rows = list(table)
    dicts = [{"object": r.object, "address": f"{r.address:#x}", "type": r.type_name, "symbol": r.symbol,
              "addend": None if r.addend is None else f"{r.addend:#x}" if r.addend >= 0 else f"-{-r.addend:#x}",
              "state": r.state, "current": None if r.current is None else f"{r.current:#x}",
              "expected": None if r.expected is None else f"{r.expected:#x}",
              "binding": None if r.binding is None else
              {"object": r.binding.object, "symbol": r.binding.symbol, "version": r.binding.version},
              "reason": r.reason} for r in rows]
    expected = json.dumps({"relocations": dicts, "after": 1}, indent=1)
    for value in (table, table_of_rows(rows)):  # columns made in bulk, and columns of rows
        written: list[str] = []
        write_json({"relocations": RelocationRows(value), "after": 1}, written.append)
        assert "".join(written) == expected
        assert len(written) >= len(rows) // 256  # streamed
