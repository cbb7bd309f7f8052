"""`loaderdbg record`: single-step a program from its first instruction and
write every step to a `.ldbg` recording (format: loaderdbg/record/format.py,
documented in recordings/README.md).

The step loop is the hot path: per step one SINGLESTEP, one waitpid, one
GETREGS into a reused buffer, the register delta appended as XOR bytes, and
for an instruction that stores, one pread per written operand (its plan
comes from a cache keyed by address, invalidated when the code's page
changes). A waitpid status other than a plain single-step trap, a
``syscall``, an ``int3``, an instruction we cannot address, a milestone
address or a chunk boundary leaves the fast loop for a slower, careful path.

All ptrace calls happen on the calling thread. The recorder pins that thread
(and so the tracee, which inherits it) to one CPU: stepping is 3× faster
pinned, and the kernel stops rewriting the rseq cpu_id fields
(PTRACE_NOTES.md §3, §9). The tracee is launched with PTRACE_O_EXITKILL and
killed when recording ends, so it never outlives the recorder. Ctrl-C stops
the recording cleanly: the file ends at the last complete step.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import os
import signal as _signal
import sqlite3
import sys
import threading
import time
from array import array
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from loaderdbg import __version__
from loaderdbg.end_signals import ENDING_SIGNALS
from loaderdbg.arch import X86_64, get_arch
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import MapEntry, parse_maps
from loaderdbg.decode.procstatus import parse_task_status
from loaderdbg.decode.syscalls import MAPPING_SYSCALLS
from loaderdbg.decode.siginfo import decode_siginfo, describe_siginfo
from loaderdbg.errors import OutputError, TargetError, UsageError
from loaderdbg.process import ptrace
from loaderdbg.process.follow import SpawnCatcher
from loaderdbg.process.stops import Stop, StopKind, classify
from loaderdbg.process.tracee import LaunchSpec, Tracee, launch, sigstop_pending, untrapped_r11
from loaderdbg.record.capture import (
    ALL_REGISTERS, COMPLEX, INT3, RCX, REG_INDEX, SYSCALL, WRITES, Decoder, Plan, futex_lock_words, rule_address,
    syscall_writes,
)
from loaderdbg.record.format import (
    FORMAT_NAME, FORMAT_VERSION, MASK64, PAGE_SIZE, REGS_SIZE, WRITE_FIXUP, WRITE_INSN, WRITE_KERNEL,
    WRITE_PAGE, encode_writes, memory_checksum, page_ref,
)
from loaderdbg.record.milestones import MilestoneTracker
from loaderdbg.record.shadow import ProcessReader, Shadow, diff_runs
from loaderdbg.record.writer import RecordingWriter
from loaderdbg.session import StopReason
from loaderdbg import targets as reasons
from loaderdbg.targets import MILESTONE_OF_TARGET, Target, parse_target

DEFAULT_CHUNK_STEPS = 4096
DEFAULT_KEYFRAME_CHUNKS = 8
STEP_STATUS = (_signal.SIGTRAP << 8) | 0x7F  # WIFSTOPPED, SIGTRAP, no event
NT_X86_XSTATE = 0x202
ADDR_NO_RANDOMIZE = 0x0040000
UNREADABLE_KINDS = frozenset({"vvar", "vsyscall"})
ELF_MAGIC = b"\x7fELF"
# The /proc/PID/task/TID/status lines a thread view needs (parse_task_status);
# the rest (VmRSS, context switches…) changes all the time.
STATUS_FIELDS = frozenset({"Name", "State", "Tgid", "Pid", "PPid", "TracerPid", "SigQ", "SigPnd", "ShdPnd",
                           "SigBlk", "SigIgn", "SigCgt"})
_RIP = X86_64.register_offset("rip")
_RSP = X86_64.register_offset("rsp")
_RAX = X86_64.register_offset("rax")
_EFLAGS = X86_64.register_offset("eflags")
_ORIG_RAX = X86_64.register_offset("orig_rax")
# What a syscall cut short by a signal returns when the kernel restarts it
# once the stop is over with no handler to run (include/linux/errno.h):
# ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND re-execute it as it was,
# ERESTART_RESTARTBLOCK as restart_syscall.
_RESTART_ERRORS = frozenset({-512, -513, -514})
_RESTART_BLOCK = -516
_RESTART_SYSCALL = X86_64.syscall_numbers["restart_syscall"]
_TF = 0x100
_ARGS = tuple(8 * REG_INDEX[r] for r in ("rdi", "rsi", "rdx", "r10", "r8", "r9"))
_EXIT = X86_64.syscall_numbers["exit"]
_EXECS = frozenset({"execve", "execveat"})
CLONE_THREAD = 0x00010000
CLONE_CHILD_CLEARTID = 0x00200000
# A syscall whose step has not ended after this long blocks (a futex wait,
# a join, a sleep): while another thread is there to step, the recorder
# lets it wait in the kernel and steps that one; its syscall is recorded
# as one step when it has come back and its turn comes.
BLOCKED_AFTER = 0.001
# Syscalls that write no memory and map nothing while they block: the
# keyframe check need not wait for their step. But for a sleep that a
# signal cuts short: it writes the time it had left (the argument below,
# a timespec, when not NULL) before its step ends; and a priority-
# inheritance futex wait, which marks its lock's word (futex_lock_words).
QUIET_BLOCKERS = frozenset({"futex", "nanosleep", "clock_nanosleep", "sched_yield", "pause"})
_TIME_LEFT = {"nanosleep": 1, "clock_nanosleep": 3}
# How long Ctrl-C waits for the step of a syscall it found in flight: our
# SIGSTOP cuts an interruptible wait short at once; one that does not come
# back by then (an uninterruptible wait) is left out of the recording.
CUT_SHORT_WAIT = 1.0



class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


@dataclass(frozen=True)
class RecordingSummary:
    path: str
    program: str
    steps: int
    syscalls: int
    events: int
    seconds: float
    steps_per_second: float
    file_bytes: int
    bytes_per_step: float
    stop_reason: StopReason
    interrupted: bool
    ending_signal: int | None  # SIGINT, SIGTERM or SIGHUP when interrupted
    divergences: int  # bytes that changed with no recorded write (keyframe checks); 0 when capture is complete
    pinned_cpu: int | None
    milestones: tuple[tuple[str, int], ...]
    warnings: tuple[str, ...] = ()
    setup_seconds: float = 0.0  # launch, first image, file capture
    loop_steps_per_second: float = 0.0  # steps/s after setup (the step loop, keyframes, final flush)

    def describe(self) -> str:
        rate = f"{self.steps_per_second:,.0f} steps/s"
        size = f"{self.file_bytes / 1e6:.2f} MB ({self.bytes_per_step:.1f} B/step)"
        text = f"recorded {self.steps:,} steps of {self.program} in {self.seconds:.1f} s ({rate}) to " \
               f"{self.path}: {size}; {self.stop_reason.description}"
        if self.divergences:
            text += f"; WARNING: {self.divergences} bytes changed without a recorded write"
        return text


def record_program(spec: LaunchSpec, output: str, until: str = "exit", progress: bool | None = None, *,
                   chunk_steps: int = DEFAULT_CHUNK_STEPS, keyframe_chunks: int = DEFAULT_KEYFRAME_CHUNKS,
                   pin: bool = True, max_steps: int | None = None, level: int = 7,
                   file_level: int = 19, replace: bool = True) -> RecordingSummary:
    """Launch ``spec`` stopped at its first instruction and record every
    step until the stop target ``until`` (default: the exit) into
    ``output``. A progress line goes to stderr when it is a terminal (or
    when ``progress`` is True). ``output`` must be a new path or, when
    ``replace``, a loaderdbg recording (see writer.OutputFile)."""
    target = parse_target(until)
    if progress is None:
        progress = sys.stderr.isatty()
    recorder = Recorder(spec, output, target, progress=progress, chunk_steps=chunk_steps,
                        keyframe_chunks=keyframe_chunks, pin=pin, max_steps=max_steps, level=level,
                        file_level=file_level, replace=replace)
    return recorder.run()


def record_spawn(pid: int, output: str, until: str = "exit", *, match: str | None = None,
                 on_ready: Callable[[], None] | None = None, progress: bool | None = None,
                 timeout: float | None = None, chunk_steps: int = DEFAULT_CHUNK_STEPS,
                 keyframe_chunks: int = DEFAULT_KEYFRAME_CHUNKS, pin: bool = True,
                 max_steps: int | None = None, level: int = 7, file_level: int = 19,
                 replace: bool = True) -> RecordingSummary:
    """Attach to the running process ``pid``, catch the first child it
    execs (whose path or argv[0] matches ``match``) at its first
    instruction, and record it like a launched program.

    The parent is seized without PTRACE_O_EXITKILL and let go as soon as
    the child is caught: it keeps running, untraced, whatever happens to
    us. The child is attached, not launched: when the recording ends before
    the child does, it is detached and runs on (with the signal it was
    about to receive, if any). ``on_ready`` is called once the parent is
    seized (spawns are caught from then on)."""
    target = parse_target(until)
    if progress is None:
        progress = sys.stderr.isatty()
    catcher = SpawnCatcher(pid, match, timeout, on_ready)
    recorder = Recorder(None, output, target, progress=progress, chunk_steps=chunk_steps,
                        keyframe_chunks=keyframe_chunks, pin=pin, max_steps=max_steps, level=level,
                        file_level=file_level, catcher=catcher, replace=replace)
    return recorder.run()


def _caught_spec(pid: int, path: str, argv: tuple[str, ...]) -> LaunchSpec:
    """What a caught child was started with, as a LaunchSpec (the recording's
    meta and the milestone tracker want one)."""
    env: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            for item in handle.read().split(b"\0"):
                if item:
                    key, _, value = item.decode("utf-8", "surrogateescape").partition("=")
                    env[key] = value
    except OSError:
        pass
    aslr = True
    try:
        with open(f"/proc/{pid}/personality") as handle:
            aslr = not int(handle.read().strip(), 16) & ADDR_NO_RANDOMIZE
    except (OSError, ValueError):
        pass
    return LaunchSpec(path=path, argv=argv, env=env, aslr=aslr)


@dataclass
class _Chunk:
    start: int
    regs: bytes
    xor: bytearray = field(default_factory=bytearray)
    # The write table, columnar (format.encode_writes).
    w_steps: array = field(default_factory=lambda: array("I"))
    w_addrs: array = field(default_factory=lambda: array("Q"))
    w_sizes: array = field(default_factory=lambda: array("I"))
    w_kinds: bytearray = field(default_factory=bytearray)
    data: bytearray = field(default_factory=bytearray)

    def add_write(self, step_offset: int, addr: int, size: int, kind: int) -> None:
        self.w_steps.append(step_offset)
        self.w_addrs.append(addr)
        self.w_sizes.append(size)
        self.w_kinds.append(kind)
    pcs: set = field(default_factory=set)
    pages: set = field(default_factory=set)
    wmask: int = 0


@dataclass
class _Waiting:
    """A traced thread that is not the stepping one."""

    regs: bytes  # as recorded: where it stands (at its syscall, when blocked)
    pending_signal: int = 0
    # (finish, its arguments, (number, name, args)) of a syscall that did not
    # end within its step: the thread runs in the kernel, and its step ends
    # (finish(*arguments, status)) when it has come back and its turn comes.
    blocked: tuple | None = None
    status: int | None = None  # how the blocked step ended, once collected


def _write_failure(err: BaseException) -> bool:
    """An error of the recording file itself (the disk full, a file size
    limit, an I/O error), as SQLite or the OS reports it."""
    if isinstance(err, sqlite3.Error):
        return True  # the recording is the only database we touch
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO)


class _Stop(Exception):
    """Ends the step loop; carries the reason of the last position."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason.description)
        self.reason = reason


