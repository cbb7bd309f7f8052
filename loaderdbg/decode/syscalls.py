"""Syscall number + argument words (+ strings already read) -> Syscall, which
formats itself the way strace does:

    openat(AT_FDCWD, "/proc/self/exe", O_RDONLY) = 3
    access("/etc/ld.so.preload", R_OK) = -1 ENOENT (No such file or directory)

The caller (live or replay) first asks syscall_string_args() which addresses
hold C strings, reads them, and passes them in ``strings``; nothing here reads
memory. Signatures are data: SIGNATURES gives each argument a kind, and
FORMATTERS renders a kind. Syscalls without a signature fall back to
python-ptrace's prototypes.
"""

from __future__ import annotations

import errno as errno_module
import functools
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from loaderdbg.arch import ArchTables, SyscallSignature
from loaderdbg.arch.ptrace_tables import table
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.siginfo import signal_name

AT_FDCWD = -100
# python-ptrace's prototypes and syscall names are read from its tables; the
# flag and value tables below are written out from the kernel's uapi
# headers, as the newer ones already were. python-ptrace's copies of these
# are from 2.6-era headers (tests/unit/test_decode_syscalls.py shows where
# they differ), and loading them (posix_arg, posix_constants) starts its
# whole package and imports socket: ~4 ms of every `loaderdbg inspect`.
_prototypes = table("prototypes")
FILENAME_ARGUMENTS = _prototypes.FILENAME_ARGUMENTS
SYSCALL_PROTOTYPES = _prototypes.SYSCALL_PROTOTYPES
# The prototypes' C types python-ptrace prints as signed decimals. Its set
# lives beside its argument formatter, whose module starts its whole syscall
# package (a test checks the two agree).
PROTOTYPE_INTEGER_TYPES = frozenset({"int", "size_t", "clockid_t", "long", "socklen_t", "pid_t", "uid_t", "gid_t"})

MAX_SYSCALL_ARGS = 6
# Errors come back as -4095..-1 (IS_ERR_VALUE in the kernel).
MAX_ERRNO = 4095

# ---------------------------------------------------------------- flag tables
# (mask, name) rows, tried in order; a row matches only when all its mask bits
# are set, so multi-bit flags must precede the single bits they contain.

PROT_FLAGS = (
    (0x1, "PROT_READ"), (0x2, "PROT_WRITE"), (0x4, "PROT_EXEC"), (0x01000000, "PROT_GROWSDOWN"),
    (0x02000000, "PROT_GROWSUP"), (0x8, "PROT_SEM"),
)

MAP_TYPES = {1: "MAP_SHARED", 2: "MAP_PRIVATE", 3: "MAP_SHARED_VALIDATE", 8: "MAP_DROPPABLE"}
MAP_TYPE_MASK = 0x0F
MAP_FLAGS = (
    (0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"), (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"), (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"), (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"), (0x4000000, "MAP_UNINITIALIZED"),
)

OPEN_ACCESS_MODES = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE"}
OPEN_ACCESS_MASK = 0o3
# The same on every Linux arch; they decide whether open's mode is shown.
O_CREAT = 0o100
O_TMPFILE_BIT = 0o20000000
O_CLOEXEC = 0o2000000

# In strace's order: R_OK|W_OK|X_OK.
ACCESS_FLAGS = ((4, "R_OK"), (2, "W_OK"), (1, "X_OK"))

