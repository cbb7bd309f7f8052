"""An aarch64 program run by qemu-user, driven through qemu's gdb stub.

One more RawTarget (process/raw_target.py): the engine above it is the one
that drives ptrace'd x86-64 programs. What the stub does not do well is
done from the outside, through the qemu process, whose address space holds
the guest at the guest's own addresses:

- launch: ``qemu-aarch64 -L SYSROOT -g DIR/stub`` on a Unix socket in a
  private directory (qemu 7.2 takes a path for -g; no port to race for),
  stopped by qemu at the guest's first instruction — ld.so's entry for a
  dynamic program. qemu dies with us: PR_SET_PDEATHSIG(SIGKILL) in the
  child (it fires when the *thread* that launched it exits: launch from a
  long-lived thread), and a finalizer kills it when the target is dropped.
  qemu ignores SIGTERM while it waits for its debugger; only SIGKILL works.
  qemu stays in our process group, so the guest can read our terminal; a
  Ctrl-C there reaches qemu too, which reports it as a SIGINT stop.
- registers: the stub's ``g`` block (x0–x30, sp, pc as 8 bytes, cpsr as 4)
  becomes arm64's user_pt_regs (pstate as 8 bytes), and back through ``G``.
- memory: pread/pwrite on /proc/<qemu>/mem, limited to the guest's pages
  (qemu_log.py): an address of qemu's own is unmapped to the guest. Our
  breakpoints are qemu's (``Z0``, checked before each translated block),
  never bytes in memory, so nothing needs hiding.
- maps: qemu's /proc/PID/maps cut to the guest's pages (qemu_log.py).
- syscalls: the stub has no QCatchSyscalls. For ``resume(syscalls=True)``
  every ``svc #0`` in guest-executable memory carries a stub breakpoint
  (aarch64 code is 4-byte aligned, so a scan for the word finds them all;
  rescanned when the guest's pages change). Arriving at one is the syscall
  entry (x8 and x0–x5 as they are); a single step over it is the exit (x0).
  ``syscall_info()`` answers as PTRACE_GET_SYSCALL_INFO does. Syscalls run
  during a plain continue are in qemu's -strace log
  (``take_logged_syscalls``).
- stops: ``T05`` after ``s`` is a step, at one of our breakpoints a
  breakpoint; other signals come as gdb's signal numbers and are turned
  back into Linux's; ``W``/``X`` end the process.
- watchpoints: qemu 7.2's stub answers Z2/Z3/Z4 with the empty reply in
  user mode (unsupported). With one set (``watchpoint_unit``, the engine's
  WatchpointUnit as x86's debug registers are), a step checks the
  instruction's decoded loads and stores and the watched bytes around it,
  and a resume is made of such steps (stepped_watch.py): ~3,000
  instructions a second instead of qemu's full speed.
- steps: an atomic sequence (load-exclusive to store-exclusive) is one
  step, by gdb's rule, or a stepped ldaxr/stxr loop would never end; with
  it, step counts are gdb-multiarch's stepi counts (a static glibc program
  steps to its exit in the same 7413 steps as gdb's stepi here).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal as _signal
import socket
import tempfile
import time
import weakref

from loaderdbg.arch import ArchTables, get_arch
from loaderdbg.decode.aarch64_sequences import atomic_sequence_exits
from loaderdbg.decode.aarch64_access import Access, memory_accesses
from loaderdbg.decode.disasm import disassemble_one
from loaderdbg.decode.registers import decode_registers
from loaderdbg.errors import TargetError
from loaderdbg.gdb_remote.packets import bytes_to_hex, hex_to_bytes, parse_hex_int
from loaderdbg.gdb_remote.signals import GDB_TO_LINUX_SIGNAL, LINUX_TO_GDB_SIGNAL
from loaderdbg.process import ptrace
from loaderdbg.process.program import elf_machine
from loaderdbg.process.qemu_log import QemuLog, guest_maps_text
from loaderdbg.process.stepped_watch import SteppedWatchpoints
from loaderdbg.process.stops import TRAP_BRKPT, TRAP_HWBKPT, TRAP_TRACE, Stop, StopKind
from loaderdbg.process.stub_client import StubClosed, StubConnection
from loaderdbg.process.tracee import CODE_PLAIN, CODE_SYSCALL, LaunchSpec

AARCH64 = get_arch("aarch64")
QEMU_PROGRAM = "qemu-aarch64"
DEFAULT_SYSROOT = "/usr/aarch64-linux-gnu"
EM_AARCH64 = 183
SVC_0 = (0xD4000001).to_bytes(4, "little")
_BRK_MASK, _BRK_BITS = 0xFFE0001F, 0xD4200000  # brk #imm
# The stub's core block: x0–x30, sp, pc (8 bytes each), then cpsr (4).
_G_WORDS = 33
_G_SIZE = _G_WORDS * 8 + 4
_PC = AARCH64.register_offset("pc")
_SP = AARCH64.register_offset("sp")
_X0 = AARCH64.register_offset("x0")
_X8 = AARCH64.register_offset("x8")
# Environment variables that steer the x86-64 qemu process itself (its
# loader, its options): they reach the guest through -E, not qemu's env.
_HOST_SIDE_PREFIXES = ("LD_", "QEMU_")
_CONNECT_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1
# The block `dc zva` zeroes: qemu 7.2's default cpu (max) has DCZID_EL0 = 7,
# 4 << 7 bytes (read by a guest's mrs here; the stub does not offer it).
_ZVA_BLOCK = 512
# Syscalls after which the next instruction is not the one after the svc.
_NO_RETURN_SYSCALLS = frozenset({"rt_sigreturn", "execve", "execveat", "exit", "exit_group"})

# qemu's stub sends gdb's signal numbers (loaderdbg/gdb_remote/signals.py).

_libc = ctypes.CDLL(None, use_errno=True)


def gdb_registers_to_user_regs(block: bytes) -> bytes:
    """The stub's ``g`` bytes -> arm64 user_pt_regs (pstate widened to 8 bytes)."""
    if len(block) < _G_SIZE:
        raise TargetError(f"qemu's gdb stub sent {len(block)} register bytes, expected {_G_SIZE}")
    return block[:_G_WORDS * 8] + block[_G_WORDS * 8:_G_SIZE] + bytes(4)


