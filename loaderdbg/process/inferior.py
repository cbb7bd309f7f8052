"""The engine's live view of one startup: a ptrace'd process plus what we learn as it runs.

``Inferior`` owns the step count, the run loop behind every stop target and
the stop state a snapshot reads (maps, objects, memory as the program sees
it). What each stop *means* — events, milestones, where ld.so's entry,
AT_ENTRY and main are — is the startup observer's (process/startup.py),
shared with the recorder. It runs on the tracer thread only.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import time
from typing import TYPE_CHECKING

from loaderdbg.analysis.objects import MappedObject
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.procstatus import parse_task_status
from loaderdbg.decode.registers import decode_registers
from loaderdbg.errors import TargetError, UsageError
from loaderdbg.process import ptrace
from loaderdbg.process.attach import AttachedThreads
from loaderdbg.process.attach import attach as attach_process
from loaderdbg.process.debug_registers import DebugRegisters, HardwareWatchpoint, WatchpointUnit
from loaderdbg.process.program import is_aarch64_program
from loaderdbg.process.startup import STOPPING_SIGNALS, LdsoInfo, StartupObserver, kernel_stack
from loaderdbg.stop_state import StopState
from loaderdbg.process.stops import Stop, StopKind
from loaderdbg.process.thread_group import GroupTarget, ThreadGroup
from loaderdbg.process.tracee import CODE_SYSCALL, LaunchSpec, Tracee, launch
from loaderdbg.session import Event, StopReason
from loaderdbg.snapshot import SyscallCall, ThreadState
from loaderdbg import targets as reasons
from loaderdbg.targets import MILESTONE_OF_TARGET, Target

if TYPE_CHECKING:
    from loaderdbg.process.follow import SpawnCatcher
    from loaderdbg.process.qemu_target import QemuTarget

__all__ = ["Inferior", "LdsoInfo"]

# The stops whose restart delivers the signal it is given (ptrace's
# signal-delivery-stops): a signal, a step's or an int3's or a watchpoint's trap.
_SIGNAL_DELIVERY_STOPS = frozenset({StopKind.SIGNAL, StopKind.STEP, StopKind.BREAKPOINT, StopKind.WATCHPOINT})


class Inferior(StopState):
    """A ptrace'd process (or a qemu-user guest: the same run loop over a
    QemuTarget): the stop state over its target, the run loop behind every
    stop target, and the startup observer fed from it."""

    def __init__(self, tracee: Tracee | GroupTarget | QemuTarget, program: str, argv: tuple[str, ...],
                 attached: AttachedThreads | None = None, watchpoint_unit: WatchpointUnit | None = None) -> None:
        self.tracee = tracee
        self.program = program
        self.argv = argv
        self.attached = attached
        super().__init__(tracee, kernel_sp=tracee.sp if attached is None else start_stack(tracee.pid),
                         step_exact=attached is None)
        self._return_offset = self.arch.register_offset(self.arch.syscall_return_register)
        self._pc_offset = self.arch.register_offset(self.arch.pc_register)
        self._stop_reason: StopReason | None = reasons.launched()
        self.interrupt_requested = False
        # What watches memory: the main thread's debug registers (x86-64), or
        # a qemu-user guest's stepped watchpoints (its stub has none).
        self.debug_registers: WatchpointUnit = watchpoint_unit or DebugRegisters(tracee.pid)
        self.watchpoint_hit: HardwareWatchpoint | None = None  # what stopped the last motion
        # sym:NAME@plt's other locations (one PLT entry per object, as gdb
        # sets them), reached as the target is; and those of them this
        # motion inserted, removed when it ends.
        self._target_locations: set[int] = set()
        self._target_inserted: set[int] = set()
        self.observer = StartupObserver(tracee, self, attached=attached is not None,
                                        kernel_stack=kernel_stack(self, self.kernel_sp),
                                        arms_main_before_running=True)
        if attached is None:
            self.observer.first_stop()
        else:
            self.stop_reason = reasons.attached(self.pid, len(self.thread_group.tids()))
            self.observer.attached_late(self.stop_reason)

    # -- construction ------------------------------------------------------
    @classmethod
    def launch(cls, spec: LaunchSpec) -> "Inferior":
        """``spec`` at its first instruction: under ptrace, or, for an
        aarch64 program, under qemu-user's gdb stub (process/qemu_target.py)."""
        watchpoint_unit = None
        if is_aarch64_program(spec.path):
            # Imported for aarch64 programs only: qemu's stub client, the A64
            # decoders behind its stepped watchpoints (issue 19: import time).
            from loaderdbg.process import qemu_target
            tracee = qemu_target.launch(spec)
            watchpoint_unit = tracee.watchpoint_unit
        else:
            # Every thread it starts is traced and stops with it (all-stop,
            # process/thread_group.py); the current thread is the one that stopped.
            tracee = GroupTarget(ThreadGroup(launch(spec)))
        try:
            return cls(tracee, spec.path, spec.argv, watchpoint_unit=watchpoint_unit)
        except BaseException:
            tracee.kill()
            raise

    @property
    def thread_group(self) -> ThreadGroup | None:
        """Every thread of a launched or attached x86-64 program (None: a
        qemu-user guest, or a caught child)."""
        return self.tracee.group if isinstance(self.tracee, GroupTarget) else None

    @classmethod
    def attach(cls, pid: int, cancelled=None) -> "Inferior":
        """``cancelled()``, asked while the threads are being stopped, gives
        up with KeyboardInterrupt (Ctrl-C while attaching)."""
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            exe = ""
        if exe.startswith("qemu-"):
            # Its guest is behind qemu's gdb stub, which only a launch opens.
            raise UsageError(f"{pid} is {exe} running a guest program: loaderdbg attaches to x86-64 "
                             "processes; an aarch64 program is launched (loaderdbg inspect / run PROG)")
        try:
            tracee, threads = attach_process(pid, cancelled)
        except ptrace.PtraceError as err:
            if err.errno != errno.ESRCH:
                raise
            raise TargetError(f"{pid}: the process exited while we attached") from None
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = f"pid {pid}"
        # All-stop from here on, as for a launched program: the group owns
        # every seized thread (their signals to hand back included).
        group = ThreadGroup.adopt_attached(tracee, threads)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = tuple(a.decode("utf-8", "surrogateescape") for a in handle.read().split(b"\0")[:-1])
            return cls(GroupTarget(group), exe, argv, attached=threads)
        except BaseException as err:
            group.detach()
            # Killed while we read it (a SIGKILL needs no permission from us):
            # /proc files vanish, ptrace says ESRCH.
            if isinstance(err, OSError) and not isinstance(err, PermissionError):
                raise TargetError(f"{pid}: the process exited while we attached") from None
            raise

    @classmethod
    def catch_spawn(cls, catcher: "SpawnCatcher") -> "Inferior":
        """The next matching child of a running parent, at its first instruction."""
        tracee = catcher.catch()
        try:
            inferior = cls(tracee, catcher.caught.path, catcher.caught.argv)
        except BaseException:
            tracee.detach()
            raise
        inferior.observer.caught(catcher.parent)
        return inferior

    # -- state -------------------------------------------------------------
    @property
    def stop_reason(self) -> StopReason:
        """Why we are stopped. None inside means "a plain step", built only
        when asked: the step loop must not pay for a string per step."""
        reason = self._stop_reason
        if reason is None:
            reason = self._stop_reason = self._naming_thread(
                reasons.stepped(self.step_count if self.step_exact else None))
        return reason

    @stop_reason.setter
    def stop_reason(self, value: StopReason) -> None:
        self._stop_reason = self._naming_thread(value)

    def _naming_thread(self, reason: StopReason) -> StopReason:
        """With more than one thread, a stop names the one that reached it
        (the group made it current); the end of the process is no thread's."""
        group = self.thread_group
        if group is None or reason.thread is not None or reason.kind in (reasons.ReasonKind.EXITED,
                                                                          reasons.ReasonKind.KILLED,
                                                                          reasons.ReasonKind.ATTACH):
            return reason
        if len(group.tids()) < 2:
            return reason
        return reasons.in_thread(reason, group.current)

    def select_thread(self, tid: int) -> None:
        """gdb's `thread N`: registers, stack and the next step are thread
        ``tid``'s (UsageError: why not)."""
        group = self.thread_group
        if group is None:
            raise UsageError("only an x86-64 program's threads can be selected here (launched or attached)")
        group.select(tid)

    # -- the signal a thread receives as it runs on -------------------------
    def resume_signal(self, tid: int | None = None) -> int | None:
        """The signal thread ``tid`` (default: the current one) receives
        when it next runs: the one it stopped with, unless replaced."""
        return self._thread_tracee(tid).pending_signal or None

    def set_resume_signal(self, signal: int | None, tid: int | None = None) -> None:
        """What thread ``tid`` (default: the current one) receives when it
        next runs, in place of the signal it stopped with: None, nothing
        (gdb's `signal 0`, `handle SIG nopass`); a number, that signal
        (`signal SIG`). UsageError: no such thread or signal."""
        self._require_alive()
        if signal and signal not in _signal.valid_signals():
            raise UsageError(f"no signal {signal}")
        self._thread_tracee(tid).pending_signal = signal or 0

    def takes_signal_as_it_resumes(self, tid: int | None = None) -> bool:
        """Whether a signal given thread ``tid`` (default: the current one)
        reaches it as it resumes: it stands in a signal-delivery-stop (a
        signal, a step's or an int3's trap). At a syscall stop the kernel
        sends it anew instead, and the thread stops for it once more."""
        last = self._thread_tracee(tid).last_stop
        return last is None or last.kind in _SIGNAL_DELIVERY_STOPS

    def _thread_tracee(self, tid: int | None):
        group = self.thread_group
        if group is not None:
            return group.tracee(tid)
        if tid not in (None, self.pid):
            raise UsageError(f"no thread {tid} (threads: {self.pid})")
        return self.tracee

    def add_breakpoint(self, addr: int) -> bool:
        """A user breakpoint: every continue stops there. False if unmapped
        now (it is kept and armed when the address gets mapped)."""
        self.user_breakpoints.add(addr)
        return self.tracee.insert_breakpoint(addr)

    def remove_breakpoint(self, addr: int) -> None:
        self.user_breakpoints.discard(addr)
        if addr not in self.observer.milestone_addresses:
            self.tracee.remove_breakpoint(addr)

    def ldso_object(self) -> MappedObject | None:
        return self.observer.ldso_object()

    def program_object(self) -> MappedObject | None:
        return self.observer.program_object()

    def threads(self) -> tuple[ThreadState, ...]:
        if not self.alive:
            return ()
        out = []
        tids = sorted(self.tracee.threads())
        group = self.thread_group
        traced = {tid: group.tracee(tid) for tid in group.tids()} if group is not None else {}
        owed_sigstops = {info.tid for info in group.threads() if info.owes_our_sigstop} if group is not None \
            else set()
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/status") as handle:
                    status = parse_task_status(handle.read())
            except (OSError, DecodeError):
                continue
            sig_pending = status.sig_pending
            if tid in owed_sigstops:
                # Ours, not the program's: the stop request that halted it.
                sig_pending = tuple(name for name in sig_pending if name != "SIGSTOP")
            fs_base = None
            current = pc = registers = None
            if tid in traced:
                reached = self.stop_reason.thread
                stop = self.stop_reason.kind if tid == (group.current if reached is None else reached) \
                    else _thread_stop(group, tid)
                current = tid == group.current if len(traced) > 1 else None
                try:
                    raw = traced[tid].regs_raw()
                    fs_base = traced[tid].tls_base()
                except ptrace.PtraceError:
                    # Not in a stop of ours: starting, or going with its
                    # group's exit_group (the kernel reaps it while we list).
                    raw = None
                if raw is not None:
                    thread_registers = decode_registers(raw, self.arch)
                    pc = thread_registers.pc
                    # Every thread's registers only when there are several:
                    # one thread's are the snapshot's own (JSON unchanged).
                    registers = thread_registers if len(traced) > 1 else None
            elif tid == self.pid:
                fs_base = self.tracee.tls_base()  # fs_base, or arm64's tpidr_el0
                stop = self.stop_reason.kind
            else:
                stop = "running (not traced)"
            out.append(ThreadState(tid, status.name, status.state, fs_base, status.sig_blocked,
                                   sig_pending, status.shared_pending, stop, current, pc, registers))
        return tuple(out)

    # -- the rest of a StateSource (loaderdbg/snapshot.py) -----------------------
    def syscall_calls(self) -> tuple[SyscallCall, ...]:
        return tuple(self.observer.calls)

    # -- what the observer learned (process/startup.py) ------------------------
    @property
    def events(self) -> list[Event]:
        return self.observer.events

    @property
    def ldso(self) -> LdsoInfo | None:
        return self.observer.ldso

    @property
    def at_entry(self) -> int | None:
        return self.observer.at_entry

    @property
    def statically_linked(self) -> str | None:
        return self.observer.statically_linked

    @property
    def syscall_count(self) -> int:
        return self.observer.syscall_count

    def milestone_seen(self, name: str) -> bool:
        return self.observer.milestone_seen(name)

    def resolve_main(self) -> int | None:
        return self.observer.resolve_main()

    # -- stepping ----------------------------------------------------------
    def _after_step(self, stop: Stop, syscall_call: tuple | None) -> Stop:
        if stop.kind is StopKind.STEP or stop.kind is StopKind.BREAKPOINT:
            self.step_count += 1
        if syscall_call is not None:
            result = None
            tid = syscall_call[2]
            # A thread the step ended (a worker's exit) left another current,
            # whose registers are not its result; at its exit event the call
            # (exit_group) never returns: rax still holds the entry's -ENOSYS.
            exiting = stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT
            if stop.alive and not exiting and self.tracee.current_tid == tid:
                raw = self.tracee.regs_raw()
                result = int.from_bytes(raw[self._return_offset:self._return_offset + self.arch.word_size],
                                        "little", signed=True)
            self.observer.syscall_exit(result, tid)
            self.tracee.forget_code()  # any syscall may have changed code
        return stop

    def _syscall_finished_by_step(self) -> tuple | None:
        """The current thread stands inside a syscall whose entry a continue
        stopped at (`until syscall:NAME`): the next step finishes it, its
        result in the registers after, as a stepped `syscall` instruction's."""
        if not self.observer.in_syscall():
            return None
        return (None, None, self.tracee.current_tid)

    def _syscall_before_step(self) -> tuple | None:
        tracee = self.tracee
        if tracee.code_kind(tracee.pc) != CODE_SYSCALL:
            return None
        raw = tracee.regs_raw()
        arch = self.arch
        size = arch.word_size

        def register(name: str) -> int:
            offset = arch.register_offset(name)
            return int.from_bytes(raw[offset:offset + size], "little")

        number = register(arch.syscall_number_before)
        args = tuple(register(r) for r in arch.syscall_arg_registers)
        tid = tracee.current_tid
        self.observer.syscall_entry(number, args, tid)
        return (number, args, tid)

    def step(self) -> Stop:
        """One instruction. A plain step (the common case by far) takes the
        short way: count it, check for a milestone address, and leave the
        stop reason to be built if someone asks."""
        tracee = self.tracee
        if not tracee.alive:
            self._require_alive()
        self.watchpoint_hit = None
        here = self.observer.here
        if here:
            here.clear()
            self.observer.before_running()  # after a milestone stop (AT_ENTRY's leaves main to arm)
        try:
            offset = self._pc_offset
            pc = int.from_bytes(tracee.regs_raw()[offset:offset + 8], "little")
        except ptrace.PtraceError:
            pc = None  # gone under us; the step reports how
        if pc is not None:
            kind = tracee.code_kind(pc)
            if kind != CODE_SYSCALL:
                finishing = self._syscall_finished_by_step()
                stop = tracee.step(pc, kind)
                if stop is tracee.plain_step and finishing is None:
                    self.step_count += 1
                    milestones = self.observer.milestone_addresses
                    if milestones and tracee.pc in milestones:  # registers came with the stop
                        self._observe(stop, target=None, stepping=True)
                    self._stop_reason = None
                    if self.debug_registers is not None and self.debug_registers.armed:
                        self._watchpoint_fired()  # a watched access: its reason, and step_many stops
                    return stop
                syscall_call = finishing
            else:
                syscall_call = self._syscall_before_step()
                stop = tracee.step(pc, kind)
        else:
            syscall_call = None
            stop = tracee.step()
        if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXEC:
            # As at launch: leave execve before the next step, or that step
            # would only finish the syscall and execute nothing.
            self.observer.exec_happened(self.tracee.event_message())
            self.tracee.finish_execve(self.program)
            if syscall_call is not None:
                self.step_count += 1  # the `syscall` instruction ran
            self.observer.syscall_exit(0, self.tracee.pid)  # execve returns 0 into the new image, the process's
            self.tracee.forget_code()
            syscall_call = None
        stop = self._after_step(stop, syscall_call)
        exit_event = stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT
        # The step ended the stepped thread alone (a worker's exit): the
        # group let it go and made another current; the process runs on.
        thread_left = exit_event and stop.pid != self.tracee.current_tid
        if exit_event and not thread_left:
            stop = self._finish_dying(stop)
        _, final = self._observe(stop, target=None, stepping=True)
        if final is None and exit_event:
            final = self._exiting_reason() if not thread_left else self._thread_left(stop.pid)
        if final is not None:
            self.stop_reason = final
        elif stop.alive:
            self._stop_reason = None  # "step N"
        return stop

    def _thread_left(self, tid: int) -> StopReason:
        """A step that ended thread ``tid`` alone: said, and the step loop
        stops there (another thread is current now)."""
        step = reasons.stepped(self.step_count if self.step_exact else None)
        return StopReason(step.kind, f"{step.description}: thread {tid} exited")

    def _exiting_reason(self) -> StopReason:
        """A step that ran exit_group stops at the exit event: the process
        is still there to inspect, and one more step ends it."""
        status = self.tracee.event_message()
        code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
        return reasons.about_to_exit(None, code)

    def notice_death(self) -> bool:
        """A SIGKILL from outside takes a stopped tracee down without a word
        to us: nothing waits for it until the next resume. Before reading
        its state (a snapshot), reap it if it is gone, so what we show says
        "killed", not the stale stop. True when it died."""
        if not self.alive:
            return False
        gone = self.tracee.left_stop()
        deadline = time.monotonic() + 5
        while True:
            try:
                stop = self.tracee.poll_stop()  # the group reaps the threads the leader's end waits for
            except ChildProcessError:
                return False
            if stop is not None:
                break
            if not gone or time.monotonic() > deadline:
                return False
            time.sleep(0.005)  # on its way to the exit event or to death
        if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT:
            stop = self._finish_dying(stop)
        _, final = self._observe(stop, target=None, stepping=False, while_stopped=True)
        if final is not None:
            self.stop_reason = final
        return not stop.alive

    def _finish_dying(self, stop: Stop) -> Stop:
        """At the exit event of a process a signal is killing (the SIGSEGV
        a step delivered, a SIGKILL), let it die: the caller reports
        "killed by SIG… at step N" instead of a step that seems alive."""
        status = self.tracee.event_message()
        if status is None or os.WIFSIGNALED(status):
            self.observer.syscalls_cut_short()
            return self.tracee.resume(syscalls=False)
        return stop

    def _died_of(self, stop: Stop, signal: int, stood: tuple[int, int] | None) -> bool:
        """Whether ``stop`` is the process dying of the pending ``signal``
        with nothing run: its exit event at the same pc and sp (``stood``),
        or, once that matched (stood None), the death itself."""
        if stop.kind is StopKind.KILLED:
            return stood is None and stop.signal == signal
        if stop.kind is not StopKind.EVENT or stop.event != ptrace.EVENT_EXIT or stood is None:
            return False
        status = self.tracee.event_message()
        try:
            here = (self.tracee.pc, self.tracee.sp)
        except ptrace.PtraceError:
            return False
        return status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal and here == stood

    def interrupt(self) -> None:
        """Stop a running continue, from any thread."""
        self.interrupt_requested = True
        self.tracee.interrupt()

    def step_many(self, n: int) -> StopReason:
        """Up to n steps; stops early for anything but a plain step."""
        for _ in range(n):
            self.step()
            if self._stop_reason is not None or self.interrupt_requested:
                break
        return self.stop_reason

    def _require_alive(self) -> None:
        if not self.alive:
            raise TargetError(f"the process is gone ({self.stop_reason.description})")

    # -- running -----------------------------------------------------------
    def run_to(self, target: Target) -> StopReason:
        self._require_alive()
        self.watchpoint_hit = None
        kind = target.kind
        if kind == "first":
            if self.step_count == 0 and self.step_exact:
                self.stop_reason = reasons.at_first(target)
                return self.stop_reason
            raise UsageError("the first instruction is behind us; relaunch (starti) to get there")
        if kind == "step":
            if not self.step_exact:
                raise UsageError("step count unknown after a continue; relaunch to count steps")
            if target.value < self.step_count:
                raise UsageError(f"step {target.value} is behind us (at step {self.step_count})")
            while self.step_count < target.value:
                stop = self.step()
                reason = self._stop_reason  # None: a plain step
                if reason is not None and (self._stopped_for_good(stop) or reason.kind == "interrupted"):
                    return self.stop_reason
            self.stop_reason = reasons.reached_step(target, self.step_count)
            return self.stop_reason
        if kind == "ldso-entry" and self.statically_linked and self.ldso is None:
            self.stop_reason = reasons.statically_linked(target, self.statically_linked)
            return self.stop_reason
        if self._already_at(target):
            self.stop_reason = reasons.already_at(target)
            return self.stop_reason
        if self.attached is not None and kind in MILESTONE_OF_TARGET:
            # Said now rather than after running the process to its exit.
            self.stop_reason = reasons.not_reachable(
                target, f"{target} is part of startup, over before we attached: attach cannot go back "
                        "(loaderdbg run PROG, or attach --follow-exec to its parent, to see it)")
            return self.stop_reason
        if kind == "main" and not self.milestone_seen("main"):
            unreachable = self.observer.main_unreachable()
            if unreachable is not None:
                self.stop_reason = reasons.not_reachable(target, unreachable)
                return self.stop_reason
        user_bp = self._target_breakpoint(target)
        return self._continue(target, user_bp)

    def _already_at(self, target: Target) -> bool:
        wanted = MILESTONE_OF_TARGET.get(target.kind)
        return wanted is not None and wanted in self.observer.here

    def _target_breakpoint(self, target: Target) -> int | None:
        if target.kind == "addr":
            self.tracee.insert_breakpoint(target.value)
            return target.value
        if target.kind == "sym":
            addr = self.symbols().locate(target.name)
            if addr is not None:
                self.tracee.insert_breakpoint(addr)
                self._arm_plt_locations(target, addr)
            return addr
        if target.kind == "main":
            return self.resolve_main()
        if target.kind == "ldso-entry" and self.milestone_seen("ldso-entry") and self.ldso:
            raise UsageError("ld.so's entry is behind us; relaunch (starti) to get there")
        if target.kind == "entry" and self.milestone_seen("at-entry"):
            raise UsageError("AT_ENTRY is behind us; relaunch (starti) to get there")
        return None

    def _arm_plt_locations(self, target: Target, user_bp: int | None) -> None:
        """sym:NAME@plt stops in every loaded object's PLT entry of that
        name, as gdb's `break puts@plt` sets a location in each (and in
        each library as it is loaded)."""
        if not target.name.endswith("@plt"):
            return
        for other in self.symbols().plt_locations(target.name):
            if other == user_bp or other in self._target_locations:
                continue
            present = other in self.tracee.breakpoints
            if self.tracee.insert_breakpoint(other):
                self._target_locations.add(other)
                if not present:
                    self._target_inserted.add(other)

    def _continue(self, target: Target, user_bp: int | None) -> StopReason:
        try:
            return self._continue_to(target, user_bp)
        finally:
            for other in self._target_inserted - self.user_breakpoints - self.observer.milestone_addresses.keys():
                self.tracee.remove_breakpoint(other)
            self._target_locations.clear()
            self._target_inserted.clear()

    def _continue_to(self, target: Target, user_bp: int | None) -> StopReason:
        pending_sym = target.kind == "sym" and user_bp is None
        # Resuming from a fatal signal's stop runs nothing: if the process
        # dies of it right where it stood, the step count is still exact.
        fatal = self.tracee.pending_signal if self.step_exact else 0
        stood = (self.tracee.pc, self.tracee.sp) if fatal else None
        while True:
            syscall_call = None
            self.observer.here.clear()
            self.observer.before_running()
            if self.tracee.at_breakpoint():
                syscall_call = self._syscall_before_step()
            # Syscalls are watched all the way: every stop must show the
            # maps ([heap], RELRO made read-only…) and events as they are then.
            stop = self.tracee.resume(syscalls=True)
            if stop.kind is StopKind.STEP and syscall_call is not None:
                self._after_step(stop, syscall_call)
            if fatal and self._died_of(stop, fatal, stood):
                stood = None  # the exit event matched; the death report follows
            else:
                fatal = 0
                self.step_exact = False
            if stop.kind is StopKind.WATCHPOINT and self._watchpoint_fired(target):
                break
            reached, reason = self._observe(stop, target=target, stepping=False)
            if reason is not None:
                self.stop_reason = reason
                break
            remapped = stop.kind is StopKind.SYSCALL and self._maps is None
            if pending_sym and remapped:
                user_bp = self.symbols().locate(target.name)
                if user_bp is not None:
                    self.tracee.insert_breakpoint(user_bp)
                    pending_sym = False
            if remapped and target.kind == "sym" and user_bp is not None:
                self._arm_plt_locations(target, user_bp)
            if target.kind == "main" and user_bp is None and self.at_entry is not None:
                user_bp = self.resolve_main()
            if self._target_locations and stop.kind is StopKind.BREAKPOINT and self.tracee.pc in self._target_locations:
                self.stop_reason = reasons.reached_at(target, self.tracee.pc)
                break
            if stop.kind is StopKind.BREAKPOINT and self.tracee.pc in self.user_breakpoints \
                    and self.tracee.pc != user_bp:
                self.stop_reason = reasons.breakpoint_hit(target, self.tracee.pc, self.symbolize(self.tracee.pc))
                break
            if user_bp is not None and stop.kind is StopKind.BREAKPOINT and self.tracee.pc == user_bp:
                self.stop_reason = reasons.reached_at(target, user_bp)
                break
            if reached:
                self.stop_reason = reasons.reached_at(target, self.tracee.pc)
                break
        if user_bp is not None and target.kind in ("addr", "sym") and user_bp not in self.observer.milestone_addresses \
                and user_bp not in self.user_breakpoints:
            self.tracee.remove_breakpoint(user_bp)
        # Rewrites made without a syscall since the last one (a self-
        # relocation stepped over with F8) are part of where we stopped.
        self.observer.startup_checks()
        return self.stop_reason

    def _stopped_for_good(self, stop: Stop) -> bool:
        return not stop.alive or (stop.kind is StopKind.SIGNAL and stop.signal in STOPPING_SIGNALS)

    def _observe(self, stop: Stop, *, target: Target | None, stepping: bool,
                 while_stopped: bool = False) -> tuple[bool, StopReason | None]:
        """The observer's reading of a stop; a final reason ends the run here."""
        if stop.kind is StopKind.SIGNAL and stop.signal == self.tracee.interrupt_signal \
                and self.interrupt_requested:
            # Our own interrupt (LiveSession.interrupt): not the program's signal.
            self.interrupt_requested = False
            self.stop_reason = reasons.interrupted(target, self.tracee.pc)
            return False, self.stop_reason
        if stop.kind is StopKind.SYSCALL:
            self.tracee.forget_code()  # any syscall may have changed code (see Tracee.code_kind)
        group = self.thread_group
        if group is not None:
            exec_stop = stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXEC
            for note in group.take_notes():  # threads born and gone since the last stop
                if note.kind == "exited" and not exec_stop:
                    # Its syscall (a worker's exit) never returns; at an exec the
                    # observer carries the execve on and ends the others' calls.
                    self.observer.syscall_exit(None, note.tid)
                self.observer.record("thread", note.kind, note.detail)
        reached, final = self.observer.observe(stop, target=target, stepping=stepping,
                                               while_stopped=while_stopped)
        if final is not None:
            self.stop_reason = final
        return reached, final

    # -- hardware watchpoints (process/debug_registers.py) ------------------------
    def set_watchpoint(self, addr: int, size: int, access: str = "write") -> HardwareWatchpoint:
        """Watch [addr, addr+size) in the main thread (UsageError: why not)."""
        self._require_alive()
        if self.debug_registers is None:
            raise UsageError("this process has nothing to watch memory with")
        return self.debug_registers.add(addr, size, access)

    def watch_stops_before_access(self) -> bool:
        """Watched accesses stop before their instruction from now on, if
        the unit can (LiveSession.watch_stops_before_access)."""
        return self.debug_registers is not None and self.debug_registers.stop_before_accesses()

    @property
    def watches_stop_before_access(self) -> bool:
        return self.debug_registers is not None and self.debug_registers.stops_before_access

    def remove_watchpoint(self, addr: int, size: int, access: str = "write") -> bool:
        return self.debug_registers is not None and self.alive and self.debug_registers.remove(addr, size, access)

    @property
    def watchpoints(self) -> tuple[HardwareWatchpoint, ...]:
        return () if self.debug_registers is None else self.debug_registers.watchpoints

    def _watchpoint_fired(self, target: Target | None = None) -> bool:
        """After a SIGTRAP (a continue's WATCHPOINT stop, or a step that made
        a watched access): DR6 names the slot; the stop reason says so."""
        hit = self.debug_registers.fired() if self.debug_registers is not None else None
        if hit is None:
            return False
        self.watchpoint_hit = hit
        pc = self.tracee.pc
        self.stop_reason = reasons.watchpoint_triggered(
            target, hit.address, hit.length, hit.access, pc, self.symbolize(pc),
            read_fires_on_writes=self.debug_registers.read_fires_on_writes,
            before=self.debug_registers.stops_before_access)
        return True

    # -- step over -----------------------------------------------------------
    def step_over(self) -> Stop:
        self._require_alive()
        from loaderdbg.decode.disasm import disassemble  # not at import: inspect never disassembles
        code = self.read_memory(self.tracee.pc, 16) or b""
        insns = disassemble(code, self.tracee.pc, self.arch, count=1)
        if not insns or not insns[0].is_call:
            return self.step()
        after = self.tracee.pc + insns[0].size
        self.tracee.insert_breakpoint(after)
        self.run_to(Target("addr", value=after))
        return self.tracee.last_stop

    # -- ending ----------------------------------------------------------------
    def close(self) -> None:
        """Kill what we launched; leave what we attached to running."""
        if self.attached is not None and self.alive and self.debug_registers is not None:
            try:
                self.debug_registers.clear()  # a detach keeps them: it would die of SIGTRAP
            except ptrace.PtraceError:
                pass
        self.tracee.close()  # an attached one: the group lets every thread go


def _thread_stop(group: ThreadGroup, tid: int) -> str:
    """Why a traced thread that is not the current one stands, for a snapshot."""
    info = next(t for t in group.threads() if t.tid == tid)
    if info.pending and info.last_stop is not None:
        return f"stopped ({info.last_stop.describe()}, not reported yet)"
    return info.state


def start_stack(pid: int) -> int:
    """The kernel's initial stack pointer, from /proc/PID/stat (startstack):
    where an attached process's argc/argv/envp/auxv still are."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("utf-8", "replace")
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[25])
    except (IndexError, ValueError):
        return 0