MEMFD_FLAGS = (
    (0x1, "MFD_CLOEXEC"), (0x2, "MFD_ALLOW_SEALING"), (0x4, "MFD_HUGETLB"),
    (0x8, "MFD_NOEXEC_SEAL"), (0x10, "MFD_EXEC"),
)
AT_FLAGS = (
    (0x100, "AT_SYMLINK_NOFOLLOW"), (0x400, "AT_SYMLINK_FOLLOW"), (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"), (0x2000, "AT_STATX_FORCE_SYNC"), (0x4000, "AT_STATX_DONT_SYNC"),
)
# 0x200 means AT_EACCESS to faccessat2 and AT_REMOVEDIR to unlinkat.
FACCESSAT_FLAGS = ((0x200, "AT_EACCESS"), (0x100, "AT_SYMLINK_NOFOLLOW"), (0x1000, "AT_EMPTY_PATH"))
UNLINKAT_FLAGS = ((0x200, "AT_REMOVEDIR"),)
GRND_FLAGS = ((0x1, "GRND_NONBLOCK"), (0x2, "GRND_RANDOM"), (0x4, "GRND_INSECURE"))
MREMAP_FIXED = 0x2
MREMAP_FLAGS = ((0x1, "MREMAP_MAYMOVE"), (MREMAP_FIXED, "MREMAP_FIXED"), (0x4, "MREMAP_DONTUNMAP"))
DUP3_FLAGS = ((O_CLOEXEC, "O_CLOEXEC"),)
RSEQ_FLAGS = ((0x1, "RSEQ_FLAG_UNREGISTER"),)
WAIT_OPTIONS = (
    (0x1, "WNOHANG"), (0x2, "WUNTRACED"), (0x8, "WCONTINUED"),
    (0x20000000, "__WNOTHREAD"), (0x40000000, "__WALL"), (0x80000000, "__WCLONE"),
)
CLONE_SIGNAL_MASK = 0xFF
# include/uapi/linux/sched.h; CLONE_DETACHED (0x00400000) is ignored since
# 2.6.2 and strace does not name it.
CLONE_FLAGS = (
    (0x00000100, "CLONE_VM"), (0x00000200, "CLONE_FS"), (0x00000400, "CLONE_FILES"),
    (0x00000800, "CLONE_SIGHAND"), (0x00002000, "CLONE_PTRACE"), (0x00004000, "CLONE_VFORK"),
    (0x00008000, "CLONE_PARENT"), (0x00010000, "CLONE_THREAD"), (0x00020000, "CLONE_NEWNS"),
    (0x00040000, "CLONE_SYSVSEM"), (0x00080000, "CLONE_SETTLS"), (0x00100000, "CLONE_PARENT_SETTID"),
    (0x00200000, "CLONE_CHILD_CLEARTID"), (0x00800000, "CLONE_UNTRACED"),
    (0x01000000, "CLONE_CHILD_SETTID"), (0x02000000, "CLONE_NEWCGROUP"), (0x04000000, "CLONE_NEWUTS"),
    (0x08000000, "CLONE_NEWIPC"), (0x00001000, "CLONE_PIDFD"), (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"), (0x40000000, "CLONE_NEWNET"), (0x80000000, "CLONE_IO"),
)

FLAG_TABLES: Mapping[str, tuple[tuple[int, str], ...]] = MappingProxyType({
    "prot": PROT_FLAGS,
    "mmap_flags": MAP_FLAGS,
    "access_mode": ACCESS_FLAGS,
    "memfd_flags": MEMFD_FLAGS,
    "at_flags": AT_FLAGS,
    "faccessat_flags": FACCESSAT_FLAGS,
    "unlinkat_flags": UNLINKAT_FLAGS,
    "grnd_flags": GRND_FLAGS,
    "mremap_flags": MREMAP_FLAGS,
    "dup3_flags": DUP3_FLAGS,
    "rseq_flags": RSEQ_FLAGS,
    "wait_options": WAIT_OPTIONS,
    "clone_flags": CLONE_FLAGS,
    "fd_flags": ((1, "FD_CLOEXEC"),),
    "seal_flags": ((0x1, "F_SEAL_SEAL"), (0x2, "F_SEAL_SHRINK"), (0x4, "F_SEAL_GROW"),
                   (0x8, "F_SEAL_WRITE"), (0x10, "F_SEAL_FUTURE_WRITE"), (0x20, "F_SEAL_EXEC")),
})
# What a flags argument of 0 is called.
ZERO_FLAG_NAMES = {"prot": "PROT_NONE", "access_mode": "F_OK"}

# --------------------------------------------------------------- value tables

MADVISE_ADVICE = {
    0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED",
    4: "MADV_DONTNEED", 8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK",
    11: "MADV_DOFORK", 12: "MADV_MERGEABLE", 13: "MADV_UNMERGEABLE", 14: "MADV_HUGEPAGE",
    15: "MADV_NOHUGEPAGE", 16: "MADV_DONTDUMP", 17: "MADV_DODUMP", 18: "MADV_WIPEONFORK",
    19: "MADV_KEEPONFORK", 20: "MADV_COLD", 21: "MADV_PAGEOUT", 22: "MADV_POPULATE_READ",
    23: "MADV_POPULATE_WRITE", 24: "MADV_DONTNEED_LOCKED", 25: "MADV_COLLAPSE",
    100: "MADV_HWPOISON", 101: "MADV_SOFT_OFFLINE", 102: "MADV_GUARD_INSTALL",
    103: "MADV_GUARD_REMOVE",
}
FUTEX_COMMAND_MASK = 0x7F
FUTEX_PRIVATE_FLAG = 0x80
FUTEX_CLOCK_REALTIME = 0x100
FUTEX_COMMANDS = {
    0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE", 4: "FUTEX_CMP_REQUEUE",
    5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI", 7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI",
    9: "FUTEX_WAIT_BITSET", 10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
    12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2",
}
# How many arguments strace shows for each futex command.
FUTEX_SHOWN_ARGS = {0: 4, 1: 3, 2: 3, 3: 5, 4: 6, 5: 6, 6: 4, 7: 2, 8: 2, 9: 6, 10: 6,
                    11: 5, 12: 6, 13: 4}

VALUE_TABLES: Mapping[str, Mapping[int, str]] = MappingProxyType({
    "sigprocmask_how": {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"},
    "whence": {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"},
    # include/uapi/asm-generic/resource.h (python-ptrace's 15 is
    # RLIM_NLIMITS, from before RLIMIT_RTTIME existed).
    "rlimit_resource": {
        0: "RLIMIT_CPU", 1: "RLIMIT_FSIZE", 2: "RLIMIT_DATA", 3: "RLIMIT_STACK", 4: "RLIMIT_CORE",
        5: "RLIMIT_RSS", 6: "RLIMIT_NPROC", 7: "RLIMIT_NOFILE", 8: "RLIMIT_MEMLOCK", 9: "RLIMIT_AS",
        10: "RLIMIT_LOCKS", 11: "RLIMIT_SIGPENDING", 12: "RLIMIT_MSGQUEUE", 13: "RLIMIT_NICE",
        14: "RLIMIT_RTPRIO", 15: "RLIMIT_RTTIME",
    },
    "madvise_advice": MADVISE_ADVICE,
    # asm-generic/fcntl.h and linux/fcntl.h (x86-64 and aarch64 alike);
    # python-ptrace's table numbers 5-9 the BSD way (F_GETOWN=5, ...).
    "lease_type": {0: "F_RDLCK", 1: "F_WRLCK", 2: "F_UNLCK"},
    "fcntl_cmd": {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL",
                  5: "F_GETLK", 6: "F_SETLK", 7: "F_SETLKW", 8: "F_SETOWN", 9: "F_GETOWN",
                  10: "F_SETSIG", 11: "F_GETSIG", 15: "F_SETOWN_EX", 16: "F_GETOWN_EX",
                  17: "F_GETOWNER_UIDS", 36: "F_OFD_GETLK", 37: "F_OFD_SETLK", 38: "F_OFD_SETLKW",
                  1024: "F_SETLEASE", 1025: "F_GETLEASE", 1026: "F_NOTIFY", 1029: "F_CANCELLK",
                  1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ", 1032: "F_GETPIPE_SZ",
                  1033: "F_ADD_SEALS", 1034: "F_GET_SEALS", 1035: "F_GET_RW_HINT",
                  1036: "F_SET_RW_HINT", 1037: "F_GET_FILE_RW_HINT", 1038: "F_SET_FILE_RW_HINT"},
})

# ------------------------------------------------------------------ signatures

_FD = ("fd", "fd")
_PATH = ("pathname", "path")
_DIRFD = ("dirfd", "dirfd")

SIGNATURES: Mapping[str, SyscallSignature] = MappingProxyType({
    "read": (_FD, ("buf", "ptr"), ("count", "size")),
    "write": (_FD, ("buf", "ptr"), ("count", "size")),
    "pread64": (_FD, ("buf", "ptr"), ("count", "size"), ("offset", "offset")),
    "pwrite64": (_FD, ("buf", "ptr"), ("count", "size"), ("offset", "offset")),
    "open": (_PATH, ("flags", "open_flags"), ("mode", "mode")),
    "openat": (_DIRFD, _PATH, ("flags", "open_flags"), ("mode", "mode")),
    "close": (_FD,),
    "stat": (_PATH, ("statbuf", "ptr")),
    "lstat": (_PATH, ("statbuf", "ptr")),
    "fstat": (_FD, ("statbuf", "ptr")),
    "newfstatat": (_DIRFD, _PATH, ("statbuf", "ptr"), ("flags", "at_flags")),
    "statx": (_DIRFD, _PATH, ("flags", "at_flags"), ("mask", "hex"), ("statxbuf", "ptr")),
    "access": (_PATH, ("mode", "access_mode")),
    "faccessat": (_DIRFD, _PATH, ("mode", "access_mode")),
    "faccessat2": (_DIRFD, _PATH, ("mode", "access_mode"), ("flags", "faccessat_flags")),
    "mmap": (("addr", "ptr"), ("length", "size"), ("prot", "prot"), ("flags", "mmap_flags"),
             _FD, ("offset", "mmap_offset")),
    "mprotect": (("addr", "ptr"), ("length", "size"), ("prot", "prot")),
    "munmap": (("addr", "ptr"), ("length", "size")),
    "mremap": (("old_address", "ptr"), ("old_size", "size"), ("new_size", "size"),
               ("flags", "mremap_flags"), ("new_address", "ptr")),
    "madvise": (("addr", "ptr"), ("length", "size"), ("advice", "madvise_advice")),
    "brk": (("addr", "ptr"),),
    "memfd_create": (("name", "str"), ("flags", "memfd_flags")),
    "sendfile": (("out_fd", "fd"), ("in_fd", "fd"), ("offset", "ptr"), ("count", "size")),
    "ftruncate": (_FD, ("length", "offset")),
    "lseek": (_FD, ("offset", "offset"), ("whence", "whence")),
    "dup": (("oldfd", "fd"),),
    "dup2": (("oldfd", "fd"), ("newfd", "fd")),
    "dup3": (("oldfd", "fd"), ("newfd", "fd"), ("flags", "dup3_flags")),
    "set_tid_address": (("tidptr", "ptr"),),
    "set_robust_list": (("head", "ptr"), ("len", "size")),
    "rseq": (("rseq", "ptr"), ("rseq_len", "hex"), ("flags", "rseq_flags"), ("sig", "hex")),
    "prlimit64": (("pid", "pid"), ("resource", "rlimit_resource"), ("new_limit", "ptr"),
                  ("old_limit", "ptr")),
    "getrandom": (("buf", "ptr"), ("buflen", "size"), ("flags", "grnd_flags")),
    "exit": (("status", "int"),),
    "exit_group": (("status", "int"),),
    "execve": (_PATH, ("argv", "ptr"), ("envp", "ptr")),
    "execveat": (_DIRFD, _PATH, ("argv", "ptr"), ("envp", "ptr"), ("flags", "at_flags")),
    "readlink": (_PATH, ("buf", "ptr"), ("bufsiz", "size")),
    "readlinkat": (_DIRFD, _PATH, ("buf", "ptr"), ("bufsiz", "size")),
    "uname": (("buf", "ptr"),),
    "futex": (("uaddr", "ptr"), ("futex_op", "futex_op"), ("val", "uint"), ("timeout", "ptr"),
              ("uaddr2", "ptr"), ("val3", "uint")),
    "rt_sigaction": (("signum", "signal"), ("act", "ptr"), ("oldact", "ptr"),
                     ("sigsetsize", "size")),
    "rt_sigprocmask": (("how", "sigprocmask_how"), ("set", "ptr"), ("oldset", "ptr"),
                       ("sigsetsize", "size")),
    "rt_sigreturn": (),
    "kill": (("pid", "pid"), ("sig", "signal")),
    "tkill": (("tid", "pid"), ("sig", "signal")),
    "tgkill": (("tgid", "pid"), ("tid", "pid"), ("sig", "signal")),
    "getpid": (), "gettid": (), "getppid": (), "getuid": (), "geteuid": (),
    "getgid": (), "getegid": (), "fork": (), "vfork": (), "sched_yield": (),
    "wait4": (("pid", "pid"), ("wstatus", "ptr"), ("options", "wait_options"),
              ("rusage", "ptr")),
    "clone": (("flags", "clone_flags"), ("stack", "ptr"), ("parent_tid", "ptr"),
              ("child_tid", "ptr"), ("tls", "hex")),
    "clone3": (("cl_args", "ptr"), ("size", "size")),
    "getcwd": (("buf", "ptr"), ("size", "size")),
    "chdir": (_PATH,),
    "unlink": (_PATH,),
    "unlinkat": (_DIRFD, _PATH, ("flags", "unlinkat_flags")),
    "getdents64": (_FD, ("dirp", "ptr"), ("count", "size")),
    "fcntl": (_FD, ("cmd", "fcntl_cmd"), ("arg", "hex")),
    "ioctl": (_FD, ("request", "hex"), ("arg", "hex")),
    "sched_getaffinity": (("pid", "pid"), ("cpusetsize", "size"), ("mask", "ptr")),
})


def _mode_shown_after(index: int) -> Callable[[Sequence[int]], int]:
    """open/openat show mode only when flags say a file may be created."""
    return lambda args: index + 2 if args[index] & (O_CREAT | O_TMPFILE_BIT) else index + 1


# fcntl's third argument follows the command: none for the getters, else
# what the command takes (strace's rules).
FCNTL_COMMANDS_WITHOUT_ARG = frozenset(
    number for number, name in VALUE_TABLES["fcntl_cmd"].items()
    if name in {"F_GETFD", "F_GETFL", "F_GETOWN", "F_GETSIG", "F_GETLEASE", "F_GETPIPE_SZ", "F_GET_SEALS"})
_FCNTL_ARG_KINDS_BY_NAME = {
    "F_DUPFD": "fd", "F_DUPFD_CLOEXEC": "fd", "F_SETFD": "fd_flags", "F_SETFL": "open_flags",
    "F_SETOWN": "pid", "F_SETSIG": "signal", "F_SETPIPE_SZ": "int", "F_ADD_SEALS": "seal_flags",
    "F_SETLEASE": "lease_type", "F_GETLK": "ptr", "F_SETLK": "ptr", "F_SETLKW": "ptr",
    "F_OFD_GETLK": "ptr", "F_OFD_SETLK": "ptr", "F_OFD_SETLKW": "ptr", "F_SETOWN_EX": "ptr",
    "F_GETOWN_EX": "ptr", "F_GETOWNER_UIDS": "ptr",
}
FCNTL_ARG_KINDS = MappingProxyType({number: _FCNTL_ARG_KINDS_BY_NAME[name]
                                    for number, name in VALUE_TABLES["fcntl_cmd"].items()
                                    if name in _FCNTL_ARG_KINDS_BY_NAME})

# Arguments whose kind depends on another argument: name -> args -> {index: kind}.
ARG_KIND_RULES: Mapping[str, Callable[[Sequence[int]], Mapping[int, str]]] = MappingProxyType({
    "fcntl": lambda args: {2: FCNTL_ARG_KINDS.get(args[1] & 0xFFFFFFFF, "hex")},
})

# Syscalls whose shown argument count depends on the arguments (strace's rules).
SHOWN_ARG_COUNT: Mapping[str, Callable[[Sequence[int]], int]] = MappingProxyType({
    "open": _mode_shown_after(1),
    "openat": _mode_shown_after(2),
    "mremap": lambda args: 5 if args[3] & MREMAP_FIXED else 4,
    "futex": lambda args: FUTEX_SHOWN_ARGS.get(args[1] & FUTEX_COMMAND_MASK, 6),
    "fcntl": lambda args: 2 if args[1] & 0xFFFFFFFF in FCNTL_COMMANDS_WITHOUT_ARG else 3,
})

# Result renderings that are not a signed decimal.
RESULT_KINDS = MappingProxyType({
    "mmap": "addr", "mremap": "addr", "brk": "addr", "exit": "noreturn", "exit_group": "noreturn",
})

# Kernel-internal errnos a tracer can see at syscall exit when a signal
# interrupts; strace writes them with "?" since the call will be restarted.
RESTART_ERRNOS = {
    512: ("ERESTARTSYS", "To be restarted if SA_RESTART is set"),
    513: ("ERESTARTNOINTR", "To be restarted"),
    514: ("ERESTARTNOHAND", "To be restarted if no handler"),
    516: ("ERESTART_RESTARTBLOCK", "Interrupted by signal"),
}
INTERNAL_ERRNOS = {515: ("ENOIOCTLCMD", "Unknown ioctl command")}

# Argument kinds whose value is the address of a C string to read first.
STRING_KINDS = frozenset({"path", "str"})


@dataclass(frozen=True)
class SyscallArg:
    """One decoded syscall argument."""

    name: str
    kind: str
    value: int
    text: str
    # False for arguments strace leaves out (open's mode without O_CREAT).
    shown: bool = True


@dataclass(frozen=True)
class Syscall:
    """One system call as strace prints it: name, arguments, result."""

    number: int
    name: str
    args: tuple[SyscallArg, ...]
    # Signed; None at a syscall-entry stop (and for calls that never return).
    result: int | None
    result_text: str | None
    errno_name: str | None

    @property
    def is_error(self) -> bool:
        return self.errno_name is not None

    def arg(self, name: str) -> SyscallArg | None:
        return next((arg for arg in self.args if arg.name == name), None)

    def call_text(self) -> str:
        """strace's `name(args)`, without the result (a syscall-entry stop)."""
        shown = ", ".join(arg.text for arg in self.args if arg.shown)
        return f"{self.name}({shown})"

    def format(self) -> str:
        return f"{self.call_text()} = {self.result_text or '?'}"

    def __str__(self) -> str:
        return self.format()


# ------------------------------------------------------------------ rendering

def c_string_literal(data: bytes, limit: int | None = None) -> str:
    """strace's quoting: printable ASCII as is, \\n \\t \\r \\v \\f \\" \\\\
    named, other bytes in octal (three digits when a digit follows).
    Longer than limit: cut and followed by "..."."""
    cut = limit is not None and len(data) > limit
    data = data[:limit] if cut else data
    named = {0x22: '\\"', 0x5C: "\\\\", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v",
             0x0C: "\\f", 0x0D: "\\r"}
    out = []
    for index, byte in enumerate(data):
        if byte in named:
            out.append(named[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            next_is_digit = index + 1 < len(data) and 0x30 <= data[index + 1] <= 0x37
            out.append(f"\\{byte:03o}" if next_is_digit else f"\\{byte:o}")
    return '"' + "".join(out) + '"' + ("..." if cut else "")


def format_flag_bits(value: int, table: Sequence[tuple[int, str]], zero: str = "0") -> str:
    """NAME|NAME|0xrest. Unlike python-ptrace's readBits, a row matches only
    when all of its mask bits are set, and leftovers are shown in hex."""
    names = []
    rest = value
    for mask, name in table:
        if mask and rest & mask == mask:
            names.append(name)
            rest &= ~mask
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or zero


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass(frozen=True)
class _Context:
    """What decoding an argument may read besides its value."""

    arch: ArchTables
    strings: Mapping[int, bytes]

    def flag_table(self, kind: str) -> tuple[tuple[int, str], ...]:
        return _flag_table(kind, self.arch)

    def value_table(self, kind: str) -> Mapping[int, str]:
        return _value_table(kind, self.arch)


# Built once per (kind, arch): every decoded syscall asks (ArchTables are
# singletons compared by identity, so they key the cache).
@functools.cache
def _flag_table(kind: str, arch: ArchTables) -> tuple[tuple[int, str], ...]:
    """Generic rows, renamed by and extended with the arch's rows."""
    generic = FLAG_TABLES.get(kind, ())
    extra = arch.flag_tables.get(kind, ())
    overrides = dict(extra)
    generic_masks = {mask for mask, _ in generic}
    return (tuple((mask, overrides.get(mask, name)) for mask, name in generic)
            + tuple(row for row in extra if row[0] not in generic_masks))


@functools.cache
def _value_table(kind: str, arch: ArchTables) -> Mapping[int, str]:
    return MappingProxyType({**VALUE_TABLES.get(kind, {}), **arch.value_tables.get(kind, {})})


def _int(value: int, ctx: _Context) -> str:
    return str(_signed(value, 32))


def _long(value: int, ctx: _Context) -> str:
    return str(_signed(value, 64))


def _uint(value: int, ctx: _Context) -> str:
    return str(value & 0xFFFF_FFFF)


def _size(value: int, ctx: _Context) -> str:
    return str(value)


def _hex(value: int, ctx: _Context) -> str:
    return f"{value:#x}" if value else "0"


def _pointer(value: int, ctx: _Context) -> str:
    return f"{value:#x}" if value else "NULL"


def _string(value: int, ctx: _Context) -> str:
    if not value:
        return "NULL"
    data = ctx.strings.get(value)
    return f"{value:#x}" if data is None else c_string_literal(data)


def _dirfd(value: int, ctx: _Context) -> str:
    fd = _signed(value, 32)
    return "AT_FDCWD" if fd == AT_FDCWD else str(fd)


def _mode(value: int, ctx: _Context) -> str:
    return f"0{value:o}" if value else "000"


def _signal(value: int, ctx: _Context) -> str:
    signal = _signed(value, 32)
    return signal_name(signal) if 0 < signal <= 64 else str(signal)


def _open_flags(value: int, ctx: _Context) -> str:
    value &= 0xFFFF_FFFF
    mode = OPEN_ACCESS_MODES[value & OPEN_ACCESS_MASK]
    rest = format_flag_bits(value & ~OPEN_ACCESS_MASK, ctx.flag_table("open_flags"), "")
    return f"{mode}|{rest}" if rest else mode


def _mmap_flags(value: int, ctx: _Context) -> str:
    map_type = value & MAP_TYPE_MASK
    type_name = MAP_TYPES.get(map_type, f"{map_type:#x}" if map_type else "")
    rest = format_flag_bits(value & ~MAP_TYPE_MASK, ctx.flag_table("mmap_flags"), "")
    return "|".join(part for part in (type_name, rest) if part) or "0"


def _clone_flags(value: int, ctx: _Context) -> str:
    names = format_flag_bits(value & ~CLONE_SIGNAL_MASK, ctx.flag_table("clone_flags"), "")
    exit_signal = value & CLONE_SIGNAL_MASK
    signal = _signal(exit_signal, ctx) if exit_signal else ""
    return "|".join(part for part in (names, signal) if part) or "0"


FUTEX_OP_FLAGS = ((FUTEX_CLOCK_REALTIME, "FUTEX_CLOCK_REALTIME"),)


def _futex_op(value: int, ctx: _Context) -> str:
    """FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME, as strace writes it."""
    value &= 0xFFFF_FFFF
    command = value & FUTEX_COMMAND_MASK
    name = FUTEX_COMMANDS.get(command, f"{command:#x}")
    if value & FUTEX_PRIVATE_FLAG:
        name += "_PRIVATE"
    rest = format_flag_bits(value & ~(FUTEX_COMMAND_MASK | FUTEX_PRIVATE_FLAG), FUTEX_OP_FLAGS, "")
    return f"{name}|{rest}" if rest else name


def _flags_of(kind: str) -> Callable[[int, _Context], str]:
    def render(value: int, ctx: _Context) -> str:
        return format_flag_bits(value, ctx.flag_table(kind), ZERO_FLAG_NAMES.get(kind, "0"))
    return render


def _value_of(kind: str, width: int = 32) -> Callable[[int, _Context], str]:
    def render(value: int, ctx: _Context) -> str:
        number = _signed(value, width)
        return ctx.value_table(kind).get(number, f"{value & ((1 << width) - 1):#x}")
    return render


FORMATTERS: Mapping[str, Callable[[int, _Context], str]] = MappingProxyType({
    "int": _int,
    "fd": _int,
    "pid": _int,
    "long": _long,
    "offset": _long,
    "uint": _uint,
    "size": _size,
    "hex": _hex,
    "mmap_offset": _hex,
    "ptr": _pointer,
    "path": _string,
    "str": _string,
    "dirfd": _dirfd,
    "mode": _mode,
    "signal": _signal,
    "open_flags": _open_flags,
    "mmap_flags": _mmap_flags,
    "clone_flags": _clone_flags,
    "futex_op": _futex_op,
    **{kind: _flags_of(kind) for kind in FLAG_TABLES if kind not in ("mmap_flags", "clone_flags")},
    **{kind: _value_of(kind) for kind in VALUE_TABLES},
})


def _formatter(kind: str, arch: ArchTables) -> Callable[[int, _Context], str]:
    """The renderer for a kind; kinds only an arch knows (arch_prctl_code)
    are rendered from that arch's tables."""
    if kind in FORMATTERS:
        return FORMATTERS[kind]
    if kind in arch.value_tables:
        return _value_of(kind)
    if kind in arch.flag_tables:
        return _flags_of(kind)
    return _hex


def _result_text(name: str, result: int) -> tuple[str, str | None]:
    if RESULT_KINDS.get(name) == "noreturn":
        return "?", None
    if -MAX_ERRNO <= result <= -1:
        number = -result
        if number in RESTART_ERRNOS:
            errno_name, message = RESTART_ERRNOS[number]
            return f"? {errno_name} ({message})", errno_name
        errno_name, message = INTERNAL_ERRNOS.get(
            number, (errno_module.errorcode.get(number, f"E{number}"), os.strerror(number)))
        return f"-1 {errno_name} ({message})", errno_name
    if RESULT_KINDS.get(name) == "addr":
        return f"{result & 0xFFFF_FFFF_FFFF_FFFF:#x}", None
    return str(result), None


# ------------------------------------------------------------------ signatures

_ALL_HEX = tuple((f"arg{index}", "hex") for index in range(MAX_SYSCALL_ARGS))


@functools.cache
def _prototype_signature(name: str) -> SyscallSignature | None:
    """python-ptrace's C prototype mapped onto our kinds, for syscalls we have
    no table row for: paths and integers it can tell, the rest in hex."""
    prototype = SYSCALL_PROTOTYPES.get(name)
    if prototype is None:
        return None
    rows = []
    for index, (c_type, arg_name) in enumerate(prototype[1]):
        c_type = c_type.removeprefix("const ")
        if arg_name in FILENAME_ARGUMENTS and c_type == "char *":
            kind = "path"
        elif arg_name in ("signum", "sig"):
            kind = "signal"
        elif c_type in PROTOTYPE_INTEGER_TYPES:
            kind = "long" if c_type == "long" else "int"
        elif c_type.endswith("*"):
            kind = "ptr"
        else:
            kind = "hex"
        rows.append((arg_name or f"arg{index}", kind))
    return tuple(rows)


def syscall_name(number: int, arch: ArchTables) -> str:
    return arch.syscall_names.get(number, f"syscall_{number:#x}")


def syscall_signature(number: int, arch: ArchTables) -> SyscallSignature:
    name = syscall_name(number, arch)
    # Our rows first; python-ptrace's prototype only without one (a syscall
    # stop decodes its syscall twice: the prototype is not worked out each time).
    signature = arch.syscall_signatures.get(name)
    if signature is None:
        signature = SIGNATURES.get(name)
    if signature is None:
        signature = _prototype_signature(name)
    if signature is None:
        signature = _ALL_HEX
    return signature


def _normalized_args(args: Sequence[int], arch: ArchTables) -> tuple[int, ...]:
    if len(args) > MAX_SYSCALL_ARGS:
        raise DecodeError(f"a syscall has at most {MAX_SYSCALL_ARGS} arguments, got {len(args)}")
    if not all(isinstance(value, int) for value in args):
        raise DecodeError("syscall arguments must be integers")
    # Registers are unsigned words; callers may pass -100 for AT_FDCWD.
    words = tuple(value & arch.word_mask for value in args)
    return words + (0,) * (MAX_SYSCALL_ARGS - len(words))


def syscall_string_args(number: int, args: Sequence[int], arch: ArchTables) -> tuple[int, ...]:
    """Addresses the caller must read as C strings before decode_syscall
    (paths, memfd names), without NULLs or repeats."""
    words = _normalized_args(args, arch)
    addresses = []
    for (_, kind), value in zip(syscall_signature(number, arch), words):
        if kind in STRING_KINDS and value and value not in addresses:
            addresses.append(value)
    return tuple(addresses)


def decode_syscall(number: int, args: Sequence[int], result: int | None, arch: ArchTables,
                   strings: Mapping[int, bytes] = MappingProxyType({})) -> Syscall:
    """Name and render one syscall. args are the argument registers (missing
    ones read as 0); result is None at the entry stop; strings maps address ->
    bytes read from the tracee (without the NUL). A string argument whose
    address is missing from strings is shown as the bare address."""
    if not isinstance(number, int) or not isinstance(result, (int, type(None))):
        raise DecodeError("syscall number and result must be integers")
    words = _normalized_args(args, arch)
    name = syscall_name(number, arch)
    signature = syscall_signature(number, arch)
    ctx = _Context(arch, strings)
    shown_count = SHOWN_ARG_COUNT.get(name, lambda _: len(signature))(words)
    kinds = ARG_KIND_RULES[name](words) if name in ARG_KIND_RULES else {}
    decoded_args = tuple(
        SyscallArg(arg_name, kinds.get(index, kind), value,
                   _formatter(kinds.get(index, kind), arch)(value, ctx), index < shown_count)
        for index, ((arg_name, kind), value) in enumerate(zip(signature, words))
    )
    if result is None:
        return Syscall(number, name, decoded_args, None, None, None)
    signed_result = _signed(result, 8 * arch.word_size)
    result_text, errno_name = _result_text(name, signed_result)
    return Syscall(number, name, decoded_args, signed_result, result_text, errno_name)


# Calls after which the memory map (and so the objects, symbols and
# breakpoint sites) may have changed: one set for every front.
MAPPING_SYSCALLS = frozenset({"mmap", "munmap", "mremap", "mprotect", "brk", "execve", "execveat",
                              "shmat", "shmdt", "pkey_mprotect", "remap_file_pages", "madvise"})