def user_regs_to_gdb_registers(raw: bytes) -> bytes:
    """arm64 user_pt_regs -> the stub's core block (cpsr is pstate's low 32 bits)."""
    if len(raw) != AARCH64.user_regs_size:
        raise ValueError(f"user_pt_regs is {AARCH64.user_regs_size} bytes, got {len(raw)}")
    return raw[:_G_SIZE]


class _QemuProcess:
    """What must be undone when the target goes, kept apart from the target
    so that a finalizer can hold it without keeping the target alive."""

    def __init__(self, pid: int, workdir: str) -> None:
        self.pid = pid
        self.workdir = workdir
        self.reaped = False
        self.status: int | None = None

    def reap(self, *, kill: bool) -> int | None:
        """Wait for qemu to be gone (SIGKILL first when ``kill``); its wait status."""
        if not self.reaped:
            if kill:
                try:
                    os.kill(self.pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                _, self.status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.status = None
            self.reaped = True
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.status

    def __call__(self) -> None:  # the finalizer
        self.reap(kill=True)


class QemuTarget:
    """A guest stopped in qemu's gdb stub, or gone."""

    launched = True  # always ours: qemu-user cannot attach to a running program
    sysroot = DEFAULT_SYSROOT  # where qemu's -L finds the guest's /lib (ld.so maps from here)
    interrupt_signal = _signal.SIGINT  # what interrupt() makes the run stop with
    exit_event = False  # the stub's W comes with the guest gone: exit_group's entry is the last stop

    def __init__(self, process: _QemuProcess, connection: StubConnection, log: QemuLog,
                 argv: tuple[str, ...] = ()) -> None:
        self._process = process
        self.argv = argv  # what the guest got: argv[0] as given (qemu's -0), then the arguments
        self._connection = connection
        self._log = log
        try:
            self._mem_fd = os.open(f"/proc/{process.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise TargetError(f"cannot open qemu's memory (/proc/{process.pid}/mem): {err.strerror}") from None
        self._finalizer = weakref.finalize(self, process)
        self.alive = True
        self.breakpoints: dict[int, int] = {}  # the engine's: address -> byte there
        self.pending_signal = 0  # Linux signal to deliver on the next step or resume
        self.last_stop: Stop | None = None
        self._regs: bytes | None = None
        self._syscall_sites: set[int] = set()  # svc #0 addresses with a stub breakpoint
        self._sites_generation = -1
        self._syscall_info: ptrace.SyscallInfo | None = None
        self._entry_pc: int | None = None  # pc of the syscall entry we reported
        self._held_stop: Stop | None = None  # a stop to report before moving again
        self._log_stale = True  # the guest ran since qemu's log was last read
        self._tls_regnum: int | None = None  # TPIDR_EL0's number in the stub's target description
        # Watchpoints: the stub has none in user mode (Z2–Z4 unsupported),
        # so with one set every instruction is stepped (stepped_watch.py).
        self.watchpoint_unit = SteppedWatchpoints()
        pid = process.pid
        self.plain_step = Stop(StopKind.STEP, pid, signal=_signal.SIGTRAP, si_code=TRAP_TRACE)
        self._breakpoint_stop = Stop(StopKind.BREAKPOINT, pid, signal=_signal.SIGTRAP, si_code=TRAP_BRKPT)
        self._syscall_stop = Stop(StopKind.SYSCALL, pid, signal=_signal.SIGTRAP)
        self._watch_stop = Stop(StopKind.WATCHPOINT, pid, signal=_signal.SIGTRAP, si_code=TRAP_HWBKPT)

    # -- identity ------------------------------------------------------------
    @property
    def arch(self) -> ArchTables:
        return AARCH64

    @property
    def pid(self) -> int:
        return self._process.pid  # the guest's getpid() is qemu's pid

    @property
    def current_tid(self) -> int:
        return self._process.pid  # one guest thread is stepped: the stub's

    @property
    def maps_pid(self) -> int:
        return self._process.pid

    # -- registers -----------------------------------------------------------
    def registers_raw(self) -> bytes:
        if self._regs is None:
            self._require_alive()
            self._regs = gdb_registers_to_user_regs(self._hex_reply(self._request(b"g")))
        return self._regs

    def set_registers_raw(self, raw: bytes) -> None:
        self._require_alive()
        reply = self._request(b"G" + bytes_to_hex(user_regs_to_gdb_registers(raw)))
        if reply != b"OK":
            raise TargetError(f"qemu's gdb stub refused the registers ({reply.decode(errors='replace')})")
        self._regs = bytes(raw)

    @property
    def pc(self) -> int:
        return int.from_bytes(self.registers_raw()[_PC:_PC + 8], "little")

    @property
    def sp(self) -> int:
        return int.from_bytes(self.registers_raw()[_SP:_SP + 8], "little")

    def regs_raw(self) -> bytes:  # the run loop's name for registers_raw (the ptrace target's)
        return self.registers_raw()

    def tls_base(self) -> int | None:
        """TPIDR_EL0, the thread pointer (not in the ``g`` block: a system
        register, read by its number in the stub's target description)."""
        if not self.alive:
            return None
        if self._tls_regnum is None:
            self._tls_regnum = self._register_number(b"TPIDR_EL0")
        if self._tls_regnum < 0:
            return None
        reply = self._request(b"p%x" % self._tls_regnum)
        try:
            return int.from_bytes(hex_to_bytes(reply), "little")
        except ValueError:
            return None

    def _register_number(self, name: bytes) -> int:
        """A register's number in the stub's target description (-1: none)."""
        main = self._feature_document(b"target.xml")
        for include in re.findall(rb'include href="([^"]+)"', main):
            for match in re.finditer(rb'<reg name="([^"]+)"[^>]*?regnum="(\d+)"', self._feature_document(include)):
                if match.group(1) == name:
                    return int(match.group(2))
        return -1

    def _feature_document(self, annex: bytes) -> bytes:
        data = bytearray()
        while True:
            reply = self._request(b"qXfer:features:read:%s:%x,%x" % (annex, len(data), 0x800))
            if reply[:1] not in (b"m", b"l"):
                return bytes(data)
            data += reply[1:]
            if reply[:1] == b"l" or len(reply) == 1:
                return bytes(data)

    # -- code ----------------------------------------------------------------
    def code_kind(self, pc: int) -> int:
        """As the ptrace target's: CODE_SYSCALL for ``svc #0`` (the run
        loop decodes its arguments before the step), else CODE_PLAIN (a
        brk is told from our step by _step itself)."""
        return CODE_SYSCALL if self.read_memory(pc, 4) == SVC_0 else CODE_PLAIN

    def forget_code(self) -> None:
        """Nothing cached: code_kind reads the word every time, and the svc
        scan follows qemu's page log."""

    def at_breakpoint(self) -> bool:
        """False: resume itself moves off a breakpoint under pc, and reports
        the syscall entry of an svc there (the run loop's decoding before a
        resume is for the ptrace target's int3s)."""
        return False

    def reclaim_terminal(self) -> None:
        """Nothing lent: qemu runs in our process group and reads our terminal."""

    # -- memory and maps -----------------------------------------------------
    def read_memory(self, addr: int, size: int) -> bytes | None:
        if size <= 0:
            return b"" if size == 0 else None
        if not self.alive or addr < 0 or not self._guest_pages().covers(addr, size):
            return None
        try:
            data = os.pread(self._mem_fd, size, addr)
        except OSError:
            return None
        return data if len(data) == size else None

    def write_memory(self, addr: int, data: bytes) -> None:
        """Write guest memory, read-only code included (as ptrace's
        /proc/PID/mem does). qemu re-translated patched code in every test
        here (tests/integration/test_qemu_target.py patches a loop's callee)."""
        self._require_alive()
        if not self._guest_pages().covers(addr, len(data)):
            raise TargetError(f"cannot write {len(data)} bytes at {addr:#x}: not guest memory")
        try:
            written = os.pwrite(self._mem_fd, data, addr)
        except OSError as err:
            raise TargetError(f"cannot write guest memory at {addr:#x}: {err.strerror}") from None
        if written != len(data):
            raise TargetError(f"short write to guest memory at {addr:#x}")

    def maps_text(self) -> str:
        """The guest's mappings as its /proc/self/maps would list them
        (qemu_log.py has the rule that tells them from qemu's own)."""
        self._require_alive()
        pages = self._guest_pages()
        with open(f"/proc/{self.pid}/maps") as handle:
            host = handle.read()
        return guest_maps_text(host, pages, self._log.start_stack)

    def _guest_pages(self):
        # qemu writes its log only while the guest runs: once per stop is enough.
        if self._log_stale:
            self._log_stale = False
            self._log.poll()
        return self._log.pages

    def read_proc(self, name: str) -> bytes | None:
        """What /proc/PID/<name> would hold for the program on an aarch64
        kernel. qemu's own /proc describes the x86-64 qemu process: its
        auxv is the host's (qemu's entry, the x86-64 ld.so), its cmdline
        qemu's. auxv comes from the stub (the vector qemu built on the
        guest's stack), cmdline from the argv qemu gave the guest, maps from
        maps_text; anything else is qemu's (status, stat: the same process)."""
        if name == "auxv":
            return self._auxv_raw() if self.alive else None
        if name == "cmdline":
            return b"".join(arg.encode() + b"\0" for arg in self.argv)
        if name == "maps":
            return self.maps_text().encode() if self.alive else None
        try:
            with open(f"/proc/{self.pid}/{name}", "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def _auxv_raw(self) -> bytes:
        data = bytearray()
        while True:
            reply = self._request(b"qXfer:auxv:read::%x,%x" % (len(data), 0x800))
            if reply[:1] not in (b"m", b"l"):
                raise TargetError(f"qemu's gdb stub refused the auxv ({reply[:40]!r})")
            data += reply[1:]
            if reply[:1] == b"l" or len(reply) == 1:
                return bytes(data)

    def take_logged_syscalls(self) -> list[str]:
        """qemu's -strace lines for the guest's syscalls since the last call
        (complete lines only): what a continue without syscall stops ran."""
        self._log.poll()
        return self._log.take_syscall_lines()

    # -- breakpoints -----------------------------------------------------------
    def insert_breakpoint(self, addr: int) -> bool:
        """A stub breakpoint at addr. It holds before the address is mapped
        (qemu compares pcs), so only a refusal from the stub says False."""
        if addr in self.breakpoints:
            return True
        self._require_alive()
        if addr not in self._syscall_sites and not self._stub_breakpoint(b"Z0", addr):
            return False
        byte = self.read_memory(addr, 1)
        self.breakpoints[addr] = byte[0] if byte else 0
        return True

    def remove_breakpoint(self, addr: int) -> None:
        if self.breakpoints.pop(addr, None) is None:
            return
        if self.alive and addr not in self._syscall_sites:
            self._stub_breakpoint(b"z0", addr)

    def revalidate_breakpoints(self) -> None:
        """qemu's breakpoints are addresses, not bytes: a page mapped anew
        under one keeps it. Only the remembered byte is brought up to date."""
        for addr in self.breakpoints:
            byte = self.read_memory(addr, 1)
            if byte:
                self.breakpoints[addr] = byte[0]

    def _stub_breakpoint(self, verb: bytes, addr: int) -> bool:
        return self._request(b"%s,%x,4" % (verb, addr)) == b"OK"

    def _sync_syscall_sites(self) -> None:
        """A stub breakpoint on every ``svc #0`` in guest-executable memory."""
        pages = self._guest_pages()
        if self._log.generation == self._sites_generation:
            return
        found: set[int] = set()
        for run in pages.executable():
            try:
                code = os.pread(self._mem_fd, run.end - run.start, run.start)
            except OSError:
                continue
            at = code.find(SVC_0)
            while at >= 0:
                if at % 4 == 0:
                    found.add(run.start + at)
                at = code.find(SVC_0, at + 1)
        for addr in self._syscall_sites - found:
            if addr not in self.breakpoints:
                self._stub_breakpoint(b"z0", addr)
        for addr in found - self._syscall_sites:
            if addr not in self.breakpoints:
                self._stub_breakpoint(b"Z0", addr)
        self._syscall_sites = found
        self._sites_generation = self._log.generation

    def interrupt(self) -> None:
        """Stop a step or resume in progress, from another thread: the one
        blocked in it returns a SIGNAL stop for SIGINT. qemu 7.2 reads its
        socket only while the guest is stopped, so gdb's 0x03 byte does
        nothing; a SIGINT to qemu is caught and reported to the stub before
        the guest sees it (resume without pending_signal and it never does;
        a guest that blocks SIGINT is not stopped until it unblocks it)."""
        if self.alive:
            try:
                os.kill(self.pid, _signal.SIGINT)
            except ProcessLookupError:
                pass

    def restore_original_bytes(self) -> None:
        """Nothing to put back: qemu's breakpoints never change guest memory
        (the ptrace target's last resort has no work here)."""

    # -- threads -------------------------------------------------------------
    def threads(self) -> list[int]:
        """The guest's threads as the stub lists them (their host thread ids;
        qemu's own helper thread, which /proc/PID/task also shows, is not one)."""
        self._require_alive()
        found: list[int] = []
        reply = self._request(b"qfThreadInfo")
        while reply[:1] == b"m":
            for item in reply[1:].split(b","):
                # "p<pid>.<tid>" with the multiprocess extension, else "<tid>".
                found.append(parse_hex_int(item.rsplit(b".", 1)[-1]))
            reply = self._request(b"qsThreadInfo")
        return found

    def thread_count(self) -> int:
        return len(self.threads()) if self.alive else 0

    def untraced_threads(self) -> int:
        """Threads an engine breakpoint could kill: none. The stub's
        breakpoints (Z0) live in qemu's translator, never as a trap
        instruction in guest memory: any guest thread reaching one reports
        to the stub instead of dying, so the observer may watch r_brk and
        arm main in a threaded guest too."""
        return 0

    def catches(self, signal: int, tid: int) -> bool | None:
        """Not known: the stub reports a guest signal before qemu delivers
        it, and qemu's own /proc dispositions are not the guest's."""
        return None

    # -- what the startup observer asks at a stop (process/startup.py) ----------
    def event_message(self) -> int | None:
        """None: the stub reports no ptrace events (fork, clone, exit)."""
        return None

    def fd_path(self, fd: int) -> str | None:
        """What the guest's fd names: qemu-user passes the guest's file
        descriptors through as its own, so qemu's /proc/PID/fd answers (a
        file under -L shows its sysroot path)."""
        try:
            return os.readlink(f"/proc/{self.pid}/fd/{fd}")
        except OSError:
            return None

    def release_child(self, child: int, *, shares_memory: bool) -> None:
        """Nothing to release: a forked guest runs in its own qemu, untraced."""

    def left_stop(self) -> bool:
        """Whether qemu has ended under us (killed from outside) while the
        guest sat at a stop; poll_stop then says how."""
        if not self.alive or self._process.reaped:
            return self.alive
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if done:
            self._process.reaped, self._process.status = True, status
        return bool(done)

    def poll_stop(self) -> Stop | None:
        """After left_stop: how qemu ended, as a stop (None: it has not)."""
        if not self.alive or not self._process.reaped:
            return None
        status = self._gone()
        if status is not None and os.WIFSIGNALED(status):
            stop = Stop(StopKind.KILLED, self.pid, signal=os.WTERMSIG(status))
        else:
            code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
            stop = Stop(StopKind.EXITED, self.pid, exit_code=code)
        return self._arrived(stop)

    # -- syscalls --------------------------------------------------------------
    def syscall_info(self) -> ptrace.SyscallInfo:
        """At a SYSCALL stop: the entry (number, arguments) or the exit
        (return value), as PTRACE_GET_SYSCALL_INFO gives them."""
        if self._syscall_info is None:
            return ptrace.SyscallInfo(ptrace.SYSCALL_INFO_NONE, self.pc, self.sp)
        return self._syscall_info

    def _syscall_entry(self) -> Stop:
        raw = self.registers_raw()
        words = [int.from_bytes(raw[i:i + 8], "little") for i in range(_X0, _X0 + 48, 8)]
        number = int.from_bytes(raw[_X8:_X8 + 8], "little")
        self._entry_pc = self.pc
        # The kernel's instruction_pointer at a syscall stop is past the
        # svc already; the registers here still show the svc (not yet run).
        self._syscall_info = ptrace.SyscallInfo(ptrace.SYSCALL_INFO_ENTRY, self.pc + 4, self.sp,
                                                number=number, args=tuple(words))
        return self._arrived(self._syscall_stop)

    def _syscall_exit(self) -> Stop:
        raw = self.registers_raw()
        value = int.from_bytes(raw[_X0:_X0 + 8], "little", signed=True)
        self._syscall_info = ptrace.SyscallInfo(ptrace.SYSCALL_INFO_EXIT, self.pc, self.sp,
                                                return_value=value, is_error=-4095 <= value < 0)
        return self._arrived(self._syscall_stop)

    # -- motion ------------------------------------------------------------------
    def step(self, pc: int | None = None, kind: int | None = None) -> Stop:
        """One instruction (a syscall's ``svc`` runs the syscall). ``pc`` and
        ``kind`` are the run loop's (the ptrace target's shortcut): unused."""
        self._require_alive()
        self._entry_pc = None
        if self._held_stop is not None:
            return self._release_held_stop()
        try:
            return self._arrived(self._step())
        except _Vanished as gone:
            return self._arrived(gone.stop)

    def resume(self, *, syscalls: bool) -> Stop:
        """Run to a breakpoint, a signal or the end; with ``syscalls`` also
        to every syscall entry and exit."""
        self._require_alive()
        if self._held_stop is not None:
            return self._release_held_stop()
        try:
            return self._resume(syscalls)
        except _Vanished as gone:
            return self._arrived(gone.stop)

    def _resume(self, syscalls: bool) -> Stop:
        watch = self.watchpoint_unit
        resumed_at = self.pc
        if watch.pending:
            # The last step changed a watched range (a syscall did, and its
            # exit was reported first): the run stops before it starts.
            return self._arrived(self._watch_stop)
        if syscalls:
            self._sync_syscall_sites()
        pc = self.pc
        entered, self._entry_pc = self._entry_pc, None
        if entered == pc:
            stop = self._step()  # the syscall itself
            if syscalls and stop.kind is StopKind.SIGNAL and self.pc == pc + 4:
                # A signal the syscall raised (tgkill of itself) is reported
                # by qemu with the syscall done: its exit comes first, as
                # with ptrace, and the signal at the next resume or step.
                self._held_stop = stop
                return self._syscall_exit()
            if stop.kind is not StopKind.STEP:
                return self._arrived(stop)
            if syscalls:
                return self._syscall_exit()
            if watch.pending:
                return self._arrived(self._watch_stop)
        elif syscalls and pc in self._syscall_sites:
            # As PTRACE_SYSCALL from just before a syscall instruction: it
            # stops at the entry without anything else running (after a
            # breakpoint stop on the svc too: the engine leaves the entry
            # to us, at_breakpoint being False).
            return self._syscall_entry()
        elif pc in self.breakpoints or pc in self._syscall_sites:
            # qemu would report the breakpoint under pc again at once.
            stop = self._step()
            if stop.kind is not StopKind.STEP:
                return self._arrived(stop)
            if watch.pending:
                return self._arrived(self._watch_stop)
        if watch.armed:
            return self._step_watching(syscalls, resumed_at)
        while True:
            signal = self._take_signal()
            stop = self._stop_from(self._request(b"C%02x" % signal if signal else b"c"), stepping=False)
            if stop is not self._breakpoint_stop:
                return self._arrived(stop)
            pc = self.pc
            if pc in self.breakpoints:
                return self._arrived(stop)
            if syscalls:
                return self._syscall_entry()
            stop = self._step()  # a syscall site while syscalls are not watched
            if stop.kind is not StopKind.STEP:
                return self._arrived(stop)

    def _step_watching(self, syscalls: bool, resumed_at: int) -> Stop:
        """A run with watchpoints set, one instruction at a time: to a watched
        access, a breakpoint, a syscall entry (``syscalls``), a signal or
        the end: every stop a continue through the stub makes, and the
        watched accesses it cannot see. Stopping before accesses, the
        instruction the run resumed at is not checked before it runs: the
        last stop may have been before that very access."""
        watch = self.watchpoint_unit
        first = True
        while True:
            if watch.stops_before_access and not (first and self.pc == resumed_at) \
                    and watch.touched_before(self._accesses_here()):
                return self._arrived(self._watch_stop)
            first = False
            stop = self._step()
            if stop is not self.plain_step:
                return self._arrived(stop)
            if watch.pending:
                return self._arrived(self._watch_stop)
            pc = self.pc
            if pc in self.breakpoints:
                return self._arrived(self._breakpoint_stop)
            if syscalls and self.read_memory(pc, 4) == SVC_0:
                return self._syscall_entry()

    def _release_held_stop(self) -> Stop:
        """The signal stop qemu reported behind a syscall exit: the guest
        has not moved since, and qemu still waits to hear what to deliver."""
        stop, self._held_stop = self._held_stop, None
        # A signal asked for at the exit stop cannot be sent from there (as
        # with ptrace at a syscall-exit-stop): the resume after this one
        # says whether the held signal is delivered.
        self.pending_signal = 0
        return self._arrived(stop)

    def _step(self) -> Stop:
        """One step (_step_instruction); with watchpoints set, the watched
        ranges checked around it: a hit is left for fired()."""
        watch = self.watchpoint_unit
        if not watch.armed:
            return self._step_instruction()
        watch.forget_hit()
        accesses = self._accesses_here()
        before = watch.values(self.read_memory)
        stop = self._step_instruction()
        if self.alive:
            # A stop before the instruction ran (a fault) made no access;
            # a changed byte still counts (a signal handler's, a syscall's).
            watch.check(accesses if stop is self.plain_step else (), before, self.read_memory)
        return stop

    def _accesses_here(self) -> tuple[Access, ...]:
        """The loads and stores of the instruction at pc, from the registers now."""
        raw = self.registers_raw()
        pc = int.from_bytes(raw[_PC:_PC + 8], "little")
        code = self.read_memory(pc, 4)
        insn = disassemble_one(code, pc, AARCH64) if code else None
        if insn is None:
            return ()
        return memory_accesses(insn, decode_registers(raw, AARCH64), _ZVA_BLOCK)

    def _step_instruction(self) -> Stop:
        pc = self.pc
        code = self.read_memory(pc, 4)
        if code == SVC_0 and self._returns_after(pc):
            # qemu 7.2 single-steps an svc *and the instruction after it*
            # (the step trap is lost in the syscall's exception return; gdb-
            # multiarch's stepi lands at svc+8 too), and that instruction
            # often overwrites x0, the result: run to svc+4 instead.
            return self._run_atomic_sequence(pc, (pc + 4,))
        exits = self._atomic_sequence_exits(pc, code)
        if exits:
            return self._run_atomic_sequence(pc, exits)
        signal = self._take_signal()
        # qemu 7.2 has no `S sig` packet (an empty reply); vCont's S steps with the signal.
        stop = self._stop_from(self._request(b"vCont;S%02x" % signal if signal else b"s"), stepping=True)
        if stop is self.plain_step and code is not None \
                and int.from_bytes(code, "little") & _BRK_MASK == _BRK_BITS and self.pc == pc:
            # A brk instruction raised SIGTRAP itself: the program's, not our step.
            stop = Stop(StopKind.SIGNAL, self.pid, signal=_signal.SIGTRAP)
        return stop

    def _returns_after(self, pc: int) -> bool:
        """Whether the syscall at pc (an svc) comes back to pc+4: not
        rt_sigreturn (it goes where the signal frame says), nor execve or
        the exits when they succeed (they do not come back at all)."""
        raw = self.registers_raw()
        number = int.from_bytes(raw[_X8:_X8 + 8], "little")
        return AARCH64.syscall_names.get(number) not in _NO_RETURN_SYSCALLS

    def _atomic_sequence_exits(self, pc: int, code: bytes | None) -> tuple[int, ...]:
        """Where an atomic sequence starting at pc ends, if it starts here
        (decode/aarch64_sequences.py: the branches followed, as the aarch64
        recorder steps it too). A step between a load-exclusive and its
        store-exclusive clears the exclusive monitor (qemu, like a kernel,
        clears it on every trap), so the store always fails and a stepped
        ldaxr/stxr loop never ends: the sequence is one step, as in gdb."""
        if code is None:
            return ()
        return atomic_sequence_exits(lambda addr: code if addr == pc else self.read_memory(addr, 4), pc)

    def _run_atomic_sequence(self, pc: int, exits: tuple[int, ...]) -> Stop:
        """Continue from pc to the first of ``exits`` with stub breakpoints
        there (and none at pc, which qemu would report at once)."""
        ours = {addr for addr in (pc, *exits) if addr in self.breakpoints or addr in self._syscall_sites}
        if pc in ours:
            self._stub_breakpoint(b"z0", pc)
        added = [addr for addr in exits if addr not in ours]
        for addr in added:
            self._stub_breakpoint(b"Z0", addr)
        try:
            signal = self._take_signal()
            stop = self._stop_from(self._request(b"C%02x" % signal if signal else b"c"), stepping=False)
        finally:
            if self.alive:
                for addr in added:
                    self._stub_breakpoint(b"z0", addr)
                if pc in ours:
                    self._stub_breakpoint(b"Z0", pc)
        if stop.kind is StopKind.BREAKPOINT or (stop.kind is StopKind.SIGNAL and stop.signal == _signal.SIGTRAP
                                               and self.pc in exits):
            return self.plain_step
        return stop

    def _take_signal(self) -> int:
        """The pending signal as gdb numbers it (0: none)."""
        signal, self.pending_signal = self.pending_signal, 0
        return LINUX_TO_GDB_SIGNAL.get(signal, 0) if signal else 0

    def _arrived(self, stop: Stop) -> Stop:
        if stop.kind is not StopKind.SYSCALL:
            self._syscall_info = None
        self.last_stop = stop
        return stop

    def _stop_from(self, reply: bytes, *, stepping: bool) -> Stop:
        """A stop reply (``T05thread:…;``, ``S0b``, ``W00``, ``X09``) as a Stop."""
        self._regs = None
        self._log_stale = True
        kind = reply[:1]
        try:
            value = parse_hex_int(reply[1:3])
        except ValueError:
            value = None
        if kind == b"W" and value is not None:
            self._gone()
            return Stop(StopKind.EXITED, self.pid, exit_code=value)
        if kind == b"X" and value is not None:
            self._gone()
            return Stop(StopKind.KILLED, self.pid, signal=GDB_TO_LINUX_SIGNAL.get(value, value))
        if kind in (b"T", b"S") and value is not None:
            signal = GDB_TO_LINUX_SIGNAL.get(value, 0)
            if signal == _signal.SIGTRAP:
                if stepping:
                    return self.plain_step
                pc = self.pc
                if pc in self.breakpoints or pc in self._syscall_sites:
                    return self._breakpoint_stop
            return Stop(StopKind.SIGNAL, self.pid, signal=signal)
        raise TargetError(f"qemu's gdb stub answered a resume with {reply[:40]!r}")

    # -- talking to the stub -------------------------------------------------------
    def _request(self, payload: bytes) -> bytes:
        try:
            return self._connection.request(payload)
        except StubClosed:
            # qemu went away under us (killed from outside, exec'd a native
            # program): its wait status says how.
            status = self._gone()
            if status is not None and os.WIFSIGNALED(status):
                raise _Vanished(Stop(StopKind.KILLED, self.pid, signal=os.WTERMSIG(status))) from None
            code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
            raise _Vanished(Stop(StopKind.EXITED, self.pid, exit_code=code)) from None

    @staticmethod
    def _hex_reply(reply: bytes) -> bytes:
        try:
            return hex_to_bytes(reply)
        except ValueError:
            raise TargetError(f"qemu's gdb stub sent {reply[:40]!r} for hex data") from None

    def _require_alive(self) -> None:
        if not self.alive:
            raise TargetError("the program is not running")

    # -- ending ----------------------------------------------------------------------
    def _gone(self) -> int | None:
        """qemu has ended (or must): reap it and let go of everything."""
        self.alive = False
        self._regs = None
        self._connection.close()
        self._log.poll()  # its last lines, before the directory goes
        self._log.close()
        if self._mem_fd >= 0:
            os.close(self._mem_fd)
            self._mem_fd = -1
        status = self._process.reap(kill=True)
        self._finalizer.detach()
        return status

    def kill(self) -> None:
        if self.alive:
            self._gone()

    def close(self) -> None:
        self.kill()


class _Vanished(TargetError):
    """The stub connection died under a request; carries the stop that says
    how qemu ended (step and resume return it, other calls raise it)."""

    def __init__(self, stop: Stop) -> None:
        super().__init__(f"the program has ended: {stop.describe()}")
        self.stop = stop


def find_qemu() -> str:
    path = shutil.which(QEMU_PROGRAM)
    if path is None:
        raise TargetError(f"{QEMU_PROGRAM} not found: aarch64 programs run under qemu-user "
                          "(apt-get install qemu-user)")
    return path


def check_aarch64_program(path: str) -> None:
    """TargetError unless ``path`` is an aarch64 ELF file we can open."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError as err:
        raise TargetError(f"{path}: {err.strerror}") from None
    machine = elf_machine(header)
    if machine is None:
        raise TargetError(f"{path}: not an ELF program")
    if machine != EM_AARCH64:
        raise TargetError(f"{path}: not an aarch64 program (e_machine {machine})")


def qemu_command(spec: LaunchSpec, qemu: str, sysroot: str, workdir: str) -> tuple[list[str], dict[str, str]]:
    """qemu's argv and its own environment for ``spec``. The guest gets
    qemu's environment plus the -E settings (which qemu splits at commas)."""
    host_env: dict[str, str] = {}
    guest_only: list[str] = []
    for name, value in spec.env.items():
        if name.startswith(_HOST_SIDE_PREFIXES):
            if "," in value or "," in name:
                raise TargetError(f"{name}: qemu-user cannot pass a value with a comma to the program")
            guest_only += ["-E", f"{name}={value}"]
        else:
            host_env[name] = value
    argv0 = spec.argv[0] if spec.argv else spec.path
    command = [qemu, "-L", sysroot, "-g", os.path.join(workdir, "stub"),
               "-d", "page,strace,tid", "-D", os.path.join(workdir, "log.%d"),
               "-0", argv0, *guest_only, spec.path, *spec.argv[1:]]
    return command, host_env


def launch(spec: LaunchSpec, *, sysroot: str = DEFAULT_SYSROOT, qemu: str | None = None) -> QemuTarget:
    """Start ``spec`` under qemu-user and return it stopped at its first
    instruction, in qemu's gdb stub."""
    check_aarch64_program(spec.path)
    qemu = qemu or find_qemu()
    workdir = tempfile.mkdtemp(prefix="loaderdbg-qemu-")
    try:
        command, host_env = qemu_command(spec, qemu, sysroot, workdir)
        pid = _spawn(command, host_env, spec)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    process = _QemuProcess(pid, workdir)
    try:
        connection = _connect(os.path.join(workdir, "stub"), process, spec.path)
        connection.request(b"qSupported:xmlRegisters=aarch64")
        first = connection.request(b"?")
        if first[:1] not in (b"T", b"S"):
            raise TargetError(f"{spec.path}: qemu's gdb stub did not stop at the start ({first[:40]!r})")
        log = QemuLog(os.path.join(workdir, f"log.{pid}"))
        target = QemuTarget(process, connection, log, (spec.argv[0] if spec.argv else spec.path,
                                                       *spec.argv[1:]))
    except BaseException:
        process.reap(kill=True)
        raise
    # The same stop a ptrace launch reports: the new image's first instruction.
    target.last_stop = Stop(StopKind.EVENT, pid, signal=_signal.SIGTRAP, event=ptrace.EVENT_EXEC)
    return target


def _spawn(command: list[str], env: dict[str, str], spec: LaunchSpec) -> int:
    parent = os.getpid()
    err_read, err_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child: only exec-preparing work
        try:
            os.close(err_read)
            for target, fd in ((0, spec.stdin_fd), (1, spec.stdout_fd), (2, spec.stderr_fd)):
                if fd is not None:
                    os.dup2(fd, target)
            for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT):
                _signal.signal(sig, _signal.SIG_DFL)
            # qemu dies with us, whatever kills us (SIGTERM, SIGKILL, a crash).
            if _libc.prctl(_PR_SET_PDEATHSIG, int(_signal.SIGKILL), 0, 0, 0) != 0 or os.getppid() != parent:
                os._exit(127)
            if not spec.aslr:
                ptrace.disable_aslr_for_self()  # qemu's own layout, and so its choices for the guest
            os.execve(command[0], command, env)
        except OSError as err:
            os.write(err_write, str(err.errno or 0).encode())
        finally:
            os._exit(127)
    os.close(err_write)
    try:
        message = os.read(err_read, 64).decode()  # EOF when the exec succeeded
    finally:
        os.close(err_read)
    if message:
        os.waitpid(pid, 0)
        code = int(message) if message.isdigit() else 0
        raise TargetError(f"{command[0]}: cannot run it: {os.strerror(code)}")
    return pid


def _connect(path: str, process: _QemuProcess, program: str) -> StubConnection:
    """Connect to qemu's stub, which listens once the program is loaded."""
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
            return StubConnection(sock)
        done, status = os.waitpid(process.pid, os.WNOHANG)
        if done:
            process.reaped, process.status = True, status
            how = (f"exit status {os.WEXITSTATUS(status)}" if os.WIFEXITED(status)
                   else f"signal {_signal.Signals(os.WTERMSIG(status)).name}")
            raise TargetError(f"{program}: qemu-aarch64 ended ({how}) before its gdb stub listened")
        if time.monotonic() > deadline:
            raise TargetError(f"{program}: qemu-aarch64's gdb stub did not listen within "
                              f"{_CONNECT_TIMEOUT:.0f} s")
        time.sleep(0.002)
