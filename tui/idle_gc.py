"""IdleCollector: Python's cycle collector, run between keys.

CPython collects when allocations cross a threshold, which is most often in
the middle of a key's work: measured on a stepped replay, a young-generation
pass costs 0.3 ms on every other step, a middle one 2 ms on one step in
twenty-five and a full one 25 ms. While the TUI runs, the automatic threshold
is raised far above what one step allocates (so it stays a safety net for
long motions), and the app runs the collection CPython would have run when
a frame is on screen and the loop is idle (a full one less often: see
collect). The thresholds are put back when the app ends; if automatic
collection was off, it stays off and nothing is collected here.
"""

from __future__ import annotations

import gc

# Allocations before CPython collects by itself while the TUI runs: a step
# allocates a few thousand objects, a long motion many more.
SAFETY_NET_THRESHOLD = 100_000
FULL_EVERY = 10


class IdleCollector:
    def __init__(self) -> None:
        self._saved: tuple[int, ...] | None = None

    def install(self) -> None:
        saved = gc.get_threshold()
        if self._saved is None and saved[0] > 0:  # 0: automatic collection is off; left so
            self._saved = saved
            gc.set_threshold(SAFETY_NET_THRESHOLD, *saved[1:])

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
            # CPython also holds a full collection back until the long-lived
            # objects grew by a quarter, which Python cannot see: a full one
            # is run FULL_EVERY times less often than the counts say.
            generation = 2 if counts[2] >= old * FULL_EVERY else 1
        gc.collect(generation)
        return generation
