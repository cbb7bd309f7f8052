"""siginfo_t (PTRACE_GETSIGINFO, 128 bytes) -> SigInfo, named the way strace
names things.

Which union member is valid depends on (signal, si_code), as in the kernel's
siginfo_layout() (kernel/signal.c); the tables below encode that rule.
"""

from __future__ import annotations

import errno as errno_module
import struct
from dataclasses import dataclass

from loaderdbg.arch import ArchTables
from loaderdbg.arch.ptrace_tables import python_ptrace_module
from loaderdbg.decode.errors import DecodeError

_signal_names = python_ptrace_module("ptrace.signames")

SIGINFO_SIZE = 128

SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGCHLD, SIGPOLL, SIGSYS = 4, 5, 7, 8, 11, 17, 29, 31
SIGRTMIN_KERNEL, SIGRTMAX_KERNEL = 32, 64

# si_code values shared by all signals (include/uapi/asm-generic/siginfo.h).
GENERIC_CODES = {
    0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER",
    -3: "SI_MESGQ", -4: "SI_ASYNCIO", -5: "SI_SIGIO", -6: "SI_TKILL",
    -7: "SI_DETHREAD", -60: "SI_ASYNCNL",
}

# Signal-specific si_code names, valid when 0 < si_code < SI_KERNEL.
SIGNAL_CODES = {
    SIGILL: ("ILL_ILLOPC", "ILL_ILLOPN", "ILL_ILLADR", "ILL_ILLTRP", "ILL_PRVOPC",
             "ILL_PRVREG", "ILL_COPROC", "ILL_BADSTK", "ILL_BADIADDR"),
    SIGFPE: ("FPE_INTDIV", "FPE_INTOVF", "FPE_FLTDIV", "FPE_FLTOVF", "FPE_FLTUND",
             "FPE_FLTRES", "FPE_FLTINV", "FPE_FLTSUB", None, None, None, None, None,
             "FPE_FLTUNK", "FPE_CONDTRAP"),
    SIGSEGV: ("SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR", "SEGV_ACCADI",
              "SEGV_ADIDERR", "SEGV_ADIPERR", "SEGV_MTEAERR", "SEGV_MTESERR", "SEGV_CPERR"),
    SIGBUS: ("BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"),
    SIGTRAP: ("TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT", "TRAP_UNK", "TRAP_PERF"),
    SIGCHLD: ("CLD_EXITED", "CLD_KILLED", "CLD_DUMPED", "CLD_TRAPPED", "CLD_STOPPED", "CLD_CONTINUED"),
    SIGPOLL: ("POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP"),
    SIGSYS: ("SYS_SECCOMP", "SYS_USER_DISPATCH"),
}

# ptrace stops report si_code = SIGTRAP | event << 8 (ptrace_event()), and
# syscall stops under PTRACE_O_TRACESYSGOOD SIGTRAP | 0x80.
PTRACE_EVENTS = {
    1: "PTRACE_EVENT_FORK", 2: "PTRACE_EVENT_VFORK", 3: "PTRACE_EVENT_CLONE",
    4: "PTRACE_EVENT_EXEC", 5: "PTRACE_EVENT_VFORK_DONE", 6: "PTRACE_EVENT_EXIT",
    7: "PTRACE_EVENT_SECCOMP", 128: "PTRACE_EVENT_STOP",
}
PTRACE_SYSCALL_STOP_CODE = SIGTRAP | 0x80

# Union layouts: which fields follow the 16-byte header, as
# (field name, struct format, offset from the start of siginfo_t).
LAYOUTS = {
    "kill": (("pid", "i", 16), ("uid", "I", 20)),
    "rt": (("pid", "i", 16), ("uid", "I", 20), ("value", "Q", 24)),
    "timer": (("value", "Q", 24),),
    "chld": (("pid", "i", 16), ("uid", "I", 20), ("status", "i", 24)),
    "fault": (("addr", "Q", 16),),
    "poll": (("fd", "i", 24),),
    "sys": (("addr", "Q", 16), ("syscall", "i", 24)),
}
SIGNAL_LAYOUTS = {
    SIGILL: "fault", SIGFPE: "fault", SIGSEGV: "fault", SIGBUS: "fault", SIGTRAP: "fault",
    SIGCHLD: "chld", SIGPOLL: "poll", SIGSYS: "sys",
}
GENERIC_CODE_LAYOUTS = {-2: "timer", -5: "poll"}


