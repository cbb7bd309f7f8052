"""IdleCollector: Python's cycle collector, run between keys.

CPython collects when allocations cross a threshold, which is most often in
the middle of a key's work: measured on a stepped replay, a young-generation
pass costs 0.3 ms on every other step, a middle one 2 ms on one step in
twenty-five and a full one 25 ms. While the TUI runs, the automatic threshold
is raised far above what one step allocates (so it stays a safety net for
long motions), and the app runs the collection CPython would have run when
a frame is on screen and the loop is idle. The thresholds are put back when
the app ends.
"""

from __future__ import annotations

import gc

# Allocations before CPython collects by itself while the TUI runs: a step
# allocates a few thousand objects, a long motion many more.
SAFETY_NET_THRESHOLD = 100_000


class IdleCollector:
    def __init__(self) -> None:
        self._saved: tuple[int, ...] | None = None

    def install(self) -> None:
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.set_threshold(SAFETY_NET_THRESHOLD, *self._saved[1:])

    def uninstall(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def collect(self) -> int | None:
        """Collect what CPython would collect at its own thresholds; return
        the generation collected, or None when nothing was due."""
        if self._saved is None or not gc.isenabled():
            return None
        young, middle, old = self._saved
        counts = gc.get_count()
        if counts[0] < young:
            return None
        generation = 0
        if counts[1] >= middle:
            generation = 2 if counts[2] >= old else 1
        gc.collect(generation)
        return generation
