"""A thin, measured ctypes layer over ptrace(2) and waitpid(2).

python-ptrace names the classic requests, but lacks SEIZE, INTERRUPT, LISTEN,
EXITKILL and GET_SYSCALL_INFO, its process control polls with sleeps
(PTRACE_NOTES.md §10), and its binding's import costs more than the rest of
this layer. The step loop is our hottest path, so each call here
is one libc call into a buffer that is allocated once.

Every function must be called from the tracer thread: the kernel binds a
tracee to the thread that attached it (PTRACE_NOTES.md §7).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import struct
from dataclasses import dataclass

from loaderdbg.decode.frozen_init import dict_init
from loaderdbg.errors import NotBuiltError

# libc through the program's own namespace (dlopen(NULL)): python-ptrace's
# binding would look for it with find_library, which runs ldconfig, and its
# import pulls in ctypes.util, subprocess and tempfile (~8 ms of a whole
# `loaderdbg inspect`, issue 19). A handle of our own also keeps our
# argtypes off anyone else's functions.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_libc.personality.restype = ctypes.c_int
_libc.personality.argtypes = (ctypes.c_ulong,)
# A second handle on ptrace(2) without argtypes, for the step loop: fed
# ready-made ctypes values it skips the per-call argument conversion, about
# a third of a call's overhead (the recorder measured the same).
_raw_ptrace = raw_ptrace = ctypes.CDLL(None, use_errno=True).ptrace
_raw_ptrace.restype = ctypes.c_long
NULL = ctypes.c_void_p(0)

# Requests (include/uapi/linux/ptrace.h; GETREGS and SETREGS from
# arch/x86/include/uapi/asm/ptrace-abi.h). A test checks them against
# python-ptrace's names, which are not imported here for their cost (above).
TRACEME = 0
PEEKUSER = 3
CONT = 7
KILL = 8
SINGLESTEP = 9
GETREGS = 12
SETREGS = 13
ATTACH = 16
DETACH = 17
SYSCALL = 24
SETOPTIONS = 0x4200
GETEVENTMSG = 0x4201
GETSIGINFO = 0x4202
GETREGSET = 0x4204
SEIZE = 0x4206
INTERRUPT = 0x4207
LISTEN = 0x4208
GET_SYSCALL_INFO = 0x420E

O_TRACESYSGOOD = 0x01
O_TRACEFORK = 0x02
O_TRACEVFORK = 0x04
O_TRACECLONE = 0x08
O_TRACEEXEC = 0x10
O_TRACEVFORKDONE = 0x20
O_TRACEEXIT = 0x40
O_EXITKILL = 0x100000

EVENT_FORK = 1
EVENT_VFORK = 2
EVENT_CLONE = 3
EVENT_EXEC = 4
EVENT_VFORK_DONE = 5
EVENT_EXIT = 6
EVENT_STOP = 128

WALL = 0x40000000
ADDR_NO_RANDOMIZE = 0x0040000
NT_PRSTATUS = 1

SYSCALL_INFO_NONE = 0
SYSCALL_INFO_ENTRY = 1
SYSCALL_INFO_EXIT = 2
SYSCALL_INFO_SECCOMP = 3

# waitpid status of a stop for SIGTRAP with no event bits: what a finished
# single-step reports (and, rarely, an int3 or a SIGTRAP someone sent).
SIGTRAP_STOP_STATUS = (5 << 8) | 0x7F

USER_REGS_SIZE = 27 * 8
SIGINFO_SIZE = 128
SYSCALL_INFO_SIZE = 88


class PtraceError(OSError):
    """A ptrace request failed; ``errno`` says why (ESRCH: the tracee is gone
    or not stopped)."""


def _check(result: int, request: str, pid: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        if err:
            raise PtraceError(err, f"ptrace({request}, {pid}): {os.strerror(err)}")
    return result


def request(req: int, pid: int, addr: int = 0, data: int = 0) -> int:
    ctypes.set_errno(0)
    return _check(_libc.ptrace(req, pid, addr, data), str(req), pid)


def disable_aslr_for_self() -> None:
    """personality(ADDR_NO_RANDOMIZE) for the calling process; execve keeps it."""
    current = _libc.personality(0xFFFFFFFF)
    _libc.personality(current | ADDR_NO_RANDOMIZE)


def set_options(pid: int, options: int) -> None:
    request(SETOPTIONS, pid, 0, options)


def cont(pid: int, signal: int = 0) -> None:
    request(CONT, pid, 0, signal)


def singlestep(pid: int, signal: int = 0) -> None:
    request(SINGLESTEP, pid, 0, signal)


def syscall(pid: int, signal: int = 0) -> None:
    request(SYSCALL, pid, 0, signal)


def detach(pid: int, signal: int = 0) -> None:
    request(DETACH, pid, 0, signal)


def seize(pid: int, options: int) -> None:
    request(SEIZE, pid, 0, options)


def interrupt(pid: int) -> None:
    request(INTERRUPT, pid)


def listen(pid: int) -> None:
    request(LISTEN, pid)


def get_event_msg(pid: int) -> int:
    value = ctypes.c_ulong(0)
    request(GETEVENTMSG, pid, 0, ctypes.addressof(value))
    return value.value


C_GETREGS = ctypes.c_long(GETREGS)


def fail(request_name: str, pid: int) -> None:
    """Raise for a raw call that returned -1 (never a PEEK*, so -1 always
    means an error and errno is fresh)."""
    err = ctypes.get_errno()
    raise PtraceError(err, f"ptrace({request_name}, {pid}): {os.strerror(err)}")


def _load_stepper() -> ctypes.CDLL:
    spec = importlib.util.find_spec("loaderdbg.process._stepper")
    if spec is None or not spec.origin:
        raise NotBuiltError("the step helper (loaderdbg/process/_stepper.c) is not built: "
                            "run `make venv` or `pip install -e .`")
    lib = ctypes.CDLL(spec.origin)
    if lib.loaderdbg_stepper_regs_size() != USER_REGS_SIZE:
        raise NotBuiltError(f"{spec.origin}: built for another user_regs_struct; rebuild it")
    lib.loaderdbg_step.restype = ctypes.c_int
    try:
        spawn = lib.loaderdbg_spawn_traced
    except AttributeError:
        raise NotBuiltError(f"{spec.origin}: built from an older _stepper.c; rebuild it (make venv)") from None
    spawn.restype = ctypes.c_int
    spawn.argtypes = (ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p),
                      ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.POINTER(ctypes.c_int))
    return lib


_stepper = _load_stepper()
# step_and_fetch(c_int pid, c_void_p regs) -> status | STEP_REGS_FETCHED, or
# -errno: SINGLESTEP + waitpid + GETREGS in one foreign call (see _stepper.c).
# Fed ready-made ctypes values, like _raw_ptrace.
step_and_fetch = _stepper.loaderdbg_step
STEP_REGS_FETCHED = 1 << 30  # above every wait status (events use bits 16-23)


def spawn_traced(path: bytes, argv: list[bytes], env: list[bytes], fds: tuple[int, int, int],
                 no_aslr: bool) -> tuple[int, int]:
    """vfork + PTRACE_TRACEME + execve (see _stepper.c): (pid, 0) once the
    child has called execve, (pid, errno) when its preparation or execve
    failed (it exits with 127), (-1, errno) when vfork did. On success the
    child stops with the SIGTRAP of a traced execve, in the new image."""
    c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
    c_env = (ctypes.c_char_p * (len(env) + 1))(*env, None)
    failure = ctypes.c_int(0)
    pid = _stepper.loaderdbg_spawn_traced(path, c_argv, c_env, (ctypes.c_int * 3)(*fds), int(no_aslr),
                                          ctypes.byref(failure))
    return pid, failure.value


class RegisterBuffer:
    """One reusable user_regs_struct buffer: GETREGS into it costs 3.5 µs
    against 5+ µs for a fresh struct (PTRACE_NOTES.md §6)."""

    __slots__ = ("raw", "_address", "c_address")

    def __init__(self) -> None:
        self.raw = ctypes.create_string_buffer(USER_REGS_SIZE)
        self._address = ctypes.addressof(self.raw)
        self.c_address = ctypes.c_void_p(self._address)

    def fetch(self, pid: int) -> bytes:
        if _raw_ptrace(C_GETREGS, pid, NULL, self.c_address) == -1:
            fail("GETREGS", pid)
        return self.raw.raw

    def store(self, pid: int, data: bytes) -> None:
        ctypes.memmove(self._address, data, USER_REGS_SIZE)
        ctypes.set_errno(0)
        if _libc.ptrace(SETREGS, pid, 0, self._address) == -1:
            _check(-1, "SETREGS", pid)


def get_siginfo(pid: int) -> bytes:
    buffer = ctypes.create_string_buffer(SIGINFO_SIZE)
    request(GETSIGINFO, pid, 0, ctypes.addressof(buffer))
    return buffer.raw


@dict_init
@dataclass(frozen=True)
class SyscallInfo:
    """PTRACE_GET_SYSCALL_INFO, decoded once at the edge."""

    op: int
    instruction_pointer: int
    stack_pointer: int
    number: int | None = None
    args: tuple[int, ...] = ()
    return_value: int | None = None
    is_error: bool = False


# struct ptrace_syscall_info (include/uapi/linux/ptrace.h): op, arch, ip, sp,
# then the entry's nr and args[6], or the exit's rval and is_error.
_INFO_HEADER = struct.Struct("<B3xIQQ")
_INFO_ENTRY = struct.Struct("<24x7Q")
_INFO_EXIT = struct.Struct("<24xqB")
C_GET_SYSCALL_INFO = ctypes.c_long(GET_SYSCALL_INFO)
_C_SYSCALL_INFO_SIZE = ctypes.c_void_p(SYSCALL_INFO_SIZE)


class SyscallInfoBuffer:
    """One reusable buffer for PTRACE_GET_SYSCALL_INFO (a syscall stop asks
    for it twice a syscall: no buffer made each time)."""

    __slots__ = ("raw", "c_address")

    def __init__(self) -> None:
        self.raw = ctypes.create_string_buffer(SYSCALL_INFO_SIZE)
        self.c_address = ctypes.c_void_p(ctypes.addressof(self.raw))

    def fetch(self, pid: int) -> SyscallInfo:
        if _raw_ptrace(C_GET_SYSCALL_INFO, pid, _C_SYSCALL_INFO_SIZE, self.c_address) == -1:
            fail("GET_SYSCALL_INFO", pid)
        return decode_syscall_info(self.raw.raw)


def decode_syscall_info(raw: bytes) -> SyscallInfo:
    op, _, ip, sp = _INFO_HEADER.unpack_from(raw)
    if op == SYSCALL_INFO_ENTRY or op == SYSCALL_INFO_SECCOMP:
        number, *args = _INFO_ENTRY.unpack_from(raw)
        return SyscallInfo(op, ip, sp, number, tuple(args))
    if op == SYSCALL_INFO_EXIT:
        rval, is_error = _INFO_EXIT.unpack_from(raw)
        return SyscallInfo(op, ip, sp, None, (), rval, bool(is_error))
    return SyscallInfo(op, ip, sp)


def get_syscall_info(pid: int) -> SyscallInfo:
    return SyscallInfoBuffer().fetch(pid)


_libc.tgkill.restype = ctypes.c_int
_libc.tgkill.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)


def tgkill(tgid: int, tid: int, sig: int) -> None:
    """A signal for one thread only. kill() would let any thread take it,
    including one we do not trace: a SIGSTOP there is a real group-stop
    that freezes the threads we cannot resume."""
    if _libc.tgkill(tgid, tid, sig) == -1:
        err = ctypes.get_errno()
        raise ProcessLookupError(err, os.strerror(err))


def waitpid(pid: int, flags: int = WALL) -> tuple[int, int]:
    """waitpid that retries on EINTR (Ctrl-C handlers run between retries)."""
    while True:
        try:
            return os.waitpid(pid, flags)
        except InterruptedError:
            continue
