"""Mutated bytes of our own fixtures through the ELF decoders (pyelftools).

test_decode_elf_fuzz.py mutates /bin/true (RELA, no TLS, no SFrame). The
fixtures carry what it lacks: RELR (glibc-relr), a musl-linked
self-relocating DYN without PT_INTERP, IRELATIVE + PT_TLS (ifunc-tls),
PT_GNU_SFRAME (sframe), a static-pie's .rela.iplt, and section headers with
.symtab (read lazily by symbolize/section lookups). Mutations land where the
decoders read, and the lazy parts are exercised too: DecodeError or a
result, never another exception, never a hang.
"""

from __future__ import annotations

import io
import struct
import time
from functools import lru_cache
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaderdbg.analysis.relocations import relocation_states
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import ElfInfo, parse_elf
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.memory import MemoryImage
from loaderdbg.decode.sframe import parse_sframe_header

pytestmark = pytest.mark.timeout(120)

FIX = Path(__file__).resolve().parents[2] / "build" / "fixtures"
SAMPLES = ["execsolib/glibc-relr/libexecsolib.so", "execsolib/musl-O2/libexecsolib.so",
           "zoo/ifunc-tls", "zoo/sframe", "zoo/hello-static-pie"]
WORDS = [0, 1, 2, 7, 0x40, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 63, (1 << 64) - 1]
TABLE_TAGS = ("DT_SYMTAB", "DT_GNU_HASH", "DT_HASH", "DT_RELA", "DT_JMPREL", "DT_RELR", "DT_VERNEED",
              "DT_VERDEF", "DT_VERSYM", "DT_STRTAB", "DT_INIT_ARRAY")


@lru_cache(maxsize=None)
def sample(name: str) -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """The file and the byte ranges the decoders interpret."""
    path = FIX / name
    if not path.is_file():
        pytest.fail(f"fixture {name} is not built: run `make fixtures`", pytrace=False)
    data = path.read_bytes()
    info = parse_elf(data, name)
    ranges = [(0, 64), (info.phoff, info.phoff + info.phnum * info.phentsize)]
    for seg in info.segments:
        if seg.type in ("DYNAMIC", "NOTE", "INTERP", "TLS", "GNU_SFRAME", "GNU_RELRO") and seg.filesz:
            ranges.append((seg.offset, seg.offset + min(seg.filesz, 512)))
    for entry in info.dynamic:
        if entry.name in TABLE_TAGS:
            off = info.vaddr_to_file_offset(entry.value)
            if off is not None:
                ranges.append((off, min(off + 256, len(data))))
    elf = ELFFile(io.BytesIO(data))
    shoff, shnum = elf["e_shoff"], elf["e_shnum"]
    if shoff and shnum:
        ranges.append((shoff, min(len(data), shoff + shnum * elf["e_shentsize"])))
        for section in elf.iter_sections():
            if section.name in (".symtab", ".strtab", ".shstrtab", ".rela.iplt", ".sframe") and section["sh_size"]:
                off = section["sh_offset"]
                ranges.append((off, min(off + 256, len(data))))
    return data, tuple((lo, hi) for lo, hi in ranges if lo < hi <= len(data))


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(SAMPLES))
    data, ranges = sample(name)
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        lo, hi = draw(st.sampled_from(ranges))
        pos = draw(st.integers(lo, hi - 1))
        how = draw(st.sampled_from(["byte", "qword", "dword", "zero16"]))
        if how == "byte":
            out[pos] = draw(st.integers(0, 255))
        elif how == "qword" and pos + 8 <= len(out):
            struct.pack_into("<Q", out, pos, draw(st.one_of(st.sampled_from(WORDS + [len(data)]),
                                                          st.integers(0, (1 << 64) - 1))))
        elif how == "dword" and pos + 4 <= len(out):
            struct.pack_into("<I", out, pos, draw(st.sampled_from(WORDS)) & 0xFFFFFFFF)
        else:
            out[pos:pos + 16] = bytes(len(out[pos:pos + 16]))
    if draw(st.integers(0, 4)) == 0:
        out = out[:draw(st.integers(0, len(out)))]
    return name, bytes(out)


def exercise(info: ElfInfo, data: bytes) -> None:
    """The lazy parts (sections, .symtab, symbolizer) and what consumes the
    decoded tables (relocation states) must hold up too."""
    for vaddr in (info.entry, info.min_vaddr, 0, (1 << 64) - 1):
        info.symbolize(vaddr)
        info.section_name_for_vaddr(vaddr)
        info.vaddr_to_file_offset(vaddr)
        info.segment_for_vaddr(vaddr)
    info.sections_in_range(0, 1 << 40)
    for name in ("main", "_start", "__libc_start_main", "execsolib_start", ""):
        info.symbol_named(name)
        info.definitions(name)
    info.dynamic_vaddr
    obj = LoadedObject("fuzz", 0x7FFFF7000000, info)
    loads = info.load_segments()[:2]
    image = MemoryImage.of(*(
        (obj.runtime(s.vaddr), data[s.offset:s.offset + min(s.filesz, 1 << 16)])
        for s in loads if s.offset < len(data) and s.vaddr < 1 << 47))
    relocation_states(obj, data, image, SymbolTable([obj]))


@pytest.mark.parametrize("name", SAMPLES)
def test_fixtures_parse_unmutated(name):
    data, _ = sample(name)
    info = parse_elf(data, name)
    exercise(info, data)
    assert info.relocations or name.endswith("static-pie")
    if name == "zoo/sframe":
        assert info.sframe is not None
    if name == "zoo/ifunc-tls":
        assert info.tls is not None
        assert any(r.type_name == "R_X86_64_IRELATIVE" for r in info.relocations)
    if "relr" in name:
        assert any(r.table == "RELR" for r in info.relocations)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_fixture_only_decode_error(case):
    name, data = case
    start = time.perf_counter()
    try:
        info = parse_elf(data, name)
    except DecodeError:
        pass
    else:
        exercise(info, data)
    assert time.perf_counter() - start < 10


def _sframe_section() -> bytes:
    data, _ = sample("zoo/sframe")
    section = ELFFile(io.BytesIO(data)).get_section_by_name(".sframe")
    assert section is not None
    return section.data()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_real_sframe_section_mutated(data):
    raw = bytearray(_sframe_section())
    for _ in range(data.draw(st.integers(0, 4))):
        pos = data.draw(st.integers(0, min(len(raw), 40) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    raw = bytes(raw[:data.draw(st.integers(0, len(raw)))])
    try:
        header = parse_sframe_header(raw)
    except DecodeError:
        return
    assert header.header_size + header.freoff + header.fre_len <= len(raw)
    assert header.header_size + header.fdeoff <= len(raw)


def test_real_sframe_section_header():
    header = parse_sframe_header(_sframe_section())
    assert header.version in (1, 2) and header.num_fdes >= 1 and header.abi_arch.startswith("AMD64")
