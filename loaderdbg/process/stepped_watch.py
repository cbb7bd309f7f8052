"""Watchpoints kept by single-stepping: a qemu-user guest's.

qemu 7.2's gdb stub has no watchpoints in user mode: it answers Z2, Z3 and
Z4 with the empty reply (unsupported; checked on this machine, Z0 and Z1
get OK), and gdb-multiarch falls back to software watchpoints, stepping
and comparing the value. The qemu target (qemu_target.py) does the same
with a watchpoint set, and decides each step the way a debug register
would: the instruction's decoded loads and stores
(decode/aarch64_access.py) against every watched range, plus a changed
watched byte after it (what a syscall or an instruction the decoder does
not know wrote). So ``watch`` stops after any write, the same value
included, ``rwatch`` after a load alone (aarch64 under qemu has the
read-only kind that x86 lacks), ``awatch`` after either.

Stepping has no slots: any number of ranges, any alignment; a range is
compared after every step, so one is at most MAX_LENGTH bytes.
"""

from __future__ import annotations

from typing import Callable, Sequence

from loaderdbg.decode.aarch64_access import Access
from loaderdbg.errors import UsageError
from loaderdbg.process.debug_registers import ACCESSES, MASK64, HardwareWatchpoint

MAX_LENGTH = 4096

ReadMemory = Callable[[int, int], "bytes | None"]


class SteppedWatchpoints:
    """Watched ranges of a target that steps each instruction while any is set."""

    read_fires_on_writes = False  # each decoded load and store is known: a read watch sees reads only

    def __init__(self) -> None:
        self._watchpoints: list[HardwareWatchpoint] = []
        self.armed = False
        self._hit: HardwareWatchpoint | None = None
        self.stops_before_access = False  # see stop_before_accesses

    def stop_before_accesses(self) -> bool:
        """From now on a run stops *before* an instruction whose decoded
        access a watchpoint covers, as aarch64's own watchpoints trap: gdb,
        which knows aarch64's watchpoints as non-steppable, steps over that
        instruction itself and would otherwise see one instruction too many.
        True: honoured."""
        self.stops_before_access = True
        return True

    def touched_before(self, accesses: Sequence[Access]) -> bool:
        """Before a step (stops_before_access): the first watchpoint the
        instruction's decoded ``accesses`` would touch becomes the hit."""
        for watchpoint in self._watchpoints:
            read_it, wrote = _touches(watchpoint, accesses)
            if _fires(watchpoint, read_it, wrote):
                self._hit = watchpoint
                return True
        return False

    @property
    def watchpoints(self) -> tuple[HardwareWatchpoint, ...]:
        return tuple(self._watchpoints)

    @property
    def pending(self) -> bool:
        """A hit not yet taken by ``fired``."""
        return self._hit is not None

    def add(self, address: int, length: int, access: str = "write") -> HardwareWatchpoint:
        if access not in ACCESSES:
            raise UsageError(f"unknown watchpoint access {access!r} (write, read or access)")
        if not 1 <= length <= MAX_LENGTH:
            raise UsageError(f"an aarch64 watchpoint covers 1 to {MAX_LENGTH} bytes, not {length} (qemu's stub has "
                             "none: loaderdbg single-steps and compares the range after each instruction)")
        if not 0 <= address <= MASK64 - length + 1:
            raise UsageError(f"{address:#x} is no address")
        for watchpoint in self._watchpoints:
            if (watchpoint.address, watchpoint.length, watchpoint.access) == (address, length, access):
                return watchpoint
        used = {w.slot for w in self._watchpoints}
        slot = next(n for n in range(len(used) + 1) if n not in used)
        watchpoint = HardwareWatchpoint(slot, address, length, access)
        self._watchpoints.append(watchpoint)
        self.armed = True
        return watchpoint

    def remove(self, address: int, length: int, access: str = "write") -> bool:
        for watchpoint in self._watchpoints:
            if (watchpoint.address, watchpoint.length, watchpoint.access) == (address, length, access):
                self._watchpoints.remove(watchpoint)
                self.armed = bool(self._watchpoints)
                if self._hit == watchpoint:
                    self._hit = None
                return True
        return False

    def clear(self) -> None:
        self._watchpoints.clear()
        self.armed = False
        self._hit = None

    def fired(self) -> HardwareWatchpoint | None:
        hit, self._hit = self._hit, None
        return hit

    def forget_hit(self) -> None:
        self._hit = None

    # -- around one step (the target's) ---------------------------------------------
    def values(self, read: ReadMemory) -> list[bytes | None]:
        """What the ranges hold now (before a step); None where unreadable,
        or for a read watch, which a change does not fire."""
        return [None if w.access == "read" else read(w.address, w.length) for w in self._watchpoints]

    def check(self, accesses: Sequence[Access], before: list[bytes | None], read: ReadMemory) -> None:
        """After a step: the first watchpoint (in the order set) that the
        step's ``accesses`` touched, or whose bytes changed from ``before``,
        becomes the hit."""
        for watchpoint, old in zip(self._watchpoints, before):
            read_it, wrote = _touches(watchpoint, accesses)
            if not wrote and old is not None and watchpoint.access != "read":
                new = read(watchpoint.address, watchpoint.length)
                wrote = new is not None and new != old
            if _fires(watchpoint, read_it, wrote):
                self._hit = watchpoint
                return


def _touches(watchpoint: HardwareWatchpoint, accesses: Sequence[Access]) -> tuple[bool, bool]:
    """(read, written): what ``accesses`` do to the watched range."""
    touched = [a for a in accesses if a.overlaps(watchpoint.address, watchpoint.length)]
    return any(a.read for a in touched), any(a.write for a in touched)


def _fires(watchpoint: HardwareWatchpoint, read_it: bool, wrote: bool) -> bool:
    return (wrote and watchpoint.access != "read") or (read_it and watchpoint.access != "write")
