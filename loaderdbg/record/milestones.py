"""The engine's startup knowledge, reused while recording.

The startup observer (loaderdbg/process/startup.py) knows how to find ld.so's
entry and AT_ENTRY however ld.so got mapped, decodes syscalls, and names
the startup milestones; a live run feeds it from its run loop. The recorder
single-steps everything itself, so it feeds the same observer from its own
step loop, over a stop state whose tracee only remembers breakpoints (an
int3 written into the program would be recorded as the program's own
memory).
"""

from __future__ import annotations

from loaderdbg.process.startup import StartupObserver
from loaderdbg.stop_state import StopState
from loaderdbg.process.stops import Stop
from loaderdbg.process.tracee import LaunchSpec, Tracee
from loaderdbg.session import Event, StopReason
from loaderdbg import targets as reasons


class MilestoneTracker:
    def __init__(self, tracee: Tracee, spec: LaunchSpec) -> None:
        tracee.observe_only()
        self.tracee = tracee
        self.program = spec.path
        self.state = StopState(tracee, kernel_sp=tracee.sp)
        self.observer = StartupObserver(tracee, self.state, kernel_stack=self.state.initial_stack())
        self.state.observer = self.observer
        self.observer.first_stop()
        self._stop_reason: StopReason = reasons.launched()
        self._main_armed = False
        self._arm_main()

    def _arm_main(self) -> None:
        """Watch for main once AT_ENTRY is reached (a static program is
        there at its first instruction)."""
        if not self._main_armed and self.observer.at_entry is not None and self.seen("at-entry"):
            self._main_armed = True
            self.observer.resolve_main()

    # -- what the recorder needs to know -------------------------------------
    @property
    def watch(self) -> dict[int, str]:
        """Addresses whose arrival is a milestone (a live dict: it grows as
        ld.so gets mapped and AT_ENTRY becomes known)."""
        return self.observer.milestone_addresses

    @property
    def events(self) -> list[Event]:
        return self.observer.events

    def seen(self, milestone: str) -> bool:
        return self.observer.milestone_seen(milestone)

    @property
    def ldso(self):
        return self.observer.ldso

    @property
    def statically_linked(self) -> str | None:
        """The name of a program no ld.so will run (None: one will, or may)."""
        return self.observer.statically_linked

    @property
    def at_entry(self) -> int | None:
        return self.observer.at_entry

    @property
    def stop_reason(self) -> StopReason:
        return self._stop_reason

    # -- observations ----------------------------------------------------------
    def _sync(self, position: int, regs: bytes | None) -> None:
        self.state.step_count = position
        self.tracee.adopt_registers(regs)

    def arrived(self, position: int, regs: bytes) -> None:
        """A single-step landed on a watched address."""
        self._sync(position, regs)
        self.observer.here.clear()
        self.observer.arrived(self.tracee.pc)
        self._arm_main()

    def syscall_entry(self, position: int, regs: bytes, number: int, args: tuple[int, ...]) -> None:
        self._sync(position, regs)
        self.observer.syscall_entry(number, args)

    def pending_syscall_text(self) -> str:
        return self.observer.pending_syscall_text()

    def syscall_exit(self, position: int, regs: bytes | None, result: int | None) -> None:
        self._sync(position, regs)
        self.observer.syscall_exit(result)

    def stopped(self, position: int, regs: bytes | None, stop: Stop) -> StopReason | None:
        """A signal, an event or the end; returns the final reason, if any."""
        self._sync(position, regs)
        _, final = self.observer.observe(stop, target=None, stepping=True)
        if final is not None:
            self._stop_reason = final
        return final

    def note(self, position: int, kind: str, name: str, detail: str) -> None:
        """An event of the recorder's own (a thread born or gone) at ``position``."""
        self.state.step_count = position
        self.observer.record(kind, name, detail)

    def take_pending_signal(self) -> int:
        sig, self.tracee.pending_signal = self.tracee.pending_signal, 0
        return sig

    def invalidate(self) -> None:
        self.state.invalidate()

    def resolve(self, symbol: str) -> int | None:
        """A global symbol the way ld.so resolves it, else any object's
        .symtab (a static program's main, exec-solib's local functions)."""
        return self.state.symbols().locate(symbol)

    def caught(self, parent: int) -> None:
        """The child was caught from a running parent (as a live catch
        notes it, so a replay's events match a live catch)."""
        self.observer.caught(parent)

    def exec_happened(self) -> None:
        self.tracee.memory.reopen()
