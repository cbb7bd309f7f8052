"""Typed stops: a raw waitpid status becomes one of a few kinds, once.

Like rr's WaitStatus, nothing past this module sees a magic number. The
classification follows PTRACE_NOTES.md §1–4: a single-step reports SIGTRAP
with si_code TRAP_TRACE (or TRAP_BRKPT after stepping over ``syscall``), an
int3 reports SI_KERNEL, a debug register (a hardware watchpoint) reports
TRAP_HWBKPT, syscall stops carry SIGTRAP|0x80 (TRACESYSGOOD), and ptrace
events put the event number in bits 16–23.
"""

from __future__ import annotations

import enum
import os
import signal as _signal
from dataclasses import dataclass

from loaderdbg.process import ptrace


class StopKind(enum.Enum):
    EXITED = "exited"  # process is gone: exit status
    KILLED = "killed"  # process is gone: terminated by a signal
    STEP = "step"  # single-step finished
    BREAKPOINT = "breakpoint"  # an int3 executed (rip is one past it)
    WATCHPOINT = "watchpoint"  # a debug register fired (rip is past the access; DR6 says which)
    SYSCALL = "syscall"  # syscall entry or exit (TRACESYSGOOD)
    EVENT = "event"  # PTRACE_EVENT_* (exec, exit, fork, clone, stop)
    SIGNAL = "signal"  # a signal is about to be delivered


SI_KERNEL = 0x80
TRAP_BRKPT = 1
TRAP_TRACE = 2
TRAP_HWBKPT = 4

EVENT_NAMES = {
    ptrace.EVENT_FORK: "fork",
    ptrace.EVENT_VFORK: "vfork",
    ptrace.EVENT_CLONE: "clone",
    ptrace.EVENT_EXEC: "exec",
    ptrace.EVENT_VFORK_DONE: "vfork-done",
    ptrace.EVENT_EXIT: "exit",
    ptrace.EVENT_STOP: "stop",
}


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    pid: int
    signal: int = 0  # WSTOPSIG, WTERMSIG, or the signal behind an event
    exit_code: int | None = None
    event: int | None = None
    si_code: int | None = None
    siginfo: bytes | None = None

    @property
    def alive(self) -> bool:
        return self.kind not in (StopKind.EXITED, StopKind.KILLED)

    @property
    def event_name(self) -> str | None:
        return None if self.event is None else EVENT_NAMES.get(self.event, str(self.event))

    @property
    def signal_name(self) -> str:
        try:
            return _signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"

    def describe(self) -> str:
        if self.kind is StopKind.EXITED:
            return f"exited with status {self.exit_code}"
        if self.kind is StopKind.KILLED:
            return f"killed by {self.signal_name}"
        if self.kind is StopKind.EVENT:
            return f"ptrace event {self.event_name}"
        if self.kind is StopKind.SIGNAL:
            return f"signal {self.signal_name}"
        return self.kind.value


def classify(pid: int, status: int, *, fetch_siginfo: bool = True) -> Stop:
    """Turn one waitpid status into a Stop (reads siginfo for SIGTRAP stops,
    whose si_code is what tells a step from a breakpoint)."""
    if os.WIFEXITED(status):
        return Stop(StopKind.EXITED, pid, exit_code=os.WEXITSTATUS(status))
    if os.WIFSIGNALED(status):
        return Stop(StopKind.KILLED, pid, signal=os.WTERMSIG(status))
    sig = os.WSTOPSIG(status)
    event = (status >> 16) & 0xFF
    if sig == (_signal.SIGTRAP | 0x80):
        return Stop(StopKind.SYSCALL, pid, signal=_signal.SIGTRAP)
    if event:
        return Stop(StopKind.EVENT, pid, signal=sig, event=event)
    if sig == _signal.SIGTRAP:
        info = ptrace.get_siginfo(pid) if fetch_siginfo else None
        code = int.from_bytes(info[8:12], "little", signed=True) if info else None
        if code == SI_KERNEL:
            return Stop(StopKind.BREAKPOINT, pid, signal=sig, si_code=code, siginfo=info)
        if code == TRAP_HWBKPT:
            # A continue reached a watched access. (A single step that makes
            # one reports TRAP_TRACE: only DR6 tells, see debug_registers.py.)
            return Stop(StopKind.WATCHPOINT, pid, signal=sig, si_code=code, siginfo=info)
        if code is not None and code > 0:
            # TRAP_TRACE, TRAP_BRKPT (a step over `syscall`) and the code seen
            # when a step enters a signal handler all come from our trap flag.
            return Stop(StopKind.STEP, pid, signal=sig, si_code=code, siginfo=info)
        # SI_USER, SI_TKILL…: somebody sent SIGTRAP; deliver it like any signal.
        return Stop(StopKind.SIGNAL, pid, signal=sig, si_code=code, siginfo=info)
    info = None
    if fetch_siginfo:
        try:
            info = ptrace.get_siginfo(pid)
        except ptrace.PtraceError:
            info = None
    code = int.from_bytes(info[8:12], "little", signed=True) if info else None
    return Stop(StopKind.SIGNAL, pid, signal=sig, si_code=code, siginfo=info)
