"""The `.ldbg` recording format: schema, encodings, and a defensive reader.

A recording is one SQLite database (recordings/README.md documents every
table and column). It is data, never code: nothing in it is unpickled or
evaluated, every blob is bounds-checked before use, and every problem a bad
file can cause surfaces as one ``UsageError`` line naming the file.

Positions and steps: position N is the state after N single-steps (position
0 is the first instruction after execve). Transition t turns position t into
position t+1; it is what "step t" executed. Chunk c holds transitions
[c*chunk_steps, c*chunk_steps + steps) and so covers positions
c*chunk_steps .. c*chunk_steps + steps.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import lzma
import os
import sqlite3
import stat
import string
import struct
import threading
import urllib.parse
import zlib
from array import array
from collections import OrderedDict
from itertools import accumulate
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import zstandard

from loaderdbg.errors import UsageError
from loaderdbg.user_files import regular_file
from loaderdbg.printable import printable
from loaderdbg.session import Event

FORMAT_NAME = "loaderdbg.recording"
# 2: every thread recorded (the schedule and thread_regs tables, made when a
# second thread appears); a file without them (version 1, or one thread) is
# the leader's alone and opens as before.
FORMAT_VERSION = 2
PAGE_SIZE = 4096
PAGE_SHIFT = 12
REGS_SIZE = 27 * 8  # x86-64 user_regs_struct
# Register block bytes by recorded architecture (meta "arch"): x86-64
# user_regs_struct, arm64 user_pt_regs (x0-x30, sp, pc, pstate).
REGS_SIZES = {"x86_64": REGS_SIZE, "aarch64": 34 * 8}
MASK64 = (1 << 64) - 1

# Kinds of memory change in a chunk's write table.
WRITE_INSN = 0  # an instruction's store (capstone operands + our rules)
WRITE_KERNEL = 1  # a syscall's output, a signal frame, the rseq area
WRITE_PAGE = 2  # a whole page (re)mapped, unmapped or replaced; data = two page refs
WRITE_FIXUP = 3  # found by the keyframe check without a recorded write: a divergence
WRITE_KIND_NAMES = {WRITE_INSN: "instruction", WRITE_KERNEL: "kernel", WRITE_PAGE: "page",
                    WRITE_FIXUP: "unexplained"}

HASH_SIZE = 16
# A page reference: u8 tag (0 absent, 1 present) + 16-byte content hash.
PAGE_REF_SIZE = 1 + HASH_SIZE
ABSENT_REF = bytes(PAGE_REF_SIZE)

# Page codecs in the pages table.
PAGE_ZERO = 0  # 4096 zero bytes, no data
PAGE_ZSTD = 1  # data = zstd(4096 bytes)
PAGE_FILE = 2  # bytes [file_offset, +4096) of a stored file, zero-padded at EOF

# File codecs in the files table.
FILE_ZSTD = 1
FILE_XZ = 2  # xz container, x86 branch filter + LZMA2
FILE_BLOCK = 256 << 10  # files are stored in blocks this big, each compressed on its own

IMAGE_ROWS_IN_MEMORY = 1 << 18  # Recording._image_table: ~25 MB at most

# Limits a well-formed recording stays within; anything beyond is corruption.
MAX_CHUNK_STEPS = 1 << 20
MAX_WRITE_SIZE = 1 << 24
MAX_WRITES_BLOB = 1 << 30
MAX_FILE_SIZE = 1 << 31
MAX_PCS = 1 << 22

REQUIRED_TABLES = ("meta", "chunks", "pages", "images", "keyframes", "write_index", "maps",
                   "threads", "events", "syscalls", "signals", "files", "file_blocks")
# Tables of format version 2 (threads): made by the recorder when a second
# thread appears, so a one-thread recording has neither (nor their pages).
THREAD_TABLES = ("schedule", "thread_regs")

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE chunks (
        chunk INTEGER PRIMARY KEY,
        first_step INTEGER NOT NULL,
        steps INTEGER NOT NULL,
        regs BLOB NOT NULL,
        regs_written INTEGER NOT NULL,
        nwrites INTEGER NOT NULL,
        crc INTEGER NOT NULL,
        data BLOB NOT NULL)""",
    """CREATE TABLE pages (
        hash BLOB PRIMARY KEY,
        codec INTEGER NOT NULL,
        data BLOB,
        file INTEGER,
        file_offset INTEGER) WITHOUT ROWID""",
    """CREATE TABLE images (
        page INTEGER NOT NULL,
        step INTEGER NOT NULL,
        hash BLOB,
        PRIMARY KEY (page, step)) WITHOUT ROWID""",
    """CREATE TABLE keyframes (
        step INTEGER PRIMARY KEY,
        checksum BLOB NOT NULL,
        page_sums BLOB NOT NULL,
        fixups INTEGER NOT NULL)""",
    """CREATE TABLE write_index (
        page INTEGER NOT NULL,
        chunk INTEGER NOT NULL,
        PRIMARY KEY (page, chunk)) WITHOUT ROWID""",
    "CREATE TABLE maps (step INTEGER PRIMARY KEY, text BLOB NOT NULL)",
    "CREATE TABLE threads (step INTEGER PRIMARY KEY, data TEXT NOT NULL)",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        step INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        detail TEXT NOT NULL,
        address INTEGER,
        exact INTEGER NOT NULL)""",
    """CREATE TABLE syscalls (
        step INTEGER PRIMARY KEY,
        number INTEGER NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        result INTEGER,
        text TEXT NOT NULL)""",
    """CREATE TABLE signals (
        step INTEGER NOT NULL,
        signo INTEGER NOT NULL,
        siginfo BLOB,
        detail TEXT NOT NULL)""",
    """CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        dev TEXT NOT NULL,
        inode INTEGER NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        stored INTEGER NOT NULL,
        block_size INTEGER NOT NULL,
        codec INTEGER NOT NULL,
        UNIQUE (dev, inode, path))""",
    """CREATE TABLE file_blocks (
        file INTEGER NOT NULL,
        block INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (file, block)) WITHOUT ROWID""",
)
# Made when a second thread appears (RecordingWriter.add_thread_tables).
THREAD_SCHEMA = (
    # From position `step` on, transitions are executed by thread `tid`
    # (until the next row); the chunks' registers are that thread's.
    "CREATE TABLE schedule (step INTEGER PRIMARY KEY, tid INTEGER NOT NULL)",
    # Thread `tid`'s registers from position `step` on, while another
    # thread steps (rows at its birth and each time it is switched out);
    # regs NULL: the thread is gone from `step` on.
    """CREATE TABLE thread_regs (
        step INTEGER NOT NULL,
        tid INTEGER NOT NULL,
        regs BLOB,
        PRIMARY KEY (step, tid)) WITHOUT ROWID""",
)

SQLITE_MAGIC = b"SQLite format 3\x00"


def to_sql(value: int | None) -> int | None:
    """An unsigned 64-bit value as SQLite's signed INTEGER."""
    if value is None:
        return None
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def from_sql(value: int | None) -> int | None:
    return None if value is None else value & MASK64


def page_ref(digest: bytes | None) -> bytes:
    return ABSENT_REF if digest is None else b"\x01" + digest


def parse_page_ref(ref: bytes) -> bytes | None:
    return None if ref[0] == 0 else bytes(ref[1:])


