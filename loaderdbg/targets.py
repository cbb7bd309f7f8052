"""Stop targets (DESIGN.md §2), spelled the same in the CLI, the TUI and the API,
and what a stop means: the reasons and their texts, for every front.

    first  ldso-entry  entry  main  exit  signal
    syscall  syscall:NAME  addr:0xADDR  sym:NAME  step:N
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, replace
from enum import StrEnum

from loaderdbg.errors import UsageError
from loaderdbg.session import StopReason

SIMPLE_TARGETS = ("first", "ldso-entry", "entry", "main", "exit", "signal", "syscall")
TARGET_HELP = (
    "first | ldso-entry | entry | main | exit | signal | syscall | syscall:NAME | "
    "addr:0xADDR | sym:NAME | step:N"
)


@dataclass(frozen=True)
class Target:
    """Where a motion runs to (`entry`, `syscall:NAME`, `addr:0x…`, ...)."""

    kind: str  # one of SIMPLE_TARGETS, or "addr", "sym", "step"
    name: str | None = None  # syscall or symbol name
    value: int | None = None  # address or step number

    def __str__(self) -> str:
        if self.kind == "addr":
            return f"addr:{self.value:#x}"
        if self.kind == "step":
            return f"step:{self.value}"
        if self.name is not None:
            return f"{self.kind}:{self.name}"
        return self.kind


def parse_target(text: str) -> Target:
    """Parse a stop target, or raise UsageError naming the accepted forms."""
    spelled = text.strip()
    if spelled in SIMPLE_TARGETS:
        return Target(spelled)
    kind, sep, rest = spelled.partition(":")
    if sep and rest:
        if kind == "syscall":
            return Target("syscall", name=rest)
        if kind == "sym":
            return Target("sym", name=rest)
        if kind in ("addr", "step"):
            try:
                value = int(rest, 0)
            except ValueError:
                raise UsageError(f"bad number in stop target {text!r}") from None
            if value < 0:
                raise UsageError(f"negative number in stop target {text!r}")
            return Target(kind, value=value)
    raise UsageError(f"unknown stop target {text!r}; use one of: {TARGET_HELP}")


# ---------------------------------------------------------------------------
# What a stop means: one table of reasons and one place for every stop text,
# used by the live session, the recorder and the replay alike (rr's
# diagnose_debugger_trap is the model: the fronts only feed it).
# ---------------------------------------------------------------------------


class ReasonKind(StrEnum):
    """Why a session is stopped (StopReason.kind; JSON `stop.reason`)."""

    LAUNCH = "launch"            # at the first instruction of a launched program
    ATTACH = "attach"            # just attached to a running process
    STEP = "step"                # after a single step (or step over)
    TARGET = "target"            # a stop target was reached
    BREAKPOINT = "breakpoint"    # a user breakpoint other than the target
    WATCHPOINT = "watchpoint"    # a hardware watchpoint fired, just after the access
    SYSCALL = "syscall"          # at a syscall's entry
    SIGNAL = "signal"            # a signal arrived (fatal ones end the run)
    EXITING = "exiting"          # a step ran exit_group: the exit event, still inspectable
    EXITED = "exited"            # the process exited
    KILLED = "killed"            # the process was killed by a signal
    INTERRUPTED = "interrupted"  # Ctrl-C / interrupt()
    LIMIT = "limit"              # the recorder stopped at its step limit
    START = "start"              # a replay went back to step 0
    END = "end"                  # a replay reached the end of its recording


# The stop targets that are startup milestones, and the milestone's name in
# events; the TUI runs to a milestone through the inverse map.
MILESTONE_OF_TARGET = {"ldso-entry": "ldso-entry", "entry": "at-entry", "main": "main"}
TARGET_OF_MILESTONE = {milestone: target for target, milestone in MILESTONE_OF_TARGET.items()}

def _label(target: Target | None) -> str | None:
    return None if target is None else str(target)


def launched() -> StopReason:
    return StopReason(ReasonKind.LAUNCH, "stopped at the first instruction after execve", target="first")


def attached(pid: int, threads: int) -> StopReason:
    return StopReason(ReasonKind.ATTACH, f"attached to pid {pid}, {threads} thread(s) stopped")


def stepped(step: int | None) -> StopReason:
    """A plain step; None when the count is unknown since a continue."""
    return StopReason(ReasonKind.STEP, f"step {step}" if step is not None
                      else "stepped (count unknown since a continue)")


def at_first(target: Target) -> StopReason:
    return StopReason(ReasonKind.TARGET, "at the first instruction", str(target))


def reached_step(target: Target, step: int) -> StopReason:
    return StopReason(ReasonKind.TARGET, f"reached step {step}", str(target))


def reached_at(target: Target, pc: int) -> StopReason:
    return StopReason(ReasonKind.TARGET, f"reached {target} at {pc:#x}", str(target))


def already_at(target: Target) -> StopReason:
    return StopReason(ReasonKind.TARGET, f"already at {target}", str(target))


def statically_linked(target: Target, program: str) -> StopReason:
    return StopReason(ReasonKind.TARGET, f"{program} is statically linked: no ld.so runs in it",
                      str(target), reached=False)


def breakpoint_hit(target: Target | None, pc: int, where: str | None) -> StopReason:
    return StopReason(ReasonKind.BREAKPOINT, f"breakpoint at {pc:#x} ({where or hex(pc)})",
                      _label(target), reached=False)


def watchpoint_triggered(target: Target | None, address: int, length: int, access: str, pc: int,
                         where: str | None, *, read_fires_on_writes: bool = True,
                         before: bool = False) -> StopReason:
    """A watchpoint fired: pc is the instruction after the access (or, for
    a unit that stops ``before`` accesses, the accessing one). An x86 read
    watch is a read-or-write debug register; a stepped one (qemu) sees
    reads alone."""
    read = "read or written" if read_fires_on_writes else "read"
    what = {"write": "written", "read": read, "access": "read or written"}[access]
    if before:
        what = {"write": "to be written", "read": "to be read", "access": "to be read or written"}[access]
    relation = "at" if before else "before"
    return StopReason(ReasonKind.WATCHPOINT, f"[{address:#x}, +{length}) {what} by the instruction {relation} "
                      f"{pc:#x} ({where or hex(pc)})", _label(target), reached=False)


def syscall_entry(target: Target, call: str) -> StopReason:
    """At a syscall's entry; ``call`` is strace's `name(args)`, no result
    (nothing has run yet)."""
    return StopReason(ReasonKind.SYSCALL, f"about to make syscall {call}", str(target))


def about_to_exit(target: Target | None, code: int | None) -> StopReason:
    """At the exit event: the process is still there to inspect."""
    text = "about to exit" + (f" (status {code})" if code is not None else "")
    if target is None:
        return StopReason(ReasonKind.EXITING, text, exit_code=code)
    return StopReason(ReasonKind.TARGET, text, str(target), exit_code=code)


def exited(target: Target | None, code: int) -> StopReason:
    return StopReason(ReasonKind.EXITED, f"exited with status {code}", _label(target),
                      reached=target is not None and target.kind == "exit", exit_code=code)


def killed(target: Target | None, signal: str, where: str) -> StopReason:
    """``where``: "at step N", "after a continue", "while stopped"…"""
    return StopReason(ReasonKind.KILLED, f"killed by {signal} {where}", _label(target), reached=False,
                      signal=signal)


def fatal_signal(target: Target | None, signal: str, pc: int, fault: int | None) -> StopReason:
    """A signal that ends the run (SIGSEGV, SIGBUS, SIGABRT…)."""
    text = f"{signal} at pc {pc:#x}"
    if fault is not None and signal != "SIGABRT":
        text += f", fault address {fault:#x}"
    return StopReason(ReasonKind.SIGNAL, text, _label(target),
                      reached=target is not None and target.kind == "signal", signal=signal,
                      fault_address=fault)


def signal_arrived(target: Target | None, signal: str) -> StopReason:
    return StopReason(ReasonKind.SIGNAL, f"{signal} arrived", _label(target),
                      reached=target is not None and target.kind == "signal", signal=signal)


def interrupted(target: Target | None, pc: int) -> StopReason:
    return StopReason(ReasonKind.INTERRUPTED, f"interrupted at pc {pc:#x}", _label(target), reached=False)


def as_target_outcome(reason: StopReason, target: Target) -> StopReason:
    """How a run to ``target`` ended when the process ended first (a replay
    that passes the recording's end): the same facts, under that target."""
    return StopReason(reason.kind, reason.description, str(target), False, reason.signal,
                      reason.fault_address, reason.exit_code, reason.thread)


def in_thread(reason: StopReason, tid: int) -> StopReason:
    """``reason`` naming the thread that reached it (a process with more
    than one thread): `breakpoint at 0x… (common_work) (thread 12345)`."""
    return replace(reason, description=f"{reason.description} (thread {tid})", thread=tid)


def step_limit(target: Target, step: int) -> StopReason:
    return StopReason(ReasonKind.LIMIT, f"stopped at the step limit ({step})", str(target), reached=False)


def recording_interrupted(target: Target, step: int) -> StopReason:
    return StopReason(ReasonKind.INTERRUPTED, f"recording interrupted at step {step}", str(target),
                      reached=False)


def recording_start() -> StopReason:
    return StopReason(ReasonKind.START, "at the start of the recording (step 0)", reached=False)


def recording_end(target: Target | None, last_step: int, why: str | None = None) -> StopReason:
    """A replay that runs past its recording's last step."""
    text = f"the recording ends at step {last_step}" + (f" ({why})" if why else "")
    return StopReason(ReasonKind.END, text, _label(target), reached=False)


# Signals that end a run where they arrive: faults, a trap nobody handles,
# abort(). Another signal is delivered and the run goes on.
RUN_ENDING_SIGNALS = frozenset({_signal.SIGSEGV, _signal.SIGBUS, _signal.SIGILL, _signal.SIGFPE,
                                _signal.SIGTRAP, _signal.SIGABRT})


def signal_stop(target: Target | None, signo: int, name: str, pc: int, fault: int | None) -> StopReason:
    if signo in RUN_ENDING_SIGNALS:
        return fatal_signal(target, name, pc, fault)
    return signal_arrived(target, name)


PENDING_OPTION = "--pending"


def defined_nowhere(target: Target, searched: "list[str] | tuple[str, ...]") -> str:
    """Said before launching: sym:NAME names a symbol that none of the
    objects the program starts with defines (searched: their names)."""
    shown = list(searched[:8]) + ([f"{len(searched) - 8} more"] if len(searched) > 8 else [])
    text = f"{target}: no object defines {target.name} (searched: {', '.join(shown)})"
    if target.name == "main":
        text += "; the target `main` finds main in a stripped program from its entry code"
    return text + f"; it may come from a library loaded later by dlopen: run anyway with {PENDING_OPTION}"


def several_definitions(target: Target, chosen: str, others: "list[str] | tuple[str, ...]") -> str:
    """Said before running: sym:NAME is defined, but only in symbol
    tables ld.so does not search, by several objects (local _dl_start in
    ld.so and in libc's debug file); sym: stops at one of them."""
    return (f"{target}: {len(others) + 1} objects define {target.name} in their symbol tables only "
            f"({', '.join([chosen, *others])}); stopping at {chosen}'s: a global definition comes first, "
            "then ld.so's (gdb would stop at each)")


def not_reachable(target: Target, why: str) -> StopReason:
    """Said before running: the target cannot be reached in this program."""
    return StopReason(ReasonKind.TARGET, why, str(target), reached=False)
