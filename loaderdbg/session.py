"""The one interface the TUI and the CLI talk to (DESIGN.md §2).

``LiveSession`` (loaderdbg/live.py) drives a real process; ``ReplaySession``
(loaderdbg/record/) reads a recording. Both produce the same ``Snapshot``
(loaderdbg/snapshot.py) from the same decoders, so they cannot disagree on
how something is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    kind: str  # launch | step | breakpoint | target | syscall | signal | exited | killed | attach
    description: str
    target: str | None = None
    reached: bool = True
    signal: str | None = None
    fault_address: int | None = None
    exit_code: int | None = None


class Session(Protocol):
    capabilities: frozenset[str]  # e.g. {"live", "reverse", "attach"}

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

    def step(self, n: int = 1) -> StopReason: ...

    def step_over(self) -> StopReason: ...

    def cont(self, until: str | None = None) -> StopReason: ...

    def goto(self, step: int) -> StopReason: ...

    def step_back(self, n: int = 1) -> StopReason: ...

    def reverse_cont(self, until: str | None = None) -> StopReason: ...

    def close(self) -> None: ...