# --------------------------------------------------------------------------
# Decoded chunks


@dataclass(frozen=True)
class ChunkInfo:
    chunk: int
    first_step: int
    steps: int
    regs: bytes
    regs_written: int
    nwrites: int

    @property
    def last_position(self) -> int:
        return self.first_step + self.steps


class ChunkRegs:
    """Registers at every position a chunk covers, as little-endian integers
    of ``size`` bytes (the arch's register block; position first_step + i is
    ``values[i]``)."""

    __slots__ = ("first_step", "values", "size")

    def __init__(self, first_step: int, values: list[int], size: int = REGS_SIZE) -> None:
        self.first_step = first_step
        self.values = values
        self.size = size

    def raw(self, position: int) -> bytes:
        return self.values[position - self.first_step].to_bytes(self.size, "little")

    def word(self, position: int, index: int) -> int:
        return (self.values[position - self.first_step] >> (64 * index)) & MASK64

    def column(self, index: int) -> list[int]:
        shift = 64 * index
        return [(v >> shift) & MASK64 for v in self.values]

    def changed(self, position: int, index: int) -> bool:
        """Did transition ``position`` change register ``index``?"""
        i = position - self.first_step
        shift = 64 * index
        return ((self.values[i] ^ self.values[i + 1]) >> shift) & MASK64 != 0


class Write(NamedTuple):
    """One memory change: at transition ``step``, [addr, addr+size) became
    ``new`` (was ``old``). For WRITE_PAGE both are page hashes or None.
    (A NamedTuple: a chunk decodes thousands of these.)"""

    step: int
    addr: int
    size: int
    kind: int
    new: bytes | None
    old: bytes | None

    @property
    def end(self) -> int:
        return self.addr + self.size

    @property
    def kind_name(self) -> str:
        return WRITE_KIND_NAMES.get(self.kind, str(self.kind))


class ChunkWrites:
    """A chunk's write table, columnar: ``steps`` (transition offsets in the
    chunk), ``addrs``, ``sizes``, ``kinds``, and ``offsets`` into ``data``
    where each write's new bytes (then its old bytes) or its two page refs
    are. Seeking walks these arrays; ``writes`` builds Write tuples on
    demand for the queries."""

    __slots__ = ("first_step", "steps", "addrs", "sizes", "kinds", "offsets", "data", "_writes")

    def __init__(self, first_step: int, steps, addrs, sizes, kinds, offsets, data: bytes) -> None:
        self.first_step = first_step
        self.steps = steps
        self.addrs = addrs
        self.sizes = sizes
        self.kinds = kinds
        self.offsets = offsets
        self.data = data
        self._writes: list[Write] | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def write(self, i: int) -> Write:
        kind = self.kinds[i]
        offset = self.offsets[i]
        size = self.sizes[i]
        data = self.data
        if kind == WRITE_PAGE:
            new = parse_page_ref(data[offset:offset + PAGE_REF_SIZE])
            old = parse_page_ref(data[offset + PAGE_REF_SIZE:offset + 2 * PAGE_REF_SIZE])
        else:
            new = data[offset:offset + size]
            old = data[offset + size:offset + 2 * size]
        return Write(self.first_step + self.steps[i], self.addrs[i], size, kind, new, old)

    @property
    def writes(self) -> list[Write]:
        if self._writes is None:
            self._writes = [self.write(i) for i in range(len(self.steps))]
        return self._writes

    def range(self, start: int, stop: int) -> tuple[int, int]:
        """Index range of the writes of transitions [start, stop)."""
        base = self.first_step
        return (bisect.bisect_left(self.steps, start - base), bisect.bisect_left(self.steps, stop - base))


# --------------------------------------------------------------------------
# Encoding (the recorder's side)


def encode_writes(steps: array, addrs: array, sizes: array, kinds: bytearray, data: bytes | bytearray) -> bytes:
    """u32 count, u32 steps[], u64 addrs[], u32 sizes[], u8 kinds[], data."""
    return struct.pack("<I", len(steps)) + steps.tobytes() + addrs.tobytes() + sizes.tobytes() + \
        bytes(kinds) + bytes(data)


def decode_writes(raw: bytes, first_step: int, steps: int, where: str) -> ChunkWrites:
    """Parse a chunk's write table; any inconsistency is a UsageError."""
    if len(raw) < 4:
        raise UsageError(f"{where}: write table truncated")
    (count,) = struct.unpack_from("<I", raw, 0)
    table_end = 4 + count * 17
    if table_end > len(raw):
        raise UsageError(f"{where}: write table claims {count} records, blob too short")
    a = 4
    step_offsets = array("I", raw[a:a + 4 * count])
    a += 4 * count
    addrs = array("Q", raw[a:a + 8 * count])
    a += 8 * count
    sizes = array("I", raw[a:a + 4 * count])
    a += 4 * count
    kinds = raw[a:a + count]
    data = raw[table_end:]
    if count:
        # Checked at C speed where it can be (a long seek decodes every
        # chunk it crosses): the offsets are in order when sorting leaves
        # them as they are, and no write can end past 2**64 when the
        # largest address plus the largest size does not.
        if step_offsets[-1] >= max(steps, 1) or step_offsets.tolist() != sorted(step_offsets):
            raise UsageError(f"{where}: write step offsets out of range or order")
        if not set(kinds) <= {WRITE_INSN, WRITE_KERNEL, WRITE_PAGE, WRITE_FIXUP}:
            raise UsageError(f"{where}: unknown write kind")
        if min(sizes) == 0 or max(sizes) > MAX_WRITE_SIZE or (
                max(addrs) + max(sizes) > 1 << 64 and any(x + y > 1 << 64 for x, y in zip(addrs, sizes))):
            raise UsageError(f"{where}: a write size or address is out of range")
    lengths = [2 * size for size in sizes]
    for i in _indexes_of(kinds, WRITE_PAGE):
        if sizes[i] != PAGE_SIZE or addrs[i] % PAGE_SIZE:
            raise UsageError(f"{where}: page record at {addrs[i]:#x} is not a page")
        lengths[i] = 2 * PAGE_REF_SIZE
    offsets = list(accumulate(lengths, initial=0))
    if offsets[-1] != len(data):
        raise UsageError(f"{where}: write data is {len(data)} bytes, the table says {offsets[-1]}")
    return ChunkWrites(first_step, step_offsets, addrs, sizes, kinds, offsets, data)


def _indexes_of(kinds: bytes, kind: int) -> Iterable[int]:
    """Where ``kind`` occurs in a chunk's kinds column (bytes.find, so a
    chunk with few page records is not walked write by write)."""
    at = kinds.find(kind)
    while at >= 0:
        yield at
        at = kinds.find(kind, at + 1)


CHUNK_HEADER = struct.Struct("<III")
CHUNK_PARTS = ("regs", "writes", "pcs")


def pack_chunk_data(regs: bytes, writes: bytes, pcs: bytes) -> bytes:
    """A chunk's three zstd frames in one blob, after their lengths."""
    return CHUNK_HEADER.pack(len(regs), len(writes), len(pcs)) + regs + writes + pcs


