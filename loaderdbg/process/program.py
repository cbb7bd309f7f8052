"""Checks a program before we fork for it, so bad input is one clear line.

The kernel would refuse most of these with a bare errno after the fork; a
user deserves to hear *why* (a 32-bit ELF, a truncated header) before any
process exists.
"""

from __future__ import annotations

import os
import shutil
import stat

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from loaderdbg.errors import UsageError

SUPPORTED_MACHINES = {"EM_X86_64": "x86_64"}


def resolve_program(name: str) -> str:
    """The path execve will run: as given when it has a slash, else via PATH."""
    if not name:
        raise UsageError("no program given")
    if "/" not in name:
        found = shutil.which(name)
        if found is None:
            raise UsageError(f"{name}: not found in PATH")
        name = found
    return os.path.abspath(name)


def check_program(name: str) -> str:
    """Resolve and vet a program; returns its absolute path."""
    path = resolve_program(name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except OSError as err:
        raise UsageError(f"{name}: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{name}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{name}: not a regular file")
    if not os.access(path, os.X_OK) or not st.st_mode & 0o111:
        raise UsageError(f"{name}: not executable (chmod +x?)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            if head.startswith(b"#!"):
                raise UsageError(f"{name}: a script; trace its interpreter instead")
            if head != b"\x7fELF":
                raise UsageError(f"{name}: not an ELF file")
            handle.seek(0)
            elf = ELFFile(handle)
            machine = elf["e_machine"]
            if elf.elfclass != 64:
                raise UsageError(f"{name}: 32-bit ELF; loaderdbg traces 64-bit x86-64 programs")
            if machine not in SUPPORTED_MACHINES:
                raise UsageError(f"{name}: ELF for {machine}, this machine runs x86-64")
            if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
                raise UsageError(f"{name}: ELF type {elf['e_type']} is not runnable")
            # Touch the program headers: a truncated table fails here, not in execve.
            for _segment in elf.iter_segments():
                pass
    except UsageError:
        raise
    except (ELFError, ValueError, OSError, KeyError) as err:
        raise UsageError(f"{name}: malformed ELF ({err})") from None
    except Exception as err:  # pyelftools raises struct errors on truncation
        raise UsageError(f"{name}: malformed ELF ({type(err).__name__})") from None
    return path