class Recorder:
    """Records one launched or caught program, every thread of it, to a
    .ldbg file: ptrace single-steps on x86-64, with the hot loop below.

    A recorder of another kind of target subclasses it (record/
    guest_recorder.py, qemu-user's aarch64 guests): it brings its own step
    loop (``_loop``, ``_fetch_regs``, ``_read_maps``, ``_update_threads``,
    ``_on_sigint``) and ``launch_target``/``make_decoder``/``kernel_writes``,
    and records through the machinery here, which is its interface to
    subclasses and to nobody else: ``_commit`` a step's registers,
    ``_record_write``/``_diff_writable``/``_resync_maps`` what it wrote,
    ``_syscall_done``/``_syscall_returned`` a syscall, ``_signal_stop``/
    ``_exit_reason``/``_end`` how it stopped, ``_after_special`` the targets
    reached, ``_decode`` a plan, ``_new_chunk``/``_flush_chunk``/
    ``_flush_events``/``_progress_update`` the file."""

    # The recorded program's architecture (loaderdbg/arch): its register
    # block is what the chunks store, its pc what they index. A recorder of
    # another kind of target (record/guest_recorder.py) names its own.
    arch_name = "x86_64"

    def __init__(self, spec: LaunchSpec | None, output: str, target: Target, *, progress: bool, chunk_steps: int,
                 keyframe_chunks: int, pin: bool, max_steps: int | None, level: int, file_level: int,
                 catcher: SpawnCatcher | None = None, replace: bool = True) -> None:
        if chunk_steps < 1 or keyframe_chunks < 1:
            raise ValueError("chunk_steps and keyframe_chunks must be positive")
        if (spec is None) == (catcher is None):
            raise ValueError("record either a LaunchSpec or a caught spawn")
        self.spec = spec
        self.catcher = catcher
        self.output = output
        self.target = target
        self.progress = progress
        self.chunk_steps = chunk_steps
        self.keyframe_steps = chunk_steps * keyframe_chunks
        self.pin = pin
        self.max_steps = max_steps
        self.level = level
        self.file_level = file_level
        self.replace = replace
        self.arch = get_arch(self.arch_name)
        self.regs_size = self.arch.user_regs_size
        self.pc_offset = self.arch.register_offset(self.arch.pc_register)
        self.sp_offset = self.arch.register_offset(self.arch.sp_register)
        self._execs: list[dict] = []  # meta "execs": each image after the first (_note_new_image)
        self.warnings: list[str] = []
        self.interrupted = False
        self.ending_signal: int | None = None  # the signal that interrupted the recording
        self.divergences = 0
        self.syscall_count = 0
        self.pending_signal = 0
        self.pos = 0
        self.finished = False
        self._no_verify = False
        self.end_reason: StopReason | None = None
        self.pinned_cpu: int | None = None
        # Set as the run gets there (attributes exist from the start, so
        # clean-up paths ask them instead of probing with getattr).
        self.pid: int | None = None
        # Threads: the stepping one (its tid), every other traced thread,
        # and once a second thread appeared the schedule is recorded.
        self.tid: int | None = None
        self.others: dict[int, _Waiting] = {}
        self.threaded = False
        self.resuming: tuple | None = None  # a blocked syscall whose step the stepping thread ends next
        self.clear_tids: dict[int, int] = {}  # tid -> the word the kernel zeroes when it exits
        # Threads a clone made whose step has not ended, by the thread that
        # made each (a clone taken for a blocked call can end after another
        # thread's turn, which may clone too).
        self.newborns: dict[int, tuple[int, bytes]] = {}
        self.chunk: _Chunk | None = None
        self.loop_started: float | None = None
        self.crash_reason: StopReason | None = None
        self._child_affinity: set[int] | None = None
        self._flushed_final = False
        self._last_progress: float | None = None
        self._stop_sent_to: int | None = None  # the thread Ctrl-C's SIGSTOP went to, until a step meets it
        self._shadow_ahead = False  # the shadow holds writes of steps the file drops (_salvage)
        # The stepping thread's syscall (number, name, args) that Ctrl-C left
        # in flight: the recording ends before it (_stop_in_syscall).
        self._in_flight: tuple | None = None

    # ------------------------------------------------------------------ setup
    def run(self) -> RecordingSummary:
        started = time.monotonic()
        original_affinity = None
        if self.pin:
            try:
                original_affinity = os.sched_getaffinity(0)
                self.pinned_cpu = min(original_affinity)
                os.sched_setaffinity(0, {self.pinned_cpu})
            except OSError:
                original_affinity = None
                self.pinned_cpu = None
        old_handlers: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            # SIGTERM and SIGHUP (a closed terminal) end a recording as
            # Ctrl-C does: cleanly at the last complete step. Raised in the
            # middle of the step loop they left a chunk half written.
            for signum in ENDING_SIGNALS:
                if _signal.getsignal(signum) is not _signal.SIG_IGN:
                    old_handlers[signum] = _signal.signal(signum, self._on_sigint)
        tracee = None
        self.writer = None
        try:
            others = (original_affinity or os.sched_getaffinity(0)) - {self.pinned_cpu}
            try:
                self.writer = RecordingWriter(self.output, replace=self.replace, level=self.level,
                                              file_level=self.file_level, background_cpus=others or None)
            except (sqlite3.Error, OSError) as err:
                raise UsageError(f"{self.output}: cannot write a recording there ({err})") from None
            if self.writer.notice:
                print(f"loaderdbg: {self.writer.notice}", file=sys.stderr, flush=True)
            if self.catcher is None:
                tracee = self.launch_target()
            else:
                tracee = self._catch()
            self.pid = self.tid = tracee.pid
            self.tracker = MilestoneTracker(tracee, self.spec)
            if self.catcher is not None:
                self.tracker.caught(self.catcher.parent)
            try:
                self._setup()
            except BaseException as err:
                if _write_failure(err):
                    raise OutputError(f"{self.output}: cannot write the recording ({err}): it filled up "
                                      "before its first step was saved; nothing to replay") from None
                raise
            self.loop_started = time.monotonic()
            try:
                if self.interrupted:
                    # Ctrl-C came while launching (no process to stop yet): the
                    # recording ends at the first instruction, as asked.
                    self._end(reasons.recording_interrupted(self.target, self.pos))
                self._check_targets_here(initial=True)
                self._loop()
            except _Stop as stop:
                self._finish(stop.reason)
            except BaseException as err:
                self._salvage()
                if _write_failure(err):
                    raise OutputError(f"{self.output}: cannot write the recording at step {self.pos} "
                                      f"({err}); the steps saved before that replay") from None
                raise
        finally:
            if tracee is not None:
                self._let_go(tracee)
            for signum, handler in old_handlers.items():
                _signal.signal(signum, handler)
            if original_affinity is not None:
                try:
                    os.sched_setaffinity(0, original_affinity)
                except OSError:
                    pass
            if self.writer is not None and not self.finished and self.chunk is None:
                self.writer.discard()  # failed before the first step: nothing worth keeping
            if self.progress and self.writer is not None:
                sys.stderr.write("\n")
                sys.stderr.flush()
        ended = time.monotonic()
        seconds = max(ended - started, 1e-9)
        loop_started = self.loop_started if self.loop_started is not None else ended
        size = os.path.getsize(self.output)
        milestones = tuple((e.name, e.step) for e in self.tracker.events if e.kind == "milestone")
        return RecordingSummary(
            path=self.output, program=self.spec.path, steps=self.pos, syscalls=self.syscall_count,
            events=len(self.tracker.events), seconds=seconds, steps_per_second=self.pos / seconds,
            file_bytes=size, bytes_per_step=size / max(self.pos, 1), stop_reason=self.end_reason,
            interrupted=self.interrupted, ending_signal=self.ending_signal, divergences=self.divergences,
            pinned_cpu=self.pinned_cpu,
            milestones=milestones, warnings=tuple(self.warnings),
            setup_seconds=loop_started - started, loop_steps_per_second=self.pos / max(ended - loop_started, 1e-9))

    def _catch(self) -> Tracee:
        """Wait for the parent to exec a matching child; the child is ours,
        at its first instruction, and the parent runs on untraced."""
        catcher = self.catcher
        tracee = catcher.catch()
        try:
            self.spec = _caught_spec(tracee.pid, catcher.caught.path, catcher.caught.argv)
            self._child_affinity = None
            if self.pinned_cpu is not None:
                # It is the parent's child, not ours: it does not inherit our
                # pinning, and stepping unpinned is 3x slower (and lets the
                # kernel rewrite rseq's cpu_id between steps).
                try:
                    self._child_affinity = os.sched_getaffinity(tracee.pid)
                    os.sched_setaffinity(tracee.pid, {self.pinned_cpu})
                except OSError:
                    self._child_affinity = None
        except BaseException:
            tracee.detach()
            raise
        return tracee

    def _let_go(self, tracee: Tracee) -> None:
        """A launched tracee dies with the recording; a caught child is
        detached running, with its own CPU set back and the signal it was
        about to get (a fault it must die of, as it would have untraced)."""
        tracee.reclaim_terminal()  # if it was lent ours
        for tid, raw in self.newborns.values():
            # A thread whose clone's step had not ended (Ctrl-C met its
            # creator there, or the step was taken for a blocked one) is
            # ours too, in its first stop: the leader's end waits for its.
            self.others.setdefault(tid, _Waiting(raw))
        self.newborns.clear()
        if tracee.launched:
            if tracee.alive and (self.others or self.tid != self.pid):
                # The leader's end is reported only once every thread's is reaped.
                self._reap_threads(kill=True)
                tracee.alive = False
            tracee.kill()
            return
        if not tracee.alive:
            return
        if self._child_affinity is not None:
            try:
                os.sched_setaffinity(tracee.pid, self._child_affinity)
            except OSError:
                pass
        self._take_back_stop()
        self._detach_threads()
        tracee.pending_signal = self.pending_signal if self.tid == self.pid else 0
        self.pending_signal = 0
        tracee.detach()

    def _take_back_stop(self) -> None:
        """Ctrl-C's SIGSTOP that no step met (the recording was ending
        anyway) is still pending for its thread: let go with it, the caught
        program would stop for good, untraced. The thread takes it now, in a
        signal stop that is not delivered (any signal it was about to get
        is, on the way)."""
        tid, self._stop_sent_to = self._stop_sent_to, None
        if tid == self.tid:
            waiting = None
        elif tid in self.others and self.others[tid].blocked is None:
            waiting = self.others[tid]
        else:
            return  # gone, or in a syscall: detaching interrupts it and sees the stop
        for _ in range(8):
            if not sigstop_pending(tid):
                return
            deliver = self.pending_signal if waiting is None else waiting.pending_signal
            try:
                ptrace.cont(tid, deliver)
                status = ptrace.waitpid(tid)[1]
            except (ptrace.PtraceError, ChildProcessError):
                return
            if not os.WIFSTOPPED(status):
                return
            stopped_by = os.WSTOPSIG(status) if (status >> 16) & 0xFF == 0 else 0
            kept = 0 if stopped_by == _signal.SIGSTOP else stopped_by  # another signal is delivered next
            if waiting is None:
                self.pending_signal = kept
            else:
                waiting.pending_signal = kept

    def _detach_threads(self) -> None:
        """A caught child's threads other than the leader run on untraced,
        each with the signal it was about to get (a blocked one is stopped
        first: only a stopped thread can be let go)."""
        waiting = dict(self.others)
        if self.tid != self.pid:
            waiting[self.tid] = _Waiting(self.regs, self.pending_signal)
        self.others.clear()
        for tid, thread in waiting.items():
            if tid == self.pid:
                continue
            if thread.blocked is not None and thread.status is None:
                try:
                    ptrace.interrupt(tid)
                    ptrace.waitpid(tid)
                except (ptrace.PtraceError, ChildProcessError):
                    continue
            try:
                ptrace.detach(tid, thread.pending_signal)
            except ptrace.PtraceError:
                pass

    def _on_sigint(self, signum, frame) -> None:
        if self.interrupted or self.finished:
            raise KeyboardInterrupt
        self.interrupted = True
        self.ending_signal = signum
        pid = self.pid
        if pid is None and self.catcher is not None:
            self.catcher.cancelled = True  # still waiting for a spawn: it lets the parent go
            return
        if pid is not None:
            # At the traced thread itself: it wakes a tracee blocked in a
            # syscall too, and never starts a group-stop in other threads.
            try:
                ptrace.tgkill(pid, self.tid or pid, _signal.SIGSTOP)
                self._stop_sent_to = self.tid or pid
            except ProcessLookupError:
                pass  # gone already: the step loop sees it die

    def _setup(self) -> None:
        self.reader = ProcessReader(self.pid)
        self.shadow = Shadow()
        xsave_size, xcr0 = _xstate(self.pid)
        self.decoder = self.make_decoder(xsave_size or 4096)
        self.plans: dict[int, Plan] = {}
        self.code_pages: dict[int, list[int]] = {}
        self.image_hashes: dict[int, bytes | None] = {}
        self.dirty: set[int] = set()
        self.rseq: dict[int, tuple[int, int]] = {}  # each thread's registered rseq area
        self.events_written = 0
        self.threads_json = None
        self.stop_addrs: dict[int, str] = {}
        self.stop_step = -1
        self._regs_buffer = ptrace.RegisterBuffer()
        self.regs = self._fetch_regs()
        self.maps_text = ""
        self.maps: tuple[MapEntry, ...] = ()
        self.file_ids: dict[tuple, int | None] = {}
        state = self.tracker.state
        w = self.writer
        w.put_meta("format", FORMAT_NAME)
        w.put_meta("format_version", FORMAT_VERSION)
        w.put_meta("arch", self.arch.name)
        w.put_meta("program", self.spec.path)
        w.put_meta("argv", list(self.spec.argv))
        w.put_meta("envp", [f"{k}={v}" for k, v in self.spec.env.items()])
        w.put_meta("aslr", self.spec.aslr)
        w.put_meta("pid", self.pid)
        if self.catcher is not None:
            w.put_meta("caught_from", self.catcher.parent)
        uname = os.uname()
        w.put_meta("kernel", f"{uname.sysname} {uname.release} {uname.version} {uname.machine}")
        w.put_meta("loaderdbg_version", __version__)
        w.put_meta("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        w.put_meta("cpu", _cpu_info())
        w.put_meta("xcr0", xcr0)
        w.put_meta("xsave_size", xsave_size)
        w.put_meta("pinned_cpu", self.pinned_cpu)
        w.put_meta("chunk_steps", self.chunk_steps)
        w.put_meta("keyframe_interval", self.keyframe_steps)
        w.put_meta("page_size", PAGE_SIZE)
        w.put_meta("regs_size", self.regs_size)
        w.put_meta("until", str(self.target))
        w.put_meta("kernel_sp", state.kernel_sp)
        w.put_meta("entry_pc", state.entry_pc)
        w.put_meta("kernel_auxv", state.kernel_auxv_raw.hex())
        w.put_meta("complete", False)
        self._known = {"ldso": None, "at_entry": None}
        self._note_knowledge()
        # Step 0: the whole address space.
        self._initial_image()
        self._update_threads(0)
        self.chunk = self._new_chunk(0)
        self._flush_events()
        w.commit()
        if self.target.kind == "step":
            self.stop_step = self.target.value
        if self.max_steps is not None and (self.stop_step < 0 or self.max_steps < self.stop_step):
            self.stop_step = self.max_steps

    def launch_target(self):
        """Start the program stopped at its first instruction (the step
        loop's target)."""
        return launch(self.spec)

    def make_decoder(self, xsave_size: int):
        """The instruction -> write Plan decoder of the recorded arch."""
        return Decoder(xsave_size)

    def kernel_writes(self, name: str, args: tuple[int, ...], result: int) -> list[tuple[int, int]] | None:
        """[(address, size)] a syscall that returned ``result`` wrote; None
        when unknown (all writable memory is compared)."""
        return syscall_writes(name, args, result, self.reader.read)

    def _new_chunk(self, start: int) -> _Chunk:
        chunk = _Chunk(start, self.regs)
        chunk.pcs.add(self._word(self.regs, self.pc_offset))
        return chunk

    @staticmethod
    def _word(regs: bytes, offset: int) -> int:
        return int.from_bytes(regs[offset:offset + 8], "little")

    def _fetch_regs(self) -> bytes:
        try:
            return self._regs_buffer.fetch(self.tid)
        except ptrace.PtraceError as err:
            raise TargetError(f"GETREGS failed at step {self.pos}: {os.strerror(err.errno)}") from None

    def _wait_after_failed_step(self) -> int:
        """The step helper's result when SINGLESTEP found the tracee off its
        stop (ESRCH: a SIGKILL landed between our stops) or a signal for us
        interrupted the wait (EINTR): os.waitpid says what became of the
        step (running the signal handlers)."""
        status = ptrace.waitpid(self.tid)[1]
        if status != STEP_STATUS:
            return status
        self._fetch_regs()
        return status | ptrace.STEP_REGS_FETCHED

    # ----------------------------------------------------------- the hot loop
    def _loop(self) -> None:
        # SINGLESTEP + waitpid + GETREGS in one foreign call fed ready-made
        # ctypes values (ptrace.step_and_fetch): a third of the loop's
        # Python-side cost went into making them three.
        step_and_fetch = ptrace.step_and_fetch
        REGS_FETCHED = ptrace.STEP_REGS_FETCHED
        c_pid = ctypes.c_int(self.tid)
        regs_addr = self._regs_buffer.c_address
        regs_buf = self._regs_buffer.raw
        pread = os.pread
        plans_get = self.plans.get
        shadow_get = self.shadow.pages.get
        code_pages = self.code_pages
        watch = self.tracker.watch
        stop_addrs = self.stop_addrs
        from_bytes = int.from_bytes
        bytearray_ = bytearray
        chunk_steps = self.chunk_steps
        while True:
            if c_pid.value != self.tid:
                c_pid = ctypes.c_int(self.tid)  # another thread steps now
            prev = self.regs
            prev_int = from_bytes(prev, "little")
            rip = from_bytes(prev[_RIP:_RIP + 8], "little")
            pos = self.pos
            chunk = self.chunk
            start = chunk.start
            limit = start + chunk_steps
            if 0 <= self.stop_step < limit:
                limit = self.stop_step
            xor = chunk.xor
            w_steps = chunk.w_steps.append
            w_addrs = chunk.w_addrs.append
            w_sizes = chunk.w_sizes.append
            w_kinds = chunk.w_kinds.append
            data = chunk.data
            pcs_add = chunk.pcs.add
            pages_add = chunk.pages.add
            fd = self.reader.fd
            wmask = 0
            why = 0
            status = 0
            step_errno = 0
            plan = None
            raw = prev
            careful = self.pending_signal or self.resuming is not None or _restarted_syscall(prev) is not None
            if careful and pos < limit:
                limit = pos  # deliver it, or restart the syscall, on the careful path first
                why = 2
            # (At a full chunk, or the stop step, that step waits: a special
            # step there made a chunk one step too long, e.g. a thread whose
            # blocked syscall came back just as the chunk filled.)
            while pos < limit:
                plan = plans_get(rip)
                if plan is None:
                    self.pos = pos
                    plan = self._decode(rip)
                kind = plan[0]
                if kind > WRITES:
                    why = 2
                    break
                result = step_and_fetch(c_pid, regs_addr)
                if result < REGS_FETCHED:
                    if result == -errno.EINTR or result == -errno.ESRCH:
                        result = self._wait_after_failed_step()
                    if result < 0:
                        step_errno = -result
                        why = 5
                        break
                    if result < REGS_FETCHED:
                        if result == STEP_STATUS:
                            # The trap came but GETREGS found the thread gone
                            # from it: a SIGKILL woke it, and its exit event
                            # (the step ran) is what says how the step ended.
                            result = ptrace.waitpid(self.tid)[1]
                        status = result
                        why = 3
                        break
                raw = regs_buf.raw
                cur = from_bytes(raw, "little")
                delta = cur ^ prev_int
                if not delta:
                    why = 4
                    break
                xor += delta.to_bytes(REGS_SIZE, "little")
                if kind:
                    if not plan[3] or prev[RCX:RCX + 8] != b"\0\0\0\0\0\0\0\0":
                        t = pos - start
                        for b, i, sc, d, sg, size, mask in plan[1]:
                            if b >= 0:
                                d += from_bytes(prev[b:b + 8], "little")
                            if i >= 0:
                                d += from_bytes(prev[i:i + 8], "little") * sc
                            d &= mask
                            if sg >= 0:
                                d = (d + from_bytes(prev[sg:sg + 8], "little")) & MASK64
                            page = d >> 12
                            pg = shadow_get(page)
                            o = d & 4095
                            if pg.__class__ is bytearray_ and o + size <= 4096:
                                try:
                                    new = pread(fd, size, d)
                                except OSError:
                                    new = b""
                                if len(new) == size:
                                    old = pg[o:o + size]
                                    pg[o:o + size] = new
                                    w_steps(t)
                                    w_addrs(d)
                                    w_sizes(size)
                                    w_kinds(0)
                                    data += new
                                    data += old
                                    pages_add(page)
                                    if page in code_pages:
                                        self._invalidate_page(page)
                                    continue
                            self.pos = pos
                            self._record_write(pos, d, size, WRITE_INSN)
                wmask |= plan[2]
                pos += 1
                prev = raw
                prev_int = cur
                rip = (cur >> 1024) & MASK64
                pcs_add(rip)
                if rip in watch or rip in stop_addrs:
                    why = 1
                    break
            self.pos = pos
            self.regs = prev
            chunk.wmask |= wmask
            if why == 0:
                if pos == self.stop_step:
                    self._stop_at_step()
                if self.others and not careful:
                    self._switch()  # every chunk_steps steps, another thread's turn
                self._flush_chunk(keyframe=pos % self.keyframe_steps == 0)
                self.chunk = self._new_chunk(pos)
                self._progress_update()
            elif why == 1:
                self._arrived()
            elif why == 2:
                self._special(plan)
            elif why == 3:
                self._unusual(status, plan)
            elif why == 4:
                self._unchanged(plan, raw)
            else:
                raise TargetError(f"single-step failed at step {pos}: {os.strerror(step_errno)}")

    # --------------------------------------------------------- decoding cache
    def _decode(self, rip: int) -> Plan:
        code = self.reader.read(rip, 16)
        if code is None:
            code = b""
            for size in (8, 4, 2, 1):
                part = self.reader.read(rip, size)
                if part is not None:
                    code = part
                    break
        plan = self.decoder.plan(code, rip) if code else Plan(COMPLEX, text="(unreadable)")
        self.plans[rip] = plan
        last = rip + max(plan[4], 1) - 1
        for page in {rip >> 12, last >> 12}:
            self.code_pages.setdefault(page, []).append(rip)
        return plan

    def _invalidate_page(self, page: int) -> None:
        for rip in self.code_pages.pop(page, ()):
            self.plans.pop(rip, None)

    # ---------------------------------------------------------- transitions
    def _append_write(self, t: int, addr: int, size: int, kind: int, new: bytes, old: bytes) -> None:
        chunk = self.chunk
        chunk.add_write(t - chunk.start, addr, size, kind)
        chunk.data += new
        chunk.data += old
        for page in range(addr >> 12, ((addr + size - 1) >> 12) + 1):
            chunk.pages.add(page)
            if page in self.code_pages:
                self._invalidate_page(page)

    def _record_write(self, t: int, addr: int, size: int, kind: int) -> None:
        """Capture [addr, addr+size) as written by transition t (slow path:
        page-crossing, pages new to us, unreadable addresses)."""
        if size <= 0 or addr + size > 1 << 63:
            return
        new = self.reader.read(addr, size)
        if new is None or not self.shadow.covers(addr, size):
            self._resync_maps(t)
            new = self.reader.read(addr, size)
            if new is None:
                if kind == WRITE_INSN:
                    self.warnings.append(f"step {t}: write of {size} bytes at {addr:#x} unreadable")
                return
            if not self.shadow.covers(addr, size):
                start = addr & ~(PAGE_SIZE - 1)
                end = (addr + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
                for page, content in self.reader.read_pages(start, end):
                    if page not in self.shadow:
                        self._page_change(t, page, content)
        old = self.shadow.read(addr, size)
        self.shadow.write(addr, new)
        self._append_write(t, addr, size, kind, new, old)

    def _commit(self, raw: bytes, wmask: int) -> None:
        """Close transition self.pos: its register delta, then the position."""
        chunk = self.chunk
        delta = int.from_bytes(raw, "little") ^ int.from_bytes(self.regs, "little")
        chunk.xor += delta.to_bytes(self.regs_size, "little")
        chunk.wmask |= wmask
        self.pos += 1
        self.regs = raw
        chunk.pcs.add(self._word(raw, self.pc_offset))

    def _amend(self, raw: bytes) -> None:
        """Replace the registers of the current position (no transition)."""
        chunk = self.chunk
        change = int.from_bytes(raw, "little") ^ int.from_bytes(self.regs, "little")
        if self.pos > chunk.start:
            row = len(chunk.xor) - self.regs_size
            last = int.from_bytes(chunk.xor[row:], "little") ^ change
            chunk.xor[row:] = last.to_bytes(self.regs_size, "little")
        elif self.pos == 0:
            chunk.regs = raw
        else:
            return  # the position closes an already written chunk: keep it as stepped
        self.regs = raw

    def _issue(self, signal: int = 0) -> int:
        try:
            ptrace.singlestep(self.tid, signal)
        except ptrace.PtraceError as err:
            raise TargetError(f"single-step failed at step {self.pos}: {os.strerror(err.errno)}") from None
        return ptrace.waitpid(self.tid)[1]

    def _special(self, plan: Plan) -> None:
        if self.resuming is not None:
            return self._end_blocked_step()
        restarted = _restarted_syscall(self.regs)
        if self.pending_signal:
            self._signal_step()
        elif restarted is not None:
            self._restart_step(restarted)
        elif plan[0] == SYSCALL:
            self._syscall_step(plan)
        elif plan[0] == INT3:
            self._int3_step(plan)
        else:
            self._complex_step(plan)

    def _complex_step(self, plan: Plan) -> None:
        status = self._issue()
        if status != STEP_STATUS:
            return self._unusual(status, plan)
        raw = self._fetch_regs()
        t = self.pos
        self._resync_maps(t)
        self._diff_writable(t, WRITE_INSN)
        self._commit(raw, plan[2])
        self._after_special()

    def _int3_step(self, plan: Plan) -> None:
        status = self._issue()
        if status != STEP_STATUS:
            return self._unusual(status, plan)
        raw = self._fetch_regs()
        self._commit(raw, plan[2])
        # The program's own int3: it must receive SIGTRAP, as live sessions do.
        stop = Stop(StopKind.BREAKPOINT, self.tid, signal=_signal.SIGTRAP, si_code=0x80)
        self.tracker.stopped(self.pos, raw, stop)
        self.pending_signal = self.tracker.take_pending_signal()
        self.writer.add_signal(self.pos, _signal.SIGTRAP, None, "int3")
        self._flush_events()
        self._after_special()

    def _restart_step(self, number: int) -> None:
        """The step after a stop that cut a syscall short and delivered
        nothing: the kernel moves rip back onto the `syscall` and runs it
        again, within this step (a read of the terminal we lent, after its
        SIGTTIN). Its writes are recorded as any syscall's are."""
        syscall_at = self._word(self.regs, _RIP) - 2
        plan = self.plans.get(syscall_at) or self._decode(syscall_at)
        if plan[0] == SYSCALL:
            return self._syscall_step(plan, number)
        self._signal_step()  # not a `syscall` (int 0x80): what the kernel wrote is found all the same

    def _signal_step(self) -> None:
        sig, self.pending_signal = self.pending_signal, 0
        restarted = _restarted_syscall(self.regs)
        syscall = None
        if restarted is not None:
            # Cut short by this signal: if the program ignores it, the kernel
            # runs the syscall again within this step.
            args = tuple(self._word(self.regs, offset) for offset in _ARGS)
            syscall = (restarted, self.arch.syscall_names.get(restarted, f"syscall_{restarted}"), args)
            self.tracker.syscall_entry(self.pos, self.regs, restarted, args)
        if self.others and syscall is not None:
            status = self._issue_or_block(sig)  # the syscall run again may block
            if status is None:
                return self._block((self._signal_step_ended, (syscall,), syscall))
        else:
            status = self._issue(sig)
        self._signal_step_ended(syscall, status)

    def _signal_step_ended(self, syscall: tuple | None, status: int) -> None:
        """The step that delivered a signal (or ran the syscall it cut short
        again, ``syscall``) ended with ``status``."""
        if status != STEP_STATUS:
            return self._unusual(status, None)
        raw = self._fetch_regs()
        t = self.pos
        ran_again = syscall is not None and raw[_RIP:_RIP + 8] == self.regs[_RIP:_RIP + 8]
        if ran_again:
            raw = self._untrap_r11(raw)
        # A handler frame (or the instruction itself, or the restarted
        # syscall, if the signal was ignored).
        self._resync_maps(t)
        self._diff_writable(t, WRITE_KERNEL)
        self._commit(raw, ALL_REGISTERS)
        if ran_again:
            self._syscall_done(t, syscall, raw, int.from_bytes(raw[_RAX:_RAX + 8], "little", signed=True))
            self._flush_events()
        self._after_special()

    def _syscall_entered(self, number: int, args: tuple[int, ...]) -> str:
        """The syscall about to run at this position: the tracker hears of
        it, and a `syscall` stop target ends the recording here. Its name."""
        name = self.arch.syscall_names.get(number, f"syscall_{number}")
        self.tracker.syscall_entry(self.pos, self.regs, number, args)
        target = self.target
        if target.kind == "syscall" and target.name in (None, name):
            self._end(reasons.syscall_entry(target, self.tracker.pending_syscall_text()))
        return name

    def _syscall_step(self, plan: Plan, number: int | None = None) -> None:
        """Step the `syscall` of plan: at it (number None: rax's), or
        restarted by the kernel (number given)."""
        regs = self.regs
        if number is None:
            number = self._word(regs, _RAX)
        args = tuple(self._word(regs, offset) for offset in _ARGS)
        t = self.pos
        name = self._syscall_entered(number, args)
        if not self.others:
            status = self._issue()
        elif name in _EXECS:
            status = self._issue_exec()
        else:
            status = self._issue_or_block()
            if status is None:
                return self._block((self._syscall_ended, (plan, (number, name, args)), (number, name, args)))
        self._syscall_ended(plan, (number, name, args), status)

    def _syscall_ended(self, plan: Plan, syscall: tuple, status: int) -> None:
        """The step of the `syscall` at self.pos ended with ``status``."""
        number, name, args = syscall
        t = self.pos
        if status != STEP_STATUS:
            return self._unusual(status, plan, syscall=syscall)
        raw = self._untrap_r11(self._fetch_regs())
        result = int.from_bytes(raw[_RAX:_RAX + 8], "little", signed=True)
        self._syscall_returned(t, plan, (number, name, args), raw, result)

    def _syscall_returned(self, t: int, plan: Plan, syscall: tuple, raw: bytes, result: int) -> None:
        """The syscall stepped by transition t returned ``result`` with
        registers ``raw``: what it wrote and mapped, its row and events."""
        number, name, args = syscall
        target = self.target
        explicit = []
        if name in ("mmap", "mremap") and not -4095 <= result < 0:
            length = args[1] if name == "mmap" else args[2]
            explicit.append((result, length))
        writes = self.kernel_writes(name, args, result)
        self._resync_maps(t, explicit, syscall=name)
        if writes is None:
            self._diff_writable(t, WRITE_KERNEL)
        else:
            for addr, size in writes:
                self._record_write(t, addr, size, WRITE_KERNEL)
        if name == "rseq" and result == 0 and args[2] == 0 and args[0]:
            self.rseq[self.tid] = (args[0], args[1])
        elif name == "set_tid_address":
            self.clear_tids[self.tid] = args[0]
        if self.rseq:
            self._check_rseq(t)
        self._commit(raw, plan[2])
        self._syscall_done(t, syscall, raw, result)
        newborn = self.newborns.pop(self.tid, None)
        if newborn is not None:
            self._born(*newborn)
        self._update_threads(self.pos)
        self._note_knowledge()
        self._flush_events()
        if self.target.kind == "sym" and name in MAPPING_SYSCALLS:
            self._resolve_symbol_target()
        if self.others:
            self._switch()  # a syscall ends a thread's turn
        self._after_special()

    def _untrap_r11(self, raw: bytes) -> bytes:
        """Take our trap flag out of a stepped `syscall`'s r11 (see
        untrapped_r11), in the process too, so the recording is the
        program's own run; unless the program had set TF itself."""
        if self._word(self.regs, _EFLAGS) & _TF:
            return raw
        fixed = untrapped_r11(raw)
        if fixed is None:
            return raw
        try:
            self._regs_buffer.store(self.tid, fixed)
        except ptrace.PtraceError as err:
            raise TargetError(f"SETREGS failed at step {self.pos}: {os.strerror(err.errno)}") from None
        return fixed

    def _syscall_done(self, t: int, syscall: tuple, raw: bytes | None, result: int | None) -> None:
        """The syscall of transition t returned (or never will: result None):
        its event (decoded by the engine) and its row."""
        number, name, args = syscall
        self.syscall_count += 1
        before = len(self.tracker.events)
        self.tracker.syscall_exit(self.pos, raw, result)
        text = next((e.detail for e in self.tracker.events[before:] if e.kind == "syscall"),
                    f"{name}(...) = {'?' if result is None else result}")
        self.writer.add_syscall(t, number, name, args, result, text)

    def _check_rseq(self, t: int) -> None:
        for addr, size in self.rseq.values():
            if not self.shadow.covers(addr, size):
                continue
            now = self.reader.read(addr, size)
            if now is not None and now != self.shadow.read(addr, size):
                self._record_write(t, addr, size, WRITE_KERNEL)

    def _after_special(self) -> None:
        rip = self._word(self.regs, self.pc_offset)
        if rip in self.tracker.watch or rip in self.stop_addrs:
            self._arrived()
        elif self.pos == self.stop_step:
            self._stop_at_step()

    def _arrived(self) -> None:
        rip = self._word(self.regs, self.pc_offset)
        if rip in self.tracker.watch:
            self.tracker.arrived(self.pos, self.regs)
            self._note_knowledge()
            self._flush_events()
        self._check_targets_here()

    def _check_targets_here(self, initial: bool = False) -> None:
        target = self.target
        rip = self._word(self.regs, self.pc_offset)
        kind = target.kind
        reached = None
        if kind == "first" and initial:
            reached = reasons.at_first(target)
        elif kind == "ldso-entry" and initial and self.tracker.statically_linked and self.tracker.ldso is None:
            # As live: said at once, not after recording the whole run.
            reached = reasons.statically_linked(target, self.tracker.statically_linked)
        elif kind in MILESTONE_OF_TARGET:
            milestone = MILESTONE_OF_TARGET[kind]
            if self.tracker.seen(milestone) and any(
                    e.name == milestone and e.step == self.pos for e in self.tracker.events[-8:]):
                reached = reasons.reached_at(target, rip)
        elif kind in ("addr", "sym") and not initial and rip in self.stop_addrs:
            reached = reasons.reached_at(target, rip)
        if reached is None and self.pos == self.stop_step:
            self._stop_at_step()
        if reached is not None:
            self._end(reached)
        if initial and kind == "sym":
            self._resolve_symbol_target()
        if initial and kind == "addr":
            self.stop_addrs[target.value] = str(target)

    def _stop_at_step(self) -> None:
        if self.target.kind == "step" and self.pos == self.target.value:
            self._end(reasons.reached_step(self.target, self.pos))
        self._end(reasons.step_limit(self.target, self.pos))

    def _resolve_symbol_target(self) -> None:
        try:
            addr = self.tracker.resolve(self.target.name)
        except (DecodeError, OSError):
            addr = None
        if addr is not None:
            self.stop_addrs[addr] = str(self.target)

    def _end(self, reason: StopReason) -> None:
        raise _Stop(reason)

    # ------------------------------------------------------ unusual stops
    def _unchanged(self, plan: Plan, raw: bytes) -> None:
        """A SIGTRAP stop after which no register changed: `jmp .`, or a
        SIGTRAP somebody sent. siginfo tells."""
        try:
            info = ptrace.get_siginfo(self.tid)
            code = int.from_bytes(info[8:12], "little", signed=True)
        except ptrace.PtraceError:
            info, code = None, 1
        if code > 0:  # our trap: a real step that changed nothing
            t = self.pos
            if plan[0] == WRITES:
                for rule in plan[1]:
                    self._record_write(t, rule_address(rule, self.regs), rule[5], WRITE_INSN)
            self._commit(raw, plan[2])
            self._after_special()
            return
        stop = Stop(StopKind.SIGNAL, self.tid, signal=_signal.SIGTRAP, si_code=code, siginfo=info)
        self._signal_stop(stop, raw)

    def _unusual(self, status: int, plan: Plan | None, syscall: tuple | None = None) -> None:
        pid = self.pid
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            if syscall is not None:
                self._syscall_done(self.pos, syscall, None, None)
            stop = classify(pid, status, fetch_siginfo=False)
            self.tracker.tracee.alive = False
            self.tracker.stopped(self.pos, None, stop)
            self._flush_events()
            self._end(self._exit_reason(stop))
        sig = os.WSTOPSIG(status)
        event = (status >> 16) & 0xFF
        if event == ptrace.EVENT_EXIT:
            return self._exit_event(syscall)
        if event == ptrace.EVENT_EXEC:
            return self._exec_event(syscall)
        if event == ptrace.EVENT_CLONE and self._adopt_thread(syscall):
            return  # stopped inside the syscall: the next step completes it
        if event in (ptrace.EVENT_FORK, ptrace.EVENT_VFORK, ptrace.EVENT_CLONE):
            # A forked child is auto-attached (TRACEFORK, for the engine's
            # int3 clean-up) and waits in its first stop: the engine lets it
            # go and notes it. The fork syscall itself completes on the next
            # step, which records it.
            if self.tid != self.pid:
                # The engine asks the leader for the event's child; a worker forked it.
                self._release_child(event)
            else:
                self.tracker.stopped(self.pos, self.regs, classify(pid, status, fetch_siginfo=False))
            self._flush_events()
            return
        if event:
            return  # EVENT_STOP & co: nothing executed; step again
        if sig == _signal.SIGSTOP and self.interrupted:
            # Our own Ctrl-C stop: the file ends at the last complete step.
            self._stop_sent_to = None
            self._end(reasons.recording_interrupted(self.target, self.pos))
        raw = self._fetch_regs()
        if raw != self.regs and raw[_RIP:_RIP + 8] == self.regs[_RIP:_RIP + 8]:
            # A fault: nothing executed, but the CPU set RF in the saved
            # flags. This is the state a debugger shows at this step.
            self._amend(raw)
        elif raw != self.regs:
            # The instruction completed before the signal was reported.
            if syscall is not None:
                raw = self._untrap_r11(raw)
            t = self.pos
            self._resync_maps(t)
            self._diff_writable(t, WRITE_KERNEL if syscall else WRITE_INSN)
            self._commit(raw, plan[2] if plan else ALL_REGISTERS)
            if syscall is not None:
                result = int.from_bytes(raw[_RAX:_RAX + 8], "little", signed=True)
                self._syscall_done(self.pos - 1, syscall, raw, result)
        stop = classify(self.tid, status)  # its siginfo is the thread's
        self._signal_stop(stop, raw)

    def _signal_stop(self, stop: Stop, raw: bytes) -> None:
        if stop.signal == _signal.SIGSTOP and self.interrupted:
            self._stop_sent_to = None
            self._end(reasons.recording_interrupted(self.target, self.pos))
        if self.tracker.tracee.terminal_signal(stop.signal):
            # It read our terminal (lent it now, as in a live run: the read
            # is restarted) or Ctrl-C came at the terminal it holds (ours):
            # nothing is delivered, nothing of the program's own happened.
            return
        detail = stop.describe()
        if stop.siginfo:
            try:
                detail = describe_siginfo(decode_siginfo(stop.siginfo, self.arch))
            except DecodeError:
                pass
        self.writer.add_signal(self.pos, stop.signal, stop.siginfo, detail)
        final = self.tracker.stopped(self.pos, raw, stop)
        self.pending_signal = self.tracker.take_pending_signal()
        self._flush_events()
        if final is not None:
            self.crash_reason = final
        if self.target.kind == "signal":
            reason = final or reasons.signal_arrived(self.target, stop.signal_name)
            self._end(dataclasses.replace(reason, target=str(self.target), reached=True))

    def _exit_reason(self, stop: Stop) -> StopReason:
        crash = self.crash_reason
        # The fault describes the end only when the program died of it: one
        # whose handler fixed the fault lives on and exits as it will.
        if crash is not None and stop.kind is StopKind.KILLED and stop.signal_name == crash.signal:
            return crash
        if stop.kind is StopKind.EXITED:
            return reasons.exited(self.target, stop.exit_code)
        return reasons.killed(self.target, stop.signal_name, f"at step {self.pos}")

    def _exit_event(self, syscall: tuple | None) -> None:
        """PTRACE_EVENT_EXIT, in place of the trap of the step just issued:
        the process is exiting but its memory is still readable. Take the
        final keyframe now, then let it go. (A thread that leaves the others
        behind: _thread_exit.)"""
        if self.others and syscall is not None and syscall[0] == _EXIT:
            return self._thread_exit(syscall)
        self._step_cut_by_kill(syscall)
        if any(waiting.blocked is not None for waiting in self.others.values()):
            # The exit cuts every blocked syscall short, and one may write as
            # its thread dies (nanosleep's remaining time), after the last
            # step and maybe after this read: the file ends with the memory
            # the steps made, not compared with the dying process's.
            self._no_verify = True
        self._flush_chunk(keyframe=True, final=True)
        status = self._reap_threads(kill=False)
        if status is None:
            status = 0  # reaped elsewhere: nothing says how it ended
        self.tracker.tracee.alive = False
        stop = classify(self.pid, status, fetch_siginfo=False)
        self.tracker.stopped(self.pos, None, stop)
        self._flush_events()
        self._end(self._exit_reason(stop))

    def _step_cut_by_kill(self, syscall: tuple | None) -> None:
        """A SIGKILL that lands after the stepped instruction ran (or the
        stepped ``syscall`` returned) but before its trap stopped the
        thread replaces the trap by the exit event: the registers tell
        whether it ran. If it did, it is a step like any other, and what
        it stored, or the kernel wrote for it, is recorded, not left for
        the final keyframe to find as a divergence."""
        try:
            raw = self._regs_buffer.fetch(self.tid)
        except ptrace.PtraceError:
            raw = None  # gone already: nothing says whether it ran
        t = self.pos
        if syscall is None:
            if raw is None or raw == self.regs:
                return  # killed before it ran
            self._resync_maps(t)
            self._diff_writable(t, WRITE_INSN)
            self._commit(raw, ALL_REGISTERS)
            return
        result = None if raw is None else int.from_bytes(raw[_RAX:_RAX + 8], "little", signed=True)
        if result is None or result == -errno.ENOSYS:
            # Never returned (exit_group, the kernel's -ENOSYS still in rax):
            # strace's "= ?". The exit event is a position of its own, as a
            # live `exit` stop shows it: rip past the `syscall`, rcx and r11
            # as it set them, orig_rax the number (not the instruction
            # before it runs).
            if raw is not None and raw != self.regs:
                self._commit(untrapped_r11(raw) or raw, ALL_REGISTERS)
            self._syscall_done(t, syscall, self.regs, None)
            return
        if result in _RESTART_ERRORS or result in (_RESTART_BLOCK, -errno.EINTR):
            # Cut short by the kill, maybe after it wrote part of its answer:
            # the file ends with the memory the steps made, not compared
            # with the dying process's.
            self._syscall_done(t, syscall, self.regs, None)
            self._no_verify = True
            return
        if syscall[1] in _EXECS and result == 0:
            # The execve replaced the address space before its exec event:
            # the registers and memory are the new image's.
            gone = self._vanished_by_exec()
            self._read_new_image()
            return self._commit_new_image(syscall, gone, raw)
        raw = untrapped_r11(raw) or raw
        self._resync_maps(t, syscall=syscall[1])
        self._diff_writable(t, WRITE_KERNEL)
        self._commit(raw, ALL_REGISTERS)
        self._syscall_done(t, syscall, raw, result)

    def _exec_event(self, syscall: tuple | None) -> None:
        """The program called execve again: a new address space. Counted as
        one step whose writes replace every page.

        The exec event is reported from inside execve: a SINGLESTEP from it
        would only finish the syscall, a step that executes nothing. Leaving
        execve first (as launch does) makes the next step the new image's
        first instruction, and keeps step counts equal to a live session's,
        which spends exactly one step (event + empty trap) on the execve.
        Every other thread is gone; the execing one is the leader now."""
        gone = self._vanished_by_exec()
        # The new image is in place at this event, and read now: a SIGKILL
        # landing from here on may end the process with nothing left to read
        # (the resume below can even be what lets it die, from an exit event
        # that came in between).
        try:
            at_event = self._regs_buffer.fetch(self.pid)
        except ptrace.PtraceError:
            at_event = None  # a SIGKILL woke it from the event already
        if at_event is not None:
            self.tracker.tracee.adopt_registers(at_event)  # the new image's stack and entry, for the tracker
        self._read_new_image()
        try:
            ptrace.syscall(self.pid, 0)
        except ptrace.PtraceError:
            pass  # woken by a SIGKILL: the wait below brings its exit event
        try:
            status = ptrace.waitpid(self.pid)[1]
        except ChildProcessError:
            status = None
        gone_now = status is not None and (os.WIFEXITED(status) or os.WIFSIGNALED(status))
        if gone_now and at_event is not None:
            # Killed with no stop left to read its registers at: they are the
            # event's, with what the kernel returns from a successful execve.
            raw = at_event[:_RAX] + bytes(8) + at_event[_RAX + 8:]
        elif gone_now:
            return self._unusual(status, None, syscall)
        else:
            raw = self._fetch_regs()
        self._commit_new_image(syscall, gone, raw)
        if status is None or (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == (_signal.SIGTRAP | 0x80)):
            return self._after_special()
        self._unusual(status, None)  # its exit event (a SIGKILL), its end, or a signal at its first instruction

    def _read_new_image(self) -> None:
        """An execve replaced the address space: every page is read anew (as
        written by the execve's step, self.pos)."""
        self.tracker.exec_happened()
        self.reader.reopen()
        self.plans.clear()
        self.code_pages.clear()
        self._resync_maps(self.pos, everything=True)

    def _note_new_image(self, raw: bytes) -> None:
        """Meta ``execs``: where the kernel started the new image (its stack,
        first pc and auxv), from this position on, as position 0's are kept."""
        try:
            with open(f"/proc/{self.pid}/auxv", "rb") as handle:
                auxv = handle.read()
        except OSError:
            auxv = b""  # killed as it started: nothing left to read
        self._execs.append({"position": self.pos, "kernel_sp": self._word(raw, self.sp_offset),
                            "entry_pc": self._word(raw, self.pc_offset), "kernel_auxv": auxv.hex()})
        self.writer.put_meta("execs", self._execs)

    def _commit_new_image(self, syscall: tuple | None, gone: list[int], raw: bytes) -> None:
        """Close the execve's step (``gone``: the threads it ended) with the
        new image's registers ``raw``."""
        t = self.pos
        self._commit(raw, ALL_REGISTERS)
        self._note_new_image(raw)
        if syscall is not None:
            self._syscall_done(t, syscall, raw, 0)
        if self.threaded:
            self.writer.add_schedule(self.pos, self.pid)
            for tid in gone:
                self.writer.add_thread_regs(self.pos, tid, None)
                self.tracker.note(self.pos, "thread", "exited", f"thread {tid} ended by execve")
            self._reap_vanished(gone)
            self._update_threads(self.pos)
        stop = Stop(StopKind.EVENT, self.pid, signal=_signal.SIGTRAP, event=ptrace.EVENT_EXEC)
        self.tracker.stopped(self.pos, raw, stop)
        self._flush_events()

    # ---------------------------------------------------------------- threads
    def _record_threads(self) -> None:
        """A second thread: from now on the recording says which thread steps."""
        if not self.threaded:
            self.threaded = True
            self.writer.add_thread_tables()
            self.writer.add_schedule(0, self.pid)

    def _adopt_thread(self, syscall: tuple | None) -> bool:
        """The stepping thread stopped at a clone event. A new thread of the
        process (TRACECLONE traced it before it ran) is ours: it waits, in
        its first stop, until its turn. False for a child process."""
        try:
            tid = ptrace.get_event_msg(self.tid)
        except ptrace.PtraceError:
            return False
        if not os.path.exists(f"/proc/{self.pid}/task/{tid}"):
            return False
        status = ptrace.waitpid(tid)[1]  # its first stop (SIGSTOP, never delivered)
        if not os.WIFSTOPPED(status):
            return True  # killed already: nothing of it to record
        try:
            raw = self._regs_buffer.fetch(tid)
            if not self._word(self.regs, _EFLAGS) & _TF:
                # A copy of its creator's registers inside the stepped
                # `syscall`: r11 holds our trap flag (see _untrap_r11).
                fixed = untrapped_r11(raw)
                if fixed is not None:
                    self._regs_buffer.store(tid, fixed)
                    raw = fixed
        except ptrace.PtraceError:
            return True
        if syscall is not None and syscall[1] in ("clone", "clone3"):
            clear_tid = self._clear_tid_of(syscall)
            if clear_tid:
                self.clear_tids[tid] = clear_tid
        self.newborns[self.tid] = (tid, bytes(raw))
        return True

    def _release_child(self, event: int) -> None:
        """A thread other than the leader forked (or cloned a process): its
        child runs on untraced, as the engine lets a leader's child go."""
        try:
            child = ptrace.get_event_msg(self.tid)
        except ptrace.PtraceError:
            return
        name = "vfork" if event == ptrace.EVENT_VFORK else "fork"
        self.tracker.tracee.release_child(child, shares_memory=event == ptrace.EVENT_VFORK)
        self.tracker.note(self.pos, "fork", name, f"child {child} runs on, untraced")

    def _clear_tid_of(self, syscall: tuple) -> int:
        """The child_tid word a thread made by this clone/clone3 gets zeroed
        at its exit (CLONE_CHILD_CLEARTID), else 0."""
        _, name, args = syscall
        if name == "clone":
            return args[3] if args[0] & CLONE_CHILD_CLEARTID else 0
        head = self.reader.read(args[0], 24)  # struct clone_args: flags, pidfd, child_tid
        if head is None:
            return 0
        flags = int.from_bytes(head[0:8], "little")
        return int.from_bytes(head[16:24], "little") if flags & CLONE_CHILD_CLEARTID else 0

    def _born(self, tid: int, raw: bytes) -> None:
        """The step just recorded created thread ``tid``: it exists from this
        position, waiting with registers ``raw``."""
        self._record_threads()
        self.others[tid] = _Waiting(raw)
        self.writer.add_thread_regs(self.pos, tid, raw)
        self.tracker.note(self.pos, "thread", "new", f"new thread {tid}")

    def _poll(self, tid: int) -> int | None:
        """The thread's next wait status if it has one now, else None."""
        try:
            wpid, status = os.waitpid(tid, os.WNOHANG | ptrace.WALL)
        except ChildProcessError:
            return None
        return status if wpid else None

    def _issue_or_block(self, signal: int = 0) -> int | None:
        """Step the stepping thread's `syscall`; None when it has not come
        back within BLOCKED_AFTER (it blocks: the step ends later)."""
        try:
            ptrace.singlestep(self.tid, signal)
        except ptrace.PtraceError as err:
            raise TargetError(f"single-step failed at step {self.pos}: {os.strerror(err.errno)}") from None
        return self._poll_stepping(BLOCKED_AFTER, 200e-6, stop_on_interrupt=True)

    def _poll_stepping(self, seconds: float, longest_pause: float, stop_on_interrupt: bool = False) -> int | None:
        """The stepping thread's status once its step ends, polled with a
        pause that doubles up to ``longest_pause``; None after ``seconds``
        (or at Ctrl-C, with ``stop_on_interrupt``)."""
        deadline = time.monotonic() + seconds
        pause = 20e-6
        while True:
            status = self._poll(self.tid)
            if status is not None:
                return status
            if time.monotonic() >= deadline or (stop_on_interrupt and self.interrupted):
                return None
            time.sleep(pause)
            pause = min(pause * 2, longest_pause)

    def _issue_exec(self) -> int:
        """Step an execve while other threads exist: the kernel ends them
        (each one's exit event must be let go, and its end reaped) and the
        execing thread comes back as the leader, under the leader's pid."""
        try:
            ptrace.singlestep(self.tid, 0)
        except ptrace.PtraceError as err:
            raise TargetError(f"single-step failed at step {self.pos}: {os.strerror(err.errno)}") from None
        pause = 20e-6
        while True:
            for tid in [self.tid, self.pid, *self.others]:
                status = self._poll(tid)
                if status is None:
                    continue
                if tid == self.tid and (status == STEP_STATUS or not os.WIFSTOPPED(status)
                                        or (status >> 16) & 0xFF != ptrace.EVENT_EXIT):
                    return status  # the execve failed, or the step ended otherwise
                if tid == self.pid and os.WIFSTOPPED(status) and (status >> 16) & 0xFF == ptrace.EVENT_EXEC:
                    return status
                if os.WIFSTOPPED(status):
                    try:
                        ptrace.cont(tid, 0)  # an exit event (or its SIGKILL's stop): let it die
                    except ptrace.PtraceError:
                        pass
                elif tid in self.others:
                    self.others[tid].status = status  # reaped: gone
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def _block(self, blocked: tuple) -> None:
        """The stepping thread's syscall blocks: it waits in the kernel,
        standing at its `syscall` as recorded, and another thread steps
        (``blocked``: see _Waiting)."""
        status = self._switch(blocked=blocked)  # its syscall is entered again when its step ends
        if status is not None:
            finish, arguments, _ = blocked
            return finish(*arguments, status)  # it came back before any other thread could step
        self._after_special()

    def _end_blocked_step(self) -> None:
        """The stepping thread's turn came back with its syscall blocked at
        an earlier position: that step ends now (waiting for it if it has
        not come back), as transition self.pos."""
        finish, arguments, syscall, status = self.resuming
        self.resuming = None
        if status is None:
            status = ptrace.waitpid(self.tid)[1]
        number, _, args = syscall
        self.tracker.syscall_entry(self.pos, self.regs, number, args)
        finish(*arguments, status)

    def _ready(self, tid: int) -> bool:
        """Whether a waiting thread can step now (a blocked one once its
        syscall came back)."""
        waiting = self.others[tid]
        if waiting.blocked is None or waiting.status is not None:
            return True
        waiting.status = self._poll(tid)
        return waiting.status is not None

    def _switch(self, blocked: tuple | None = None, gone: bool = False) -> int | None:
        """Another thread's turn, the next ready one after the stepping
        thread in tid order. The stepping thread waits (``blocked``: in the
        syscall of its step) or is ``gone``. When no other thread is ready,
        the stepping one goes on, unless it cannot: then the first blocked
        thread to come back steps; when that is the stepping thread itself,
        its step's status is returned and nothing switches."""
        if self.interrupted:
            return self._end_interrupted(blocked)
        tids = sorted(self.others)
        after = [t for t in tids if t > self.tid] + [t for t in tids if t < self.tid]
        chosen = next((t for t in after if self._ready(t)), None)
        if chosen is None and blocked is None and not gone:
            return
        pause = 20e-6
        while chosen is None:
            if self.interrupted:
                return self._end_interrupted(blocked)
            if blocked is not None:
                status = self._poll(self.tid)
                if status is not None:
                    return status
            elif not self.others:
                raise TargetError(f"step {self.pos}: no thread left to step")
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
            chosen = next((t for t in after if self._ready(t)), None)
        pos = self.pos
        if gone:
            self.writer.add_thread_regs(pos, self.tid, None)
        else:
            self.others[self.tid] = _Waiting(self.regs, self.pending_signal, blocked)
            self.writer.add_thread_regs(pos, self.tid, self.regs)
        incoming = self.others.pop(chosen)
        self.tid = chosen
        self.pending_signal = incoming.pending_signal
        if incoming.blocked is not None:
            self.resuming = (*incoming.blocked, incoming.status)
        self._replace_regs(incoming.regs)
        self.writer.add_schedule(pos, chosen)
        return None

    def _end_interrupted(self, blocked: tuple | None) -> int:
        """Ctrl-C came while threads are switched: the recording ends, but
        for the stepping thread's syscall in flight, whose step's status is
        returned when it comes back (_stop_in_syscall)."""
        if blocked is not None:
            status = self._stop_in_syscall(blocked)
            if status is not None:
                return status
        self._end(reasons.recording_interrupted(self.target, self.pos))

    def _stop_in_syscall(self, blocked: tuple) -> int | None:
        """Ctrl-C came while the stepping thread's syscall (of ``blocked``)
        was in flight: it blocks, or had not come back yet. Our SIGSTOP went
        to that thread and cuts an interruptible wait short at once, so its
        step ends as it does in a one-thread recording, with what the
        syscall returned (ERESTART_RESTARTBLOCK for a sleep cut short) and
        wrote (the time a sleep had left, the bytes a read got): its status
        is returned, for the caller to end the step with. (Ending the
        recording before that step left what the syscall wrote meanwhile to
        the final keyframe, which took it for a divergence of the steps.)
        None when it does not come back soon (an uninterruptible wait, a
        vfork's for its child): the recording ends before it, and the final
        keyframe leaves out what it may write (_in_flight_writes)."""
        if self._stop_sent_to == self.tid:
            status = self._poll_stepping(CUT_SHORT_WAIT, 1e-3)
            if status is not None:
                return status
        self._in_flight = blocked[2]
        return None

    def _in_flight_writes(self) -> list[tuple[int, int]] | None:
        """[(address, size)] that syscalls in flight (their steps not
        recorded yet: blocked in a thread, or left by Ctrl-C) may have
        written already, or None when one may write or map anything and
        writable memory cannot be compared now. A futex wait or a sleep
        writes nothing, unless a signal cuts the sleep short: then the time
        it had left."""
        syscalls = [waiting.blocked[2] for waiting in self.others.values() if waiting.blocked is not None]
        if self.resuming is not None:
            syscalls.append(self.resuming[2])  # the stepping thread's, back but its step not yet ended
        if self._in_flight is not None:
            syscalls.append(self._in_flight)
        ranges = []
        for _, name, args in syscalls:
            if name not in QUIET_BLOCKERS:
                return None
            if name == "futex":
                ranges.extend(futex_lock_words(args))  # a PI lock's word, marked as its waiter waits
            left = _TIME_LEFT.get(name)
            if left is not None and args[left]:
                ranges.append((args[left], 16))
        return ranges

    def _replace_regs(self, raw: bytes) -> None:
        """The registers at the current position become ``raw`` (another
        thread's: the chunk's registers are the stepping thread's)."""
        chunk = self.chunk
        if self.pos > chunk.start:
            row = len(chunk.xor) - self.regs_size
            last = int.from_bytes(chunk.xor[row:], "little") ^ int.from_bytes(raw, "little") \
                ^ int.from_bytes(self.regs, "little")
            chunk.xor[row:] = last.to_bytes(self.regs_size, "little")
        else:
            chunk.regs = raw
        chunk.pcs.add(self._word(raw, self.pc_offset))
        self.regs = raw

    def _thread_exit(self, syscall: tuple) -> None:
        """The stepping thread is at its exit event (`exit`, others stay):
        it ends within this step; what the kernel writes as it goes (its
        clear-child-tid word) is the step's; then another thread steps."""
        t = self.pos
        tid = self.tid
        try:
            ptrace.cont(tid, 0)
        except ptrace.PtraceError:
            pass
        if tid != self.pid:  # a leader's end is reported only after the last thread's
            while True:
                try:
                    status = ptrace.waitpid(tid)[1]
                except ChildProcessError:
                    break
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    break
                try:
                    ptrace.cont(tid, 0)
                except ptrace.PtraceError:
                    pass
        clear_tid = self.clear_tids.pop(tid, 0)
        if clear_tid:
            self._record_write(t, clear_tid, 4, WRITE_KERNEL)
        self.rseq.pop(tid, None)
        self._syscall_done(t, syscall, None, None)
        self.tracker.note(t + 1, "thread", "exited", f"thread {tid} exited")
        self.pending_signal = 0
        # The position after the step is the next thread's.
        self._commit(self.regs, 0)
        self._switch(gone=True)
        self._update_threads(self.pos)
        self._flush_events()
        self._after_special()

    def _vanished_by_exec(self) -> list[int]:
        """Every other thread ended with an execve; the execing one goes on
        under the leader's pid."""
        gone = [tid for tid in self.others]
        if self.tid != self.pid:
            gone.append(self.tid)
        self.others.clear()
        self.clear_tids.clear()
        self.rseq.clear()
        self.resuming = None
        self.tid = self.pid
        return sorted(set(gone) - {self.pid})

    @staticmethod
    def _reap_vanished(tids: list[int]) -> None:
        """The end of threads an execve ended (each reports it as an _exit(0));
        the execing one's old tid reports nothing."""
        deadline = time.monotonic() + 1.0
        left = set(tids)
        while left and time.monotonic() < deadline:
            for tid in list(left):
                try:
                    wpid, status = os.waitpid(tid, os.WNOHANG | ptrace.WALL)
                except ChildProcessError:
                    left.discard(tid)
                    continue
                if wpid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                    left.discard(tid)
                elif wpid:
                    try:
                        ptrace.cont(tid, 0)
                    except ptrace.PtraceError:
                        pass
            if left:
                time.sleep(1e-4)

    def _reap_threads(self, kill: bool) -> int | None:
        """Let every traced thread end (``kill``: end them first) and reap
        them; returns the leader's last status (None: not ours to reap)."""
        if kill:
            try:
                os.kill(self.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
        tids = {self.pid, self.tid, *self.others}
        for tid in tids:
            try:
                ptrace.cont(tid, 0)  # one at its exit event dies only once resumed
            except ptrace.PtraceError:
                pass
        self.others.clear()
        final = None
        pause = 20e-6
        while tids:
            progress = False
            for tid in sorted(tids, key=lambda t: t == self.pid):
                if tid == self.pid and len(tids) > 1:
                    continue  # the leader's end comes after every other thread's
                try:
                    wpid, status = os.waitpid(tid, (os.WNOHANG if len(tids) > 1 else 0) | ptrace.WALL)
                except ChildProcessError:
                    tids.discard(tid)
                    progress = True
                    continue
                if not wpid:
                    continue
                progress = True
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    tids.discard(tid)
                    if tid == self.pid:
                        final = status
                else:
                    try:
                        ptrace.cont(tid, 0)
                    except ptrace.PtraceError:
                        pass
            if not progress:
                time.sleep(pause)
                pause = min(pause * 2, 1e-3)
        return final

    # ------------------------------------------------------------- memory map
    def _read_maps(self) -> str:
        try:
            with open(f"/proc/{self.pid}/maps", "rb") as handle:
                return handle.read().decode("utf-8", "surrogateescape")
        except OSError:
            return self.maps_text

    def _initial_image(self) -> None:
        text = self._read_maps()
        self.maps_text = text
        self.maps = parse_maps(text)
        self.writer.add_maps(0, text)
        for entry in self.maps:
            self._ensure_file(entry)
        rows = []
        for entry in self.maps:
            if entry.kind in UNREADABLE_KINDS:
                continue
            for page, content in self.reader.read_pages(entry.start, entry.end):
                self.shadow.set_page(page, content)
                digest = None if content is None else self._store(page, content, entry)
                self.image_hashes[page] = digest
                rows.append((page, digest))
        self.writer.add_images(0, rows)
        checksum, sums = memory_checksum(self._writable_pages())
        self.writer.add_keyframe(0, checksum, sums, 0)

    def _store(self, page: int, content, entry: MapEntry | None) -> bytes:
        file_id = file_offset = None
        if entry is not None and entry.inode and entry.path.startswith("/"):
            file_id = self.file_ids.get((entry.dev, entry.inode, entry.path))
            file_offset = entry.offset + (page << 12) - entry.start
        return self.writer.store_page(content, file_id, file_offset)

    def _entry_for(self, page: int) -> MapEntry | None:
        addr = page << 12
        index = bisect.bisect_right(self.maps, addr, key=lambda e: e.start) - 1
        if index >= 0 and self.maps[index].start <= addr < self.maps[index].end:
            return self.maps[index]
        return None

    def _ensure_file(self, entry: MapEntry) -> None:
        if not (entry.inode and entry.path.startswith("/")):
            return
        key = (entry.dev, entry.inode, entry.path)
        if key in self.file_ids and self.file_ids[key] is not None:
            return
        head = self._file_head(entry)
        if head is None:
            return
        if head[0][:4] == ELF_MAGIC or head[1][:4] == ELF_MAGIC:
            content = self.tracker.state.elf_cache.file_bytes(entry)
            if content is not None:
                self.file_ids[key] = self.writer.add_file(entry.dev, entry.inode, entry.path, content)
                return
        self.file_ids[key] = None

    def _file_head(self, entry: MapEntry) -> tuple[bytes, bytes] | None:
        for path in (f"/proc/{self.pid}/map_files/{entry.start:x}-{entry.end:x}", entry.path):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                return os.pread(fd, 4, 0), os.pread(fd, 4, entry.offset)
            except OSError:
                return None
            finally:
                os.close(fd)
        return None

    def _page_change(self, t: int, page: int, content: bytes | None) -> None:
        old = self.shadow.content(page)
        if old is None and content is None:
            return
        if old is not None and content is not None and old == content:
            return
        entry = self._entry_for(page)
        new_hash = None if content is None else self._store(page, content, entry)
        old_hash = None if old is None else self.writer.store_page(old)
        self.shadow.set_page(page, content)
        chunk = self.chunk
        chunk.add_write(t - chunk.start, page << 12, PAGE_SIZE, WRITE_PAGE)
        chunk.data += page_ref(new_hash)
        chunk.data += page_ref(old_hash)
        chunk.pages.add(page)
        if page in self.code_pages:
            self._invalidate_page(page)

    def _resync_maps(self, t: int, explicit: list[tuple[int, int]] = (), syscall: str | None = None,
                     everything: bool = False, late: bool = False) -> bool:
        """Bring the shadow up to date with the process's mappings after
        transition t: new or replaced mappings are read (page records),
        unmapped pages dropped, and a maps row written from position t+1."""
        text = self._read_maps()
        if text == self.maps_text and not explicit and not everything:
            return False
        try:
            entries = parse_maps(text)
        except DecodeError:
            self.warnings.append(f"step {t}: unparsable /proc/PID/maps")
            return False
        old = self.maps
        self.maps = entries
        capture: list[tuple[int, int]] = []
        for entry in entries:
            if entry.kind in UNREADABLE_KINDS:
                continue
            if everything:
                capture.append((entry.start, entry.end))
            else:
                capture.extend(_uncovered(entry, old))
        for addr, size in explicit:
            lo = addr & ~(PAGE_SIZE - 1)
            hi = (addr + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            for entry in entries:
                a, b = max(lo, entry.start), min(hi, entry.end)
                if a < b and entry.kind not in UNREADABLE_KINDS:
                    capture.append((a, b))
        # Pages no longer mapped.
        new_spans = [(e.start, e.end) for e in entries if e.kind not in UNREADABLE_KINDS]
        old_spans = [(e.start, e.end) for e in old if e.kind not in UNREADABLE_KINDS]
        for lo, hi in _subtract(old_spans, new_spans):
            for page in range(lo >> 12, hi >> 12):
                if page in self.shadow:
                    self._page_change(t, page, None)
        if everything:
            for page in [p for p in self.shadow.pages if not _covered(p << 12, new_spans)]:
                self._page_change(t, page, None)
        for entry in entries:
            self._ensure_file(entry)
        for lo, hi in _merge(capture):
            for page, content in self.reader.read_pages(lo, hi):
                self._page_change(t, page, content)
        if text != self.maps_text:
            self.writer.add_maps(t + 1, text)
            self.maps_text = text
            self.tracker.invalidate()
            if late:
                self.warnings.append(f"the memory map changed without a syscall before step {t + 1} "
                                     f"(noticed at a keyframe)")
        return True

    def _writable_pages(self):
        """(page, content) of every present page in a writable mapping, in order."""
        seen = set()
        for entry in self.maps:
            if not entry.writable or entry.kind in UNREADABLE_KINDS:
                continue
            for page in range(entry.start >> 12, entry.end >> 12):
                content = self.shadow.content(page)
                if content is not None and page not in seen:
                    seen.add(page)
                    yield page, content

    def _diff_writable(self, t: int, kind: int, unrecorded: list[tuple[int, int]] = ()) -> int:
        """Compare all writable memory with the shadow; record what differs
        as writes of ``kind`` (FIXUP: bytes nobody recorded). Bytes in
        ``unrecorded`` ([(address, size)]: what a syscall whose step is not
        recorded yet may write) are left as the steps made them. Returns
        the number of bytes that differed."""
        changed = 0
        rseq = tuple(self.rseq.values())
        skip = [(addr, addr + size) for addr, size in unrecorded]
        for entry in self.maps:
            if not entry.writable or entry.kind in UNREADABLE_KINDS:
                continue
            for page, content in self.reader.read_pages(entry.start, entry.end):
                old = self.shadow.content(page)
                if content is None or old is None:
                    if content is not None or old is not None:
                        self._page_change(t, page, content)
                    continue
                if old == content:
                    continue
                base = page << 12
                runs = diff_runs(old, content)
                if skip:
                    runs = [(lo - base, hi - lo)
                            for lo, hi in _subtract([(base + o, base + o + n) for o, n in runs], skip)]
                for offset, length in runs:
                    addr = base + offset
                    new = content[offset:offset + length]
                    record_kind = kind
                    if kind == WRITE_FIXUP:
                        if any(lo <= addr < lo + size for lo, size in rseq):
                            record_kind = WRITE_KERNEL
                        else:
                            changed += length
                            if len(self.warnings) < 50:
                                self.warnings.append(
                                    f"divergence: {length} bytes at {addr:#x} changed before step {t + 1} "
                                    f"without a recorded write")
                    self._append_write(t, addr, length, record_kind, new, bytes(old[offset:offset + length]))
                    self.shadow.write(addr, new)
        return changed

    # ------------------------------------------------------------- chunks
    def _flush_chunk(self, keyframe: bool, final: bool = False) -> None:
        chunk = self.chunk
        position = self.pos
        if self._flushed_final:
            return
        if final:
            self._flushed_final = True
        if keyframe and position > 0 and not self._shadow_ahead:
            # A change found now is transition position-1's: in an empty
            # chunk (the recording ends just after one was written) that
            # step is in the chunk before, written already, and nothing can
            # be added to it.
            compare = self.tracker.tracee.alive and not self._no_verify and position > chunk.start
            self._keyframe(position, verify=compare)
        else:
            self.dirty |= chunk.pages
        steps = position - chunk.start
        if chunk.xor:
            # Registers whose value changed in this chunk join the ones its
            # instructions name as written (the register index needs both).
            words = memoryview(bytes(chunk.xor)).cast("Q")
            for j in range(self.regs_size // 8):
                if any(words[j::self.regs_size // 8]):
                    chunk.wmask |= 1 << j
        count = len(chunk.w_steps)
        index = chunk.start // self.chunk_steps
        writes = encode_writes(chunk.w_steps, chunk.w_addrs, chunk.w_sizes, chunk.w_kinds, chunk.data)
        self.writer.add_chunk(index, chunk.start, steps, chunk.regs, chunk.wmask, count, bytes(chunk.xor),
                              writes, chunk.pcs, chunk.pages)
        self.writer.commit()

    def _keyframe(self, position: int, verify: bool) -> None:
        t = position - 1
        fixups = 0
        unrecorded = self._in_flight_writes() if verify else None
        if unrecorded is None:
            # A blocked syscall that writes or maps may have done so already,
            # its step not yet recorded: comparing now would blame no one.
            verify = False
        if verify:
            try:
                self._resync_maps(t, late=True)
                fixups = self._diff_writable(t, WRITE_FIXUP, unrecorded)
            except OSError:
                verify = False
        self.divergences += fixups
        dirty = self.dirty | self.chunk.pages
        rows = []
        for page in sorted(dirty):
            content = self.shadow.content(page)
            digest = None if content is None else self._store(page, content, self._entry_for(page))
            if self.image_hashes.get(page, b"") != digest:
                self.image_hashes[page] = digest
                rows.append((page, digest))
        self.writer.add_images(position, rows)
        checksum, sums = memory_checksum(self._writable_pages())
        self.writer.add_keyframe(position, checksum, sums, fixups)
        self.dirty = set()

    def _salvage(self) -> None:
        """After an unexpected error or a second Ctrl-C: keep a valid file
        ending at the last complete step."""
        if self.finished or self.writer is None or self.chunk is None:
            return
        chunk = self.chunk
        steps = self.pos - chunk.start
        del chunk.xor[steps * self.regs_size:]
        keep = 0
        data_end = 0
        for step_off, size, kind in zip(chunk.w_steps, chunk.w_sizes, chunk.w_kinds):
            if step_off >= steps:
                break
            keep += 1
            data_end += 34 if kind == WRITE_PAGE else 2 * size
        for column in (chunk.w_steps, chunk.w_addrs, chunk.w_sizes, chunk.w_kinds):
            del column[keep:]
        del chunk.data[data_end:]
        # The steps dropped (the loop's own count was ahead of self.pos, or
        # a step was half recorded) left their stores in the shadow: no
        # image is made of it. The file ends on its last chunk, as one whose
        # recorder was killed does, and replays from the keyframe before.
        self._shadow_ahead = True
        self._no_verify = True
        try:
            self._finish(reasons.recording_interrupted(self.target, self.pos))
        except Exception:
            self.writer.abandon()

    def _finish(self, reason: StopReason) -> None:
        if self.finished:
            return
        self.end_reason = reason
        self._flush_chunk(keyframe=True, final=True)
        self._flush_events()
        w = self.writer
        w.put_meta("last_step", self.pos)
        w.put_meta("end", _reason_json(reason))
        w.put_meta("syscall_count", self.syscall_count)
        w.put_meta("divergences", self.divergences)
        w.put_meta("warnings", self.warnings[:50])
        w.put_meta("complete", True)
        self._note_knowledge()
        w.finish(hurry=self.interrupted or reason.kind == "interrupted")
        self.finished = True

    # --------------------------------------------------------------- misc
    def _flush_events(self) -> None:
        events = self.tracker.events
        for event in events[self.events_written:]:
            self.writer.add_event(event)
        self.events_written = len(events)

    def _note_knowledge(self) -> None:
        """When ld.so and AT_ENTRY became known (replay's snapshots must not
        know them earlier than a live session would)."""
        ldso = self.tracker.ldso
        if ldso is not None and self._known["ldso"] is None:
            self._known["ldso"] = {"path": ldso.path, "base": ldso.base, "entry": ldso.entry, "step": self.pos}
            self.writer.put_meta("ldso", self._known["ldso"])
        at_entry = self.tracker.at_entry
        if at_entry is not None and self._known["at_entry"] is None:
            self._known["at_entry"] = {"value": at_entry, "step": self.pos}
            self.writer.put_meta("at_entry", self._known["at_entry"])

    def _update_threads(self, position: int) -> None:
        threads = []
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))
        except OSError:
            return
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/status") as handle:
                    text = "".join(line for line in handle if line.split(":", 1)[0] in STATUS_FIELDS)
                threads.append({"tid": tid, "status": text})
            except OSError:
                continue
        if threads != self.threads_json:
            self.threads_json = threads
            self.writer.add_threads(position, threads)

    def _progress_update(self) -> None:
        if not self.progress:
            return
        now = time.monotonic()
        last = self._last_progress
        if last is None:
            self._progress_start = (now, self.pos)
            self._last_progress = now
            return
        if now - last < 0.25:
            return
        self._last_progress = now
        t0, s0 = self._progress_start
        rate = (self.pos - s0) / max(now - t0, 1e-9)
        milestone = next((e.name for e in reversed(self.tracker.events) if e.kind == "milestone"), "-")
        sys.stderr.write(f"\rrecording: {self.pos:>12,} steps  {rate:>9,.0f} steps/s  milestone: {milestone:<24}")
        sys.stderr.flush()


# ----------------------------------------------------------------- helpers
def _restarted_syscall(regs: bytes) -> int | None:
    """The syscall the kernel will run again when the tracee resumes with
    no signal to deliver: at a stop inside a syscall (orig_rax holds its
    number) that returned a restart code. None otherwise."""
    number = int.from_bytes(regs[_ORIG_RAX:_ORIG_RAX + 8], "little", signed=True)
    if number < 0:
        return None
    result = int.from_bytes(regs[_RAX:_RAX + 8], "little", signed=True)
    if result in _RESTART_ERRORS:
        return number
    return _RESTART_SYSCALL if result == _RESTART_BLOCK else None


def _reason_json(reason: StopReason) -> dict:
    return {"kind": reason.kind, "description": reason.description, "target": reason.target,
            "reached": reason.reached, "signal": reason.signal, "fault_address": reason.fault_address,
            "exit_code": reason.exit_code}


def _identity(entry: MapEntry) -> tuple:
    if entry.inode:
        return (entry.dev, entry.inode, entry.path, entry.offset - entry.start)
    return ("anon", entry.path)


def _uncovered(entry: MapEntry, old: tuple[MapEntry, ...]) -> list[tuple[int, int]]:
    """Parts of ``entry`` that no old mapping of the same identity (file and
    offset, or anonymous region name) covered: their content may be new."""
    same = []
    identity = _identity(entry)
    index = max(bisect.bisect_right(old, entry.start, key=lambda e: e.start) - 1, 0)
    while index < len(old) and old[index].start < entry.end:
        o = old[index]
        if o.end > entry.start and _identity(o) == identity:
            same.append((max(o.start, entry.start), min(o.end, entry.end)))
        index += 1
    return _subtract([(entry.start, entry.end)], same)


def _subtract(spans: list[tuple[int, int]], remove: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    remove = sorted(remove)
    for lo, hi in spans:
        cursor = lo
        for a, b in remove:
            if b <= cursor or a >= hi:
                continue
            if a > cursor:
                out.append((cursor, a))
            cursor = max(cursor, b)
            if cursor >= hi:
                break
        if cursor < hi:
            out.append((cursor, hi))
    return out


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def _covered(addr: int, spans: list[tuple[int, int]]) -> bool:
    return any(lo <= addr < hi for lo, hi in spans)


def _xstate(pid: int) -> tuple[int | None, int | None]:
    """(XSAVE area size, XCR0) of the tracee, from PTRACE_GETREGSET
    NT_X86_XSTATE (the kernel reports the size it copies; XCR0 sits in the
    software-reserved bytes at offset 464)."""
    buffer = ctypes.create_string_buffer(1 << 16)
    iov = _Iovec(ctypes.addressof(buffer), len(buffer))
    try:
        ptrace.request(ptrace.GETREGSET, pid, NT_X86_XSTATE, ctypes.addressof(iov))
    except ptrace.PtraceError:
        return None, None
    size = iov.length
    xcr0 = int.from_bytes(buffer.raw[464:472], "little") if size >= 472 else None
    return size, xcr0


def _cpu_info() -> dict:
    info = {"cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "flags", "vendor_id") and key not in info:
                    info[key] = value.strip()
                if key == "" and "model name" in info:
                    break
    except OSError:
        pass
    return info
