"""A live process served to gdb (`loaderdbg serve --live PROG` / `--pid
PID`): gdbserver's job, by a tracer that knows startup. gdb gets the
library list from our link_map walk and the auxv ld.so sees, so at AT_ENTRY
of an exec-solib launch it sees ld.so, libc and the memfd copy where its
own reading finds "no shared libraries". No reverse execution: that needs a
recording."""

from __future__ import annotations

import os
import signal as _signal
from concurrent.futures import TimeoutError as FutureTimeout, wait as wait_futures
from typing import Mapping

from loaderdbg.errors import UsageError
from loaderdbg.job_thread import JobThread
from loaderdbg.live import LiveSession
from loaderdbg.serve import monitor
from loaderdbg.serve.target import (DEBUG_DIRECTORY, NO_SIGNALS, SIGINT, SIGTRAP, BytesFile, Interrupted,
                                    ResumeSignals, ServedFile, Stop, linked_path, snapshot_auxv,
                                    split_copy_name)
from loaderdbg.session import Capability, StopReason
from loaderdbg.snapshot import Snapshot
from loaderdbg.targets import ReasonKind

# How often a running continue looks for gdb's Ctrl-C.
POLL_SECONDS = 0.05


def _never() -> bool:
    return False


class LiveTarget:
    reversible = False

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        # Where motions run while the server thread watches gdb's socket
        # for its Ctrl-C (one thread for the session: a stepi is a motion too).
        self._motions = JobThread("serve-motion")
        # What a monitor command that runs the process (goto, until) looks
        # at for gdb's Ctrl-C or its going away: the one of the qRcmd under way.
        self._monitor_interrupted: Interrupted = _never
        self.attached = Capability.ATTACH in session.capabilities
        # gdb steps over an aarch64 watchpoint's instruction itself (its
        # watchpoints trap before the access): a stop after it would show
        # the instruction after the next.
        session.watch_stops_before_access()
        self._snapshot: Snapshot | None = None
        # The current thread and its registers at this stop (a stop reply's),
        # read alone: gdb's stepi needs no more.
        self._here: tuple[int, Mapping[str, int] | None] | None = None
        self._passed_signals: frozenset[int] = frozenset()
        self._program_signals: frozenset[int] | None = None  # None: gdb never said (QProgramSignals)
        # The thread whose signal gdb was told of at the last stop: what it
        # receives on resuming is gdb's to say (None: no signal stop).
        self._signalled: int | None = None
        # Signals gdb gave on this resume to threads that may not stand in a
        # signal-delivery-stop (tid: signal). One stopped in a syscall gets
        # it sent anew by the kernel (a syscall-stop's restart sends it) and
        # stops again for it: that stop is the delivery gdb asked for, not news.
        self._given: dict[int, int] = {}
        self._stopped(session.stop_reason)

    @property
    def pid(self) -> int:
        return self.session.pid

    @property
    def stop(self) -> Stop:
        return self._stop

    @property
    def position(self) -> int:
        return self.session.position

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = self.session.snapshot()
        return self._snapshot

    def auxv(self) -> bytes:
        return snapshot_auxv(self.snapshot())

    def pass_signals(self, signals: frozenset[int]) -> None:
        self._passed_signals = signals

    def program_signals(self, signals: frozenset[int]) -> None:
        self._program_signals = signals

    # -- threads -----------------------------------------------------------------------
    def thread_ids(self) -> tuple[int, ...]:
        """Every thread of the process, the main one first (gdb's thread 1)."""
        if not self.session.alive:
            return (self.pid,)
        tids = sorted(thread.tid for thread in self.session.threads())
        return tuple(sorted(tids, key=lambda tid: tid != self.pid)) or (self.pid,)

    def thread_name(self, tid: int) -> str | None:
        if not self.session.alive:
            return None
        return next((thread.name for thread in self.session.threads() if thread.tid == tid), None)

    @property
    def current_thread(self) -> int:
        """The thread whose registers gdb reads and a step steps: the one
        that reached the stop, unless gdb selected another."""
        if not self.session.alive:
            return self.pid
        return self._current()[0]

    def _forget_stop(self) -> None:
        """What was read at the last stop (the process ran, or gdb chose
        another thread)."""
        self._snapshot = None
        self._here = None

    def _current(self) -> tuple[int, Mapping[str, int] | None]:
        if self._here is None:
            tid, registers = self.session.current_registers()
            self._here = tid, registers.values if registers is not None else None
        return self._here

    def select_thread(self, tid: int) -> bool:
        """gdb's Hg/vCont naming a thread: False if it cannot be (gone, or not ours)."""
        if tid == self.current_thread:
            return True
        if not self.session.alive or Capability.THREADS not in self.session.capabilities:
            return False
        try:
            self.session.select_thread(tid)
        except UsageError:
            return False
        self._forget_stop()  # registers, stack and the next step are that thread's now
        return True

    def registers(self) -> Mapping[str, int] | None:
        if not self.session.alive:
            return None
        return self._current()[1]

    def read_memory(self, addr: int, size: int) -> bytes | None:
        if not self.session.alive:
            return None
        try:
            return self.session.read_memory(addr, size)
        except OverflowError:
            return None  # /proc/PID/mem has no offset past 2**63 (kernel addresses, vsyscall's page)

    def exec_path(self) -> str:
        return self.session.program

    def maps_text(self) -> str:
        try:
            with open(f"/proc/{self.pid}/maps") as handle:
                return handle.read()
        except OSError:
            return ""

    def open_file(self, path: str) -> ServedFile | None:
        """A file the process has mapped, by its path or its file name
        (read through /proc/PID/map_files, so a memfd or a deleted file
        too), and /proc/PID/maps and /proc/PID/cmdline."""
        if path in (f"/proc/{self.pid}/maps", f"/proc/{self.pid}/task/{self.pid}/maps", "/proc/self/maps"):
            return BytesFile(self.maps_text().encode())
        if path in (f"/proc/{self.pid}/cmdline", "/proc/self/cmdline"):
            try:
                with open(f"/proc/{self.pid}/cmdline", "rb") as handle:
                    return BytesFile(handle.read(1 << 20))
            except OSError:
                return None
        path, offset = split_copy_name(path)
        entries = [m for m in self.session.maps() if m.inode and m.path.startswith("/")]
        name = os.path.basename(path)
        # gdb asks for separate debug files under the debug directory by the
        # library's own name: a name match there is not the file it wants.
        by_name = not path.startswith(DEBUG_DIRECTORY)
        try:
            inode = os.stat(path).st_ino  # the same file by another name (a symlink)
        except OSError:
            inode = None
        linked = linked_path(self.snapshot(), path) if not any(m.path == path for m in entries) else None
        for matches in (lambda m: m.path == path, lambda m: m.path == linked, lambda m: m.inode == inode,
                        lambda m: by_name and os.path.basename(m.path) == name):
            for entry in (m for m in entries if matches(m)):
                for source in (f"/proc/{self.pid}/map_files/{entry.start:x}-{entry.end:x}", entry.path):
                    try:
                        os.close(os.open(source, os.O_RDONLY))
                        size = os.stat(source).st_size
                    except OSError:
                        continue
                    return _MappedFile(source, offset, max(size - offset, 0))
        return None

    # -- breakpoints -------------------------------------------------------------------
    def add_breakpoint(self, addr: int) -> bool:
        try:
            return self.session.alive and self.session.add_breakpoint(addr)
        except OverflowError:
            return False  # past /proc/PID/mem's last offset (2**63)

    def remove_breakpoint(self, addr: int) -> None:
        if self.session.alive:
            self.session.remove_breakpoint(addr)

    @property
    def arch(self):
        return self.session.arch

    @property
    def watch_accesses(self) -> frozenset[str]:
        # x86's debug registers watch writes or any access, never reads alone
        # (gdbserver answers Z3 as unsupported on x86-64 too); a qemu guest's
        # stepped watchpoints see each load, so gdb's rwatch is offered there.
        if self.session.arch.name == "aarch64":
            return frozenset({"write", "read", "access"})
        return frozenset({"write", "access"})

    def add_watchpoint(self, addr: int, size: int, access: str = "write") -> bool:
        """False (gdb is told E01) when the debug registers cannot take it:
        all four in use, a length other than 1, 2, 4 or 8, or unaligned."""
        if not self.session.alive:
            return False
        try:
            self.session.add_watchpoint(addr, size, access)
        except UsageError:
            return False
        return True

    def remove_watchpoint(self, addr: int, size: int, access: str = "write") -> None:
        if self.session.alive:
            self.session.remove_watchpoint(addr, size, access)

    # -- motion ----------------------------------------------------------------------------
    def resume(self, step: bool, reverse: bool, interrupted: Interrupted,
               signals: ResumeSignals = NO_SIGNALS) -> Stop:
        if not self.session.alive:
            return self._stop
        self._forget_stop()
        self._hand_signals(signals)
        if step:
            # Watched like a continue: a thread our stop cut out of a
            # blocking syscall runs it again inside the step.
            reason = self._run(self.session.step, interrupted, 1)
        else:
            reason = self._continue(interrupted)
            if reason.kind == ReasonKind.EXITING or (reason.kind == ReasonKind.TARGET and reason.target == "exit"):
                # gdb's continue ends at the exit itself, not at the exit event.
                reason = self._continue(interrupted)
        return self._stopped(reason)

    def _hand_signals(self, signals: ResumeSignals) -> None:
        """What gdb asks the threads to receive as they run, as gdbserver
        does it: the thread whose signal gdb was told of gets what gdb says
        now (nothing, if gdb does not name it: `signal 0`, `handle nopass`),
        and any thread gdb names with a signal gets that one (`signal SIG`,
        `queue-signal`). A signal gdb never heard of (one a thread had when
        we attached) stays the engine's to hand on."""
        told, self._signalled = self._signalled, None
        self._given = {tid: signal for tid, signal in signals.items()
                       if signal and tid != told and not self._takes_signal_as_it_resumes(tid)}
        for tid, signal in signals.items():
            if signal or tid == told:
                self._give(tid, signal or None)
        if told is not None and told not in signals:
            self._give(told, None)

    def _takes_signal_as_it_resumes(self, tid: int) -> bool:
        """Whether thread ``tid`` stands in a signal-delivery-stop (asked of
        its ptrace stop: a stop reached by an int3 of ours, `monitor until
        main`, is one, as is a step's; the first stop, after execve, is not)."""
        try:
            return self.session.takes_signal_as_it_resumes(tid)
        except UsageError:
            return True  # gone: nothing will stop for it

    def _give(self, tid: int, signal: int | None) -> None:
        try:
            self.session.set_resume_signal(signal, tid)
        except UsageError:
            pass  # the thread is gone (killed from outside): nothing left to receive it

    def detach(self) -> None:
        """gdb's detach: the signal a thread stopped with goes on to the
        program only if gdb passes it (QProgramSignals; without that list,
        all but SIGTRAP and SIGINT, gdb's own), as gdbserver decides."""
        told = self._signalled
        if told is None or not self.session.alive:
            return
        try:
            signal = self.session.resume_signal(told)
        except UsageError:
            return  # gone since
        program = self._program_signals
        if signal and (signal not in program if program is not None else signal in (SIGTRAP, SIGINT)):
            self._give(told, None)

    def _stopped(self, reason: StopReason) -> Stop:
        """The stop gdb is told of next, from the session's reason."""
        self._stop = self._stop_of(reason)
        signalled = reason.kind == ReasonKind.SIGNAL and self.session.alive
        self._signalled = self.current_thread if signalled else None
        return self._stop

    def _continue(self, interrupted: Interrupted) -> StopReason:
        """gdb's continue: it stops at every signal (the program's handler,
        if any, runs on the next resume) but those gdb passes quietly."""
        while True:
            reason = self._run(self.session.cont, interrupted, "signal")
            if reason.kind != ReasonKind.SIGNAL:
                return reason
            signal = _signal_number(reason.signal)
            given = self._given.pop(self.current_thread, None) if self._given else None
            if signal not in self._passed_signals and signal != given:
                return reason

    def _run(self, motion, interrupted: Interrupted, *args) -> StopReason:
        """Run a motion while looking for gdb's Ctrl-C, which stops it."""
        future = self._motions.submit(motion, *args)
        asked = False
        try:
            while True:
                try:
                    return future.result(timeout=POLL_SECONDS)
                except FutureTimeout:
                    if not asked and interrupted():
                        self.session.interrupt()
                        asked = True
        except BaseException:
            # gdb went away (or loaderdbg was told to end) mid-motion: the
            # run must stop before this returns and the session is closed,
            # or a program that never stops by itself would stay traced
            # behind a server nobody talks to.
            if not future.done() and not asked:
                self.session.interrupt()
            wait_futures([future])
            raise

    def run_until(self, until: str) -> StopReason:
        self._forget_stop()
        reason = self._run(self.session.cont, self._monitor_interrupted, until)
        self._stopped(reason)
        return reason

    def goto(self, step: int) -> Stop:
        self._forget_stop()
        return self._stopped(self._run(self.session.goto, self._monitor_interrupted, step))

    def explain(self) -> str:
        raise monitor.MonitorError("explain needs a recording: loaderdbg record -o FILE PROG, then "
                                   "loaderdbg serve FILE (or loaderdbg explain PROG)")

    def monitor(self, command: str, interrupted: Interrupted = _never) -> str:
        self._monitor_interrupted = interrupted
        try:
            return monitor.run(self, command)
        finally:
            self._monitor_interrupted = _never

    def _stop_of(self, reason: StopReason) -> Stop:
        kind = reason.kind
        if kind == ReasonKind.EXITED:
            return Stop(kind="exited", exit_code=(reason.exit_code or 0) & 0xFF)
        if kind == ReasonKind.KILLED:
            return Stop(kind="killed", signal=_signal_number(reason.signal))
        if kind == ReasonKind.SIGNAL:
            return Stop(signal=_signal_number(reason.signal))
        if kind == ReasonKind.INTERRUPTED:
            return Stop(signal=SIGINT)
        if kind == ReasonKind.BREAKPOINT:
            return Stop(swbreak=True)
        if kind == ReasonKind.WATCHPOINT:
            hit = self.session.watchpoint_hit()
            if hit is not None:
                return Stop(watch=hit[0])
        return Stop()

    def kill(self) -> None:
        """gdb's kill ends the process, as gdbserver's does, even an
        attached one (close() alone would detach it, running)."""
        if self.session.alive:
            try:
                os.kill(self.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.session.close()
        self._motions.stop()


class _MappedFile:
    """A file the process maps, read piece by piece as gdb asks (never held
    whole: a mapped file can be as large as the address space allows)."""

    def __init__(self, source: str, start: int, size: int) -> None:
        self._source = source
        self._start = start
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        try:
            fd = os.open(self._source, os.O_RDONLY)
        except OSError:
            return b""  # unmapped since
        try:
            return os.pread(fd, length, self._start + offset)
        except (OSError, OverflowError):
            return b""
        finally:
            os.close(fd)


def _signal_number(name: str | None) -> int:
    try:
        return int(_signal.Signals[name]) if name else 9
    except KeyError:
        return 5
