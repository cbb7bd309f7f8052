"""One traced process: launch it stopped, step it, run it with breakpoints.

The tracee never outlives us when we launched it (PTRACE_O_EXITKILL), and
is detached running when we attached to it. Stops are classified once by
``stops.classify``; breakpoints are int3 bytes written through /proc/PID/mem
and stepped over with the usual restore–step–reinsert dance.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal as _signal
from dataclasses import dataclass

from loaderdbg.arch import X86_64, ArchTables
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.procstatus import parse_task_status
from loaderdbg.errors import TargetError
from loaderdbg.process import ptrace
from loaderdbg.process.memory import ProcessMemory
from loaderdbg.process.stops import TRAP_BRKPT, TRAP_TRACE, Stop, StopKind, classify

# The step loop's names, bound once (module globals are a dict lookup away).
_step_and_fetch = ptrace.step_and_fetch
_raw_ptrace = ptrace.raw_ptrace
_C_SYSCALL = ctypes.c_long(ptrace.SYSCALL)
_REGS_FETCHED = ptrace.STEP_REGS_FETCHED
_SIGTRAP_STOP = ptrace.SIGTRAP_STOP_STATUS
_SYSCALL_STOP = ((_signal.SIGTRAP | 0x80) << 8) | 0x7F  # a syscall stop's wait status (TRACESYSGOOD)

INT3 = 0xCC
SYSCALL_INSN = b"\x0f\x05"
# What the instruction at a pc means for the step that executes it.
CODE_PLAIN = 0  # a SIGTRAP stop after stepping it is our trap flag
CODE_SYSCALL = 1  # `syscall`: the engine decodes its arguments first
CODE_TRAP = 2  # int3, int n, int1, or unreadable: only siginfo can tell
RIP_OFFSET = X86_64.register_offset(X86_64.pc_register)
RSP_OFFSET = X86_64.register_offset(X86_64.sp_register)
_FS_BASE_OFFSET = X86_64.register_offset("fs_base")
_R11_OFFSET = X86_64.register_offset("r11")
_EFLAGS_OFFSET = X86_64.register_offset("eflags")
_EFLAGS_TF = 0x100
_EFLAGS_RF = 0x10000
# TRACEFORK/VFORK so a forked child is ours for a moment: it inherits our
# int3 bytes, which we take out before letting it go (gdb's detach-on-fork).
# TRACECLONE only to hear of new threads (they run on untraced): our own
# automatic breakpoints must come out before a thread we do not trace can
# hit one and die of its SIGTRAP.
LAUNCH_OPTIONS = (
    ptrace.O_TRACESYSGOOD | ptrace.O_TRACEEXEC | ptrace.O_TRACEEXIT | ptrace.O_EXITKILL
    | ptrace.O_TRACEFORK | ptrace.O_TRACEVFORK | ptrace.O_TRACECLONE
)
# A program that reads (SIGTTIN) or sets up (SIGTTOU) a terminal whose
# foreground it does not hold: launched in its own process group, it is
# lent ours, as gdb does, and the signal is not delivered.
TERMINAL_SIGNALS = frozenset({_signal.SIGTTIN, _signal.SIGTTOU})
# Signals the kernel sends for a fault in the instruction itself.
FAULT_SIGNALS = frozenset(
    {_signal.SIGSEGV, _signal.SIGBUS, _signal.SIGILL, _signal.SIGFPE, _signal.SIGTRAP}
)


@dataclass(frozen=True)
class LaunchSpec:
    path: str
    argv: tuple[str, ...]
    env: dict[str, str]
    aslr: bool = False
    stdin_fd: int | None = None
    stdout_fd: int | None = None
    stderr_fd: int | None = None


class Tracee:
    """A stopped-or-running tracee and what we know about its current stop."""

    sysroot = ""  # the program's files are the host's (qemu's target has a sysroot)
    interrupt_signal = _signal.SIGSTOP  # what interrupt() makes the run stop with
    exit_event = True  # PTRACE_EVENT_EXIT stops a process about to end

    def __init__(self, pid: int, *, launched: bool) -> None:
        self.pid = pid
        self.launched = launched
        self.memory = ProcessMemory(pid)
        self.breakpoints: dict[int, int] = {}  # address -> original byte
        self.last_stop: Stop | None = None
        self.pending_signal = 0  # to deliver on the next resume
        self._regs = ptrace.RegisterBuffer()
        self._regs_raw: bytes | None = None
        # pc at a syscall stop, from GET_SYSCALL_INFO (the same rip): asking
        # whether we stand on an int3 then costs no GETREGS.
        self._stop_pc: int | None = None
        self._syscall_info = ptrace.SyscallInfoBuffer()
        self._regs_buffer = self._regs.raw
        self._c_regs = self._regs.c_address
        self.alive = True
        self._c_pid = ctypes.c_int(pid)
        # pc -> CODE_*, decoded once per address. Code changes only through
        # a syscall (mmap, mprotect, a write to /proc/self/mem) or a store
        # into writable+executable memory, which startup code does not do:
        # the engine forgets this after every syscall, exec and continue.
        self._code: dict[int, int] = {}
        self.writes_breakpoints = True
        # Our controlling terminal when a launched tracee shares it (its
        # stdin, stdout or stderr), to lend it when the tracee needs it.
        self.terminal_fd: int | None = None
        self.holds_terminal = False
        self._swallow = 0  # a signal the next resume must not deliver
        # Plain steps share one immutable Stop instead of building one each,
        # and so do syscall stops (a continue meets two a syscall).
        self.plain_step = Stop(StopKind.STEP, pid, signal=_signal.SIGTRAP, si_code=TRAP_TRACE)
        self.syscall_step = Stop(StopKind.STEP, pid, signal=_signal.SIGTRAP, si_code=TRAP_BRKPT)
        self.syscall_stop = Stop(StopKind.SYSCALL, pid, signal=_signal.SIGTRAP)
        self._c_syscall_signal = ctypes.c_long(0)

    # -- registers ---------------------------------------------------------
    def regs_raw(self) -> bytes:
        if self._regs_raw is None:
            self._regs_raw = self._regs.fetch(self.pid)
        return self._regs_raw

    def set_regs_raw(self, raw: bytes) -> None:
        self._regs.store(self.pid, raw)
        self._regs_raw = bytes(raw)
        self._stop_pc = None

    def adopt_registers(self, raw: bytes | None) -> None:
        """Registers fetched by someone else (the recorder's step loop): the
        view of them, not a write to the process; None forgets them."""
        self._regs_raw = raw
        self._stop_pc = None

    @property
    def pc(self) -> int:
        regs = self._regs_raw
        if regs is None:
            if self._stop_pc is not None:
                return self._stop_pc
            regs = self.regs_raw()
        return int.from_bytes(regs[RIP_OFFSET:RIP_OFFSET + 8], "little")

    @property
    def sp(self) -> int:
        return int.from_bytes(self.regs_raw()[RSP_OFFSET:RSP_OFFSET + 8], "little")

    def set_pc(self, value: int) -> None:
        raw = bytearray(self.regs_raw())
        raw[RIP_OFFSET:RIP_OFFSET + 8] = value.to_bytes(8, "little")
        self.set_regs_raw(bytes(raw))

    # -- code ----------------------------------------------------------------
    def code_kind(self, pc: int) -> int:
        kind = self._code.get(pc)
        if kind is None:
            kind = self._decode_kind(pc)
        return kind

    def _decode_kind(self, pc: int) -> int:
        data = self.memory.read(pc, 2) or self.memory.read(pc, 1)
        if not data:
            return CODE_TRAP  # will fault; not cached, it may get mapped
        data = self.original_bytes(pc, data)
        if data == SYSCALL_INSN:
            kind = CODE_SYSCALL
        elif data[0] in (INT3, 0xCD, 0xF1):
            kind = CODE_TRAP
        else:
            kind = CODE_PLAIN
        self._code[pc] = kind
        return kind

    def forget_code(self) -> None:
        self._code.clear()

    # -- breakpoints -------------------------------------------------------
    def observe_only(self) -> None:
        """Breakpoints are only remembered by whoever asks for them, never
        written: the recorder single-steps everything and stops at their
        addresses by comparing pc (an int3 in memory would be recorded as
        the program's own byte)."""
        self.writes_breakpoints = False

    def insert_breakpoint(self, addr: int) -> bool:
        """Write int3 at addr; False when the address is not mapped (yet)."""
        if not self.writes_breakpoints:
            return True
        if addr in self.breakpoints:
            return True
        original = self.memory.read(addr, 1)
        if original is None:
            return False
        try:
            self.memory.write(addr, bytes([INT3]))
        except OSError:
            return False
        self.breakpoints[addr] = original[0]
        return True

    def remove_breakpoint(self, addr: int) -> None:
        if not self.writes_breakpoints:
            return
        original = self.breakpoints.pop(addr, None)
        if original is not None and self.alive:
            try:
                self.memory.write(addr, bytes([original]))
            except OSError:
                pass  # the page went away with the breakpoint

    def revalidate_breakpoints(self) -> None:
        """After mmap/munmap/mprotect a page holding a breakpoint may have
        been replaced (exec-solib maps ld.so over its own reservation):
        re-read the new original byte and write int3 again."""
        if not self.writes_breakpoints:
            return
        for addr in list(self.breakpoints):
            current = self.memory.read(addr, 1)
            if current is None:
                continue  # unmapped for now; kept, rechecked next time
            if current[0] != INT3:
                self.breakpoints[addr] = current[0]
                try:
                    self.memory.write(addr, bytes([INT3]))
                except OSError:
                    pass

    def original_bytes(self, addr: int, data: bytes) -> bytes:
        """``data`` read at addr with our int3 bytes replaced by the originals."""
        if not self.breakpoints:
            return data
        out = bytearray(data)
        for bp, original in self.breakpoints.items():
            if addr <= bp < addr + len(out):
                out[bp - addr] = original
        return bytes(out)

    # -- resuming ----------------------------------------------------------
    def _wait(self) -> Stop:
        _, status = ptrace.waitpid(self.pid)
        return self.classify_status(status)

    def classify_status(self, status: int) -> Stop:
        """What a waitpid status of this tracee means, with the tracee's
        caches brought up to date (registers, code, breakpoints after exec)."""
        self._regs_raw = None
        self._stop_pc = None
        if status == _SYSCALL_STOP:
            # The common stop of a continue: nothing else to bring up to date.
            self.last_stop = self.syscall_stop
            return self.syscall_stop
        stop = classify(self.pid, status)
        if not stop.alive:
            self.alive = False
            self.memory.close()
            self.reclaim_terminal()
        elif stop.kind is StopKind.SIGNAL and self.terminal_fd is not None:
            self._terminal_signal(stop.signal)
        elif stop.kind is StopKind.BREAKPOINT and (self.pc - 1) in self.breakpoints:
            # Report our own breakpoint at its address, as debuggers do.
            self.set_pc(self.pc - 1)
        elif stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXEC:
            self._code.clear()
            self.memory.reopen()
            self.breakpoints.clear()  # the old address space is gone
        self.last_stop = stop
        return stop

    def _take_signal(self) -> int:
        sig, self.pending_signal = self.pending_signal, 0
        if sig and sig == self._swallow:
            sig = 0
        self._swallow = 0
        return sig

    # -- the terminal ----------------------------------------------------------
    def _terminal_signal(self, sig: int) -> None:
        """A signal-delivery-stop while the tracee shares our terminal."""
        if sig in TERMINAL_SIGNALS:
            if not self.holds_terminal:
                self._lend_terminal()
            self._swallow = sig  # its read or tcsetattr is restarted, and now succeeds
        elif sig == _signal.SIGINT and self.holds_terminal:
            # Ctrl-C at the terminal it holds is meant for us, as in gdb:
            # it stops the run, and the program never sees it.
            self.reclaim_terminal()
            self._swallow = sig
            os.kill(os.getpid(), _signal.SIGINT)

    def terminal_signal(self, sig: int) -> bool:
        """For a stepper of its own (the recorder): the tracee stopped to
        receive ``sig``. True when the signal is about our terminal and must
        not be delivered (it was lent the terminal, or a Ctrl-C at the
        terminal it held was passed on to us)."""
        if self.terminal_fd is None:
            return False
        self._terminal_signal(sig)
        swallowed, self._swallow = self._swallow == sig, 0
        return swallowed

    def _lend_terminal(self) -> None:
        fd = self.terminal_fd
        try:
            ours = os.tcgetpgrp(fd) == os.getpgrp()
            if ours:
                _set_foreground(fd, os.getpgid(self.pid))
        except OSError:
            ours = False
        if not ours:
            raise TargetError("the program reads the terminal, which loaderdbg cannot lend it from "
                              "the background: run loaderdbg in the foreground, or give --stdin FILE")
        self.holds_terminal = True

    def reclaim_terminal(self) -> None:
        """Take our terminal back (safe from any thread, and when the
        tracee never had it): Ctrl-C is ours again."""
        if not self.holds_terminal:
            return
        self.holds_terminal = False
        try:
            _set_foreground(self.terminal_fd, os.getpgrp())
        except OSError:
            pass  # the terminal has gone (hung up): nothing to take back

    def _step_off_breakpoint(self) -> Stop | None:
        """If pc sits on one of our int3s, execute the original instruction
        in its place. Returns the stop if that step stopped for another
        reason (a signal, an exit), else None."""
        addr = self.pc
        original = self.breakpoints.get(addr)
        if original is None:
            return None
        self.memory.write(addr, bytes([original]))
        try:
            ptrace.singlestep(self.pid, self._take_signal())
            stop = self._wait()
        finally:
            if self.alive and addr in self.breakpoints:
                self.memory.write(addr, bytes([INT3]))
        return stop

    def at_breakpoint(self) -> bool | None:
        """Whether pc is on one of our int3s; None when the tracee has left
        its stop under us (a SIGKILL from outside): then only waitpid can
        tell what became of it."""
        try:
            return self.pc in self.breakpoints
        except ptrace.PtraceError as err:
            if err.errno == errno.ESRCH:
                return None
            raise

    def step(self, pc: int | None = None, kind: int | None = None) -> Stop:
        """Execute one instruction. ``pc`` and its ``code_kind`` may be
        passed by a caller that has just looked them up.

        The hot path costs what a C loop pays (SINGLESTEP, waitpid; GETREGS
        when someone asks for pc) plus dict lookups: a SIGTRAP stop after an
        instruction that cannot trap by itself is our trap flag, so no
        GETSIGINFO is needed to say so (a SIGTRAP another process sends at
        that very moment would pass for the step; only si_code tells)."""
        if pc is None:
            try:
                pc = self.pc
            except ptrace.PtraceError as err:
                if err.errno == errno.ESRCH:
                    return self._wait()  # gone under us: waitpid says how
                raise
        if pc in self.breakpoints:
            stop = self._step_off_breakpoint()
            assert stop is not None
            return stop
        if self.pending_signal:
            # A signal changes where the step lands (a handler): no shortcuts.
            try:
                ptrace.singlestep(self.pid, self._take_signal())
            except ptrace.PtraceError as err:
                if err.errno != errno.ESRCH:
                    raise
            return self._wait()
        if kind is None:
            kind = self.code_kind(pc)
        self._stop_pc = None
        result = _step_and_fetch(self._c_pid, self._c_regs)
        if result >= _REGS_FETCHED:
            self._regs_raw = self._regs_buffer.raw
            status = _SIGTRAP_STOP
        else:
            self._regs_raw = None
            status = result if result >= 0 else self._status_after_failed_step(-result)
        if status == _SIGTRAP_STOP and kind != CODE_TRAP:
            if kind == CODE_SYSCALL:
                self._untrap_r11()
            stop = self.syscall_step if kind == CODE_SYSCALL else self.plain_step
            self.last_stop = stop
            return stop
        return self.classify_status(status)

    def _status_after_failed_step(self, err: int) -> int:
        """The wait status when the step helper failed with ``err``."""
        if err in (errno.ESRCH, errno.EINTR, errno.ECHILD):
            # ESRCH: SINGLESTEP found it off its stop, killed under us, and
            # waitpid says how. EINTR: a signal for the tracer while the step
            # blocked (a stepped `syscall`); os.waitpid finishes the wait and
            # runs the signal handlers. ECHILD: os.waitpid raises it as usual.
            return ptrace.waitpid(self.pid)[1]
        raise ptrace.PtraceError(err, f"ptrace(SINGLESTEP, {self.pid}): {os.strerror(err)}")

    def _untrap_r11(self) -> None:
        """Live step N and a recording's step N must agree: both take our
        trap flag out of the r11 a stepped `syscall` saved."""
        fixed = untrapped_r11(self.regs_raw())
        if fixed is not None:
            self.set_regs_raw(fixed)

    def resume(self, *, syscalls: bool) -> Stop:
        """Continue to the next stop: a breakpoint, a signal, an event, and
        with ``syscalls`` every syscall entry and exit too."""
        self._code.clear()  # a continue may run anything, mmap included
        at_breakpoint = self.at_breakpoint()
        if at_breakpoint is None:
            return self._wait()
        if at_breakpoint:
            stop = self._step_off_breakpoint()
            assert stop is not None
            if stop.kind is not StopKind.STEP:
                return stop
        self.let_run(syscalls=syscalls)
        return self._wait()

    def let_run(self, *, syscalls: bool) -> None:
        """Resume from the current stop without waiting (the pending signal
        delivered): a thread group resumes every thread, then waits for
        whichever stops first. Not over one of our int3s: step off it first."""
        self._code.clear()
        self._stop_pc = None
        signal = self.pending_signal
        if syscalls and not signal and not self._swallow:
            # The common resume of a continue, without building its arguments.
            if _raw_ptrace(_C_SYSCALL, self._c_pid, ptrace.NULL, self._c_syscall_signal) == -1 \
                    and ctypes.get_errno() != errno.ESRCH:
                ptrace.fail("SYSCALL", self.pid)
            return
        try:
            if syscalls:
                ptrace.syscall(self.pid, self._take_signal())
            else:
                ptrace.cont(self.pid, self._take_signal())
        except ptrace.PtraceError as err:
            if err.errno != errno.ESRCH:
                raise

    def thread(self, tid: int) -> "Tracee":
        """Another thread of this process: its own registers and stops, the
        same memory and so the same int3 table (opens /proc/TID/mem: OSError
        when the thread is gone)."""
        other = Tracee(tid, launched=self.launched)
        other.breakpoints = self.breakpoints
        other.writes_breakpoints = self.writes_breakpoints
        return other

    def finish_execve(self, what: str) -> None:
        """From a PTRACE_EVENT_EXEC stop to execve's syscall-exit stop."""
        finish_execve(self.pid, what)
        self._regs_raw = None
        self._stop_pc = None

    def release_child(self, child: int, *, shares_memory: bool, first_status: int | None = None) -> None:
        """Let a forked child go with our breakpoints taken out of its copy
        of memory (a vfork child shares ours, so there is nothing to undo).
        ``first_status``: its first stop, when a wait for any thread got it."""
        try:
            while True:
                if first_status is None:
                    _, status = ptrace.waitpid(child)
                else:
                    status, first_status = first_status, None
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    return
                if os.WIFSTOPPED(status):
                    break
            if not shares_memory and self.breakpoints:
                with open(f"/proc/{child}/mem", "r+b", buffering=0) as mem:
                    for addr, original in self.breakpoints.items():
                        mem.seek(addr)
                        mem.write(bytes([original]))
            ptrace.detach(child, 0)
        except (OSError, ChildProcessError):
            pass

    # -- the rest of the raw target protocol (process/raw_target.py) ---------------
    @property
    def arch(self) -> ArchTables:
        return X86_64

    @property
    def maps_pid(self) -> int:
        return self.pid

    @property
    def current_tid(self) -> int:
        return self.pid

    def registers_raw(self) -> bytes:
        return self.regs_raw()

    def set_registers_raw(self, raw: bytes) -> None:
        self.set_regs_raw(raw)

    def read_memory(self, addr: int, size: int) -> bytes | None:
        """Memory as the program sees it: our int3s hidden."""
        if not self.alive:
            return None
        data = self.memory.read(addr, size)
        return None if data is None else self.original_bytes(addr, data)

    def write_memory(self, addr: int, data: bytes) -> None:
        self.memory.write(addr, data)

    def maps_text(self) -> str:
        return (self.read_proc("maps") or b"").decode("utf-8", "surrogateescape")

    def read_proc(self, name: str) -> bytes | None:
        try:
            with open(f"/proc/{self.pid}/{name}", "rb") as handle:
                return handle.read()
        except OSError:
            return None

    # -- what the startup observer asks at a stop (process/startup.py) -------------
    def syscall_info(self) -> ptrace.SyscallInfo:
        info = self._syscall_info.fetch(self.pid)
        if self._regs_raw is None:
            self._stop_pc = info.instruction_pointer
        return info

    def event_message(self) -> int | None:
        try:
            return ptrace.get_event_msg(self.pid)
        except ptrace.PtraceError:
            return None

    def fd_path(self, fd: int) -> str | None:
        try:
            return os.readlink(f"/proc/{self.pid}/fd/{fd}")
        except OSError:
            return None

    def thread_count(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/task"))
        except OSError:
            return 1

    def untraced_threads(self) -> int:
        """Threads of the process this Tracee does not trace (all but its own)."""
        return self.thread_count() - 1

    def catches(self, signal: int, tid: int) -> bool | None:
        return signal_caught(self.pid, tid, signal)

    def threads(self) -> list[int]:
        """The process's thread ids ([] when it is gone)."""
        try:
            return [int(t) for t in os.listdir(f"/proc/{self.pid}/task")]
        except OSError:
            return []

    def tls_base(self) -> int | None:
        return int.from_bytes(self.regs_raw()[_FS_BASE_OFFSET:_FS_BASE_OFFSET + 8], "little")

    def interrupt(self) -> None:
        """Stop a resume in progress, from any thread: the traced thread's
        own SIGSTOP (a signal-delivery-stop the run loop swallows), never
        the group's."""
        try:
            ptrace.tgkill(self.pid, self.pid, _signal.SIGSTOP)
        except ProcessLookupError:
            pass

    def left_stop(self) -> bool:
        """Whether the tracee has left its stop under us: behind our back
        only a SIGKILL does that. poll_stop then says how it ended."""
        try:
            ptrace.request(ptrace.PEEKUSER, self.pid, RIP_OFFSET)
        except ptrace.PtraceError as err:
            if err.errno != errno.ESRCH:
                raise
            return True
        return False

    def poll_stop(self) -> Stop | None:
        """A stop waiting to be reaped, classified (None: none yet).
        ChildProcessError when there is nothing of ours left to wait for."""
        wpid, status = os.waitpid(self.pid, os.WNOHANG | ptrace.WALL)
        return self.classify_status(status) if wpid else None

    # -- ending ------------------------------------------------------------
    def kill(self) -> None:
        """End a launched tracee and reap it."""
        if not self.alive:
            return
        try:
            os.kill(self.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap_killed(self.pid)
        self.alive = False
        self.memory.close()
        self.reclaim_terminal()

    def detach(self) -> None:
        """Leave an attached tracee running exactly as before (our int3s out)."""
        if not self.alive:
            return
        for addr in list(self.breakpoints):
            self.remove_breakpoint(addr)
        try:
            ptrace.detach(self.pid, self._take_signal())
        except ptrace.PtraceError:
            pass
        self.alive = False
        self.memory.close()
        self.reclaim_terminal()

    def close(self) -> None:
        if self.launched:
            self.kill()
        else:
            self.detach()

    def restore_original_bytes(self) -> None:
        """Put back the byte under every int3 we wrote, from any thread and
        whether the tracee is stopped or running: the last resort when the
        tracer thread cannot get it to a stop in time (the kernel detaches
        it when we exit, but would leave our int3s in its memory).
        The breakpoints stay on record: the tracer thread may still use them."""
        if not self.alive:
            return
        try:
            fd = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return
        try:
            for addr, original in list(self.breakpoints.items()):
                try:
                    os.pwrite(fd, bytes([original]), addr)
                except OSError:
                    pass  # that page went away
        finally:
            os.close(fd)


def launch(spec: LaunchSpec) -> Tracee:
    """Start ``spec`` under ptrace and return it stopped at the first
    instruction of the new image, execve behind it (see finish_execve)."""
    try:
        path, argv, env = _exec_strings(spec)
    except ValueError as err:  # what os.execve refuses: a NUL in a string, '=' in a name
        raise TargetError(f"{spec.path}: execve failed: {err}") from None
    fds = tuple(-1 if fd is None else fd for fd in (spec.stdin_fd, spec.stdout_fd, spec.stderr_fd))
    # vfork, not os.fork: no copy of our address space to make, fault in
    # and tear down again (_stepper.c). The child is ours from its TRACEME,
    # and stops with the SIGTRAP of a traced execve, already out of the
    # syscall, where a PTRACE_EVENT_EXEC stop would be followed by
    # finish_execve.
    pid, failure = ptrace.spawn_traced(path, argv, env, fds, not spec.aslr)
    if pid == -1:
        raise OSError(failure, os.strerror(failure))  # as os.fork raises it
    try:
        _, status = ptrace.waitpid(pid)
        if os.WIFSTOPPED(status) and status >> 8 == _signal.SIGTRAP and not failure:
            ptrace.set_options(pid, LAUNCH_OPTIONS)
            tracee = Tracee(pid, launched=True)
            tracee.terminal_fd = _shared_terminal(spec)
            tracee.last_stop = Stop(StopKind.EVENT, pid, signal=_signal.SIGTRAP,
                                    event=ptrace.EVENT_EXEC)
            return tracee
        _reap(pid, status)
        raise TargetError(launch_failure(spec.path, failure, status))
    except BaseException:
        _reap(pid, None)
        raise


def _exec_strings(spec: LaunchSpec) -> tuple[bytes, list[bytes], list[bytes]]:
    """path, argv and environment as os.execve would pass them."""
    def checked(value: str) -> bytes:
        raw = os.fsencode(value)
        if b"\0" in raw:
            raise ValueError("embedded null byte")
        return raw
    if not spec.argv or not spec.argv[0]:
        raise ValueError("argv[0] must not be empty")
    env = []
    for name, value in spec.env.items():
        raw_name = checked(name)
        if not raw_name or b"=" in raw_name:
            raise ValueError("illegal environment variable name")
        env.append(raw_name + b"=" + checked(value))
    return checked(spec.path), [checked(arg) for arg in spec.argv], env


def _shared_terminal(spec: LaunchSpec) -> int | None:
    """Our descriptor of the terminal the program got as stdin, stdout or
    stderr (inherited from us, not given in ``spec``), if it is our
    controlling terminal: the one it may need lent."""
    for ours, given in ((0, spec.stdin_fd), (1, spec.stdout_fd), (2, spec.stderr_fd)):
        fd = ours if given is None else given
        try:
            if os.isatty(fd):
                os.tcgetpgrp(fd)  # ENOTTY unless it is our controlling terminal
                return fd
        except OSError:
            continue
    return None


def _set_foreground(fd: int, pgrp: int) -> None:
    """tcsetpgrp from a process group that is not in the foreground raises
    SIGTTOU in it (which would stop loaderdbg) unless the caller blocks it."""
    blocked = _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, blocked)


def untrapped_r11(raw: bytes) -> bytes | None:
    """`syscall` saves RFLAGS in r11, and a single-stepped one saves our
    trap flag with it (0x302, PTRACE_NOTES.md §2), a value no untraced run
    sees. The user_regs_struct bytes with that flag taken out of r11, or
    None when r11 does not carry it. Only an r11 that is the flags the
    `syscall` saved (those it returned to, plus our flag) carries it:
    rt_sigreturn gives back the interrupted code's own r11, bit 8 and all."""
    r11 = int.from_bytes(raw[_R11_OFFSET:_R11_OFFSET + 8], "little")
    if not r11 & _EFLAGS_TF:
        return None
    flags = int.from_bytes(raw[_EFLAGS_OFFSET:_EFLAGS_OFFSET + 8], "little")
    if (r11 | _EFLAGS_RF) != (flags | _EFLAGS_TF | _EFLAGS_RF):
        return None
    fixed = bytearray(raw)
    fixed[_R11_OFFSET:_R11_OFFSET + 8] = (r11 & ~_EFLAGS_TF).to_bytes(8, "little")
    return bytes(fixed)


def finish_execve(pid: int, what: str) -> None:
    """Take a tracee at its PTRACE_EVENT_EXEC stop out of the execve syscall.

    The exec event is reported from inside execve: rip already points at the
    new image's first instruction, but a SINGLESTEP from there only completes
    the syscall and traps at the same rip without executing anything. Running
    to execve's syscall-exit stop leaves the tracee where gdb's ``starti``
    does, so step N means N instructions executed (PTRACE_NOTES.md §1, §2).
    Needs TRACESYSGOOD."""
    ptrace.syscall(pid)
    _, status = ptrace.waitpid(pid)
    if os.WIFSTOPPED(status) and os.WSTOPSIG(status) == (_signal.SIGTRAP | 0x80):
        return
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        raise TargetError(f"{what}: died on its way out of execve ({status:#x})")
    raise TargetError(f"{what}: unexpected stop {status:#x} leaving execve")


def signal_caught(pid: int, tid: int, signal: int) -> bool | None:
    """Whether thread ``tid`` of ``pid`` runs a handler of its own for
    ``signal`` delivered now: caught (SigCgt) and not blocked (SigBlk); a
    fault's signal blocked or ignored kills instead (force_sig_info). None
    when /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/task/{tid}/status") as handle:
            status = parse_task_status(handle.read())
    except (OSError, DecodeError):
        return None
    name = _signal.Signals(signal).name
    return name in status.sig_caught and name not in status.sig_blocked


def sigstop_pending(tid: int) -> bool:
    """Whether a SIGSTOP is pending for thread ``tid`` alone (tgkill's, its
    SigPnd)."""
    try:
        with open(f"/proc/{tid}/task/{tid}/status") as handle:
            return "SIGSTOP" in parse_task_status(handle.read()).sig_pending
    except (OSError, DecodeError):
        return False


def launch_failure(path: str, failure: int, status: int) -> str:
    """What to say of a launch whose child never stopped at its first
    instruction: ``failure`` the errno its preparation or execve gave (0
    when none), ``status`` its wait status."""
    if failure <= 0 and os.WIFSIGNALED(status):
        # Someone else's signal (a kill -9) before its first instruction.
        return f"{path}: killed by {_signal.Signals(os.WTERMSIG(status)).name} before its first instruction"
    # strace's spelling: the text, then the name users grep man pages for.
    reason = f"{os.strerror(failure)} ({errno.errorcode.get(failure, failure)})" \
        if failure > 0 else f"status {status:#x}"
    return f"{path}: execve failed: {reason}"


def _reap(pid: int, status: int | None) -> None:
    if status is not None and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
        return
    try:
        os.kill(pid, _signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap_killed(pid)


def _reap_killed(pid: int) -> None:
    """Wait for a SIGKILLed tracee to be gone. A tracee sitting in a
    ptrace-stop (notably PTRACE_EVENT_EXIT) only dies once resumed, and with
    TRACEEXIT it may report one more exit stop, which must be resumed too."""
    try:
        ptrace.cont(pid)
    except ptrace.PtraceError:
        pass  # not in a ptrace-stop: the SIGKILL is already taking it down
    while True:
        try:
            _, status = ptrace.waitpid(pid)
        except ChildProcessError:
            return
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return
        try:
            ptrace.cont(pid)
        except ptrace.PtraceError:
            pass
