"""Checks a program before we fork for it, so bad input is one clear line.

The kernel would refuse most of these with a bare errno after the fork; a
user deserves to hear *why* (a 32-bit ELF, a truncated header, a PT_INTERP
naming a file that is not there) before any process exists.

A ``#!`` script is accepted: the kernel execs its interpreter, so what we
trace is the interpreter's startup, with the script as its argument — the
same thing `strace ./script` shows. We vet the interpreter as we would the
program, since an unrunnable one would otherwise surface as a bare ENOENT
that seems to be about the script.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct

from elftools.common.exceptions import ELFError

from loaderdbg.decode.elf_structs import SharedELFFile
from loaderdbg.errors import UsageError
from loaderdbg.user_files import regular_file

GUEST_E_MACHINE = {"EM_AARCH64": 183}  # e_machine numbers of the guest machines in GUEST_SYSROOTS
SUPPORTED_MACHINES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}
# Where an aarch64 program's absolute paths are found here: qemu-user's -L
# (process/qemu_target.py launches it with the same sysroot).
GUEST_SYSROOTS = {"EM_AARCH64": "/usr/aarch64-linux-gnu"}
ELF64_EHDR_SIZE = 64
ELF64_PHDR_SIZE = 56
PT_INTERP = 3
# Linux gives up on interpreter chains deeper than this with ELOOP
# (fs/exec.c, exec_binprm); refusing earlier than the kernel does is fine.
MAX_SCRIPT_DEPTH = 4
# binfmt_script reads at most this much of the #! line (BINPRM_BUF_SIZE).
SHEBANG_MAX = 256


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
    _check_file(name, path, depth=0)
    return path


def _check_file(name: str, path: str, depth: int) -> None:
    st = regular_file(path, name)
    # root passes os.access(X_OK) for any file with one x bit, and execve
    # wants at least one: check the mode bits too.
    if not os.access(path, os.X_OK) or not st.st_mode & 0o111:
        raise UsageError(f"{name}: not executable (chmod +x?)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(SHEBANG_MAX)
    except OSError as err:
        raise UsageError(f"{name}: {err.strerror}") from None
    if head.startswith(b"#!"):
        _check_script(name, head, depth)
        return
    if not head.startswith(b"\x7fELF"):
        raise UsageError(f"{name}: not an ELF file (and no #! line)")
    _check_elf(name, path, st.st_size)


def _check_script(name: str, head: bytes, depth: int) -> None:
    if depth >= MAX_SCRIPT_DEPTH:
        raise UsageError(f"{name}: #! interpreters nest deeper than {MAX_SCRIPT_DEPTH}")
    line = head[2:].split(b"\n", 1)[0].strip()
    interp = line.split(None, 1)[0] if line else b""
    if not interp:
        raise UsageError(f"{name}: a #! line that names no interpreter")
    text = os.fsdecode(interp)
    # The kernel does no PATH search for #!; a relative name is relative to
    # the cwd of the exec, which is ours.
    _check_file(f"{name}: #! interpreter {text}", os.path.abspath(text), depth + 1)


def _check_elf(name: str, path: str, size: int) -> None:
    try:
        with open(path, "rb") as handle:
            header = handle.read(ELF64_EHDR_SIZE)
            if len(header) < 5:
                raise UsageError(f"{name}: truncated ELF header ({size} bytes)")
            if header[4] == 1:
                raise UsageError(f"{name}: 32-bit ELF; loaderdbg traces 64-bit x86-64 programs")
            if header[4] != 2:
                raise UsageError(f"{name}: malformed ELF (EI_CLASS {header[4]})")
            if len(header) < ELF64_EHDR_SIZE:
                raise UsageError(f"{name}: truncated ELF header ({size} of {ELF64_EHDR_SIZE} bytes)")
            if header[5] != 1:
                raise UsageError(f"{name}: big-endian or malformed ELF (EI_DATA {header[5]}); "
                                 "this machine runs little-endian x86-64")
            handle.seek(0)
            elf = SharedELFFile(handle)
            machine = elf["e_machine"]
            if machine not in SUPPORTED_MACHINES:
                raise UsageError(f"{name}: ELF for {machine}; loaderdbg runs x86-64 programs, "
                                 "and aarch64 ones under qemu-user")
            if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
                raise UsageError(f"{name}: ELF type {elf['e_type']} is not runnable")
            phoff, phnum, phentsize = elf["e_phoff"], elf["e_phnum"], elf["e_phentsize"]
            if phnum == 0:
                raise UsageError(f"{name}: malformed ELF (no program headers)")
            if phentsize != ELF64_PHDR_SIZE:
                raise UsageError(f"{name}: malformed ELF (e_phentsize {phentsize})")
            if phoff + phnum * phentsize > size:
                raise UsageError(f"{name}: truncated program headers ({phnum} at offset {phoff:#x}, "
                                 f"file is {size} bytes)")
            handle.seek(phoff)
            table = handle.read(phnum * phentsize)
            interp = _interp(name, handle, table, phnum, size)
    except UsageError:
        raise
    except (ELFError, ValueError, OSError, KeyError) as err:
        raise UsageError(f"{name}: malformed ELF ({err})") from None
    except Exception as err:  # pyelftools raises struct errors on truncation
        raise UsageError(f"{name}: malformed ELF ({type(err).__name__})") from None
    if interp is not None:
        _check_interp(name, interp, GUEST_SYSROOTS.get(machine, ""), machine)


def _interp(name: str, handle, table: bytes, phnum: int, size: int) -> str | None:
    for index in range(phnum):
        p_type, _flags, offset, _vaddr, _paddr, filesz = struct.unpack_from(
            "<IIQQQQ", table, index * ELF64_PHDR_SIZE)
        if p_type != PT_INTERP:
            continue
        if filesz == 0 or filesz > 4096 or offset + filesz > size:
            raise UsageError(f"{name}: malformed ELF (PT_INTERP out of the file)")
        handle.seek(offset)
        return os.fsdecode(handle.read(filesz).split(b"\0", 1)[0])
    return None


def _check_interp(name: str, interp: str, sysroot: str = "", machine: str = "") -> None:
    if not interp.startswith("/"):
        return  # relative to the cwd at exec: rare, and the kernel will say
    if sysroot and os.path.lexists(sysroot + interp):
        interp = sysroot + interp  # qemu-user's -L rule: the sysroot's file, else the host's
    try:
        st = os.stat(interp)
    except FileNotFoundError:
        raise UsageError(f"{name}: its interpreter {interp} (PT_INTERP) does not exist") from None
    except OSError as err:
        raise UsageError(f"{name}: its interpreter {interp} (PT_INTERP): {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{name}: its interpreter {interp} (PT_INTERP) is not a regular file")
    if sysroot:
        # qemu-user would only say "Invalid ELF image for this architecture".
        try:
            with open(interp, "rb") as handle:
                header = handle.read(20)
        except OSError:
            return  # unreadable: qemu says why, as the kernel would
        theirs = int.from_bytes(header[18:20], "little") if header[:4] == b"\x7fELF" and len(header) == 20 else None
        if theirs != GUEST_E_MACHINE[machine]:
            raise UsageError(f"{name}: its interpreter {interp} (PT_INTERP) is not an ELF for {machine}")


def elf_machine(header: bytes) -> int | None:
    """e_machine of an ELF header's first 20 bytes (None: not an ELF header)."""
    if header[:4] != b"\x7fELF" or len(header) < 20:
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def is_aarch64_program(path: str) -> bool:
    """Whether ``path`` is an aarch64 ELF file, run under qemu-user (False
    when unreadable: the launch then says what is wrong with it)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return elf_machine(header) == GUEST_E_MACHINE["EM_AARCH64"]
