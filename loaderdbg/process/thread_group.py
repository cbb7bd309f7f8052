"""Every thread of one traced process, stopped and resumed together (all-stop).

gdb's defaults: every thread is traced (TRACECLONE attaches new ones, which
start in a stop of their own); when one thread stops for something worth
reporting (a breakpoint, a signal, a step's end, a syscall stop, an event)
every other thread is stopped too before we report it; resuming resumes
them all; a step steps the current thread alone (``scheduler-locking
step``), so an int3 lifted to step off it cannot be run through by another
thread, and an int3 any thread hits is ours to report, never its death.

Stopping the others races with them: a thread asked to stop may report a
real event first (its own breakpoint hit, a signal, a syscall stop). That
event is kept as the thread's *pending* stop (gdb's pending status) and
reported by a later ``resume_all`` before anything runs again, one at a
time; a pending breakpoint hit whose int3 was removed meanwhile is dropped
(its pc is already back on the instruction). The stop request itself stays
queued in such a thread and is swallowed when it shows up later.

How a thread is asked to stop: PTRACE_INTERRUPT where the process was
seized (attached, or caught from a seized parent), a SIGSTOP to that thread
(tgkill) where it was launched with TRACEME, which INTERRUPT does not work
on; a new thread of a TRACEME tracee also starts with a SIGSTOP stop, one of
a seized tracee with PTRACE_EVENT_STOP (PTRACE_NOTES.md §7, §8).

Threads that exit are let go and reaped without a report. A thread that
execs ends every other thread; the exec event arrives for the leader's pid,
whose number the process keeps (ptrace(2), "execve(2) under ptrace").
Forked children are let go at once, our int3s taken out of their copy of
memory (only this module can: a wait for any thread may collect their
first stop). Runs on the tracer thread only.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import time
from dataclasses import dataclass
from typing import NamedTuple

from loaderdbg.arch import X86_64
from loaderdbg.errors import TargetError, UsageError
from loaderdbg.process import ptrace
from loaderdbg.process.attach import WNOTHREAD, AttachedThreads
from loaderdbg.process.stops import Stop, StopKind
from loaderdbg.process.tracee import Tracee, signal_caught, sigstop_pending, untrapped_r11

RUNNING = "running"
STOPPED = "stopped"
STARTING = "starting"  # announced by its creator's clone event, first stop not seen yet
EXITING = "exiting"  # past its exit event, let go to die; only its reaping is left

_ORIG_RAX = X86_64.register_offset("orig_rax")
_RAX = X86_64.register_offset("rax")
_EXIT_GROUP = X86_64.syscall_numbers["exit_group"]
_WAIT_FLAGS = ptrace.WALL | WNOTHREAD
# How long _wait_any asks without blocking (yielding the CPU between asks)
# before it blocks. A stop is usually microseconds away (the next syscall);
# a tracer asleep in waitpid then pays a wake-up of an idle CPU on each side
# of every stop when the program runs on another CPU: unpinned, the demo's
# 131 stops to AT_ENTRY took twice as long blocked as asked this way (issue
# 19). On one CPU the yield runs the program at once. Bounded, so a program
# that runs on for long costs the tracer this much CPU at most.
_ASK_SECONDS = 50e-6
_SYSCALL_STOP = ((_signal.SIGTRAP | 0x80) << 8) | 0x7F  # a syscall stop's wait status (TRACESYSGOOD)
# What a syscall interrupted by a signal returns when the kernel will restart
# it: ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK
# (include/linux/errno.h); user space never sees these.
_RESTART_ERRORS = frozenset({-512, -513, -514, -516})
# ERESTART_RESTARTBLOCK's call (nanosleep, clock_nanosleep, poll…) comes
# back as restart_syscall, which carries on from the kernel's restart block.
_ERESTART_RESTARTBLOCK = -516
_RESTART_SYSCALL = X86_64.syscall_numbers["restart_syscall"]
# The stops that say a cut-short syscall did not run again at once: the
# thread ran code of its own, or entered another call.
_ENDS_A_CUT_SHORT_CALL = frozenset({StopKind.SIGNAL, StopKind.SYSCALL, StopKind.BREAKPOINT, StopKind.WATCHPOINT})


def _signed_word(raw: bytes, offset: int) -> int:
    """A register of a raw user_regs_struct, as the kernel's long."""
    return int.from_bytes(raw[offset:offset + 8], "little", signed=True)


@dataclass(frozen=True)
class ThreadInfo:
    """One traced thread as callers see it."""

    tid: int
    state: str  # RUNNING, STOPPED, STARTING or EXITING
    last_stop: Stop | None  # its latest stop (a pending one included)
    pending: bool  # stopped with an event not reported yet
    current: bool
    # A SIGSTOP we sent it (a stop request to a launched group's thread, a
    # user's interrupt) is still queued in it, to be swallowed when it
    # shows up: /proc lists it among the thread's pending signals.
    owes_our_sigstop: bool = False


@dataclass(frozen=True)
class ThreadNote:
    """Something that happened to a thread without stopping the program."""

    kind: str  # "new" or "exited"
    tid: int
    detail: str


class _CutShort(NamedTuple):
    """A blocking syscall our stop request cut short (its exit stop, not
    reported), which the kernel runs again as the thread resumes."""

    number: int  # the number its restart's entry shows (restart_syscall for a restart block)
    ip: int  # after its `syscall` instruction: the restart executes that one again
    exit: ptrace.SyscallInfo  # its exit (-ERESTART*), reported if it turns out not to restart at once