def signal_name(number: int) -> str:
    """SIGSEGV, SIGRT_3, ... Real-time signals are named from the kernel's
    SIGRTMIN (32), not glibc's (34), as strace does."""
    if SIGRTMIN_KERNEL <= number <= SIGRTMAX_KERNEL:
        return {SIGRTMIN_KERNEL: "SIGRTMIN", SIGRTMAX_KERNEL: "SIGRTMAX"}.get(
            number, f"SIGRT_{number - SIGRTMIN_KERNEL}")
    return _signal_names.signalName(number)


def si_code_name(signo: int, code: int) -> str:
    if signo == SIGTRAP and code == PTRACE_SYSCALL_STOP_CODE:
        return "SIGTRAP|0x80"
    if signo == SIGTRAP and code & 0xFF == SIGTRAP and code >> 8 in PTRACE_EVENTS:
        return PTRACE_EVENTS[code >> 8]
    if 0 < code < 0x80:
        names = SIGNAL_CODES.get(signo, ())
        if code <= len(names) and names[code - 1]:
            return names[code - 1]
    return GENERIC_CODES.get(code, str(code))


def siginfo_layout(signo: int, code: int) -> str:
    if 0 < code < 0x80 and signo in SIGNAL_LAYOUTS:
        return SIGNAL_LAYOUTS[signo]
    if code in GENERIC_CODE_LAYOUTS:
        return GENERIC_CODE_LAYOUTS[code]
    return "rt" if code < 0 else "kill"


@dataclass(frozen=True)
class SigInfo:
    """A siginfo_t, decoded by the union member its signal and si_code use."""

    signo: int
    errno: int
    code: int
    addr: int | None
    pid: int | None
    uid: int | None
    status: int | None
    signame: str
    codename: str
    # Which union member was decoded: kill, rt, timer, chld, fault, poll, sys.
    layout: str = "kill"
    value: int | None = None      # sigval of SI_QUEUE / timers
    syscall: int | None = None    # SIGSYS (seccomp)
    fd: int | None = None         # SIGPOLL

    @property
    def is_ptrace_event(self) -> bool:
        return self.codename.startswith("PTRACE_EVENT_")


def decode_siginfo(raw: bytes, arch: ArchTables) -> SigInfo:
    """The 128 bytes of siginfo_t. The union layout is the same on every
    64-bit Linux arch we support; arch gives the byte order."""
    if len(raw) != SIGINFO_SIZE:
        raise DecodeError(f"siginfo_t is {SIGINFO_SIZE} bytes, got {len(raw)}")
    order = arch.word_format[0]
    signo, errno_value, code = struct.unpack_from(order + "iii", raw, 0)
    layout = siginfo_layout(signo, code)
    fields = {name: struct.unpack_from(order + fmt, raw, offset)[0]
              for name, fmt, offset in LAYOUTS[layout]}
    return SigInfo(
        signo=signo,
        errno=errno_value,
        code=code,
        addr=fields.get("addr"),
        pid=fields.get("pid"),
        uid=fields.get("uid"),
        status=fields.get("status"),
        signame=signal_name(signo),
        codename=si_code_name(signo, code),
        layout=layout,
        value=fields.get("value"),
        syscall=fields.get("syscall"),
        fd=fields.get("fd"),
    )


def _address(value: int) -> str:
    return "0" if value == 0 else f"{value:#x}"


def describe_siginfo(si: SigInfo) -> str:
    """strace's notation: "SIGSEGV {si_code=SEGV_MAPERR, si_addr=0}"."""
    parts = [f"si_code={si.codename}"]
    if si.errno:
        parts.append(f"si_errno={errno_module.errorcode.get(si.errno, si.errno)}")
    optional = (
        ("si_pid", si.pid, str), ("si_uid", si.uid, str),
        ("si_status", si.status,
         (lambda s: signal_name(s) if si.codename in ("CLD_KILLED", "CLD_DUMPED") else str(s))),
        ("si_value", si.value, hex), ("si_fd", si.fd, str),
        ("si_addr", si.addr, _address), ("si_syscall", si.syscall, str),
    )
    parts += [f"{label}={render(value)}" for label, value, render in optional if value is not None]
    return f"{si.signame} {{{', '.join(parts)}}}"
