"""Tracee memory through /proc/PID/mem.

pread on /proc/PID/mem was the fastest reader at every size here, reads
PROT_NONE pages, and (with PROC_MEM_ALWAYS_FORCE) writes breakpoints into
r-x text copy-on-write (PTRACE_NOTES.md §3, §5). The file must be reopened
after an execve: an open fd keeps pointing at the old address space.
"""

from __future__ import annotations

import os

# pread/pwrite take a signed off_t: offsets from 2**63 on (the kernel half,
# [vsyscall]) cannot be asked for through /proc/PID/mem at all.
OFFSET_LIMIT = 1 << 63


class ProcessMemory:
    """A MemoryReader (see decode/memory.py) over a stopped tracee."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    def reopen(self) -> None:
        self.close()
        self._fd = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, addr: int, size: int) -> bytes | None:
        """All of [addr, addr+size) or None."""
        if size <= 0 or addr < 0 or addr + size > OFFSET_LIMIT:
            return b"" if size == 0 else None
        try:
            data = os.pread(self._fd, size, addr)
        except OSError:
            return None
        return data if len(data) == size else None

    def read_prefix(self, addr: int, size: int) -> bytes:
        """As much of [addr, addr+size) as is readable from addr on."""
        out = bytearray()
        size = max(0, min(size, OFFSET_LIMIT - addr)) if addr >= 0 else 0
        while len(out) < size:
            try:
                data = os.pread(self._fd, size - len(out), addr + len(out))
            except OSError:
                break
            if not data:
                break
            out += data
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        if addr < 0 or addr + len(data) > OFFSET_LIMIT:
            raise OSError(f"no tracee memory at {addr:#x} through /proc/PID/mem")
        written = os.pwrite(self._fd, data, addr)
        if written != len(data):
            raise OSError(f"short write to tracee memory at {addr:#x}")