class _Thread:
    __slots__ = ("tracee", "state", "pending", "pending_breakpoint", "halt_requested", "restarting",
                 "exit_first", "replayed")

    def __init__(self, tracee: Tracee, state: str) -> None:
        self.tracee = tracee
        self.state = state
        self.pending: Stop | None = None
        # The int3 address a pending breakpoint stop was ours at (pc was
        # already moved back onto it), to drop the stop if it is removed.
        self.pending_breakpoint: int | None = None
        # A stop request (INTERRUPT or SIGSTOP) whose stop has not shown up.
        self.halt_requested = False
        # Our stop request cut a blocking syscall short: the kernel restarts
        # it, and that second syscall-entry stop is no news either.
        self.restarting: _CutShort | None = None
        # That call's exit, to report before ``pending``: a signal (or
        # another call) came first, so the call returned -ERESTART* after all.
        self.exit_first: ptrace.SyscallInfo | None = None
        # What syscall_info answers while that exit is the reported stop
        # (the thread stands in the stop that came after it).
        self.replayed: ptrace.SyscallInfo | None = None

    @property
    def tid(self) -> int:
        return self.tracee.pid


class ThreadGroup:
    """All-stop control of every thread of ``leader``'s process."""

    def __init__(self, leader: Tracee, *, seized: bool | None = None) -> None:
        self.leader = leader
        self.pid = leader.pid
        # Launched tracees are TRACEME'd (INTERRUPT is for seized ones only).
        self.seized = (not leader.launched) if seized is None else seized
        self._threads: dict[int, _Thread] = {leader.pid: _Thread(leader, STOPPED)}
        self.current = leader.pid
        self._pending_order: list[int] = []  # tids with a pending stop, oldest first
        self._children: dict[int, int] = {}  # a forked child's first stop, collected early
        self._notes: list[ThreadNote] = []
        self._syscalls = False
        self._dying = False  # an exit that ends the process was reported
        # A user's interrupt (a SIGSTOP) not yet reported, and the thread it
        # went to: see interrupt().
        self._interrupt_pending = False
        self._interrupted_tid = leader.pid
        # The thread a step is running, while it runs (others are stopped).
        self._stepping: int | None = None
        try:
            self._pgid = os.getpgid(leader.pid)
        except OSError:
            self._pgid = 0

    @classmethod
    def adopt_attached(cls, leader: Tracee, attached: AttachedThreads) -> "ThreadGroup":
        """The threads ``attach`` seized and stopped; the group owns them from
        now on (their signals to re-deliver become pending signals)."""
        group = cls(leader, seized=True)
        for tid, sig in sorted(attached.stopped.items()):
            if tid == leader.pid:
                continue
            try:
                tracee = leader.thread(tid)
            except OSError:
                continue  # died stopped (a SIGKILL): reaped by the next wait
            tracee.pending_signal = sig
            group._threads[tid] = _Thread(tracee, STOPPED)
        attached.stopped.clear()
        return group

    # -- what callers read -------------------------------------------------------
    def threads(self) -> tuple[ThreadInfo, ...]:
        return tuple(ThreadInfo(t.tid, t.state, t.pending or t.tracee.last_stop, t.pending is not None,
                                t.tid == self.current,
                                (t.halt_requested and not self.seized)
                                or (self._interrupt_pending and t.tid == self._interrupted_tid))
                     for _, t in sorted(self._threads.items()))

    def tids(self) -> tuple[int, ...]:
        return tuple(sorted(self._threads))

    def tracee(self, tid: int | None = None) -> Tracee:
        """The Tracee of thread ``tid`` (the current one by default)."""
        return self._thread(self.current if tid is None else tid).tracee

    def memory_holder(self) -> Tracee:
        """A thread whose /proc files show the process's memory, maps, auxv
        and open files: the leader, unless it left before the others (main
        calling pthread_exit: a zombie leader shows none of them), then the
        current thread, or any other still here."""
        leader = self._threads.get(self.pid)
        if leader is None or leader.state != EXITING:
            return self.leader
        for tid in [self.current, *sorted(self._threads)]:
            thread = self._threads.get(tid)
            if thread is not None and tid != self.pid and thread.state != EXITING:
                return thread.tracee
        return self.leader

    def registers_raw(self, tid: int | None = None) -> bytes:
        return self.tracee(tid).regs_raw()

    def syscall_info(self) -> ptrace.SyscallInfo:
        """The current thread's syscall stop, as PTRACE_GET_SYSCALL_INFO
        says, or the exit of a call our stop request cut short that it
        stands reported at (see _cut_short_call_ended)."""
        thread = self._thread(self.current)
        replayed = thread.replayed
        return thread.tracee.syscall_info() if replayed is None else replayed

    def select(self, tid: int) -> None:
        thread = self._thread(tid)
        if thread.state != STOPPED:
            raise UsageError(f"thread {tid} is {thread.state}")
        self.current = tid

    def forget_code(self) -> None:
        for thread in self._threads.values():
            thread.tracee.forget_code()

    def take_notes(self) -> list[ThreadNote]:
        """Threads born and gone since the last call, oldest first."""
        notes, self._notes = self._notes, []
        return notes

    def _thread(self, tid: int) -> _Thread:
        thread = self._threads.get(tid)
        if thread is None:
            raise UsageError(f"no thread {tid} (threads: {', '.join(map(str, sorted(self._threads)))})")
        return thread

    # -- breakpoints (memory is shared: one int3 table) --------------------------
    def insert_breakpoint(self, addr: int) -> bool:
        return self.leader.insert_breakpoint(addr)

    def remove_breakpoint(self, addr: int) -> None:
        self.leader.remove_breakpoint(addr)

    # -- running -----------------------------------------------------------------
    def resume_all(self, syscalls: bool) -> tuple[int, Stop]:
        """Run every thread to the next stop worth reporting; every thread is
        stopped again on return and the one that stopped is current. A stop
        left pending by an earlier one is reported first, nothing run."""
        if not self.leader.alive:
            raise TargetError(f"{self.pid}: the process is gone")
        self._syscalls = syscalls
        if len(self._threads) == 1 and not self._pending_order and not self._dying:
            leader = self._threads.get(self.pid)
            if leader is not None and leader.state == STOPPED and self.current == self.pid \
                    and not self._on_breakpoint(leader):
                # One thread, off any int3, nothing pending: what most stops
                # of a continue are, without the general bookkeeping.
                leader.tracee.let_run(syscalls=syscalls)
                leader.state = RUNNING
                tid, status = self._wait_any()
                if tid == self.pid and status == _SYSCALL_STOP \
                        and not (leader.halt_requested or leader.restarting is not None):
                    leader.state = STOPPED  # news, as _settle would say
                    return tid, leader.tracee.classify_status(status)
                return self._report_first(tid, status)
        reported = self._next_pending()
        if reported is not None:
            return reported
        # Off our int3s first, one thread at a time, all others stopped
        # (not when the program is ending: no thread runs its code again).
        order = [] if self._dying else \
            [self.current] + [tid for tid in sorted(self._threads) if tid != self.current]
        for tid in order:
            thread = self._threads.get(tid)
            if thread is None or thread.state != STOPPED or not self._on_breakpoint(thread):
                continue
            stop = self._step(thread)
            if thread.state == STOPPED and tid in self._threads and stop.kind is not StopKind.STEP:
                self._keep_pending(thread, stop)
        reported = self._next_pending()
        if reported is not None:
            return reported
        for thread in list(self._threads.values()):
            if thread.state == STOPPED:
                thread.tracee.let_run(syscalls=syscalls)
                thread.state = RUNNING
        return self._report_first(*self._wait_any())

    def _report_first(self, tid: int, status: int) -> tuple[int, Stop]:
        """From the first status after resuming every thread: take statuses
        until one is news, stop the others, and report it."""
        while True:
            stop = self._settle(tid, status, running=True)
            if stop is not None:
                break
            tid, status = self._wait_any()
        ending_already = self._dying
        self._halt_others(tid)
        if self._dying and not ending_already:
            # Another thread ended the program (exit_group, a fatal signal)
            # while the others stopped: its SIGKILL took this one out of its
            # stop, which is no news any more; the ending is (pending).
            thread = self._threads.get(tid)
            if thread is not None and thread.state == STOPPED:
                thread.state = RUNNING  # on its way out: its end is collected as it comes
            reported = self._next_pending()
            if reported is not None:
                return reported
        if tid not in self._threads or self._exec_took_over(tid):
            # Another thread's execve ended this one while the others
            # stopped. The leader's pid lives on as the execing thread's:
            # the old leader's stop, reported now, would be read in the new
            # program (its registers, its syscall) and come before the exec
            # that ends the others' calls, the winner's execve with them
            # (closed `= ?`, its return then matched to nothing). The exec
            # is the news (pending).
            reported = self._next_pending()
            if reported is not None:
                return reported
        if tid in self._threads:
            self.current = tid
        return tid, stop

    def _exec_took_over(self, tid: int) -> bool:
        """Whether ``tid`` is the pid and an exec event came for it (kept
        pending) after the stop being reported: that stop was the old
        leader's, a thread the exec ended."""
        if tid != self.pid:
            return False
        pending = self._threads[tid].pending
        return pending is not None and pending.kind is StopKind.EVENT and pending.event == ptrace.EVENT_EXEC

    def step_current(self, pc: int | None = None, kind: int | None = None) -> Stop:
        """One instruction of the current thread, the others kept stopped. A
        thread created meanwhile stays stopped too. When the step ended the
        thread (its exit event; ``pid`` names it) another thread is current.
        ``pc`` and ``kind``: as Tracee.step takes them (the hot path)."""
        thread = self._threads.get(self.current)
        if thread is None:
            thread = self._thread(self.current)
        if thread.pending is not None:  # it stopped for something not reported yet
            self._pending_order.remove(thread.tid)
            return self._take_pending(thread)
        return self._step(thread, pc, kind)

    def interrupt(self) -> None:
        """From any thread: a SIGSTOP ends a resume in progress, reported as
        news even when it meets a halt of ours on the way. It goes to the
        leader, or to the thread a step is running: the others are stopped,
        and that step may never end by itself (a syscall our halt cut short
        restarts inside it, and blocks again)."""
        stepping = self._stepping
        self._interrupted_tid = self.pid if stepping is None else stepping
        self._interrupt_pending = True
        if stepping is None:
            self.leader.interrupt()
            return
        try:
            ptrace.tgkill(self.pid, stepping, _signal.SIGSTOP)
        except ProcessLookupError:
            pass  # gone: its end is what the step reports

    def stop_all(self) -> None:
        """Stop every thread still running (after an interrupted resume)."""
        self._halt_others(None)

    def _on_breakpoint(self, thread: _Thread) -> bool:
        """Whether resuming ``thread`` must first execute the instruction under
        an int3: the current thread stands on one, or another one stopped
        there by hitting it (one merely stopped there will hit it, rightly)."""
        try:
            if thread.tracee.pc not in thread.tracee.breakpoints:
                return False
        except ptrace.PtraceError:
            return False
        last = thread.tracee.last_stop
        return thread.tid == self.current or (last is not None and last.kind is StopKind.BREAKPOINT)

    def _step(self, thread: _Thread, pc: int | None = None, kind: int | None = None) -> Stop:
        """Single-step one thread, the others stopped: our stop request and a
        clone on the way are dealt with here, not reported."""
        self._stepping = thread.tid  # where interrupt() sends its SIGSTOP meanwhile
        try:
            return self._step_thread(thread, pc, kind)
        finally:
            self._stepping = None

    def _interrupt_behind(self, thread: _Thread, stop: Stop) -> Stop:
        """A step the user's interrupt was sent into that ended some other
        way first: a blocking syscall our SIGSTOP cut short reports the
        step's own trap at the syscall's exit, the signal still queued.
        Collected now, it is the step's end (a pending signal is delivered
        before any instruction runs); left queued, it would end the user's
        next motion."""
        if not stop.alive or (stop.kind is StopKind.SIGNAL and stop.signal == _signal.SIGSTOP):
            return stop
        if not sigstop_pending(thread.tid):
            return stop
        return thread.tracee.step()

    def _halt_cut_the_step_short(self, thread: _Thread, stop: Stop) -> bool:
        """A stepped syscall that returned -ERESTART* at once because our
        stop request (a SIGSTOP: the thread had stopped for something else
        first) was still queued for the thread. Once the request is taken
        the kernel runs the call again, as it would have without us: the
        step goes on to do that (and blocks, for a read nobody answers,
        until an interrupt) rather than end with the call not made."""
        if stop.kind is not StopKind.STEP or not thread.halt_requested or self.seized:
            return False
        try:
            raw = thread.tracee.regs_raw()
        except ptrace.PtraceError:
            return False
        number = _signed_word(raw, _ORIG_RAX)
        result = _signed_word(raw, _RAX)
        return number >= 0 and result in _RESTART_ERRORS and sigstop_pending(thread.tid)

    def _step_thread(self, thread: _Thread, pc: int | None, kind: int | None) -> Stop:
        tracee = thread.tracee
        # A syscall our stop request cut short restarts within this step,
        # with no entry stop: the thread's next entry stop is a new call.
        thread.restarting = None
        thread.replayed = None
        try:
            stop = tracee.step(pc, kind)
        except ptrace.PtraceError as err:
            if err.errno != errno.ESRCH:
                raise
            # Not in its stop any more: a SIGKILL from outside woke it to die.
            stop = tracee.classify_status(ptrace.waitpid(thread.tid)[1])
        if (stop is tracee.plain_step or stop is tracee.syscall_step) \
                and not (self._interrupt_pending or thread.halt_requested):
            return stop  # by far the most common step: nothing to look at
        finishing_clone = False
        while True:
            if self._interrupt_pending and thread.tid == self._interrupted_tid:
                stop = self._interrupt_behind(thread, stop)
                if stop.kind is StopKind.SIGNAL and stop.signal == _signal.SIGSTOP:
                    # The user's interrupt ended the step (a halt of ours
                    # queued with it is the same one signal, delivered once).
                    self._interrupt_pending = False
                    thread.halt_requested = False
                    return stop
            if self._halt_cut_the_step_short(thread, stop):
                stop = tracee.step()  # the request: delivered before any instruction runs
                continue
            if self._is_halt(thread, stop):
                thread.halt_requested = False
                stop = tracee.step()  # the request was still queued: it took the step's place
            elif stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_CLONE:
                self._adopt_clone(thread, keep_stopped=True)
                finishing_clone = True
                stop = tracee.step()  # stopped inside the syscall: one more step only completes it
            else:
                break
        if finishing_clone and stop.kind is StopKind.STEP:
            # The `syscall` saved our trap flag in r11, as any stepped one does.
            fixed = untrapped_r11(tracee.regs_raw())
            if fixed is not None:
                tracee.set_regs_raw(fixed)
            return stop
        if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT and not self._exit_is_news(thread):
            self._let_die(thread, wait=True)
            if thread.tid == self.current:
                self.current = next((tid for tid, t in sorted(self._threads.items()) if t.state == STOPPED),
                                    self.pid)
            return stop
        if not stop.alive:
            if thread.tid != self.pid:  # killed with the process; the leader's end comes last
                self._threads.pop(thread.tid, None)
                self._forget_pending(thread.tid)
                self._notes.append(ThreadNote("exited", thread.tid, f"thread {thread.tid} killed"))
            self._gone(thread, stop)
        elif stop.kind is StopKind.EVENT:
            self._event_news(thread, stop)
        return stop

    # -- one status ----------------------------------------------------------------
    def _settle(self, tid: int, status: int, *, running: bool) -> Stop | None:
        """Take one waitpid status. Returns the stop when it is news; while
        ``running`` a thread whose stop is not news runs on, otherwise it
        stays stopped and its news is kept pending."""
        thread = self._threads.get(tid)
        if thread is None:
            self._stranger(tid, status, running)
            return None
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            if tid != self.pid:
                thread.tracee.classify_status(status)  # closes its memory
                del self._threads[tid]
                self._forget_pending(tid)
                self._notes.append(ThreadNote("exited", tid, f"thread {tid} exited"))
                return None
            stop = thread.tracee.classify_status(status)
            self._gone(thread, stop)
            return self._news(thread, stop, running)
        stop = thread.tracee.classify_status(status)
        if thread.state == STARTING:
            thread.state = STOPPED  # its first stop, whatever it says
            if running:
                self._run_on(thread)
            return None
        halted = self._is_halt(thread, stop) or self._syscall_cut_short(thread, stop)
        if self._interrupt_pending and tid == self._interrupted_tid and stop.kind is StopKind.SIGNAL \
                and stop.signal == _signal.SIGSTOP and not (halted and sigstop_pending(tid)):
            # The user's interrupt. A launched group halts threads with
            # SIGSTOPs too: one of ours still pending for the leader and the
            # interrupt's are one signal, delivered once, and taken for the
            # halt the interrupt was lost (a spawning program ran on for ever).
            # A halt with another SIGSTOP still pending is only the halt.
            self._interrupt_pending = False
            thread.halt_requested = False
            return self._news(thread, stop, running)
        if self.seized:
            # Any ptrace stop ends a queued INTERRUPT (the kernel's
            # ptrace_stop: "any trap clears pending STOP trap"); waiting
            # for its EVENT_STOP after a syscall stop would wait for ever.
            thread.halt_requested = False
        if halted:
            if stop.kind is not StopKind.SYSCALL:
                thread.halt_requested = False
            if running:
                self._run_on(thread)
            else:
                thread.state = STOPPED
            return None
        if thread.restarting is not None and stop.kind in _ENDS_A_CUT_SHORT_CALL:
            return self._cut_short_call_ended(thread, stop, running)
        if stop.kind is StopKind.EVENT:
            if stop.event == ptrace.EVENT_CLONE:
                self._adopt_clone(thread, keep_stopped=not running)
                if running:
                    self._run_on(thread)
                else:
                    thread.state = STOPPED
                return None
            if stop.event == ptrace.EVENT_EXIT and not self._exit_is_news(thread):
                self._let_die(thread, wait=False)
                return None
            self._event_news(thread, stop)
        return self._news(thread, stop, running)

    def _news(self, thread: _Thread, stop: Stop, running: bool) -> Stop | None:
        if running:
            thread.state = STOPPED if stop.alive else thread.state
            return stop
        self._keep_pending(thread, stop)
        return None

    def _keep_pending(self, thread: _Thread, stop: Stop) -> None:
        thread.state = STOPPED if stop.alive else thread.state
        thread.pending = stop
        thread.pending_breakpoint = None
        if stop.kind is StopKind.BREAKPOINT:
            pc = thread.tracee.pc
            if pc in thread.tracee.breakpoints:
                thread.pending_breakpoint = pc
        self._pending_order.append(thread.tid)

    def _take_pending(self, thread: _Thread) -> Stop:
        """Hand out ``thread``'s pending stop (its tid taken out of the
        order). A syscall exit to report first goes first: the stop that
        came after it stays pending, next in line."""
        exit_info = thread.exit_first
        if exit_info is not None:
            thread.exit_first = None
            thread.replayed = exit_info
            self._pending_order.insert(0, thread.tid)
            return thread.tracee.syscall_stop
        thread.replayed = None
        stop, thread.pending = thread.pending, None
        return stop

    def _next_pending(self) -> tuple[int, Stop] | None:
        while self._pending_order:
            tid = self._pending_order.pop(0)
            thread = self._threads.get(tid)
            if thread is None or thread.pending is None:
                continue
            stop = self._take_pending(thread)
            if thread.pending_breakpoint is not None \
                    and thread.pending_breakpoint not in thread.tracee.breakpoints:
                continue  # removed since: pc is already back on the instruction
            if stop.kind is StopKind.SYSCALL and not self._syscalls:
                continue  # collected while syscalls were watched; not wanted now
            self.current = tid
            return tid, stop
        return None

    def _forget_pending(self, tid: int) -> None:
        if tid in self._pending_order:
            self._pending_order.remove(tid)

    def _is_halt(self, thread: _Thread, stop: Stop) -> bool:
        """The stop our stop request causes (INTERRUPT: an EVENT_STOP with
        SIGTRAP; tgkill: a SIGSTOP signal-delivery-stop)."""
        if self.seized:
            # Only we INTERRUPT, and one sent to a thread already stopped
            # (its stop not collected yet) stays queued for the next trap
            # point: such an EVENT_STOP is ours even when no longer awaited.
            return stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_STOP \
                and stop.signal == _signal.SIGTRAP
        if not thread.halt_requested:
            return False
        return stop.kind is StopKind.SIGNAL and stop.signal == _signal.SIGSTOP

    def _syscall_cut_short(self, thread: _Thread, stop: Stop) -> bool:
        """A syscall stop that only our stop request caused: the exit of a
        blocking syscall it interrupted (-ERESTART*), or the entry of that
        syscall restarting. Reported, each would stop the other threads
        again, interrupting their syscalls in turn: a ping-pong without end
        when every thread waits in one and syscalls are watched."""
        if stop.kind is not StopKind.SYSCALL or not (thread.halt_requested or thread.restarting is not None):
            return False
        try:
            info = thread.tracee.syscall_info()
        except ptrace.PtraceError:
            return False
        cut = thread.restarting
        if cut is not None and info.op == ptrace.SYSCALL_INFO_ENTRY:
            # The restart runs the same `syscall` instruction again. Any
            # other entry is a call of its own (_cut_short_call_ended).
            if info.instruction_pointer != cut.ip or info.number != cut.number:
                return False
            thread.restarting = None
            return True
        thread.restarting = None
        if info.op == ptrace.SYSCALL_INFO_EXIT and thread.halt_requested \
                and info.return_value in _RESTART_ERRORS:
            if info.return_value == _ERESTART_RESTARTBLOCK:
                number = _RESTART_SYSCALL
            else:
                try:
                    raw = thread.tracee.regs_raw()
                except ptrace.PtraceError:
                    return False
                number = _signed_word(raw, _ORIG_RAX)
            thread.restarting = _CutShort(number, info.instruction_pointer, info)
            return True
        return False

    def _cut_short_call_ended(self, thread: _Thread, stop: Stop, running: bool) -> Stop | None:
        """``thread`` was to run again a syscall our stop request cut short,
        and stopped for something else first: a signal (from outside, from
        another thread, a timer's, queued while we held it stopped: its
        handler runs, and the call fails with EINTR or runs again after it,
        as SA_RESTART says), or another call's entry. The call returned
        -ERESTART* after all, as strace shows it: its exit is news, before
        this stop (kept pending); a run of it again is a call of its own."""
        cut, thread.restarting = thread.restarting, None
        if not self._syscalls:
            return self._news(thread, stop, running)
        self._keep_pending(thread, stop)
        thread.exit_first = cut.exit
        if not running:
            return None
        self._pending_order.pop()  # the tid _keep_pending put last: _take_pending puts it first
        return self._take_pending(thread)

    def _run_on(self, thread: _Thread) -> None:
        thread.tracee.let_run(syscalls=self._syscalls)
        thread.state = RUNNING

    def _stranger(self, tid: int, status: int, running: bool) -> None:
        """A status from a task we have no record of."""
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return  # a thread forgotten at an exec, reaped at last
        if not os.path.exists(f"/proc/{self.pid}/task/{tid}"):
            self._children[tid] = status  # a forked child, before its parent's event
            return
        # A new thread whose first stop beat its creator's clone event.
        thread = self._new_thread(tid, STOPPED)
        if thread is not None and running:
            self._run_on(thread)

    def _new_thread(self, tid: int, state: str) -> _Thread | None:
        try:
            tracee = self.leader.thread(tid)
        except OSError:
            return None
        thread = _Thread(tracee, state)
        self._threads[tid] = thread
        self._notes.append(ThreadNote("new", tid, f"new thread {tid}"))
        return thread

    def _adopt_clone(self, parent: _Thread, *, keep_stopped: bool) -> None:
        """``parent`` stopped at its clone event. The new thread is traced
        already (TRACECLONE) and its first stop is on its way, unless a wait
        for any thread got it first."""
        try:
            tid = ptrace.get_event_msg(parent.tid)
        except ptrace.PtraceError:
            return
        if tid in self._threads:
            return
        thread = self._new_thread(tid, STARTING)
        if thread is None or not keep_stopped:
            return
        # Scheduler locking: wait for this one thread's first stop, no one else's.
        _, status = ptrace.waitpid(tid)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._settle(tid, status, running=False)
            return
        thread.tracee.classify_status(status)
        thread.state = STOPPED
        # A copy of its stepped creator's registers inside the `syscall`: r11
        # holds our trap flag as the creator's does (see _step), unless the
        # creator ran (no flag then).
        fixed = untrapped_r11(thread.tracee.regs_raw())
        if fixed is not None:
            thread.tracee.set_regs_raw(fixed)

    def _exit_is_news(self, thread: _Thread) -> bool:
        """Whether a thread's exit event is the program's ending (exit_group
        called by it, or the first thread to die of a signal) rather than one
        thread leaving: its own exit(), or another's exit_group or execve
        ending it."""
        try:
            status = ptrace.get_event_msg(thread.tid)
            raw = thread.tracee.regs_raw()
        except ptrace.PtraceError:
            return False
        number = _signed_word(raw, _ORIG_RAX)
        news = not self._dying and (number == _EXIT_GROUP or
                                    (os.WIFSIGNALED(status) and os.WTERMSIG(status) != _signal.SIGKILL))
        if news:
            self._process_ending()
        return news

    def _process_ending(self) -> None:
        """The program is on its way out: what other threads stopped for
        before is not news any more (they end without running again)."""
        self._dying = True
        for thread in self._threads.values():
            thread.pending = None
            thread.exit_first = thread.replayed = None
        self._pending_order.clear()

    def _let_die(self, thread: _Thread, *, wait: bool) -> None:
        """Resume a thread past its exit event; ``wait``: reap it now."""
        self._forget_pending(thread.tid)
        thread.pending = None
        try:
            ptrace.cont(thread.tid, 0)
        except ptrace.PtraceError:
            pass
        thread.state = EXITING
        if wait and thread.tid != self.pid:
            self._reap(thread)

    def _reap(self, thread: _Thread) -> None:
        """Wait for an EXITING thread's end (it runs nothing of its own)."""
        while thread.tid in self._threads:
            try:
                _, status = ptrace.waitpid(thread.tid)
            except ChildProcessError:
                self._threads.pop(thread.tid, None)
                return
            self._settle(thread.tid, status, running=True)

    def _event_news(self, thread: _Thread, stop: Stop) -> None:
        """What an event reported to callers changes here first."""
        if stop.event == ptrace.EVENT_EXEC:
            # Every other thread is gone; the execing one took the leader's
            # pid, with whatever stop request of ours it still had queued.
            try:
                execer = self._threads.get(ptrace.get_event_msg(thread.tid), thread)
            except ptrace.PtraceError:
                execer = thread
            thread.halt_requested = execer.halt_requested
            # Not the old leader's: a restarting flag of its would take the
            # new program's first syscall entry for its restart.
            thread.restarting = execer.restarting
            thread.exit_first = thread.replayed = None
            for tid in [t for t in self._threads if t != thread.tid]:
                del self._threads[tid]
                self._forget_pending(tid)
                self._notes.append(ThreadNote("exited", tid, f"thread {tid} ended by execve"))
            thread.state = STOPPED
            self._dying = False
        elif stop.event in (ptrace.EVENT_FORK, ptrace.EVENT_VFORK):
            try:
                child = ptrace.get_event_msg(thread.tid)
            except ptrace.PtraceError:
                return
            thread.tracee.release_child(child, shares_memory=stop.event == ptrace.EVENT_VFORK,
                                        first_status=self._children.pop(child, None))

    def _gone(self, thread: _Thread, stop: Stop) -> None:
        """The leader's exit status: the process is gone, every thread with it."""
        if thread.tid == self.pid:
            for tid in [t for t in self._threads if t != self.pid]:
                del self._threads[tid]
            self._pending_order.clear()
            thread.state = EXITING

    def _halt_others(self, event_tid: int | None) -> None:
        """Stop every running thread but ``event_tid``'s; real events met on
        the way are kept pending."""
        if len(self._threads) == 1 and event_tid in self._threads:
            return  # one thread, the one that stopped (a continue's every stop)
        for thread in list(self._threads.values()):
            if thread.state == RUNNING and thread.tid != event_tid and not thread.halt_requested:
                self._request_halt(thread)
        # Dying threads too: at a stop, every thread left is one we can show.
        # Not the leader once the program is ending: its status waits for the
        # last thread, and killed by another's exit_group it may report no
        # exit event at all (waiting for it would wait for ever).
        while any(t.tid != event_tid and (t.tid != self.pid or not self._dying) and
                  (t.state in (RUNNING, STARTING) or (t.state == EXITING and t.tid != self.pid))
                  for t in self._threads.values()):
            tid, status = self._wait_any()
            self._settle(tid, status, running=False)

    def _request_halt(self, thread: _Thread) -> None:
        try:
            if self.seized:
                ptrace.interrupt(thread.tid)
            else:
                ptrace.tgkill(self.pid, thread.tid, _signal.SIGSTOP)
        except (ptrace.PtraceError, ProcessLookupError):
            pass  # exiting: its exit status is what comes
        thread.halt_requested = True

    def _wait_any(self) -> tuple[int, int]:
        """The next status of any task of the process (its process group:
        the tracer's other children are not ours to reap)."""
        ask_until = time.monotonic() + _ASK_SECONDS
        while True:
            target = -self._pgid if self._pgid > 0 else -1
            try:
                if time.monotonic() < ask_until:
                    tid, status = os.waitpid(target, _WAIT_FLAGS | os.WNOHANG)
                    if tid:
                        return tid, status
                    os.sched_yield()
                    continue
                return os.waitpid(target, _WAIT_FLAGS)
            except InterruptedError:
                continue
            except ChildProcessError:
                # The program moved to a process group of its own (setsid).
                try:
                    pgid = os.getpgid(self.pid)
                except OSError:
                    pgid = 0
                if pgid == self._pgid or self._pgid == 0:
                    if self._pgid == 0:
                        raise TargetError(f"{self.pid}: no traced thread left to wait for") from None
                    pgid = 0
                self._pgid = pgid

    def poll_death(self) -> Stop | None:
        """Without blocking: what a SIGKILL from outside did to the program
        while it stood stopped (nothing waits for it until the next resume).
        Threads it ended are reaped; returns the leader's exit event or end
        once they came (the leader's end waits for the last thread), else
        None: ask again."""
        for tid in [t for t in self._threads if t != self.pid]:
            try:
                wpid, status = os.waitpid(tid, os.WNOHANG | ptrace.WALL)
            except ChildProcessError:
                self._threads.pop(tid, None)
                self._forget_pending(tid)
                continue
            if wpid:
                self._settle(tid, status, running=False)
        try:
            wpid, status = os.waitpid(self.pid, os.WNOHANG | ptrace.WALL)
        except ChildProcessError:
            return None
        if not wpid:
            return None
        stop = self.leader.classify_status(status)
        self._process_ending()
        if not stop.alive:
            self._gone(self._threads[self.pid], stop)
        self.current = self.pid
        return stop

    # -- ending ----------------------------------------------------------------------
    def kill(self) -> None:
        """End the process and reap every thread (a traced thread's exit
        status waits for us, and the leader's waits for all of them)."""
        if not self.leader.alive:
            return
        try:
            os.kill(self.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        for thread in self._threads.values():
            try:
                ptrace.cont(thread.tid, 0)  # one at its exit event dies only once resumed
            except ptrace.PtraceError:
                pass
        while self.leader.alive:
            try:
                tid, status = self._wait_any()
            except TargetError:
                break
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                thread = self._threads.pop(tid, None)
                if thread is not None:
                    thread.tracee.classify_status(status)
                continue
            try:
                ptrace.cont(tid, 0)
            except ptrace.PtraceError:
                pass
        self._threads.clear()
        self._pending_order.clear()
        self.leader.reclaim_terminal()

    def detach(self) -> None:
        """Let every thread run on as before we came: our int3s out, signals
        that were on their way delivered."""
        if not self.leader.alive:
            return
        self.stop_all()
        for thread in [t for t in self._threads.values() if t.state == EXITING and t.tid != self.pid]:
            self._reap(thread)
        for addr in list(self.leader.breakpoints):
            self.leader.remove_breakpoint(addr)
        for thread in sorted(self._threads.values(), key=lambda t: t.tid == self.pid):
            pending = thread.pending
            if pending is not None and pending.kind is StopKind.SIGNAL and not thread.tracee.pending_signal:
                thread.tracee.pending_signal = pending.signal
            thread.tracee.detach()
        self._threads.clear()
        self._pending_order.clear()

    def close(self) -> None:
        if self.leader.launched:
            self.kill()
        else:
            self.detach()


class GroupTarget:
    """A thread group as one target, for an engine written for one Tracee:
    what a thread owns (registers, its stop, the signal it is to receive,
    the event message, its syscall) is the current thread's; what the
    process owns (pid, memory, maps, the int3 table, the terminal, its
    end) is the leader's or the group's. Stepping steps the current thread
    alone; resuming resumes every thread and makes the one that stopped
    current."""

    arch = X86_64
    sysroot = ""
    interrupt_signal = _signal.SIGSTOP
    exit_event = True  # PTRACE_EVENT_EXIT stops the process before it ends

    def __init__(self, group: ThreadGroup) -> None:
        self.group = group
        self.leader = group.leader

    @property
    def current(self) -> Tracee:
        return self.group.tracee()

    # -- the process ---------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.group.pid

    @property
    def current_tid(self) -> int:
        return self.current.pid

    @property
    def maps_pid(self) -> int:
        return self.group.pid

    @property
    def launched(self) -> bool:
        return self.leader.launched

    @property
    def alive(self) -> bool:
        return self.leader.alive

    @property
    def breakpoints(self) -> dict[int, int]:
        return self.leader.breakpoints

    @property
    def memory(self):
        return self.group.memory_holder().memory

    @property
    def terminal_fd(self) -> int | None:
        return self.leader.terminal_fd

    @terminal_fd.setter
    def terminal_fd(self, value: int | None) -> None:
        self.leader.terminal_fd = value

    def insert_breakpoint(self, addr: int) -> bool:
        return self.leader.insert_breakpoint(addr)

    def remove_breakpoint(self, addr: int) -> None:
        self.leader.remove_breakpoint(addr)

    def revalidate_breakpoints(self) -> None:
        self.leader.revalidate_breakpoints()

    def original_bytes(self, addr: int, data: bytes) -> bytes:
        return self.leader.original_bytes(addr, data)

    def read_memory(self, addr: int, size: int) -> bytes | None:
        if not self.leader.alive:
            return None
        data = self.group.memory_holder().memory.read(addr, size)
        return None if data is None else self.leader.original_bytes(addr, data)

    def write_memory(self, addr: int, data: bytes) -> None:
        self.group.memory_holder().memory.write(addr, data)

    def maps_text(self) -> str:
        try:
            with open(f"/proc/{self.group.memory_holder().pid}/maps", "rb") as handle:
                return handle.read().decode("utf-8", "surrogateescape")
        except OSError:
            return ""

    def fd_path(self, fd: int) -> str | None:
        try:
            return os.readlink(f"/proc/{self.group.memory_holder().pid}/fd/{fd}")
        except OSError:
            return None

    def read_proc(self, name: str) -> bytes | None:
        return self.group.memory_holder().read_proc(name)

    def threads(self) -> list[int]:
        return self.leader.threads()

    def interrupt(self) -> None:
        """From any thread: a resume in progress ends at the leader's SIGSTOP
        (signal-delivery-stop), reported like any thread's stop."""
        self.group.interrupt()

    def left_stop(self) -> bool:
        # The leader, unless it left its stop on its own (main's pthread_exit,
        # or the exit_group being reported) to wait as a zombie for the
        # others, where poll_stop has nothing to say: then the thread we
        # stand in. (Right after a SIGKILL the leader is the surer witness:
        # the current thread's registers still read now and then.)
        group = self.group
        leader = group._threads.get(group.pid)
        if group._dying or leader is None or leader.state == EXITING:
            return self.current.left_stop()
        return self.leader.left_stop()

    def poll_stop(self) -> Stop | None:
        return self.group.poll_death()

    def thread_count(self) -> int:
        return len(self.group.tids())

    def untraced_threads(self) -> int:
        """None: every thread is traced (TRACECLONE traces a new one before it
        runs), so an int3 any of them hits is reported, never its death."""
        return 0

    def catches(self, signal: int, tid: int) -> bool | None:
        return signal_caught(self.pid, tid, signal)

    def restore_original_bytes(self) -> None:
        self.leader.restore_original_bytes()

    def reclaim_terminal(self) -> None:
        self.leader.reclaim_terminal()

    def terminal_signal(self, sig: int) -> bool:
        return self.leader.terminal_signal(sig)

    def forget_code(self) -> None:
        """Code is the process's: every thread's decoded-instruction cache goes."""
        self.group.forget_code()

    def kill(self) -> None:
        self.group.kill()

    def detach(self) -> None:
        self.group.detach()

    def close(self) -> None:
        self.group.close()

    # -- the current thread --------------------------------------------------------
    def regs_raw(self) -> bytes:
        return self.current.regs_raw()

    registers_raw = regs_raw

    def set_regs_raw(self, raw: bytes) -> None:
        self.current.set_regs_raw(raw)

    set_registers_raw = set_regs_raw

    def adopt_registers(self, raw: bytes | None) -> None:
        self.current.adopt_registers(raw)

    @property
    def pc(self) -> int:
        return self.current.pc

    @property
    def sp(self) -> int:
        return self.current.sp

    def set_pc(self, value: int) -> None:
        self.current.set_pc(value)

    def tls_base(self) -> int | None:
        return self.current.tls_base()

    @property
    def pending_signal(self) -> int:
        return self.current.pending_signal

    @pending_signal.setter
    def pending_signal(self, value: int) -> None:
        self.current.pending_signal = value

    @property
    def last_stop(self) -> Stop | None:
        return self.current.last_stop

    @property
    def plain_step(self) -> Stop:
        return self.current.plain_step

    @property
    def syscall_step(self) -> Stop:
        return self.current.syscall_step

    def code_kind(self, pc: int) -> int:
        return self.current.code_kind(pc)

    def at_breakpoint(self) -> bool | None:
        return self.current.at_breakpoint()

    def classify_status(self, status: int) -> Stop:
        return self.current.classify_status(status)

    def syscall_info(self) -> ptrace.SyscallInfo:
        return self.group.syscall_info()

    def event_message(self) -> int | None:
        try:
            return ptrace.get_event_msg(self.group.current)
        except ptrace.PtraceError:
            return None

    def finish_execve(self, what: str) -> None:
        self.current.finish_execve(what)

    def release_child(self, child: int, *, shares_memory: bool, first_status: int | None = None) -> None:
        self.current.release_child(child, shares_memory=shares_memory, first_status=first_status)

    def step(self, pc: int | None = None, kind: int | None = None) -> Stop:
        return self.group.step_current(pc, kind)

    def resume(self, *, syscalls: bool) -> Stop:
        return self.group.resume_all(syscalls)[1]
