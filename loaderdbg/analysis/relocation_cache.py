"""What the relocation analysis (relocations.py) keeps from one stop to the
next: each object's plan (what memory cannot change) and last answer, and
the loader's progress last read. One session's ElfCache owns one, next to
the images the plans are made from, so nothing is kept process-wide and
nothing outlives its session."""

from __future__ import annotations

import threading
from typing import Any


class RelocationCache:
    # Objects remembered: a program's whole startup set (gdb maps 59) and
    # some that a long session loads and unloads.
    LIMIT = 512

    def __init__(self) -> None:
        # Snapshots are built on the tracer thread and on replay workers.
        self.lock = threading.Lock()
        self.plans: dict[tuple, Any] = {}
        self.answers: dict[tuple, Any] = {}
        self.progress: tuple[Any, Any] | None = None  # (symbol table, the loader progress read with it)

    def remember(self, table: dict[tuple, Any], key: tuple, value: Any) -> None:
        with self.lock:
            table[key] = value
            while len(table) > self.LIMIT:
                del table[next(iter(table))]

    def clear(self) -> None:
        with self.lock:
            self.plans.clear()
            self.answers.clear()
            self.progress = None
