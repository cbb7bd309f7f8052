"""Hardware watchpoints: x86-64's debug registers, set through ptrace.

A tracer reaches a tracee's DR0–DR7 with PTRACE_PEEKUSER/POKEUSER at
offsetof(struct user, u_debugreg) + 8·n (848 on x86-64, <sys/user.h>).
DR0–DR3 hold four addresses; DR7 enables each and says what it watches
(writes, or reads and writes: x86 has no read-only condition, so gdb's
rwatch is an access watchpoint whose value did not change) and how many
bytes (1, 2, 4 or 8, at an address that is a multiple of the length: the
kernel refuses anything else with EINVAL). After the instruction that
touched a watched byte the thread stops with SIGTRAP, si_code TRAP_HWBKPT
(stops.py: a WATCHPOINT stop; TRAP_TRACE, a STEP, when it was
single-stepping), and DR6's low four bits say
which slots fired. The kernel starts DR6 afresh at each debug exception
(virtual_dr6), so it is only read after a SIGTRAP stop.

Debug registers belong to one thread: clone and fork do not pass them on,
execve clears them, and PTRACE_DETACH does NOT: a process detached with a
slot armed dies of SIGTRAP at its next watched access (seen here), so
``clear`` comes before a detach. This module watches the thread it is
given, nothing more. Every call must come from
the tracer thread (ptrace.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from loaderdbg.errors import UsageError
from loaderdbg.process import ptrace

# offsetof(struct user, u_debugreg) on x86-64: regs (216), u_fpvalid and
# padding (8), i387 (512), u_tsize/u_dsize/u_ssize, start_code/start_stack,
# signal, reserved and padding, u_ar0, u_fpstate, magic (72), u_comm (32).
DEBUG_REGISTERS_OFFSET = 848
WORD = 8
SLOTS = 4
DR6, DR7 = 6, 7
PEEKUSER = ptrace.PEEKUSER
POKEUSER = 6  # PTRACE_POKEUSER (include/uapi/linux/ptrace.h)
MASK64 = (1 << 64) - 1


ACCESSES = ("write", "read", "access")  # gdb's watch, rwatch, awatch
# DR7's R/W field per slot: 01 data writes, 11 data reads or writes.
CONDITION_BITS = {"write": 0b01, "read": 0b11, "access": 0b11}
# DR7's LEN field per slot (Intel SDM vol. 3 §18.2.5): 8 bytes is 10.
LENGTH_BITS = {1: 0b00, 2: 0b01, 4: 0b11, 8: 0b10}


@dataclass(frozen=True)
class HardwareWatchpoint:
    slot: int  # DR0..DR3
    address: int
    length: int
    access: str  # write | read | access

    @property
    def end(self) -> int:
        return self.address + self.length


class WatchpointUnit(Protocol):
    """What watches a target's memory for the engine (process/inferior.py):
    DebugRegisters below for an x86-64 thread, SteppedWatchpoints
    (process/stepped_watch.py) for a qemu-user guest. After a motion that
    made a watched access, ``fired`` names the watchpoint."""

    armed: bool  # any watchpoint set: read after every single step
    read_fires_on_writes: bool  # a read watch also fires when the range is written (x86's RW=11)
    stops_before_access: bool  # a hit stops at the accessing instruction, not after it

    @property
    def watchpoints(self) -> tuple[HardwareWatchpoint, ...]: ...

    def add(self, address: int, length: int, access: str = "write") -> HardwareWatchpoint:
        """UsageError saying why that range cannot be watched."""

    def remove(self, address: int, length: int, access: str = "write") -> bool: ...

    def clear(self) -> None: ...

    def fired(self) -> HardwareWatchpoint | None:
        """The watchpoint the last motion stopped for, once (None: none)."""

    def stop_before_accesses(self) -> bool:
        """Stop before the accessing instruction from now on, if the unit
        can (False: its stops stay after the access)."""


def dr7_bits(slot: int, length: int, access: str) -> int:
    """DR7's bits that enable ``slot`` (locally: L0..L3) for a watch of
    ``length`` bytes on ``access``."""
    return (1 << (2 * slot)) | (CONDITION_BITS[access] << (16 + 4 * slot)) | (LENGTH_BITS[length] << (18 + 4 * slot))


def check_watchpoint(address: int, length: int, access: str) -> None:
    """UsageError saying why the debug registers cannot watch this range."""
    if access not in ACCESSES:
        raise UsageError(f"unknown watchpoint access {access!r} (write, read or access)")
    if length not in LENGTH_BITS:
        raise UsageError(f"a hardware watchpoint covers 1, 2, 4 or 8 bytes, not {length}")
    if address % length:
        raise UsageError(f"a hardware watchpoint of {length} bytes needs an address that is a multiple of "
                         f"{length}: {address:#x} is not (watch {address & ~(length - 1):#x} {length}, or a "
                         "smaller length)")
    if not 0 <= address <= MASK64 - length:
        raise UsageError(f"{address:#x} is no address")


class DebugRegisters:
    """The debug registers of one stopped, traced thread: what is watched,
    and which slot fired."""

    read_fires_on_writes = True  # x86 has no read-only condition: RW=11 is read or write

    stops_before_access = False

    def stop_before_accesses(self) -> bool:
        return False  # a debug register traps after the access (gdb knows x86's as steppable)

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self._slots: list[HardwareWatchpoint | None] = [None] * SLOTS
        self.armed = False  # any slot in use: a plain attribute, read after every single step

    # -- the registers ----------------------------------------------------------
    def read(self, number: int) -> int:
        return ptrace.request(PEEKUSER, self.tid, DEBUG_REGISTERS_OFFSET + WORD * number) & MASK64

    def write(self, number: int, value: int) -> None:
        ptrace.request(POKEUSER, self.tid, DEBUG_REGISTERS_OFFSET + WORD * number, value)

    def _dr7(self) -> int:
        value = 0
        for watchpoint in self._slots:
            if watchpoint is not None:
                value |= dr7_bits(watchpoint.slot, watchpoint.length, watchpoint.access)
        return value

    # -- watchpoints -----------------------------------------------------------
    @property
    def watchpoints(self) -> tuple[HardwareWatchpoint, ...]:
        return tuple(w for w in self._slots if w is not None)

    def add(self, address: int, length: int, access: str = "write") -> HardwareWatchpoint:
        """Watch [address, address+length) in a free slot. The same watch
        twice is one slot. UsageError: a range the hardware cannot watch,
        or all four slots in use (no software fallback: single-stepping
        the program would be another debugger)."""
        check_watchpoint(address, length, access)
        for watchpoint in self._slots:
            if watchpoint is not None and (watchpoint.address, watchpoint.length, watchpoint.access) == \
                    (address, length, access):
                return watchpoint
        slot = next((n for n, w in enumerate(self._slots) if w is None), None)
        if slot is None:
            raise UsageError(f"all {SLOTS} debug registers are in use: x86-64 watches at most {SLOTS} ranges "
                             "(delete one; a recording watches any number: loaderdbg record, then watch)")
        watchpoint = HardwareWatchpoint(slot, address, length, access)
        # The address first: DR7 then enables a slot that already points
        # where it should (the kernel checks both when DR7 is written).
        self.write(slot, address)
        self._slots[slot] = watchpoint
        try:
            self.write(DR7, self._dr7())
        except ptrace.PtraceError as err:
            self._slots[slot] = None
            self.armed = any(self._slots)
            raise UsageError(f"the kernel refused a hardware watchpoint on [{address:#x}, +{length}): "
                             f"{err.strerror}") from None
        self.armed = True
        return watchpoint

    def remove(self, address: int, length: int, access: str = "write") -> bool:
        """Stop watching that range; False if it was not watched."""
        for slot, watchpoint in enumerate(self._slots):
            if watchpoint is not None and (watchpoint.address, watchpoint.length, watchpoint.access) == \
                    (address, length, access):
                self._slots[slot] = None
                self.armed = any(self._slots)
                self.write(DR7, self._dr7())
                self.write(slot, 0)
                return True
        return False

    def clear(self) -> None:
        """Every slot off (before a detach: the process runs on unwatched)."""
        used = [w.slot for w in self._slots if w is not None]
        if used:
            self._slots = [None] * SLOTS
            self.armed = False
            self.write(DR7, 0)
        for slot in used:
            self.write(slot, 0)

    def fired(self) -> HardwareWatchpoint | None:
        """At a SIGTRAP stop: the watchpoint whose slot DR6 says fired (the
        lowest, if several did), None if none; DR6 is then cleared so a
        later stop cannot report it again."""
        status = self.read(DR6)
        hit = next((w for w in self._slots if w is not None and status & (1 << w.slot)), None)
        if status & 0xF:
            self.write(DR6, 0)
        return hit
