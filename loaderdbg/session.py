"""The one interface the TUI and the CLI talk to (DESIGN.md §2).

``LiveSession`` (loaderdbg/live.py) drives a real process; ``ReplaySession``
(loaderdbg/record/) reads a recording. Both produce the same ``Snapshot``
(loaderdbg/snapshot.py) from the same decoders, so they cannot disagree on
how something is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, Sequence

# Startup milestones, in the order an exec-solib launch passes them.
MILESTONES = (
    ("kernel-entry", "kernel entry"),
    ("self-relocation-done", "self-relocation done"),
    ("memfd-create", "memfd_create"),
    ("argv-rewritten", "argv rewritten"),
    ("ldso-mapped", "ld.so mapped"),
    ("auxv-rewritten", "auxv rewritten"),
    ("ldso-entry", "jump to ld.so"),
    ("at-entry", "AT_ENTRY reached"),
    ("main", "main reached"),
    ("crash", "crash"),
    ("exit", "exit"),
)
MILESTONE_TITLES = dict(MILESTONES)


@dataclass(frozen=True)
class Event:
    """Something that happened at a stop, in step order.

    ``step`` is the exact single-step index when known; ``exact`` is False
    when the event was observed at a later stop than the instruction that
    caused it (a memory rewrite noticed at the next syscall stop).
    """

    step: int
    kind: str  # "milestone" | "syscall" | "signal" | "breakpoint" | "link-map" | "fork" | "thread" | "exit"
    name: str
    detail: str = ""
    address: int | None = None
    exact: bool = True


@dataclass(frozen=True)
class StopReason:
    """Why the program stopped (JSON `stop`)."""

    kind: str  # launch | step | breakpoint | target | syscall | signal | exited | killed | attach
    description: str
    target: str | None = None
    reached: bool = True
    signal: str | None = None
    fault_address: int | None = None
    exit_code: int | None = None
    # The thread that reached this stop, named when the process has more
    # than one (JSON `stop.thread`); None in a single-threaded process.
    thread: int | None = None


class Session(Protocol):
    capabilities: frozenset[Capability]  # what more than this protocol it can do (below)

    @property
    def position(self) -> int: ...

    @property
    def position_exact(self) -> bool: ...

    @property
    def stop_reason(self) -> StopReason: ...

    def snapshot(self): ...

    def read_memory(self, addr: int, size: int) -> bytes | None: ...

    def maps(self) -> Sequence: ...

    def threads(self) -> Sequence: ...

    def events(self) -> Sequence[Event]: ...

    def symbolize(self, addr: int) -> str | None: ...

    def resolve(self, name: str) -> int | None: ...  # symbol name → address (dynamic, then .symtab)

    def source_line(self, addr: int): ...  # file:line of code (DWARF, separate debug files too), or None

    def source_file(self, line): ...  # line's source file found on this machine (SourceFile), or None

    def backtrace(self, limit: int = 64) -> Sequence: ...  # frames at this stop (analysis/backtrace.py's Frame)

    def step(self, n: int = 1) -> StopReason: ...

    def step_over(self) -> StopReason: ...

    def cont(self, until: str | None = None) -> StopReason: ...

    def goto(self, step: int) -> StopReason: ...

    def step_back(self, n: int = 1) -> StopReason: ...

    def reverse_cont(self, until: str | None = None) -> StopReason: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------
# Optional capabilities. Each session says which it has in `capabilities`
# (a set of Capability); the protocol of the same name lists the methods that
# come with it. A front asks `Capability.REVERSE in session.capabilities`,
# never probes for methods and never asks what kind of session it holds, and
# when the answer is no it says why instead of failing (DESIGN.md §2).
# ---------------------------------------------------------------------------


class Capability(StrEnum):
    LIVE = "live"                # a real process: its output, signals and time are real
    ATTACH = "attach"            # attached to a running process: detached, never killed, at the end
    BREAKPOINTS = "breakpoints"  # Breakpoints
    INTERRUPT = "interrupt"      # Interruptible
    RESTART = "restart"          # Restartable
    REVERSE = "reverse"          # Reversible
    HISTORY = "history"          # History
    TIMELINE = "timeline"        # events() is the whole run, ahead of this stop too, steps exact
    WATCHPOINTS = "watchpoints"  # Watchpoints
    THREADS = "threads"          # Threads
    SIGNALS = "signals"          # Signals


class Breakpoints(Protocol):
    """Breakpoints by address (live: int3s; replay: pcs searched in the recording)."""

    def breakpoints(self) -> frozenset[int]: ...

    def add_breakpoint(self, addr: int) -> bool: ...

    def remove_breakpoint(self, addr: int) -> None: ...


class Threads(Protocol):
    """Any stopped thread can be made the current one (gdb's `thread N`):
    registers, stack, disassembly and backtrace are then that thread's,
    and a step steps it alone."""

    def select_thread(self, tid: int) -> None:
        """UsageError saying why not (no such thread, not stopped)."""


class Interruptible(Protocol):
    """A long step or continue can be stopped from another thread (Ctrl-C)."""

    def interrupt(self) -> None: ...


class Restartable(Protocol):
    """`starti`: launch the same program again, at its first instruction."""

    def restart(self) -> StopReason: ...


class Reversible(Protocol):
    """Any step can be visited: goto, step back, reverse continue."""

    def goto(self, step: int) -> StopReason: ...

    def step_back(self, n: int = 1) -> StopReason: ...

    def reverse_cont(self, until: str | None = None) -> StopReason: ...


class History(Protocol):
    """"Who last wrote this?" before the current step (rr's reverse watch),
    and who changes it next (a forward watch)."""

    def last_memory_write(self, addr: int, size: int):
        """The last step before this one that wrote [addr, addr+size), or None."""

    def next_memory_change(self, addr: int, size: int):
        """The first step from this one on that changed a byte of
        [addr, addr+size) (a same-value store does not count), or None."""

    def last_register_write(self, register: str):
        """The last step before this one that wrote the register, or None;
        ValueError for a name that is no register."""


class Signals(Protocol):
    """What a stopped thread receives when it next runs can be changed:
    gdb's `signal SIG`, `signal 0`, `queue-signal`, `handle SIG nopass`.
    A recording has none: its signals are history."""

    def resume_signal(self, tid: int | None = None) -> int | None:
        """The signal thread ``tid`` (default: the current one) receives
        when it next runs (None: none)."""

    def set_resume_signal(self, signal: int | None, tid: int | None = None) -> None:
        """Thread ``tid`` (default: the current one) receives ``signal`` (a
        Linux number; None: nothing) when it next runs, in place of the one
        it stopped with. UsageError: no such thread or signal."""


WATCH_ACCESSES = ("write", "read", "access")  # gdb's watch, rwatch, awatch


class Watchpoints(Protocol):
    """Watchpoints of a live process: a continue stops after the instruction
    that wrote (``write``), read (``read``) or either (``access``) a
    watched range. x86-64: the debug registers, so at most four, each 1, 2,
    4 or 8 bytes at an address that is a multiple of its length, and
    ``read`` is read-or-write (x86 has no read-only kind). An aarch64 guest
    under qemu-user: kept by single-stepping (the stub has none), any
    number, 1 to 4096 bytes each, at any address, reads alone included. A
    recording finds writes in its index instead (History)."""

    def add_watchpoint(self, addr: int, size: int, access: str = "write") -> None:
        """Raises UsageError saying why one cannot be set (length,
        alignment, all four debug registers in use)."""

    def remove_watchpoint(self, addr: int, size: int, access: str = "write") -> None: ...

    def watchpoint_hit(self) -> tuple[int, int, str] | None:
        """(addr, size, access) of the watchpoint the last motion stopped
        at, or None."""
