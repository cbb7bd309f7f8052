"""The raw target protocol: what the engine needs from a running program.

Three kinds of target implement it: a ptrace'd Linux process (`Tracee`), a
process the recorder steps (the same Tracee, observed only), and a guest run
by qemu-user behind its gdb stub (`process/qemu_target.py`). Everything that
*interprets* a stop — milestones, events, the exec-solib heuristics, the run
loop behind every stop target — sits above this protocol and is written once
(`process/startup.py`, `process/inferior.py`).

Conventions every implementation keeps:
- `registers_raw()` returns the arch's NT_PRSTATUS block (x86-64
  `user_regs_struct`, arm64 `user_pt_regs`: x0–x30, sp, pc, pstate), one word
  per name in `ArchTables.user_regs_fields`, so every decoder works unchanged.
- `read_memory` hides the target's own breakpoints (original bytes, never an
  int3/brk the engine planted) and returns None for unmapped memory.
- `maps_pid` is the process whose /proc/PID/maps and /proc/PID/mem show the
  program's memory at the program's addresses (for qemu-user: qemu's pid).
- `step`/`resume` return a `Stop` (process/stops.py) in the same words a
  ptrace stop uses: STEP after one instruction, BREAKPOINT at an engine
  breakpoint (pc already moved back onto it), SYSCALL at a syscall entry or
  exit when asked for, SIGNAL, EXITED, KILLED.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from loaderdbg.arch import ArchTables
from loaderdbg.process.stops import Stop


@runtime_checkable
class RawTarget(Protocol):
    @property
    def arch(self) -> ArchTables: ...

    @property
    def pid(self) -> int: ...  # the program's pid as the user knows it

    @property
    def maps_pid(self) -> int: ...  # whose /proc shows the program's memory

    @property
    def current_tid(self) -> int: ...  # the thread that steps, whose registers these are

    @property
    def alive(self) -> bool: ...

    breakpoints: dict[int, int]  # the engine's breakpoints: address -> original byte

    def registers_raw(self) -> bytes: ...

    def set_registers_raw(self, raw: bytes) -> None: ...

    def read_memory(self, addr: int, size: int) -> bytes | None: ...

    def write_memory(self, addr: int, data: bytes) -> None: ...

    def maps_text(self) -> str: ...

    def read_proc(self, name: str) -> bytes | None: ...  # /proc/PID/<name> as the program's own (auxv, cmdline, stat)

    def insert_breakpoint(self, addr: int) -> bool: ...

    def remove_breakpoint(self, addr: int) -> None: ...

    def revalidate_breakpoints(self) -> None: ...  # after a mapping change: rewrite or forget

    def step(self) -> Stop: ...

    def resume(self, *, syscalls: bool) -> Stop: ...

    def kill(self) -> None: ...

    def close(self) -> None: ...
