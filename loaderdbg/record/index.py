"""Questions a recording answers from its indexes, without a full scan.

- ``last_write(rec, addr, size, before)``: the newest memory change that
  touched [addr, addr+size) in a transition before ``before``. The
  ``write_index`` table names the chunks that wrote each page; only those
  are decoded, newest first.
- ``last_register_change(rec, reg, before)``: the newest transition that
  changed a register's value. Each chunk row carries a mask of the
  registers its steps wrote (capstone's implicit/explicit writes, plus
  every value change), so chunks that never touched it are skipped.
- ``writes_from(rec, addr, size, start)``: the changes to a range from a
  transition on, oldest first (a forward watch stops at the first that
  changed a byte).
- ``find_pc(rec, addresses, after|before)``: the next/previous position
  whose pc is one of ``addresses`` (breakpoints, stop targets). Each chunk
  keeps the set of pcs it visited.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from loaderdbg.arch import get_arch
from loaderdbg.record.format import PAGE_SHIFT, Recording, Write


def last_write(rec: Recording, addr: int, size: int, before: int) -> Write | None:
    if before <= 0 or size <= 0:
        return None
    end = addr + size
    pages = range(addr >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1)
    for chunk in rec.chunks_writing(pages, rec.chunk_of(before - 1)):
        cw = rec.chunk_writes(chunk)
        _, hi = cw.range(0, before)
        addrs, sizes = cw.addrs, cw.sizes
        for i in range(hi - 1, -1, -1):
            start = addrs[i]
            if start < end and addr < start + sizes[i]:
                return cw.write(i)
    return None


def writes_between(rec: Recording, addr: int, size: int, start: int, stop: int) -> list[Write]:
    """Every change to [addr, addr+size) by transitions in [start, stop), in order."""
    if stop <= start:
        return []
    return list(writes_from(rec, addr, size, start, stop))


def writes_from(rec: Recording, addr: int, size: int, start: int, stop: int | None = None) -> Iterator[Write]:
    """Each change to [addr, addr+size) by a transition at or after start
    (and before stop), in order; a chunk is decoded only when reached."""
    if size <= 0 or (stop is not None and stop <= start):
        return
    end = addr + size
    pages = range(addr >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1)
    last_chunk = None if stop is None else rec.chunk_of(stop - 1)
    for chunk in rec.chunks_writing_after(pages, rec.chunk_of(start)):
        if last_chunk is not None and chunk > last_chunk:
            break
        cw = rec.chunk_writes(chunk)
        lo, hi = cw.range(start, stop) if stop is not None else (cw.range(start, start)[0], len(cw))
        for i in range(lo, hi):
            if cw.addrs[i] < end and addr < cw.addrs[i] + cw.sizes[i]:
                yield cw.write(i)


def last_register_change(rec: Recording, index: int, before: int) -> int | None:
    """The newest transition t < before after which register ``index`` (in
    user_regs order) held a different value than before it."""
    if before <= 0:
        return None
    bit = 1 << index
    chunk = rec.chunk_of(before - 1)
    while chunk >= 0:
        info = rec.chunk_info(chunk)
        if info.regs_written & bit and info.steps:
            regs = rec.chunk_regs(chunk)
            shift = 64 * index
            values = regs.values
            top = min(before - 1, info.first_step + info.steps - 1) - info.first_step
            for i in range(top, -1, -1):
                if ((values[i] ^ values[i + 1]) >> shift) & 0xFFFF_FFFF_FFFF_FFFF:
                    return info.first_step + i
        chunk -= 1
    return None


def chunks_with_register(rec: Recording, index: int, before: int) -> Iterable[int]:
    """Chunks (newest first) at or before the one holding transition
    before-1 whose steps wrote register ``index``."""
    bit = 1 << index
    chunk = rec.chunk_of(max(before - 1, 0))
    while chunk >= 0:
        if rec.chunk_info(chunk).regs_written & bit:
            yield chunk
        chunk -= 1


def find_pc(rec: Recording, addresses: set[int] | frozenset[int], *, after: int | None = None,
            before: int | None = None) -> int | None:
    """The first position > after (or the last position < before) whose
    pc is in ``addresses``."""
    if not addresses:
        return None
    arch = get_arch(rec.meta["arch"])
    rip_index = arch.register_indexes[arch.pc_register]
    if after is not None:
        for chunk in range(rec.chunk_of(after), len(rec.chunks)):
            if rec.chunk_pcs(chunk).isdisjoint(addresses):
                continue
            info = rec.chunk_info(chunk)
            rips = rec.chunk_regs(chunk).column(rip_index)
            for i in range(max(after + 1 - info.first_step, 0), len(rips)):
                if rips[i] in addresses:
                    return info.first_step + i
        return None
    if before is not None:
        for chunk in range(rec.chunk_of(max(before - 1, 0)), -1, -1):
            if rec.chunk_pcs(chunk).isdisjoint(addresses):
                continue
            info = rec.chunk_info(chunk)
            rips = rec.chunk_regs(chunk).column(rip_index)
            for i in range(min(before - 1 - info.first_step, len(rips) - 1), -1, -1):
                if rips[i] in addresses:
                    return info.first_step + i
        return None
    raise ValueError("find_pc needs after or before")
