"""Relocation tables made from rows, for tests that write rows by hand:
the engine reads a snapshot's relocations as a RelocationTable only."""

from __future__ import annotations

from typing import Iterable

from loaderdbg.analysis.relocations import ObjectRelocations, RelocationState, RelocationTable


def table_of_rows(rows: Iterable[RelocationState]) -> RelocationTable:
    """``rows`` as a snapshot keeps them: one part per object, in the order
    objects first appear, each holding that object's rows in their order."""
    per_object: dict[str, list[RelocationState]] = {}
    for row in rows:
        per_object.setdefault(row.object, []).append(row)
    return RelocationTable(ObjectRelocations.of_rows(name, part) for name, part in per_object.items())
