"""Property tests for the decoders test_decode_fuzz.py does not reach:
link_map / r_debug walks over fake memory (random graphs: cycles, dangling
and misaligned pointers, unterminated names), DT_DEBUG lookup, the memory
helpers, /proc status text and generated maps lines.

Every walk must end, after a bounded number of reads, with a result; the
only exception a decoder may raise is DecodeError. A "hostile" reader that
breaks the MemoryReader protocol (short or empty reads) is included: bytes
from a dying process or a damaged recording can look like that.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.linkmap import LAYOUTS, find_r_debug_via_dt_debug, read_r_debug, walk_r_debug
from loaderdbg.decode.maps import find_mapping, parse_maps
from loaderdbg.decode.memory import MemoryImage, read_cstring, read_u64
from loaderdbg.decode.procstatus import parse_task_status, signal_set

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(60)

BASE = 0x10000
SIZE = 0x3000
NODES = [BASE + 0x400 + i * 0x80 for i in range(10)]
DEBUGS = [BASE + 0x100 + i * 0x60 for i in range(4)]
STRINGS = BASE + 0x1000
WORD = (1 << 64) - 1


class CountingReader:
    """Counts reads, and optionally misbehaves: returns short prefixes."""

    def __init__(self, image: MemoryImage, shorten: list[int] | None = None) -> None:
        self.image, self.reads, self.shorten = image, 0, shorten or []

    def read(self, addr: int, size: int) -> bytes | None:
        self.reads += 1
        data = self.image.read(addr, size)
        if data is not None and self.shorten:
            cut = self.shorten[self.reads % len(self.shorten)]
            data = data[:cut] if cut < len(data) else data
        return data


def pointer(targets: list[int]) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(targets),
        st.sampled_from([0, 0xDEAD0000, BASE + SIZE - 4, BASE + SIZE, BASE - 8, WORD, WORD - 7]),
        st.integers(BASE, BASE + SIZE),  # anywhere inside, misaligned too
        st.integers(0, WORD),
    )


# Built once: making strategies inside a composite per draw costs more than
# the walks under test.
NODE_POINTER = pointer(NODES)
DEBUG_POINTER = pointer(DEBUGS)
NAME_INDEX = st.integers(-1, 7)
ANY_WORD = st.integers(0, WORD)
VERSIONS = st.sampled_from([0, 1, 2, 3, -1, 0x7FFFFFFF])
STATES = st.integers(0, 0xFFFFFFFF)
NAME_TEXTS = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")), max_size=6)
PATTERNS = st.one_of(st.just(b"\0"), st.binary(min_size=1, max_size=48))


@st.composite
def loader_memory(draw, arch: str = "x86_64"):
    """r_debug structs and link_map nodes pointing at each other at random."""
    layout = LAYOUTS[arch]
    p = layout.pointer
    fmt = "<Q" if p == 8 else "<I"
    mask = (1 << (8 * p)) - 1
    # Background: zeroes, or a short random pattern repeated (drawing 12 KB
    # of random bytes per example would dominate the run time).
    pattern = draw(PATTERNS)
    buf = bytearray((pattern * (SIZE // len(pattern) + 1))[:SIZE])
    strings_at = STRINGS - BASE
    names = []
    for text in draw(NAME_TEXTS):
        names.append(BASE + strings_at)
        buf[strings_at:strings_at + len(text) + 1] = text + b"\0"
        strings_at += len(text) + 1
    if draw(st.booleans()):  # a name that runs off the end of memory, unterminated
        buf[SIZE - 32:] = b"A" * 32
        names.append(BASE + SIZE - 32)

    def put(addr: int, value: int) -> None:
        struct.pack_into(fmt, buf, addr - BASE, value & mask)

    for node in NODES:
        index = draw(NAME_INDEX)
        put(node + layout.l_addr, draw(ANY_WORD))
        put(node + layout.l_name, names[index] if 0 <= index < len(names) else draw(NODE_POINTER))
        put(node + layout.l_ld, draw(ANY_WORD))
        put(node + layout.l_next, draw(NODE_POINTER))
        put(node + layout.l_prev, draw(NODE_POINTER))
    for debug in DEBUGS:
        struct.pack_into("<i", buf, debug - BASE + layout.r_version,
                         draw(VERSIONS))
        put(debug + layout.r_map, draw(NODE_POINTER))
        struct.pack_into("<I", buf, debug - BASE + layout.r_state, draw(STATES))
        put(debug + layout.r_next, draw(DEBUG_POINTER))
    return MemoryImage.of((BASE, bytes(buf)))


def check_walk(memory, start: int, arch: str, max_namespaces: int = 16, max_entries: int = 4096) -> None:
    reader = CountingReader(memory) if isinstance(memory, MemoryImage) else memory
    debugs, entries = walk_r_debug(reader, start, arch, max_namespaces=max_namespaces,
                                   max_entries=max_entries)
    assert len(debugs) <= max_namespaces and len(entries) <= max_entries
    assert len({d.address for d in debugs}) == len(debugs), "an r_debug visited twice: a cycle"
    assert len({e.address for e in entries}) == len(entries), "a link_map visited twice: a cycle"
    for before, after in zip(entries, entries[1:]):
        if before.namespace == after.namespace:
            assert after.address == before.l_next  # the list, in order
    assert all(0 <= e.namespace < len(debugs) for e in entries)
    # Each node costs one struct read plus a name read (<= 4096/64 chunks,
    # one byte-wise fallback each); r_debug costs two.
    assert reader.reads <= 3 * len(debugs) + len(entries) * 140 + 4


@pytest.mark.parametrize("arch", sorted(LAYOUTS))
@FUZZ
@given(data=st.data())
def test_link_map_random_graph_walks_end(arch, data):
    memory = data.draw(loader_memory(arch))
    start = data.draw(st.one_of(st.sampled_from(DEBUGS), DEBUG_POINTER))
    limits = data.draw(st.sampled_from([(16, 4096), (1, 3), (2, 1)]))
    check_walk(memory, start, arch, *limits)


@settings(FUZZ, max_examples=80)
@given(memory=loader_memory(), shorten=st.lists(st.integers(0, 40), min_size=1, max_size=5),
       start=st.sampled_from(DEBUGS))
def test_link_map_short_reads(memory, shorten, start):
    reader = CountingReader(memory, shorten)
    walk_r_debug(reader, start)
    assert reader.reads < 20_000
    read_r_debug(reader, start)


@FUZZ
@given(raw=st.binary(max_size=1024), start=st.integers(-16, 1100), arch=st.sampled_from(sorted(LAYOUTS)))
def test_link_map_random_bytes(raw, start, arch):
    memory = MemoryImage.of((BASE, raw))
    check_walk(memory, BASE + start, arch)


@FUZZ
@given(entries=st.lists(st.tuples(st.sampled_from([0, 1, 0x15, 0x15, 5, 0x6FFFFFFB, WORD]),
                                  st.integers(0, WORD)), max_size=40),
       cut=st.integers(0, 700), arch=st.sampled_from(sorted(LAYOUTS)),
       shorten=st.lists(st.integers(0, 40), max_size=3))
def test_dt_debug_lookup(entries, cut, arch, shorten):
    p = LAYOUTS[arch].pointer
    fmt = "<QQ" if p == 8 else "<II"
    mask = (1 << (8 * p)) - 1
    raw = b"".join(struct.pack(fmt, tag & mask, value & mask) for tag, value in entries)[:cut]
    reader = CountingReader(MemoryImage.of((BASE, raw)), shorten)
    found = find_r_debug_via_dt_debug(reader, BASE, arch)
    assert found is None or 0 < found <= mask
    assert reader.reads <= 2 * 512 + 2
    if not shorten and found is None:
        walked = [(t & mask, v & mask) for t, v in entries[:cut // (2 * p)]]
        for tag, value in walked:
            if tag == 0:
                break
            if tag == 0x15:  # the first DT_DEBUG decides: still 0 means not set yet
                assert value == 0
                break


# -------------------------------------------------------------------- memory

@FUZZ
@given(regions=st.lists(st.tuples(st.integers(0, 0x3000), st.binary(max_size=300)), max_size=4),
       addr=st.integers(-10, 0x3400), size=st.integers(-2, 400))
def test_memory_image_matches_a_byte_model(regions, addr, size):
    # Non-overlapping by construction: each region starts where the last ended or later.
    placed, at = [], 0
    for gap, data in regions:
        placed.append((at + gap, data))
        at += gap + len(data) + 1
    image = MemoryImage.of(*placed)
    model = {start + i: b for start, data in placed for i, b in enumerate(data)}
    got = image.read(addr, size)
    if size < 0 or addr < 0:
        assert got is None
        return
    want = [model.get(addr + i) for i in range(size)]
    contiguous = any(start <= addr and addr + size <= start + len(data) for start, data in placed)
    if contiguous:
        assert got == bytes(want)
    else:
        assert got is None or size == 0


@FUZZ
@given(raw=st.binary(max_size=300), offset=st.integers(0, 320), limit=st.integers(0, 5000),
       shorten=st.lists(st.integers(0, 70), max_size=4))
def test_read_cstring_and_u64_end(raw, offset, limit, shorten):
    reader = CountingReader(MemoryImage.of((BASE, raw)), shorten)
    text = read_cstring(reader, BASE + offset, limit)
    assert text is None or (b"\0" not in text and len(text) <= limit)
    assert reader.reads <= 2 * (limit // 1 + 2)
    if not shorten and text is not None:
        assert raw[offset:offset + len(text) + 1] == text + b"\0"
    value = read_u64(reader, BASE + offset)
    assert value is None or 0 <= value <= WORD


# ---------------------------------------------------------------- procstatus

REAL_STATUS = open("/proc/self/status").read()


@FUZZ
@given(text=st.text(max_size=400))
def test_status_random_text(text):
    try:
        status = parse_task_status(text)
    except DecodeError:
        return
    assert isinstance(status.tracer_pid, int)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(REAL_STATUS) - 1), st.characters()), max_size=6),
       cut=st.integers(0, len(REAL_STATUS)))
def test_status_mutated(edits, cut):
    text = list(REAL_STATUS)
    for position, char in edits:
        text[position] = char
    try:
        status = parse_task_status("".join(text)[:cut])
    except DecodeError:
        return
    for names in (status.sig_pending, status.shared_pending, status.sig_blocked, status.sig_ignored):
        assert all(name.startswith("SIG") for name in names)


@FUZZ
@given(mask=st.integers(-(1 << 70), 1 << 70))
def test_signal_set_any_mask(mask):
    names = signal_set(mask)
    assert len(names) == len(set(names)) <= 64


# ---------------------------------------------------------------------- maps

HEX16 = st.integers(0, WORD).map(lambda v: f"{v:x}")
PATHS = st.one_of(
    st.sampled_from(["", "[stack]", "[heap]", "[vdso]", "[vvar]", "/memfd:execsolib (deleted)",
                     "/lib/x86_64-linux-gnu/libc.so.6", "/tmp/a b (deleted)", "[anon:x]", "anon_inode:[io]"]),
    st.text(alphabet=st.characters(blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
            max_size=40).map(lambda s: "/" + s),
)


@settings(FUZZ, max_examples=80)
@given(rows=st.lists(st.tuples(HEX16, HEX16, st.sampled_from(["r-xp", "rw-p", "---p", "r--s"]), HEX16,
                               st.integers(0, (1 << 64) - 1), PATHS), max_size=8))
def test_generated_maps_lines_round_trip(rows):
    lines = []
    for start, end, perms, offset, inode, path in rows:
        lo, hi = sorted((int(start, 16), int(end, 16)))
        lines.append(f"{lo:08x}-{hi:08x} {perms} {offset:0>8} fd:01 {inode}" + (f" {path}" if path else ""))
    maps = parse_maps("\n".join(lines))
    assert len(maps) == len(rows)
    for entry, line in zip(maps, lines):
        assert entry.start <= entry.end <= WORD
        again = parse_maps(entry.format_line())[0]
        assert again == entry, line
        (entry.kind, entry.memfd_name, entry.is_deleted)
    ordered = sorted(maps, key=lambda e: e.start)
    if all(a.end <= b.start for a, b in zip(ordered, ordered[1:])):  # as the kernel's are
        for entry in ordered:
            if entry.size:
                assert find_mapping(ordered, entry.start) is entry


@FUZZ
@given(field=st.sampled_from(["start", "end", "offset", "inode"]), digits=st.integers(17, 6000))
def test_overlong_maps_fields_are_decode_errors(field, digits):
    parts = {"start": "1000", "end": "2000", "offset": "0", "inode": "7"}
    parts[field] = "1" * digits
    line = f"{parts['start']}-{parts['end']} r-xp {parts['offset']} 00:01 {parts['inode']} /x"
    if field == "inode" and digits <= 20:
        parse_maps(line)
        return
    with pytest.raises(DecodeError):
        parse_maps(line)


# ------------------------------------------- stack and auxv over a bad reader

STACK = 0x7FFFFFFDE000


def _initial_stack() -> MemoryImage:
    blob = bytearray(0x800)
    strings = [b"prog", b"arg", b"HOME=/root"]
    pointers, at = [], 0x400
    for text in strings:
        blob[at:at + len(text) + 1] = text + b"\0"
        pointers.append(STACK + at)
        at += len(text) + 1
    words = [2, pointers[0], pointers[1], 0, pointers[2], 0, 6, 4096, 31, pointers[0], 25, STACK + 0x400, 0, 0]
    struct.pack_into(f"<{len(words)}Q", blob, 0x100, *words)
    return MemoryImage.of((STACK, bytes(blob)))


@FUZZ
@given(shorten=st.lists(st.integers(0, 70), min_size=1, max_size=5))
def test_stack_and_auxv_over_short_reads(shorten):
    from loaderdbg.arch import X86_64
    from loaderdbg.decode.auxv import parse_auxv
    from loaderdbg.decode.stack import decode_initial_stack, looks_like_initial_stack

    reader = CountingReader(_initial_stack(), shorten)
    looks_like_initial_stack(reader, STACK + 0x100, X86_64)
    try:
        stack = decode_initial_stack(reader, STACK + 0x100, X86_64)
    except DecodeError:
        stack = None
    if stack is not None:
        assert stack.argc == len(stack.argv)
    raw = _initial_stack().read(STACK + 0x130, 64)
    try:
        parse_auxv(raw, X86_64, reader)
    except DecodeError:
        pass
    assert reader.reads < 5000
