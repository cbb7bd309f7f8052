"""What we take from python-ptrace without importing its costly parts
(issue 19): the request numbers of our ctypes layer, and its syscall tables
loaded without ptrace/syscall/__init__.py."""

from __future__ import annotations

import subprocess
import sys

from loaderdbg.process import ptrace as layer

REQUESTS = ("TRACEME", "PEEKUSER", "CONT", "KILL", "SINGLESTEP", "GETREGS", "SETREGS", "ATTACH", "DETACH",
            "SYSCALL", "SETOPTIONS", "GETEVENTMSG", "GETSIGINFO", "GETREGSET")


def test_request_numbers_are_python_ptraces():
    from ptrace.binding import func
    for name in REQUESTS:
        assert getattr(layer, name) == getattr(func, f"PTRACE_{name}"), name


def test_the_ctypes_layer_reaches_libc_without_python_ptraces_binding():
    code = ("import sys; import loaderdbg.process.ptrace as p; "
            "print(p._libc.getpid() == __import__('os').getpid(), 'ptrace.binding' in sys.modules, "
            "'ctypes.util' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"]


def test_tables_load_without_the_syscall_package_and_are_shared_with_it():
    code = """
import sys
from loaderdbg.arch.ptrace_tables import table
from loaderdbg.decode import syscalls
import loaderdbg.arch.x86_64, loaderdbg.arch.aarch64
before = 'ptrace.syscall' in sys.modules, 'ptrace.binding' in sys.modules
prototypes = table("prototypes")
import ptrace.syscall.prototypes
from ptrace.syscall import SYSCALL_PROTOTYPES
print(before, prototypes is sys.modules["ptrace.syscall.prototypes"], SYSCALL_PROTOTYPES is prototypes.SYSCALL_PROTOTYPES)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "(False, False) True True"


def test_a_syscall_without_our_signature_still_uses_python_ptraces_prototype():
    from loaderdbg.arch import X86_64
    from loaderdbg.decode.syscalls import decode_syscall
    number = X86_64.syscall_numbers["pipe"]
    assert "pipe" not in X86_64.syscall_signatures
    text = decode_syscall(number, (0x7ffe0000, 0, 0, 0, 0, 0), 0, X86_64).format()
    assert text == "pipe(0x7ffe0000) = 0"
    # An int in the prototype prints signed, in decimal.
    number = X86_64.syscall_numbers["getitimer"]
    assert "getitimer" not in X86_64.syscall_signatures
    assert decode_syscall(number, (2**64 - 1, 0x1000, 0, 0, 0, 0), 0, X86_64).format() == "getitimer(-1, 0x1000) = 0"


def test_prototype_integer_types_are_python_ptraces():
    from ptrace.syscall.syscall_argument import INTEGER_TYPES
    from loaderdbg.decode.syscalls import PROTOTYPE_INTEGER_TYPES
    assert PROTOTYPE_INTEGER_TYPES == frozenset(INTEGER_TYPES)


def test_written_out_flag_tables_agree_with_python_ptraces_where_the_kernel_has_not_moved_on():
    """The flag and value tables loaderdbg writes out itself (loading python-ptrace's
    starts its whole package): each one is python-ptrace's, but for the
    differences listed here, each of which a kernel since 2.6 made."""
    from ptrace.syscall.linux_constants import RLIMIT_RESOURCE, SIGPROCMASK_HOW
    from ptrace.syscall.posix_arg import (
        ACCESS_MODE_BITMASK, AT_FDCWD, CLONE_FLAGS_BITMASK, MMAP_PROT_BITMASK, OPEN_FLAGS_BITMASK,
    )
    from ptrace.syscall.posix_constants import SYSCALL_ARG_DICT
    from loaderdbg.arch.x86_64 import OPEN_FLAGS
    from loaderdbg.decode import syscalls

    assert syscalls.AT_FDCWD == AT_FDCWD
    assert syscalls.ACCESS_FLAGS == tuple(reversed(ACCESS_MODE_BITMASK))  # strace's order
    assert syscalls.PROT_FLAGS == tuple(MMAP_PROT_BITMASK) + ((0x8, "PROT_SEM"),)
    # 0x02000000 was CLONE_STOPPED (gone in 2.6.38) and is CLONE_NEWCGROUP since 4.6;
    # CLONE_DETACHED is ignored; five flags came later.
    theirs = dict(CLONE_FLAGS_BITMASK)
    ours = dict(syscalls.CLONE_FLAGS)
    assert {m: n for m, n in theirs.items() if m not in (0x02000000, 0x00400000)} == \
        {m: n for m, n in ours.items() if m in theirs and m != 0x02000000}
    assert ours[0x02000000] == "CLONE_NEWCGROUP" and 0x00400000 not in ours
    assert {n for m, n in ours.items() if m not in theirs} == \
        {"CLONE_PIDFD", "CLONE_NEWUSER", "CLONE_NEWPID", "CLONE_NEWNET", "CLONE_IO"}
    # 0o10000 is O_DSYNC since 2.6.33, where O_SYNC became 0o4010000.
    theirs = {m: n for m, n in OPEN_FLAGS_BITMASK if n not in ("O_WRONLY", "O_RDWR")}
    assert {m: n for m, n in OPEN_FLAGS if m != 0o4010000} == \
        {m: ("O_DSYNC" if n == "O_SYNC" else n) for m, n in theirs.items()}
    assert syscalls.FUTEX_COMMANDS.items() >= SYSCALL_ARG_DICT["futex"]["op"].items()
    whence = syscalls.VALUE_TABLES["whence"]
    assert whence.items() >= SYSCALL_ARG_DICT["lseek"]["origin"].items()
    assert syscalls.VALUE_TABLES["sigprocmask_how"] == SIGPROCMASK_HOW
    # 15 is RLIMIT_RTTIME since 2.6.25 (python-ptrace's RLIMIT_NLIMITS).
    assert syscalls.VALUE_TABLES["rlimit_resource"] == {**RLIMIT_RESOURCE, 15: "RLIMIT_RTTIME"}


def test_the_syscall_decoder_loads_neither_python_ptraces_package_nor_socket():
    """~4 ms of every `loaderdbg inspect` (issue 19): python-ptrace's package
    __init__ (logging, datetime, its ctypes tools) and socket, which its
    socketcall constants import."""
    code = ("import sys; import loaderdbg.decode.syscalls, loaderdbg.arch.x86_64, loaderdbg.arch.aarch64; "
            "print(sorted(m for m in ('ptrace', 'socket', 'datetime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
