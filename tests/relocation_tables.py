"""Relocation tables made from rows, for tests that write rows by hand:
the engine reads a snapshot's relocations as a RelocationTable only."""

from __future__ import annotations

from itertools import groupby
from operator import attrgetter
from typing import Iterable

from loaderdbg.analysis.relocations import ObjectRelocations, RelocationState, RelocationTable


def table_of_rows(rows: Iterable[RelocationState]) -> RelocationTable:
    """The table a snapshot would hold of ``rows``: one part per run of
    rows of one object, in their order (a snapshot keeps each object's
    rows together)."""
    return RelocationTable(ObjectRelocations.of_rows(name, part) for name, part in groupby(rows, attrgetter("object")))
