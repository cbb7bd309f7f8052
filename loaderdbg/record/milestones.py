"""The engine's startup knowledge, reused while recording.

``Inferior`` (loaderdbg/process/inferior.py) knows how to find ld.so's entry
and AT_ENTRY however ld.so got mapped, decodes syscalls, and names the
startup milestones. The recorder single-steps everything itself, so it
drives an Inferior through its observation hooks instead of its run loop,
with a tracee whose breakpoints are only remembered (an int3 written into
the program would be recorded as the program's own memory).

It uses only Inferior's public observer methods (observe_syscall_entry,
observe_syscall_exit, observe_stop, observe_arrival, milestone_addresses).
"""

from __future__ import annotations


from loaderdbg.process.inferior import Inferior
from loaderdbg.process.stops import Stop
from loaderdbg.process.tracee import LaunchSpec, Tracee
from loaderdbg.session import Event, StopReason


class MilestoneTracker:
    def __init__(self, tracee: Tracee, spec: LaunchSpec) -> None:
        tracee.observe_only()
        self.tracee = tracee
        self.inferior = Inferior(tracee, spec.path, spec.argv)
        self._main_armed = False
        self._arm_main()

    def _arm_main(self) -> None:
        """Watch for main once AT_ENTRY is reached (a static program is
        there at its first instruction)."""
        if not self._main_armed and self.inferior.at_entry is not None and self.seen("at-entry"):
            self._main_armed = True
            self.inferior.resolve_main()

    # -- what the recorder needs to know -------------------------------------
    @property
    def watch(self) -> dict[int, str]:
        """Addresses whose arrival is a milestone (a live dict: it grows as
        ld.so gets mapped and AT_ENTRY becomes known)."""
        return self.inferior.milestone_addresses

    @property
    def events(self) -> list[Event]:
        return self.inferior.events

    def seen(self, milestone: str) -> bool:
        return self.inferior.milestone_seen(milestone)

    @property
    def ldso(self):
        return self.inferior.ldso

    @property
    def at_entry(self) -> int | None:
        return self.inferior.at_entry

    @property
    def stop_reason(self) -> StopReason:
        return self.inferior.stop_reason

    # -- observations ----------------------------------------------------------
    def _sync(self, position: int, regs: bytes | None) -> None:
        self.inferior.step_count = position
        self.tracee.adopt_registers(regs)

    def arrived(self, position: int, regs: bytes) -> None:
        """A single-step landed on a watched address."""
        self._sync(position, regs)
        self.inferior.observe_arrival()
        self._arm_main()

    def syscall_entry(self, position: int, regs: bytes, number: int, args: tuple[int, ...]) -> None:
        self._sync(position, regs)
        self.inferior.observe_syscall_entry(number, args)

    def pending_syscall_text(self) -> str:
        return self.inferior.pending_syscall_text()

    def syscall_exit(self, position: int, regs: bytes | None, result: int | None) -> None:
        self._sync(position, regs)
        self.inferior.observe_syscall_exit(result)

    def stopped(self, position: int, regs: bytes | None, stop: Stop) -> StopReason | None:
        """A signal, an event or the end; returns the final reason, if any."""
        self._sync(position, regs)
        _, final = self.inferior.observe_stop(stop, target=None, stepping=True)
        if final is not None:
            self.inferior.stop_reason = final
        return final

    def take_pending_signal(self) -> int:
        sig, self.tracee.pending_signal = self.tracee.pending_signal, 0
        return sig

    def invalidate(self) -> None:
        self.inferior.invalidate()

    def resolve(self, symbol: str) -> int | None:
        """A global symbol the way ld.so resolves it, else any object's
        .symtab (a static program's main, exec-solib's local functions)."""
        return self.inferior.symbols().locate(symbol)

    def caught(self, parent: int) -> None:
        """The child was caught from a running parent (as Inferior.catch_spawn
        notes it, so a replay's events match a live catch)."""
        self.inferior.note_caught(parent)

    def exec_happened(self) -> None:
        self.tracee.memory.reopen()
