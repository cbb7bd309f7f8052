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
