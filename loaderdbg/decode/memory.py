"""Read-only views of tracee memory that decoders can walk without I/O.

Decoders never talk to a process. The process layer (or a replay file) hands
them a ``MemoryReader``: anything with ``read(addr, size) -> bytes | None``.
``MemoryImage`` is the in-memory implementation used for golden tests and for
bytes already fetched from a live process.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import Protocol


class MemoryReader(Protocol):
    def read(self, addr: int, size: int) -> bytes | None:
        """Bytes at [addr, addr+size), or None if any of it is unreadable."""


@dataclass(frozen=True)
class MemoryImage:
    """Non-overlapping regions of known bytes, keyed by start address."""

    regions: tuple[tuple[int, bytes], ...] = field(default=())

    @classmethod
    def of(cls, *regions: tuple[int, bytes]) -> "MemoryImage":
        return cls(tuple(sorted(regions)))

    def read(self, addr: int, size: int) -> bytes | None:
        if size < 0 or addr < 0:
            return None
        starts = [start for start, _ in self.regions]
        index = bisect.bisect_right(starts, addr) - 1
        if index < 0:
            return None
        start, data = self.regions[index]
        offset = addr - start
        if offset + size > len(data):
            return None
        return data[offset:offset + size]


def read_u64(memory: MemoryReader, addr: int) -> int | None:
    raw = memory.read(addr, 8)
    # A reader that breaks the protocol with a short read must not become a
    # struct.error in a decoder.
    return None if raw is None or len(raw) != 8 else struct.unpack("<Q", raw)[0]


def read_cstring(memory: MemoryReader, addr: int, limit: int = 4096) -> bytes | None:
    """A NUL-terminated string, read in small chunks so a string near the end
    of a mapping is still found. None when unreadable or unterminated."""
    out = bytearray()
    chunk = 64
    while len(out) < limit:
        want = min(chunk, limit - len(out))
        raw = memory.read(addr + len(out), want)
        if raw is None and chunk > 1:
            # At a mapping boundary: byte reads from here on (a chunk read
            # again at every byte would cost two reads a byte).
            chunk = 1
            raw = memory.read(addr + len(out), 1)
        if raw is None:
            return None
        if not raw:
            return None  # an empty read would never advance: the loop must end
        raw = raw[:want]
        nul = raw.find(b"\0")
        if nul >= 0:
            out += raw[:nul]
            return bytes(out)
        out += raw
    return None
