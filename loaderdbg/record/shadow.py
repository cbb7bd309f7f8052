"""The recorder's copy of tracee memory, page by page.

Every captured write updates it, so the recorder always knows the bytes a
write replaced (stored with the write: stepping backwards is then a copy),
can find what an unknown syscall or a signal frame changed by comparing,
and can check itself against the real process at every keyframe.
Pages whose content is all zeros share one immutable object until written.
"""

from __future__ import annotations

import os

from loaderdbg.record.format import PAGE_SIZE

ZERO_PAGE = bytes(PAGE_SIZE)
READ_PIECE = 1 << 20
COMPARE_BLOCK = 64


class ProcessReader:
    """pread on /proc/PID/mem (the fastest reader, PTRACE_NOTES.md §5)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)

    def reopen(self) -> None:
        self.close()
        self.fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self, addr: int, size: int) -> bytes | None:
        if size <= 0 or addr < 0 or addr + size > 1 << 63:
            return None
        try:
            data = os.pread(self.fd, size, addr)
        except OSError:
            return None
        return data if len(data) == size else None

    def read_pages(self, start: int, end: int) -> list[tuple[int, bytes | None]]:
        """(page number, content or None when unreadable) for [start, end),
        read in large pieces, page by page only where a piece fails."""
        out: list[tuple[int, bytes | None]] = []
        addr = start
        while addr < end:
            size = min(READ_PIECE, end - addr)
            data = self.read(addr, size)
            if data is not None:
                view = memoryview(data)
                for offset in range(0, size, PAGE_SIZE):
                    out.append(((addr + offset) >> 12, bytes(view[offset:offset + PAGE_SIZE])))
            else:
                for page_addr in range(addr, addr + size, PAGE_SIZE):
                    out.append((page_addr >> 12, self.read(page_addr, PAGE_SIZE)))
            addr += size
        return out


def diff_runs(old: bytes | bytearray, new: bytes | bytearray) -> list[tuple[int, int]]:
    """(offset, length) runs where two equal-sized buffers differ, found a
    64-byte block at a time and trimmed to the exact bytes."""
    runs: list[tuple[int, int]] = []
    size = len(new)
    start = -1
    for offset in range(0, size, COMPARE_BLOCK):
        same = old[offset:offset + COMPARE_BLOCK] == new[offset:offset + COMPARE_BLOCK]
        if not same and start < 0:
            start = offset
        elif same and start >= 0:
            runs.append((start, offset))
            start = -1
    if start >= 0:
        runs.append((start, size))
    exact = []
    for lo, hi in runs:
        while lo < hi and old[lo] == new[lo]:
            lo += 1
        while hi > lo and old[hi - 1] == new[hi - 1]:
            hi -= 1
        if hi > lo:
            exact.append((lo, hi - lo))
    return exact


class Shadow:
    """page number -> bytearray (or the shared ZERO_PAGE until written)."""

    def __init__(self) -> None:
        self.pages: dict[int, bytearray | bytes] = {}

    def __contains__(self, page: int) -> bool:
        return page in self.pages

    def content(self, page: int) -> bytes | bytearray | None:
        return self.pages.get(page)

    def set_page(self, page: int, data: bytes | None) -> None:
        if data is None:
            self.pages.pop(page, None)
        elif data == ZERO_PAGE:
            self.pages[page] = ZERO_PAGE
        else:
            self.pages[page] = bytearray(data)

    def covers(self, addr: int, size: int) -> bool:
        return all(p in self.pages for p in range(addr >> 12, ((addr + size - 1) >> 12) + 1))

    def read(self, addr: int, size: int) -> bytes:
        """Bytes at [addr, addr+size); every page must be present."""
        out = bytearray()
        end = addr + size
        while addr < end:
            page = self.pages[addr >> 12]
            offset = addr & (PAGE_SIZE - 1)
            take = min(PAGE_SIZE - offset, end - addr)
            out += page[offset:offset + take]
            addr += take
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        end = addr + len(data)
        position = 0
        while addr < end:
            number = addr >> 12
            page = self.pages[number]
            if page.__class__ is not bytearray:
                page = bytearray(page)
                self.pages[number] = page
            offset = addr & (PAGE_SIZE - 1)
            take = min(PAGE_SIZE - offset, end - addr)
            page[offset:offset + take] = data[position:position + take]
            addr += take
            position += take
