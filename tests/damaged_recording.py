"""Damaged copies of the sample recording, shared by the format's unit tests
and the CLI's integration tests. A plain module: tests/ is on sys.path
because tests/conftest.py sits there (pytest's default import mode)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "recordings" / "execsolib-rdxbug-crash.ldbg"


def copy_of_sample(path: Path) -> Path:
    if not SAMPLE.is_file():
        pytest.fail(f"{SAMPLE} is missing: run `make recordings`", pytrace=False)
    shutil.copy(SAMPLE, path)
    return path


def edit(path: Path, *statements: str, args=()) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement, args)
    db.commit()
    db.close()


def corrupt_chunk(path: Path) -> None:
    """Flip bytes inside chunk 3's compressed data, leaving its checksum stale."""
    db = sqlite3.connect(path)
    (blob,) = db.execute("SELECT data FROM chunks WHERE chunk = 3").fetchone()
    damaged = bytearray(blob)
    for i in range(40, len(damaged), 97):
        damaged[i] ^= 0x5A
    db.execute("UPDATE chunks SET data = ? WHERE chunk = 3", (bytes(damaged),))
    db.commit()
    db.close()


def _first_writes(rec, start: int, stop: int) -> set[tuple[int, int]]:
    """(chunk, index) of each write in [start, stop) that is the first there
    to its bytes, as ``index.writes_between(rec, addr, size, start, stop)[0]``
    would name it (the same step and address): one pass in order, instead
    of that query for each of thousands of writes."""
    first_of_byte: dict[int, int] = {}  # byte -> order of the first write to it
    order: list[tuple[int, int]] = []  # (step, addr) by order
    firsts = set()
    for chunk in range(rec.chunk_of(start), rec.chunk_of(stop - 1) + 1):
        cw = rec.chunk_writes(chunk)
        lo, hi = cw.range(start, stop)
        for i in range(lo, hi):
            addr, size, step = cw.addrs[i], cw.sizes[i], cw.first_step + cw.steps[i]
            if size <= 0:
                continue
            here = len(order)
            order.append((step, addr))
            earliest = min((first_of_byte[b] for b in range(addr, addr + size) if b in first_of_byte),
                           default=here)
            if order[earliest] == (step, addr):
                firsts.add((chunk, i))
            for b in range(addr, addr + size):
                first_of_byte.setdefault(b, here)
    return firsts


def change_recorded_write(path: Path, before: int, old_bytes: bool = False) -> tuple[int, int]:
    """Flip the bytes of one instruction's recorded write in the steps
    before keyframe ``before`` (its new bytes: the last write to them before
    the keyframe; with ``old_bytes``, the bytes it replaced: the first write
    to them after the previous keyframe), re-encoding the chunk with a valid
    checksum, as a bug in the recorder would. Returns (step, address)."""
    import zlib

    import zstandard

    from loaderdbg.record import index
    from loaderdbg.record.format import (WRITE_INSN, decode_writes, encode_writes, open_recording,
                                         pack_chunk_data, unpack_chunk_data)

    rec = open_recording(str(path))
    previous = rec.keyframes[rec.keyframes.index(before) - 1]
    firsts = _first_writes(rec, previous, before) if old_bytes else set()
    chosen = None
    for chunk in range(rec.chunk_of(before - 1), rec.chunk_of(previous) - 1, -1):
        cw = rec.chunk_writes(chunk)
        candidates = range(len(cw)) if old_bytes else range(len(cw) - 1, -1, -1)
        for i in candidates:
            write = cw.write(i)
            if write.kind != WRITE_INSN or not previous <= write.step < before or write.new == write.old:
                continue
            if old_bytes:
                if (chunk, i) in firsts:
                    chosen = (chunk, i, write)
                    break
            elif index.last_write(rec, write.addr, write.size, before) == write and \
                    rec.image_hash(write.addr >> 12, before) is not None:
                chosen = (chunk, i, write)
                break
        if chosen:
            break
    assert chosen is not None, "no write to change"
    chunk, i, write = chosen
    info = rec.chunk_info(chunk)
    rec.close()
    db = sqlite3.connect(path)
    (blob,) = db.execute("SELECT data FROM chunks WHERE chunk = ?", (chunk,)).fetchone()
    parts = unpack_chunk_data(blob, "test")
    table = decode_writes(zstandard.ZstdDecompressor().decompress(parts["writes"]), info.first_step,
                          info.steps, "test")
    data = bytearray(table.data)
    start = table.offsets[i] + (write.size if old_bytes else 0)
    data[start:start + write.size] = bytes(b ^ 0xFF for b in data[start:start + write.size])
    writes = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(
        encode_writes(table.steps, table.addrs, table.sizes, bytearray(table.kinds), data))
    damaged = pack_chunk_data(parts["regs"], writes, parts["pcs"])
    db.execute("UPDATE chunks SET data = ?, crc = ? WHERE chunk = ?", (damaged, zlib.crc32(damaged), chunk))
    db.commit()
    db.close()
    return write.step, write.addr