def unpack_chunk_data(blob: bytes, where: str) -> dict[str, bytes]:
    if len(blob) < CHUNK_HEADER.size:
        raise UsageError(f"{where}: chunk data truncated")
    lengths = CHUNK_HEADER.unpack_from(blob, 0)
    if CHUNK_HEADER.size + sum(lengths) != len(blob):
        raise UsageError(f"{where}: chunk data lengths do not add up")
    parts = {}
    offset = CHUNK_HEADER.size
    for name, length in zip(CHUNK_PARTS, lengths):
        parts[name] = blob[offset:offset + length]
        offset += length
    return parts


def memory_checksum(pages: Iterable[tuple[int, bytes | bytearray]]) -> tuple[bytes, list[tuple[int, int]]]:
    """The keyframe checksum over writable memory: blake2b-128 of every
    (page number, content) in page order, and a crc32 per page (to name the
    page that differs). The recorder and the replayer both call this."""
    digest = hashlib.blake2b(digest_size=16)
    sums = []
    for page, content in pages:
        digest.update(page.to_bytes(8, "little"))
        digest.update(content)
        sums.append((page, zlib.crc32(content)))
    return digest.digest(), sums


# --------------------------------------------------------------------------
# Reading


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


def _read_if_same(path: str, dev: str, inode: int, size: int) -> bytes | None:
    """The bytes of the regular file at ``path`` if it is on device ``dev``
    (as /proc/PID/maps writes it, "fe:00"), has ``inode`` and is ``size``
    bytes long; else None. Only a regular file is opened (stat first, then
    without blocking, in case it was swapped for a FIFO in between)."""
    def same(st: os.stat_result) -> bool:
        return stat.S_ISREG(st.st_mode) and st.st_size == size and st.st_ino == inode and \
            (os.major(st.st_dev), os.minor(st.st_dev)) == (major, minor)

    try:
        major, minor = (int(part, 16) for part in dev.split(":"))
        if not same(os.stat(path)):  # a device is never opened: opening one may act on it
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (ValueError, OSError):
        return None
    try:
        if not same(os.fstat(fd)):  # replaced since the stat
            return None
        with os.fdopen(os.dup(fd), "rb") as file:
            content = file.read(size + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return content if len(content) == size else None


def _xz_crc32(stream: bytes, size: int) -> int | None:
    """The CRC32 of its content that a one-block xz stream of ``size``
    bytes carries (the block's check field, CHECK_CRC32), read off its
    index and footer without inflating anything; None if it is not such a
    stream."""
    if len(stream) < 32 or stream[:6] != b"\xfd7zXZ\x00" or stream[6:8] != b"\x00\x01" or \
            stream[-2:] != b"YZ" or stream[-4:-2] != b"\x00\x01":
        return None
    index_start = len(stream) - 12 - (int.from_bytes(stream[-8:-4], "little") + 1) * 4
    if index_start < 16 or stream[index_start] != 0:
        return None
    fields = []
    at = index_start + 1
    for _ in range(3):  # record count, the block's unpadded size, its uncompressed size
        value = shift = 0
        while at < len(stream) and shift < 63:
            byte = stream[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            return None
        fields.append(value)
    count, unpadded, uncompressed = fields
    if count != 1 or uncompressed != size or 12 + ((unpadded + 3) & ~3) != index_start:
        return None
    return int.from_bytes(stream[index_start - 4:index_start], "little")


class Recording:
    """Read access to one `.ldbg` file. Thread-safe (one lock around the
    SQLite connection and the caches)."""

    def __init__(self, path: str, connection: sqlite3.Connection, meta: dict) -> None:
        self.path = path
        self._shown = printable(path)  # for messages
        self._db = connection
        self.meta = meta
        self._lock = threading.RLock()
        self._dctx = zstandard.ZstdDecompressor()
        self.chunk_steps: int = meta["chunk_steps"]
        self.keyframe_interval: int = meta["keyframe_interval"]
        self.regs_size: int = meta["regs_size"]  # checked against the arch by _check_meta
        self._chunks: list[ChunkInfo] = []
        self._regs_cache = _LRU(6)
        self._writes_cache = _LRU(48)
        self._pcs_cache: dict[int, frozenset[int]] = {}
        self._page_cache = _LRU(4096)
        self._file_cache = _LRU(6)
        self._block_cache = _LRU(64)
        self._local_files: dict[int, bytes | None] = {}  # see _local_copy
        self._images: dict | None | bool = False  # see _image_table; False: not read yet
        self._maps: list[tuple[int, str]] = []
        self._threads: list[tuple[int, str]] = []
        # The schedule (positions where the stepping thread changes, and
        # that thread) and every thread's registers while it waits, by tid:
        # [(step, regs or None)] in step order (see SCHEMA).
        self._schedule_steps: list[int] = []
        self._schedule_tids: list[int] = []
        self._waiting_regs: dict[int, list[tuple[int, bytes | None]]] = {}
        self.keyframes: list[int] = []
        self._load_structure()

    # -- opening checks --------------------------------------------------------
    def _fail(self, message: str) -> UsageError:
        return UsageError(f"{self._shown}: {printable(message)}")  # SQLite's messages quote the file too

    def _query(self, sql: str, args: Sequence = ()) -> list:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as err:
                raise self._fail(f"damaged recording ({err})") from None

    def _iterate(self, sql: str, args: Sequence = ()) -> sqlite3.Cursor:
        """A cursor to read rows one at a time (a big recording's blobs are
        never all in memory); the caller catches sqlite3.DatabaseError."""
        try:
            return self._db.execute(sql, args)
        except sqlite3.DatabaseError as err:
            raise self._fail(f"damaged recording ({err})") from None

    def _load_structure(self) -> None:
        try:
            self._load_chunks()
        except sqlite3.DatabaseError as err:
            raise self._fail(f"damaged recording ({err})") from None
        self._load_tables()

    def _load_chunks(self) -> None:
        rows = self._iterate("SELECT chunk, first_step, steps, regs, regs_written, nwrites, crc, data "
                             "FROM chunks ORDER BY chunk")
        total = self._query("SELECT COUNT(*) FROM chunks")[0][0]
        if not total:
            raise self._fail("recording has no steps (no chunk rows)")
        expected_first = 0
        for index, (chunk, first, steps, regs, written, nwrites, crc, data) in enumerate(rows):
            where = f"chunk {index}"
            if not all(_is_int(v) for v in (chunk, first, steps, written, nwrites, crc)):
                raise self._fail(f"{where}: a number column holds something else")
            if chunk != index or first != expected_first:
                raise self._fail(f"{where}: chunk numbers/steps out of sequence")
            if not (0 <= steps <= self.chunk_steps) or (steps != self.chunk_steps and index != total - 1):
                raise self._fail(f"{where}: {steps} steps out of range")
            if not isinstance(regs, bytes) or len(regs) != self.regs_size:
                raise self._fail(f"{where}: register keyframe is not {self.regs_size} bytes")
            if not isinstance(data, bytes):
                raise self._fail(f"{where}: chunk data has the wrong type")
            if zlib.crc32(data) != crc:
                raise self._fail(f"{where}: corrupted compressed chunk (checksum mismatch)")
            unpack_chunk_data(data, f"{self._shown}: {where}")
            if nwrites < 0:
                raise self._fail(f"{where}: bad counters")
            self._chunks.append(ChunkInfo(chunk, first, steps, regs, written & ((1 << self.regs_size // 8) - 1),
                                          nwrites))
            expected_first = first + steps

    def _load_tables(self) -> None:
        self.last_step = self._chunks[-1].last_position
        declared = self.meta.get("last_step")
        if declared is not None and declared != self.last_step and self.meta.get("complete"):
            raise self._fail(f"meta last_step {declared} disagrees with the chunks ({self.last_step})")
        for step, blob in self._query("SELECT step, text FROM maps ORDER BY step"):
            if not isinstance(step, int) or not isinstance(blob, bytes) or not 0 <= step <= self.last_step + 1:
                raise self._fail("maps row out of range")
            text = self._decompress(blob, 1 << 26, f"maps at step {step}").decode("utf-8", "surrogateescape")
            self._maps.append((step, text))
        if not self._maps or self._maps[0][0] != 0:
            raise self._fail("no memory map at step 0")
        for step, text in self._query("SELECT step, data FROM threads ORDER BY step"):
            if not isinstance(step, int) or not isinstance(text, str):
                raise self._fail("threads row out of range")
            self._threads.append((step, text))
        self._load_threads()
        for (step,) in self._query("SELECT step FROM keyframes ORDER BY step"):
            if not isinstance(step, int) or not 0 <= step <= self.last_step:
                raise self._fail(f"keyframe step {step!r:.40} out of range")
            self.keyframes.append(step)
        if not self.keyframes or self.keyframes[0] != 0:
            raise self._fail("no memory image at step 0")

    def _load_threads(self) -> None:
        """The schedule and thread_regs tables (format version 2); a file
        without them is one thread's, the leader's (meta pid)."""
        present = {name for (name,) in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not set(THREAD_TABLES) <= present:
            pid = self.meta.get("pid")
            self._schedule_steps, self._schedule_tids = [0], [pid if _is_int(pid) else 0]
            return
        for step, tid in self._query("SELECT step, tid FROM schedule ORDER BY step"):
            if not (_is_int(step) and _is_int(tid)) or not 0 <= step <= self.last_step:
                raise self._fail("schedule row out of range")
            self._schedule_steps.append(step)
            self._schedule_tids.append(tid)
        if not self._schedule_steps or self._schedule_steps[0] != 0:
            raise self._fail("no schedule row at step 0")
        for step, tid, regs in self._query("SELECT step, tid, regs FROM thread_regs ORDER BY step"):
            if not (_is_int(step) and _is_int(tid)) or not 0 <= step <= self.last_step + 1:
                raise self._fail("thread_regs row out of range")
            if regs is not None and (not isinstance(regs, bytes) or len(regs) != self.regs_size):
                raise self._fail(f"thread_regs row at step {step}: registers are not {self.regs_size} bytes")
            self._waiting_regs.setdefault(tid, []).append((step, regs))

    # -- threads ---------------------------------------------------------------
    @property
    def schedule(self) -> tuple[tuple[int, int], ...]:
        """(first position, tid) of each run of steps one thread executed, in order."""
        return tuple(zip(self._schedule_steps, self._schedule_tids))

    def thread_at(self, position: int) -> int:
        """The thread that executes transition ``position`` (whose registers
        the chunks hold at that position; at the last position, the thread
        that stepped last)."""
        index = bisect.bisect_right(self._schedule_steps, position) - 1
        return self._schedule_tids[max(index, 0)]

    def thread_registers(self, position: int) -> dict[int, bytes]:
        """Every thread alive at ``position`` and its registers then, by tid:
        the stepping thread's from the chunks, each other one's as it was
        left when it last stepped (or was born)."""
        stepping = self.thread_at(position)
        out = {stepping: self.regs_at(position)}
        for tid, rows in self._waiting_regs.items():
            if tid == stepping:
                continue
            index = bisect.bisect_right(rows, position, key=lambda row: row[0]) - 1
            if index >= 0 and rows[index][1] is not None:
                out[tid] = rows[index][1]
        return dict(sorted(out.items()))

    @property
    def threaded(self) -> bool:
        """Whether more than one thread ever stepped or existed."""
        return len(set(self._schedule_tids)) > 1 or bool(self._waiting_regs)

    # -- chunks --------------------------------------------------------------
    @property
    def chunks(self) -> tuple[ChunkInfo, ...]:
        return tuple(self._chunks)

    def chunk_of(self, position: int) -> int:
        return min(position // self.chunk_steps, len(self._chunks) - 1)

    def chunk_info(self, chunk: int) -> ChunkInfo:
        return self._chunks[chunk]

    def _blob(self, chunk: int, part: str) -> bytes:
        rows = self._query("SELECT data FROM chunks WHERE chunk = ?", (chunk,))
        if not rows:
            raise self._fail(f"chunk {chunk} missing")
        return unpack_chunk_data(rows[0][0], f"{self._shown}: chunk {chunk}")[part]

    def _decompress(self, blob: bytes, limit: int, what: str) -> bytes:
        """At most ``limit`` bytes out of a zstd frame. A frame that says it
        holds more is refused before anything is allocated (zstandard trusts
        a declared size over max_output_size: a 30 kB bomb would be 1 GB)."""
        if not isinstance(blob, bytes):
            raise self._fail(f"{what}: not a blob")
        try:
            declared = zstandard.frame_content_size(blob)
            if declared > limit:
                raise self._fail(f"corrupted compressed {what} (says it holds {declared:,} bytes, "
                                 f"at most {limit:,} fit)")
            return self._dctx.decompress(blob, max_output_size=limit)
        except zstandard.ZstdError as err:
            raise self._fail(f"corrupted compressed {what} ({err})") from None

    def chunk_regs(self, chunk: int) -> ChunkRegs:
        with self._lock:
            return self._regs_cache.get_or(chunk, lambda: self._decode_regs(chunk))

    def _decode_regs(self, chunk: int) -> ChunkRegs:
        info = self._chunks[chunk]
        size = self.regs_size
        limit = info.steps * size
        data = self._decompress(self._blob(chunk, "regs"), max(limit, 1), f"chunk {chunk} registers")
        if len(data) != limit:
            raise self._fail(f"chunk {chunk}: register data is {len(data)} bytes, expected {limit}")
        acc = int.from_bytes(info.regs, "little")
        values = [acc]
        append = values.append
        from_bytes = int.from_bytes
        view = memoryview(data)
        for offset in range(0, limit, size):
            acc ^= from_bytes(view[offset:offset + size], "little")
            append(acc)
        return ChunkRegs(info.first_step, values, size)

    def chunk_writes(self, chunk: int) -> ChunkWrites:
        with self._lock:
            return self._writes_cache.get_or(chunk, lambda: self._decode_writes(chunk))

    def _decode_writes(self, chunk: int) -> ChunkWrites:
        info = self._chunks[chunk]
        blob = self._blob(chunk, "writes")
        raw = self._decompress(blob, self._writes_size(chunk, blob), f"chunk {chunk} writes")
        decoded = decode_writes(raw, info.first_step, info.steps, f"{self._shown}: chunk {chunk}")
        if len(decoded) != info.nwrites:
            raise self._fail(f"chunk {chunk}: {len(decoded)} writes, row says {info.nwrites}")
        return decoded

    def _writes_size(self, chunk: int, blob: bytes) -> int:
        """The size a chunk's write table must decompress to, from its record
        table alone (decompressed first: 17 bytes a write), so that a table
        that lies about its data is refused without inflating the data."""
        info = self._chunks[chunk]
        table = 4 + 17 * info.nwrites
        if table > MAX_WRITES_BLOB:
            raise self._fail(f"chunk {chunk}: {info.nwrites} writes is more than a chunk holds")
        try:
            declared = zstandard.frame_content_size(blob)
            if 0 <= declared < table:
                raise self._fail(f"chunk {chunk}: write table is {declared} bytes, {info.nwrites} writes need {table}")
            head = self._dctx.stream_reader(blob).read(table)
        except zstandard.ZstdError as err:
            raise self._fail(f"corrupted compressed chunk {chunk} writes ({err})") from None
        if len(head) != table or struct.unpack_from("<I", head)[0] != info.nwrites:
            raise self._fail(f"chunk {chunk}: the write table does not hold the {info.nwrites} writes the row says")
        count = info.nwrites
        sizes = array("I", head[4 + 12 * count:4 + 16 * count])
        kinds = head[4 + 16 * count:]
        pages = list(_indexes_of(kinds, WRITE_PAGE))
        data = 2 * (sum(sizes) - sum(sizes[i] for i in pages)) + 2 * PAGE_REF_SIZE * len(pages)
        if table + data > MAX_WRITES_BLOB or (declared >= 0 and declared != table + data):
            raise self._fail(f"chunk {chunk}: write data is not the {data:,} bytes its table says")
        return table + data

    def chunk_pcs(self, chunk: int) -> frozenset[int]:
        with self._lock:
            found = self._pcs_cache.get(chunk)
            if found is None:
                raw = self._decompress(self._blob(chunk, "pcs"), MAX_PCS * 8, f"chunk {chunk} pcs")
                if len(raw) % 8:
                    raise self._fail(f"chunk {chunk}: pc set is not a whole number of words")
                found = frozenset(struct.unpack(f"<{len(raw) // 8}Q", raw))
                self._pcs_cache[chunk] = found
            return found

    def regs_at(self, position: int) -> bytes:
        if not 0 <= position <= self.last_step:
            raise UsageError(f"step {position} is outside the recording (0..{self.last_step})")
        return self.chunk_regs(self.chunk_of(position)).raw(position)

    # -- memory ----------------------------------------------------------------
    def page_bytes(self, digest: bytes) -> bytes:
        with self._lock:
            return self._page_cache.get_or(digest, lambda: self._load_page(digest))

    def _load_page(self, digest: bytes) -> bytes:
        rows = self._query("SELECT codec, data, file, file_offset FROM pages WHERE hash = ?", (digest,))
        if not rows:
            raise self._fail(f"page {digest.hex()} referenced but not stored")
        codec, data, file_id, offset = rows[0]
        if not _is_int(codec) or not _int_or_none(file_id) or not _int_or_none(offset):
            raise self._fail(f"page {digest.hex()}: a number column holds something else")
        if codec == PAGE_ZERO:
            page = bytes(PAGE_SIZE)
        elif codec == PAGE_ZSTD:
            if not isinstance(data, bytes):
                raise self._fail(f"page {digest.hex()} has no data")
            page = self._decompress(data, PAGE_SIZE, f"page {digest.hex()}")
        elif codec == PAGE_FILE:
            page = self.file_range(file_id, offset, PAGE_SIZE) if isinstance(offset, int) else None
            if page is None:
                raise self._fail(f"page {digest.hex()} refers to a missing file range")
            page += bytes(PAGE_SIZE - len(page))
        else:
            raise self._fail(f"page {digest.hex()}: unknown codec {codec}")
        if len(page) != PAGE_SIZE:
            raise self._fail(f"page {digest.hex()} is {len(page)} bytes")
        return page

    def image_hash(self, page: int, step: int) -> bytes | None:
        """The content hash of ``page`` in the newest image at or before
        ``step`` (None: not mapped or unreadable there). Remembered: a
        seek across a keyframe's steps asks for each page it touches at
        both ends, and the check of the same steps backwards asks again."""
        images = self._image_table()
        if images is None:
            rows = self._query(
                "SELECT hash FROM images WHERE page = ? AND step <= ? ORDER BY step DESC LIMIT 1", (page, step))
        else:
            steps, digests = images.get(page, ((), ()))
            at = bisect.bisect_right(steps, step) - 1
            rows = [(digests[at],)] if at >= 0 else []
        if not rows:
            return None
        digest = rows[0][0]
        if digest is not None and (not isinstance(digest, bytes) or len(digest) != HASH_SIZE):
            raise self._fail(f"image row for page {page:#x} has a bad hash")
        return digest

    def _image_table(self) -> dict[int, tuple[list[int], list]] | None:
        """The images table as page -> (steps ascending, hashes), read once
        when it is small enough (a 1M-step python3 has ~3,700 rows, read in
        2 ms; asking SQLite page by page cost ~7 µs a page, thousands of
        times a long seek); None when it is too big or holds anything but
        integer pages and steps (then each question is asked of SQLite)."""
        with self._lock:
            if self._images is False:
                self._images = None
                (count,) = self._query("SELECT count(*) FROM images")[0]
                if isinstance(count, int) and count <= IMAGE_ROWS_IN_MEMORY:
                    table: dict[int, tuple[list[int], list]] = {}
                    for page, step, digest in self._query("SELECT page, step, hash FROM images ORDER BY page, step"):
                        if page.__class__ is not int or step.__class__ is not int:
                            return None
                        steps, digests = table.setdefault(page, ([], []))
                        steps.append(step)
                        digests.append(digest)
                    self._images = table
            return self._images

    def image_pages(self, step: int) -> dict[int, bytes | None]:
        """Every page of the image at keyframe ``step`` (newest row per page)."""
        return self._image_rows(
            "SELECT page, hash FROM images AS i WHERE step = (SELECT MAX(step) FROM images "
            "WHERE page = i.page AND step <= ?)", step)

    def image_rows_at(self, step: int) -> dict[int, bytes | None]:
        return self._image_rows("SELECT page, hash FROM images WHERE step = ?", step)

    def _image_rows(self, sql: str, step: int) -> dict[int, bytes | None]:
        out = {}
        for page, digest in self._query(sql, (step,)):
            if not _is_int(page) or not 0 <= page < 1 << 52 or \
                    (digest is not None and (not isinstance(digest, bytes) or len(digest) != HASH_SIZE)):
                raise self._fail(f"image row at step {step} malformed")
            out[page] = digest
        return out

    def keyframe_at_or_before(self, position: int) -> int:
        index = bisect.bisect_right(self.keyframes, position) - 1
        return self.keyframes[max(index, 0)]

    def keyframe(self, step: int) -> tuple[bytes, list[tuple[int, int]], int]:
        rows = self._query("SELECT checksum, page_sums, fixups FROM keyframes WHERE step = ?", (step,))
        if not rows:
            raise self._fail(f"no keyframe at step {step}")
        checksum, sums, fixups = rows[0]
        if not isinstance(checksum, bytes) or not _is_int(fixups):
            raise self._fail(f"keyframe {step} malformed")
        raw = self._decompress(sums, 1 << 28, f"keyframe {step} page sums")
        if len(raw) % 12:
            raise self._fail(f"keyframe {step}: page sums malformed")
        pairs = list(struct.iter_unpack("<QI", raw))
        return checksum, pairs, fixups

    def chunks_writing(self, pages: Iterable[int], up_to_chunk: int) -> list[int]:
        """Chunks (newest first) whose writes touch any of ``pages``."""
        pages = list(pages)
        if not pages:
            return []
        marks = ",".join("?" * len(pages))
        rows = self._query(f"SELECT DISTINCT chunk FROM write_index WHERE page IN ({marks}) AND chunk <= ? "
                           "ORDER BY chunk DESC", (*pages, up_to_chunk))
        return self._chunk_numbers(rows)

    def _chunk_numbers(self, rows: list) -> list[int]:
        if not all(_is_int(r[0]) and 0 <= r[0] < len(self._chunks) for r in rows):
            raise self._fail("write index names a chunk that is not there")
        return [r[0] for r in rows]

    def chunks_writing_after(self, pages: Iterable[int], from_chunk: int) -> list[int]:
        pages = list(pages)
        if not pages:
            return []
        marks = ",".join("?" * len(pages))
        rows = self._query(f"SELECT DISTINCT chunk FROM write_index WHERE page IN ({marks}) AND chunk >= ? "
                           "ORDER BY chunk", (*pages, from_chunk))
        return self._chunk_numbers(rows)

    # -- maps, threads, files -------------------------------------------------
    def maps_text(self, position: int) -> str:
        index = bisect.bisect_right(self._maps, position, key=lambda row: row[0]) - 1
        return self._maps[max(index, 0)][1]

    def maps_version(self, position: int) -> int:
        return max(bisect.bisect_right(self._maps, position, key=lambda row: row[0]) - 1, 0)

    @property
    def maps_rows(self) -> tuple[tuple[int, str], ...]:
        return tuple(self._maps)

    def threads_data(self, position: int) -> list[dict]:
        index = bisect.bisect_right(self._threads, position, key=lambda row: row[0]) - 1
        if index < 0:
            return []
        try:
            data = load_json(self._threads[index][1], "threads row")
        except ValueError as err:
            raise self._fail(str(err)) from None
        if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
            raise self._fail("threads row malformed")
        return data

    def file_bytes(self, dev: str, inode: int, path: str) -> bytes | None:
        rows = self._query("SELECT id FROM files WHERE dev = ? AND inode = ? AND path = ?", (dev, inode, path))
        if not rows or not _is_int(rows[0][0]):
            return None
        return self.file_by_id(rows[0][0])

    def _file_row(self, file_id: int) -> tuple[int, int, int] | None:
        """(size, block size, codec) of a stored file, or None."""
        with self._lock:
            cache = self.__dict__.setdefault("_file_rows", {})
            if file_id not in cache:
                rows = self._query("SELECT size, stored, block_size, codec FROM files WHERE id = ?", (file_id,))
                row = None
                if rows and rows[0][1] == 1:
                    size, _, block, codec = rows[0]
                    if not all(isinstance(v, int) for v in (size, block, codec)) or \
                            not 0 <= size <= MAX_FILE_SIZE or not 4096 <= block <= 1 << 26:
                        raise self._fail(f"file {file_id}: bad size or block size")
                    if codec not in (FILE_ZSTD, FILE_XZ):
                        raise self._fail(f"file {file_id}: unknown codec {codec}")
                    row = (size, block, codec)
                cache[file_id] = row
            return cache[file_id]

    def file_block(self, file_id: int, block: int) -> bytes:
        with self._lock:
            return self._block_cache.get_or((file_id, block), lambda: self._load_block(file_id, block))

    def _load_block(self, file_id: int, block: int) -> bytes:
        size, block_size, codec = self._file_row(file_id)
        local = self._local_copy(file_id)
        if local is not None:
            return local[block * block_size:(block + 1) * block_size]
        expected = min(block_size, size - block * block_size)
        rows = self._query("SELECT data FROM file_blocks WHERE file = ? AND block = ?", (file_id, block))
        if expected <= 0 or not rows or not isinstance(rows[0][0], bytes):
            raise self._fail(f"file {file_id}: block {block} missing")
        data = rows[0][0]
        if codec == FILE_ZSTD:
            content = self._decompress(data, expected, f"file {file_id} block {block}")
        else:
            try:
                content = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data, max_length=expected + 1)
            except lzma.LZMAError as err:
                raise self._fail(f"corrupted compressed file {file_id} block {block} ({err})") from None
        if len(content) != expected:
            raise self._fail(f"file {file_id} block {block}: {len(content)} bytes, expected {expected}")
        return content

    def file_range(self, file_id: int, offset: int, length: int) -> bytes | None:
        """Bytes [offset, offset+length) of a stored file (short at its end)."""
        row = self._file_row(file_id)
        if row is None or offset < 0:
            return None
        size, block_size, _ = row
        end = min(offset + length, size)
        out = bytearray()
        while offset < end:
            block, within = divmod(offset, block_size)
            data = self.file_block(file_id, block)
            take = min(end - offset, block_size - within)
            out += data[within:within + take]
            offset += take
        return bytes(out)

    def file_by_id(self, file_id: int) -> bytes | None:
        with self._lock:
            return self._file_cache.get_or(
                file_id, lambda: self._local_copy(file_id) or self.file_range(file_id, 0, MAX_FILE_SIZE))

    def _local_copy(self, file_id: int) -> bytes | None:
        """_same_local_file, looked for once per file."""
        with self._lock:
            if file_id not in self._local_files:
                self._local_files[file_id] = self._same_local_file(file_id)
            return self._local_files[file_id]

    def _same_local_file(self, file_id: int) -> bytes | None:
        """The stored file's bytes read from this machine's copy, when that
        is the file the recording was made with: the same path, device,
        inode and size, and every block's CRC32 equal to the one its xz
        stream carries. Reading and summing a 7 MB python3 costs a few ms;
        inflating its xz blocks costs ~150 ms. None when any of it differs
        (or the file is zstd-stored, which inflates fast anyway)."""
        row = self._file_row(file_id)
        if row is None or row[2] != FILE_XZ:
            return None
        size, block_size, _ = row
        rows = self._query("SELECT dev, inode, path FROM files WHERE id = ?", (file_id,))
        dev, inode, path = rows[0]
        if not isinstance(dev, str) or not isinstance(path, str) or not path.startswith("/"):
            return None
        content = _read_if_same(path, dev, inode, size)
        if content is None:
            return None
        blocks = self._query("SELECT block, data FROM file_blocks WHERE file = ? ORDER BY block", (file_id,))
        if len(blocks) != -(-size // block_size):
            return None
        for number, (block, blob) in enumerate(blocks):
            start = number * block_size
            if block != number or not isinstance(blob, bytes) or \
                    _xz_crc32(blob, min(block_size, size - start)) != zlib.crc32(content[start:start + block_size]):
                return None
        return content

    def files(self) -> list[tuple[int, str, int, str, int, bool]]:
        rows = self._query("SELECT id, dev, inode, path, size, stored FROM files ORDER BY id")
        if not all(_is_int(i) and isinstance(d, str) and _is_int(n) and isinstance(p, str) and _is_int(s)
                   for i, d, n, p, s, _ in rows):
            raise self._fail("files row malformed")
        return [(i, d, n, p, s, has == 1) for i, d, n, p, s, has in rows]

    # -- events ------------------------------------------------------------------
    def events(self) -> tuple[Event, ...]:
        out = []
        for step, kind, name, detail, address, exact in self._query(
                "SELECT step, kind, name, detail, address, exact FROM events ORDER BY id"):
            if not _is_int(step) or step < -1 or step > self.last_step + 1:
                raise self._fail(f"event step {printable(repr(step))[:40]} out of range")
            if not all(isinstance(v, str) for v in (kind, name, detail)):
                raise self._fail("event row malformed")
            if not _int_or_none(address) or not _is_int(exact):
                raise self._fail("event address malformed")
            # Names and texts from the file are shown: never a control character.
            out.append(Event(step, printable(kind), printable(name), printable(detail), from_sql(address),
                             bool(exact)))
        return tuple(out)

    def syscalls(self) -> list[dict]:
        out = []
        for step, number, name, args, result, text in self._query(
                "SELECT step, number, name, args, result, text FROM syscalls ORDER BY step"):
            if not _is_int(step) or not 0 <= step <= self.last_step:
                raise self._fail(f"syscall step {printable(repr(step))[:40]} out of range")
            if not _is_int(number) or not isinstance(name, str) or not isinstance(text, str) or \
                    not isinstance(args, str) or not _int_or_none(result):
                raise self._fail(f"syscall at step {step}: row malformed")
            try:
                parsed = [int(a, 16) for a in load_json(args, "arguments")]
            except (ValueError, TypeError):
                raise self._fail(f"syscall at step {step}: bad arguments") from None
            if len(parsed) > 6 or not all(0 <= a <= MASK64 for a in parsed):
                raise self._fail(f"syscall at step {step}: bad arguments")
            out.append({"step": step, "number": number, "name": printable(name), "args": tuple(parsed),
                        "result": result, "text": printable(text)})
        return out

    def signals(self) -> list[dict]:
        rows = self._query("SELECT step, signo, siginfo, detail FROM signals ORDER BY step")
        for step, signo, siginfo, detail in rows:
            if not _is_int(step) or not 0 <= step <= self.last_step or not _is_int(signo) or \
                    not 0 < signo < 128 or not isinstance(detail, str) or not isinstance(siginfo, (bytes, type(None))):
                raise self._fail("signals row malformed")
        return [{"step": s, "signo": n, "siginfo": i, "detail": d} for s, n, i, d in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------
# Opening
#
# A recording comes from outside: SQLite executes SQL stored in the file
# itself (a view's query, a generated column's expression) when a table is
# read, so the schema is checked against the one the writer makes before any
# of our queries runs, with the database opened read-only.

MAX_JSON_DEPTH = 16  # meta and threads values are a few levels deep


def file_type_name(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_or_none(value) -> bool:
    return value is None or _is_int(value)


def _text_or_none(value) -> bool:
    return value is None or isinstance(value, str)


def _hex_text(value) -> bool:
    return isinstance(value, str) and len(value) % 2 == 0 and all(c in string.hexdigits for c in value)


def _str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _object_with(**fields):
    """A JSON object whose listed fields, where present, pass their checks."""
    def check(value) -> bool:
        return isinstance(value, dict) and all(name not in value or test(value[name]) for name, test in fields.items())
    return check


# The shape of every meta value the writer stores; code that reads meta can
# trust these (a value of the wrong shape is refused on open).
META_SHAPES = {
    "format": lambda v: isinstance(v, str), "format_version": _is_int, "arch": lambda v: isinstance(v, str),
    "program": lambda v: isinstance(v, str), "argv": _str_list, "envp": _str_list,
    "aslr": lambda v: isinstance(v, bool), "pid": _int_or_none, "caught_from": _int_or_none,
    "kernel": lambda v: isinstance(v, str), "loaderdbg_version": lambda v: isinstance(v, str),
    "created": lambda v: isinstance(v, str), "cpu": lambda v: isinstance(v, dict), "xcr0": _int_or_none,
    "xsave_size": _int_or_none, "pinned_cpu": _int_or_none, "chunk_steps": _is_int, "keyframe_interval": _is_int,
    "page_size": _is_int, "regs_size": _is_int, "until": lambda v: isinstance(v, str), "kernel_sp": _is_int,
    "entry_pc": _is_int, "kernel_auxv": _hex_text, "complete": lambda v: isinstance(v, bool),
    "last_step": _is_int, "syscall_count": _is_int, "divergences": _is_int, "warnings": _str_list,
    "end": _object_with(kind=_text_or_none, description=_text_or_none, target=_text_or_none,
                        reached=lambda v: isinstance(v, bool), signal=_text_or_none, fault_address=_int_or_none,
                        exit_code=_int_or_none),
    "ldso": _object_with(path=lambda v: isinstance(v, str), base=_is_int, entry=_is_int, step=_is_int),
    "at_entry": _object_with(value=_is_int, step=_is_int),
    "execs": lambda v: isinstance(v, list) and all(
        isinstance(item, dict) and {"position", "kernel_sp", "entry_pc", "kernel_auxv"} <= item.keys()
        and _object_with(position=_is_int, kernel_sp=_is_int, entry_pc=_is_int, kernel_auxv=_hex_text)(item)
        for item in v),
}


def _json_depth(value) -> int:
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            depth = max(depth, level)
            if depth > MAX_JSON_DEPTH:
                return depth
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return depth


def load_json(text: str, what: str):
    """A JSON value from a recording: a ValueError (with ``what`` in it) for
    text that is not JSON or nests deeper than any value we write."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"{what} nests too deep") from None
    except ValueError:
        raise ValueError(f"{what} is not JSON") from None
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"{what} nests too deep")
    return value


def _meta_int(meta: dict, key: str, low: int, high: int, path: str) -> int:
    value = meta.get(key)
    if not _is_int(value) or not low <= value <= high:
        raise UsageError(f"{path}: meta {key} = {printable(repr(value))[:80]} out of range")
    return value


def _regular_file(path: str) -> os.stat_result:
    """stat ``path`` and refuse anything but a regular file, before anything
    opens it (opening a FIFO blocks; opening a device can act on it)."""
    return regular_file(path, printable(path), lambda mode: f"is {file_type_name(mode)}, not a recording")


def _read_head(path: str, size: int) -> tuple[bytes, int]:
    """The first ``size`` bytes of the regular file ``path`` and its length.
    O_NONBLOCK: a FIFO swapped in after the stat must not block the open."""
    _regular_file(path)
    shown = printable(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise UsageError(f"{shown}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{shown}: is {file_type_name(info.st_mode)}, not a recording")
        return os.pread(fd, size, 0), info.st_size
    except OSError as err:
        raise UsageError(f"{shown}: {err.strerror}") from None
    finally:
        os.close(fd)


def is_recording(path: str) -> bool:
    """Whether ``path`` looks like a recording (an SQLite file), so that
    commands taking FILE|PROG can tell which they were given. Only a regular
    file is opened."""
    try:
        return _read_head(path, len(SQLITE_MAGIC))[0] == SQLITE_MAGIC
    except UsageError:
        return False


def _check_header(path: str) -> None:
    header, size = _read_head(path, 100)
    shown = printable(path)
    if not header.startswith(SQLITE_MAGIC):
        raise UsageError(f"{shown}: not a loaderdbg recording (not an SQLite database)")
    if len(header) < 100:
        raise UsageError(f"{shown}: truncated recording ({size} bytes)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    wal = os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0
    if not wal and pages and page_size and size < pages * page_size:
        raise UsageError(f"{shown}: truncated recording ({size} bytes, header says {pages * page_size})")


def _sqlite_uri(path: str) -> str:
    """A read-only SQLite URI naming exactly ``path``: every byte that is not
    a plain path character is %-escaped (SQLite decodes %XX, so a path with
    a literal %41 must be written %2541)."""
    return "file:" + urllib.parse.quote(os.fsencode(os.path.abspath(path)), safe="/") + "?mode=ro"


def _columns(db: sqlite3.Connection, table: str) -> tuple:
    """(name, declared type, primary-key position, hidden) of each column;
    hidden is 2 or 3 for a generated column."""
    return tuple(sorted((name, kind.upper(), pk, hidden) for _, name, kind, _, _, pk, hidden in
                        db.execute("SELECT * FROM pragma_table_xinfo(?)", (table,))))


@functools.cache
def _expected_columns() -> dict[str, tuple]:
    """The columns SCHEMA makes, as _columns reports them."""
    db = sqlite3.connect(":memory:")
    try:
        for statement in SCHEMA + THREAD_SCHEMA:
            db.execute(statement)
        return {table: _columns(db, table) for table in REQUIRED_TABLES + THREAD_TABLES}
    finally:
        db.close()


def _check_schema(db: sqlite3.Connection, path: str) -> None:
    """Refuse a schema that could run SQL stored in the file when we read
    it (views, triggers, generated columns, virtual tables) or that is not
    the writer's (missing or changed tables and columns, foreign indexes).
    Reading sqlite_master parses the schema but evaluates none of it."""
    tables = set()
    for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master"):
        shown = printable(str(name))[:60]
        if kind == "table":
            if not isinstance(sql, str) or not sql.lstrip().upper().startswith("CREATE TABLE"):
                raise UsageError(f"{path}: not a loaderdbg recording (table {shown} is not a plain table)")
            tables.add(name)
        elif kind == "index":
            if not str(name).startswith("sqlite_autoindex_"):
                raise UsageError(f"{path}: not a loaderdbg recording (it has an index {shown} of its own)")
        else:
            raise UsageError(f"{path}: not a loaderdbg recording (it has a {printable(str(kind))[:20]} {shown}; "
                             "a recording holds tables only)")
    for table in REQUIRED_TABLES + THREAD_TABLES:
        if table not in tables:
            if table in THREAD_TABLES:
                continue  # one thread recorded (or format version 1)
            raise UsageError(f"{path}: not a loaderdbg recording (missing table {table})")
        found = _columns(db, table)
        if any(hidden for *_, hidden in found):
            raise UsageError(f"{path}: not a loaderdbg recording (table {table} has a generated column)")
        if found != _expected_columns()[table]:
            raise UsageError(f"{path}: not a loaderdbg recording (table {table} has other columns than "
                             "the format's)")


def _connect_read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to the regular file ``path`` whose schema
    passed _check_schema; any problem is one UsageError line."""
    _check_header(path)
    try:
        db = sqlite3.connect(_sqlite_uri(path), uri=True, check_same_thread=False)
    except sqlite3.DatabaseError as err:
        raise UsageError(f"{printable(path)}: damaged recording ({printable(str(err))})") from None
    path = printable(path)  # from here on, for messages only
    try:
        # Belt and braces: no function with side effects from the schema, no writes.
        db.execute("PRAGMA trusted_schema = OFF")
        db.execute("PRAGMA query_only = ON")
        _check_schema(db, path)
    except sqlite3.DatabaseError as err:
        db.close()
        raise UsageError(f"{path}: damaged recording ({printable(str(err))})") from None
    except BaseException:
        db.close()
        raise
    return db


def _read_meta(db: sqlite3.Connection, path: str) -> dict:
    meta: dict = {}
    try:
        for key, value in db.execute("SELECT key, value FROM meta"):
            if not isinstance(key, str) or not isinstance(value, str):
                raise UsageError(f"{path}: meta row malformed")
            try:
                meta[key] = load_json(value, f"meta {printable(key)[:40]}")
            except ValueError as err:
                raise UsageError(f"{path}: {err}") from None
    except sqlite3.DatabaseError as err:
        raise UsageError(f"{path}: damaged recording ({printable(str(err))})") from None
    return meta


def is_loaderdbg_recording(path: str) -> bool:
    """Whether the regular file ``path`` is a loaderdbg recording, finished
    or not (its meta names our format). Reads it as the reader does."""
    try:
        db = _connect_read_only(path)
    except UsageError:
        return False
    try:
        rows = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchall()
        return len(rows) == 1 and rows[0][0] == json.dumps(FORMAT_NAME)
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()


# What a recording's header holds once the recorder has set up (a disk that
# fills during setup leaves fewer).
HEADER_KEYS = ("arch", "program", "argv", "chunk_steps", "keyframe_interval", "page_size", "regs_size",
               "kernel_sp", "entry_pc")


def _check_meta(meta: dict, path: str) -> None:
    if meta.get("format") != FORMAT_NAME:
        raise UsageError(f"{path}: not a loaderdbg recording (format {printable(repr(meta.get('format')))[:80]})")
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise UsageError(f"{path}: format version {printable(repr(version))[:40]} out of range")
    if version > FORMAT_VERSION:
        raise UsageError(f"{path}: recording format version {version} is newer than this loaderdbg "
                         f"reads ({FORMAT_VERSION}); upgrade loaderdbg")
    missing = [key for key in HEADER_KEYS if key not in meta]
    if missing:
        raise UsageError(f"{path}: an unfinished recording: the recorder stopped before its header was "
                         f"written ({', '.join(missing)} missing); nothing to replay")
    if not isinstance(meta.get("arch"), str) or meta["arch"] not in REGS_SIZES:
        raise UsageError(f"{path}: recording architecture {printable(repr(meta.get('arch')))[:40]} not supported")
    _meta_int(meta, "chunk_steps", 1, MAX_CHUNK_STEPS, path)
    _meta_int(meta, "keyframe_interval", 1, 1 << 40, path)
    _meta_int(meta, "page_size", PAGE_SIZE, PAGE_SIZE, path)
    regs_size = REGS_SIZES[meta["arch"]]
    _meta_int(meta, "regs_size", regs_size, regs_size, path)
    for key in ("kernel_sp", "entry_pc"):
        _meta_int(meta, key, 0, MASK64, path)
    if not isinstance(meta.get("argv"), list) or not isinstance(meta.get("program"), str):
        raise UsageError(f"{path}: meta argv/program malformed")
    if "last_step" in meta:
        _meta_int(meta, "last_step", 0, 1 << 48, path)
    for key, fits in META_SHAPES.items():
        if key in meta and not fits(meta[key]):
            raise UsageError(f"{path}: meta {key} has the wrong type or shape")


def open_recording(path: str) -> Recording:
    """Open and sanity-check a recording; any problem is one UsageError line."""
    path = os.fspath(path)
    shown = printable(path)
    db = _connect_read_only(path)
    try:
        meta = _read_meta(db, shown)
        _check_meta(meta, shown)
        return Recording(path, db, meta)
    except BaseException:
        db.close()
        raise
