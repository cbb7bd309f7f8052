"""Damaged ELF and SFrame bytes: the decoders answer with DecodeError or a
result, never another exception, and always return.

Mutations aim at the bytes the decoders actually interpret (ELF header,
program headers, the dynamic array and the tables it points to) — random
flips across a 35 KB file would mostly land in code and prove nothing.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaderdbg.analysis.relocations import relocation_states
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import ElfInfo, parse_elf
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.memory import MemoryImage
from loaderdbg.decode.sframe import parse_sframe_header

SAMPLE = Path("/bin/true").read_bytes()
INFO = parse_elf(SAMPLE, "/bin/true")


def _interesting_ranges(info: ElfInfo) -> list[tuple[int, int]]:
    ranges = [(0, 64), (info.phoff, info.phoff + info.phnum * info.phentsize)]
    for seg in info.segments:
        if seg.type in ("DYNAMIC", "NOTE", "INTERP") and seg.filesz:
            ranges.append((seg.offset, seg.offset + seg.filesz))
    for entry in info.dynamic:
        if entry.name in ("DT_SYMTAB", "DT_GNU_HASH", "DT_HASH", "DT_RELA", "DT_JMPREL", "DT_RELR",
                          "DT_VERNEED", "DT_VERDEF", "DT_VERSYM", "DT_STRTAB"):
            off = info.vaddr_to_file_offset(entry.value)
            if off is not None:
                ranges.append((off, min(off + 256, len(SAMPLE))))
    return ranges


RANGES = _interesting_ranges(INFO)
WORDS = [0, 1, 2, 7, 0x40, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 63, (1 << 64) - 1, len(SAMPLE), len(SAMPLE) - 8]


@st.composite
def mutated_elf(draw) -> bytes:
    data = bytearray(SAMPLE)
    for _ in range(draw(st.integers(1, 6))):
        lo, hi = draw(st.sampled_from(RANGES))
        pos = draw(st.integers(lo, max(lo, hi - 1)))
        how = draw(st.sampled_from(["byte", "word", "dword"]))
        if how == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif how == "word" and pos + 8 <= len(data):
            value = draw(st.one_of(st.sampled_from(WORDS), st.integers(0, (1 << 64) - 1)))
            struct.pack_into("<Q", data, pos, value)
        elif pos + 4 <= len(data):
            struct.pack_into("<I", data, pos, draw(st.sampled_from(WORDS)) & 0xFFFFFFFF)
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def _exercise(info: ElfInfo, data: bytes) -> None:
    """Touch the lazy parts too: they must not raise either."""
    info.symbolize(info.entry)
    info.section_name_for_vaddr(info.entry)
    info.sections_in_range(0, 1 << 20)
    info.symbol_named("main")
    obj = LoadedObject("fuzz", 0x555555554000, info)
    image = MemoryImage.of(*(
        (obj.runtime(s.vaddr), data[s.offset:s.offset + min(s.filesz, 1 << 20)])
        for s in info.load_segments()[:1]))
    relocation_states(obj, data, image, SymbolTable([obj]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_elf())
def test_mutated_elf_only_decode_error(data: bytes) -> None:
    start = time.perf_counter()
    try:
        info = parse_elf(data, "fuzz")
    except DecodeError:
        pass
    else:
        assert isinstance(info, ElfInfo)
        _exercise(info, data)
    assert time.perf_counter() - start < 5


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_decode_error(data: bytes) -> None:
    for blob in (data, b"\x7fELF" + data, b"\x7fELF\x02\x01\x01" + data):
        try:
            parse_elf(blob)
        except DecodeError:
            pass


SFRAME_SAMPLE = struct.pack("<HBBBbbBIIIII", 0xDEE2, 2, 1, 3, 0, -8, 0, 2, 3, 6, 0, 40) + bytes(46)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.binary(max_size=64),
    st.builds(lambda cut, pos, b: (SFRAME_SAMPLE[:pos] + bytes([b]) + SFRAME_SAMPLE[pos + 1:])[:cut],
              st.integers(0, len(SFRAME_SAMPLE)), st.integers(0, 27), st.integers(0, 255)),
))
def test_sframe_header_only_decode_error(data: bytes) -> None:
    try:
        header = parse_sframe_header(data)
    except DecodeError:
        return
    assert header.magic == 0xDEE2 and header.version in (1, 2)


def test_sframe_sample_parses() -> None:
    header = parse_sframe_header(SFRAME_SAMPLE)
    assert header.version == 2 and header.num_fdes == 2 and header.flags == ("SFRAME_F_FDE_SORTED",)
    big = struct.pack(">HBBBbbBIIIII", 0xDEE2, 1, 2, 4, 0, -8, 0, 0, 0, 0, 0, 0)
    header = parse_sframe_header(big)
    assert not header.little_endian and header.abi_arch == "S390X_ENDIAN_BIG"
    assert header.flags == ("SFRAME_F_FRAME_POINTER",)
