"""LiveSession: the Session interface over a real process (DESIGN.md §2).

Every call is carried out on the tracer thread; the caller (the CLI's main
thread, or the TUI) only waits for results. ``interrupt`` may be called from
any thread: it stops a long continue by sending the tracee SIGSTOP, which the
run loop swallows.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Sequence

from loaderdbg import end_signals
from loaderdbg.analysis.backtrace import MAX_FRAMES, Frame, backtrace_of
from loaderdbg.analysis.source_lines import SourceFile, line_at, source_file
from loaderdbg.decode.dwarf_lines import SourceLine
from loaderdbg.decode.registers import Registers, decode_registers
from loaderdbg.errors import TargetError
from loaderdbg.process import ptrace
from loaderdbg.process.inferior import Inferior
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.process.tracer_thread import TracerThread
from loaderdbg.session import Capability, Event, StopReason
from loaderdbg.snapshot import Snapshot, build_snapshot
from loaderdbg.targets import parse_target

if TYPE_CHECKING:
    from loaderdbg.process.follow import SpawnCatcher

# How long an interrupted run or a close may take on the tracer thread before
# we stop waiting for it: SIGSTOP stops a tracee within milliseconds, unless
# it sits where no signal reaches it (a parent blocked in vfork).
SETTLE_SECONDS = 3.0


def _close_once_started(start: Future) -> None:
    """On the tracer thread, after a start that Ctrl-C stopped waiting for."""
    if start.exception() is None:
        start.result().close()


class LiveSession:
    capabilities = frozenset({Capability.LIVE, Capability.BREAKPOINTS, Capability.INTERRUPT,
                              Capability.WATCHPOINTS, Capability.SIGNALS})

    # Where `directory`-style source lookups also look (--source-dir).
    source_directories: tuple[str, ...] = ()

    def __init__(self, spec: LaunchSpec | None = None, *, pid: int | None = None,
                 catcher: SpawnCatcher | None = None) -> None:
        """Launch ``spec`` stopped at its first instruction, attach to ``pid``,
        or wait for ``catcher`` to catch a spawned child."""
        self.spec = spec
        self._tracer = TracerThread()
        starting_cancelled = threading.Event()  # Ctrl-C while attaching
        try:
            if spec is not None:
                future = self._tracer.submit(Inferior.launch, spec)
            elif catcher is not None:
                future = self._tracer.submit(Inferior.catch_spawn, catcher)
            else:
                future = self._tracer.submit(Inferior.attach, pid, starting_cancelled.is_set)
            try:
                self._inferior: Inferior = future.result()
            except KeyboardInterrupt:
                with end_signals.cleanup():
                    if catcher is not None:
                        catcher.cancelled = True  # the tracer lets the parent go, then fails
                    starting_cancelled.set()
                    self._abandon_start(future)
                raise
        except BaseException:
            # Ending the tracer thread also makes the kernel release any
            # task it still traces (ptrace(2): a tracer's exit detaches).
            self._tracer.stop()
            raise
        self._closed = False
        self._running: Future | None = None  # the last motion handed to the tracer thread
        self.program = self._inferior.program
        self.capabilities = LiveSession.capabilities | ({Capability.RESTART} if spec is not None
                                                        else {Capability.ATTACH})
        if self._inferior.thread_group is not None:
            self.capabilities |= {Capability.THREADS}

    def _abandon_start(self, future: Future) -> None:
        """Ctrl-C (or SIGTERM) while launching or attaching: whatever the
        tracer thread got hold of meanwhile is let go again."""
        try:
            inferior = future.result(timeout=SETTLE_SECONDS)
        except BaseException:
            if not future.done():
                # Still starting: what it gets hold of is let go once it has
                # it (the tracer thread runs its jobs in order), not left to
                # the kernel's detach at our exit, stopped in execve or with
                # our int3s in it (it would die of SIGTRAP).
                self._tracer.submit(_close_once_started, future)
            return  # it failed or gave up on its own, cleaning up after itself
        self._tracer.call(inferior.close)

    @classmethod
    def catch_spawn(cls, parent: int, match: str | None = None, timeout: float | None = None,
                    on_ready=None) -> "LiveSession":
        from loaderdbg.process.follow import SpawnCatcher  # not at import: most sessions launch
        return cls(catcher=SpawnCatcher(parent, match, timeout, on_ready))

    @classmethod
    def attach(cls, pid: int) -> "LiveSession":
        return cls(pid=pid)

    def restart(self) -> StopReason:
        """gdb's `starti`: a fresh process at its first instruction, the
        user's breakpoints kept."""
        if self.spec is None:
            raise NotImplementedError("an attached process cannot be restarted")
        breakpoints = set(self._inferior.user_breakpoints)
        watchpoints = self._inferior.watchpoints
        before_access = self._inferior.watches_stop_before_access

        def relaunch() -> Inferior:
            self._inferior.close()
            inferior = Inferior.launch(self.spec)
            for addr in breakpoints:
                inferior.add_breakpoint(addr)
            for watchpoint in watchpoints:
                inferior.set_watchpoint(watchpoint.address, watchpoint.length, watchpoint.access)
            if before_access:
                inferior.watch_stops_before_access()
            return inferior
        self._inferior = self._run(relaunch)
        return self._inferior.stop_reason

    # -- state ---------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._inferior.pid

    @property
    def position(self) -> int:
        return self._inferior.step_count

    @property
    def position_exact(self) -> bool:
        return self._inferior.step_exact

    @property
    def stop_reason(self) -> StopReason:
        return self._inferior.stop_reason

    @property
    def arch(self):
        """The program's architecture tables (loaderdbg/arch)."""
        return self._inferior.arch

    @property
    def alive(self) -> bool:
        return self._inferior.alive

    def snapshot(self) -> Snapshot:
        def build() -> Snapshot:
            inferior = self._inferior
            inferior.notice_death()
            try:
                return build_snapshot(inferior)
            except ptrace.PtraceError as err:
                # Killed between the check and the reads: look again.
                if err.errno != errno.ESRCH:
                    raise
                if not inferior.notice_death():
                    raise TargetError(f"pid {inferior.pid} left its stop under us") from None
                return build_snapshot(inferior)
        return self._tracer.call(build)

    def current_registers(self) -> tuple[int, Registers | None]:
        """(the current thread, its registers; None once the process is
        gone): what a debugger's stop reply needs, read without the whole
        snapshot (a snapshot at each of gdb's stepi cost ~1-6 ms)."""
        def read() -> tuple[int, Registers | None]:
            inferior = self._inferior
            if not inferior.alive:
                return inferior.pid, None
            target = inferior.tracee
            return target.current_tid, decode_registers(target.registers_raw(), inferior.arch)
        return self._tracer.call(read)

    def read_memory(self, addr: int, size: int) -> bytes | None:
        return self._tracer.call(self._inferior.read_memory, addr, size)

    def maps(self) -> Sequence:
        return self._tracer.call(self._inferior.maps)

    def threads(self) -> Sequence:
        return self._tracer.call(self._inferior.threads)

    def select_thread(self, tid: int) -> None:
        """gdb's `thread N` (Threads): thread ``tid`` becomes current."""
        self._tracer.call(self._inferior.select_thread, tid)

    def resume_signal(self, tid: int | None = None) -> int | None:
        """The signal thread ``tid`` (default: the current one) receives when
        it next runs (None: none), the one it stopped with unless replaced."""
        return self._tracer.call(self._inferior.resume_signal, tid)

    def takes_signal_as_it_resumes(self, tid: int | None = None) -> bool:
        """Whether a signal given thread ``tid`` (default: the current one)
        reaches it as it resumes (a signal-delivery-stop), rather than being
        sent anew by the kernel, the thread stopping for it once more (a
        syscall stop). UsageError: no such thread."""
        return self._tracer.call(self._inferior.takes_signal_as_it_resumes, tid)

    def set_resume_signal(self, signal: int | None, tid: int | None = None) -> None:
        """gdb's `signal SIG` / `signal 0` / `handle SIG nopass`: thread
        ``tid`` (default: the current one) receives ``signal`` when it next
        runs, in place of the one it stopped with (None: nothing)."""
        self._tracer.call(self._inferior.set_resume_signal, signal, tid)

    def events(self) -> Sequence[Event]:
        return tuple(self._inferior.events)

    def symbolize(self, addr: int) -> str | None:
        return self._tracer.call(self._inferior.symbolize, addr)

    def resolve(self, name: str) -> int | None:
        return self._tracer.call(lambda: self._inferior.symbols().locate(name))

    def disassemble(self, addr: int, count: int = 16):
        return self._tracer.call(self._inferior.disassemble, addr, count)

    def source_line(self, addr: int) -> SourceLine | None:
        return self._tracer.call(lambda: line_at(self._inferior.symbols(), addr))

    def source_file(self, line: SourceLine) -> SourceFile | None:
        """line's source file, looked for as gdb does, in
        ``source_directories`` too (files on this machine, not the
        target's: no tracer needed)."""
        return source_file(line, self.source_directories)

    def backtrace(self, limit: int = MAX_FRAMES) -> tuple[Frame, ...]:
        return self._tracer.call(backtrace_of, self._inferior, limit)

    def breakpoints(self) -> frozenset[int]:
        return frozenset(self._inferior.user_breakpoints)

    def add_breakpoint(self, addr: int) -> bool:
        return self._tracer.call(self._inferior.add_breakpoint, addr)

    def remove_breakpoint(self, addr: int) -> None:
        self._tracer.call(self._inferior.remove_breakpoint, addr)

    # -- hardware watchpoints (Watchpoints) --------------------------------------
    def add_watchpoint(self, addr: int, size: int, access: str = "write") -> None:
        self._tracer.call(self._inferior.set_watchpoint, addr, size, access)

    def remove_watchpoint(self, addr: int, size: int, access: str = "write") -> None:
        self._tracer.call(self._inferior.remove_watchpoint, addr, size, access)

    def watch_stops_before_access(self) -> bool:
        """From now on a watched access stops before its instruction, where
        the target can (aarch64's stepped watchpoints; x86's debug registers
        trap after it): what gdb expects of aarch64. True: it will."""
        return self._tracer.call(self._inferior.watch_stops_before_access)

    def watchpoint_hit(self) -> tuple[int, int, str] | None:
        hit = self._inferior.watchpoint_hit
        return None if hit is None else (hit.address, hit.length, hit.access)

    # -- motion --------------------------------------------------------------
    def step(self, n: int = 1) -> StopReason:
        return self._run(self._inferior.step_many, n)

    def step_over(self) -> StopReason:
        def run() -> StopReason:
            self._inferior.step_over()
            return self._inferior.stop_reason
        return self._run(run)

    def cont(self, until: str | None = None) -> StopReason:
        """Run to a stop target; without one, until a breakpoint, a signal
        or the exit (gdb's `c`)."""
        target = parse_target(until or "exit")
        return self._run(self._inferior.run_to, target)

    def goto(self, step: int) -> StopReason:
        return self.cont(f"step:{step}")

    def step_back(self, n: int = 1) -> StopReason:
        raise NotImplementedError("reverse execution needs a recording (loaderdbg record)")

    def reverse_cont(self, until: str | None = None) -> StopReason:
        raise NotImplementedError("reverse execution needs a recording (loaderdbg record)")

    def _run(self, fn, *args):
        """Run motion on the tracer thread; Ctrl-C in the caller stops the
        tracee (interrupt) and waits for the tracer to settle before raising."""
        future = self._running = self._tracer.submit(fn, *args)
        try:
            return future.result()
        except KeyboardInterrupt:
            with end_signals.cleanup():
                self.interrupt()
                self._settle(future)
            raise
        finally:
            if future.done():
                # A program that read our terminal was lent it while it
                # ran; stopped, it gives it back (Ctrl-C is ours again).
                self._inferior.tracee.reclaim_terminal()

    def _settle(self, future: Future) -> None:
        """Wait for the tracer thread to finish ``future`` after an
        interrupt. If the tracee does not stop in time, put our int3s' bytes
        back now: whatever happens next, the process must not meet one."""
        try:
            future.exception(timeout=SETTLE_SECONDS)
        except FutureTimeout:
            self._inferior.tracee.restore_original_bytes()

    def interrupt(self) -> None:
        """Stop a running continue from any thread."""
        self._inferior.interrupt()  # the target's way: a SIGSTOP for ptrace, a SIGINT to qemu

    def close(self) -> None:
        """Kill a launched tracee, detach an attached one; safe to call while
        a continue is still running on the tracer thread."""
        if self._closed:
            return
        self._closed = True
        with end_signals.cleanup():
            if self._inferior.alive:
                if self._inferior.tracee.launched:
                    try:
                        os.kill(self.pid, _signal.SIGKILL)  # ends a run in progress too
                    except ProcessLookupError:
                        pass
                elif self._running is not None and not self._running.done():
                    self.interrupt()  # a run in progress (another thread's) ends at a stop
            future = self._tracer.submit(self._inferior.close)
            try:
                future.result(timeout=SETTLE_SECONDS)
            except FutureTimeout:
                # The tracer thread is still in a run that did not stop
                # (see _settle): our bytes go back from here, and the kernel
                # detaches the process when this one exits.
                self._inferior.tracee.restore_original_bytes()
            finally:
                self._tracer.stop(timeout=0 if not future.done() else 5.0)

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
