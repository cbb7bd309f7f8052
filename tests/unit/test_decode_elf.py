"""parse_elf against binutils readelf on this machine's real programs and on
our fixtures (differential tests: readelf reads section headers, we read
program headers and PT_DYNAMIC, so agreement checks both the decoding and the
loader's-eye view)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from loaderdbg.decode.elf import ElfInfo, parse_elf, section_name_for_vaddr
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.sframe import parse_sframe_header

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "build" / "fixtures" / "zoo"
EXECSOLIB = ROOT / "build" / "fixtures" / "execsolib"

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
SYSTEM = [LIBC, "/lib64/ld-linux-x86-64.so.2", "/bin/true", "/usr/bin/python3"]
SYSTEM = [p for p in SYSTEM if Path(p).exists()]
ZOO_PROGRAMS = ["hello-glibc", "hello-musl", "hello-static", "hello-static-pie", "ifunc-tls",
                "sframe", "dlmopen", "threads", "lazy", "spawner", "libzoo-ns.so"]


def fixture(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make fixtures`")
    return path


def readelf(*args: str) -> str:
    tool = shutil.which("readelf")
    assert tool, "readelf (binutils) is required: run `make sysdeps`"
    return subprocess.run([tool, *args], check=True, capture_output=True, text=True).stdout


_CACHE: dict[str, ElfInfo] = {}


def parsed(path: str | Path) -> ElfInfo:
    key = str(path)
    if key not in _CACHE:
        _CACHE[key] = parse_elf(Path(path).read_bytes(), key)
    return _CACHE[key]


# -- readelf output parsers ------------------------------------------------

_RELA_LINE = re.compile(r"^([0-9a-f]{8,16})\s+([0-9a-f]{8,16})\s+(R_\S+)\s*(.*)$")
_RELR_LINE = re.compile(r"^([0-9a-f]{8,16})\s*$")
_SYM_TAIL = re.compile(r"^[0-9a-f]{8,16} (.+?) ([+-]) ([0-9a-f]+)$")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def readelf_relocations(path: str | Path) -> list[tuple]:
    """(offset, type name, addend|None, symbol|None, version|None) per
    relocation, RELR expanded (readelf 2.40 lists one offset per line)."""
    out = []
    section = None
    for line in readelf("-rW", str(path)).splitlines():
        head = re.match(r"^Relocation section '([^']+)'", line)
        if head:
            section = head.group(1)
            continue
        if section is None:
            continue
        if section.startswith(".relr"):
            m = _RELR_LINE.match(line)
            if m:
                out.append((int(m.group(1), 16), "R_X86_64_RELATIVE", None, None, None))
            continue
        m = _RELA_LINE.match(line)
        if not m:
            continue
        offset, info, type_name, tail = int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4).strip()
        symbol = version = None
        if info >> 32:
            sm = _SYM_TAIL.match(tail)
            assert sm, line
            name, sign, addend_hex = sm.groups()
            symbol, _, version = name.partition("@")
            version = version.lstrip("@") or None
            addend = int(addend_hex, 16) * (-1 if sign == "-" else 1)
        else:
            addend = _signed(int(tail.lstrip("-"), 16)) * (-1 if tail.startswith("-") else 1) if tail else 0
        out.append((offset, type_name, addend, symbol, version))
    return sorted(out, key=_sort_key)


def _sort_key(row: tuple) -> tuple:
    return tuple((x is None, x if x is not None else 0) if not isinstance(x, str) else (False, x) for x in row)


def our_relocations(info: ElfInfo) -> list[tuple]:
    return sorted(((r.offset, r.type_name, r.addend, r.symbol, r.symbol_version) for r in info.relocations),
                  key=_sort_key)


_PHDR_LINE = re.compile(
    r"^\s+(\S+)\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+) (.{3}) 0x([0-9a-f]+)$")


def readelf_segments(path: str | Path) -> list[tuple]:
    rows = []
    for line in readelf("-lW", str(path)).splitlines():
        m = _PHDR_LINE.match(line)
        if m:
            t, off, va, pa, fs, ms, flags, align = m.groups()
            rows.append((t, int(off, 16), int(va, 16), int(pa, 16), int(fs, 16), int(ms, 16), flags, int(align, 16)))
    return rows


_DYN_LINE = re.compile(r"^\s*0x([0-9a-f]+) \(([^)]+)\)\s+(.*?)\s*$")
_STRING_LABELS = {"NEEDED": "Shared library", "SONAME": "Library soname", "RPATH": "Library rpath",
                  "RUNPATH": "Library runpath"}


def readelf_dynamic(path: str | Path) -> list[tuple[int, str, object]]:
    """(tag, name, value-or-text) per entry."""
    rows = []
    for line in readelf("-dW", str(path)).splitlines():
        m = _DYN_LINE.match(line)
        if not m:
            continue
        tag, name, value = int(m.group(1), 16), m.group(2), m.group(3)
        if name in _STRING_LABELS:
            sm = re.match(r"^[^:]+: \[(.*)\]$", value)
            assert sm, line
            rows.append((tag, name, sm.group(1)))
        elif name in ("FLAGS", "FLAGS_1", "GNU_FLAGS_1"):
            rows.append((tag, name, value.removeprefix("Flags:").strip()))
        elif name == "PLTREL":
            rows.append((tag, name, {"RELA": 7, "REL": 17}[value]))
        elif value.startswith("0x"):
            rows.append((tag, name, int(value, 16)))
        else:
            rows.append((tag, name, int(value.split()[0])))
    return rows


def our_dynamic(info: ElfInfo) -> list[tuple[int, str, object]]:
    rows = []
    for e in info.dynamic:
        name = e.name.removeprefix("DT_")
        if name in _STRING_LABELS or name in ("FLAGS", "FLAGS_1", "GNU_FLAGS_1"):
            rows.append((e.tag, name, e.text))
        else:
            rows.append((e.tag, name, e.value))
    return rows


def readelf_build_id(path: str | Path) -> str | None:
    m = re.search(r"Build ID: ([0-9a-f]+)", readelf("-n", str(path)))
    return m.group(1) if m else None


def our_segments(info: ElfInfo) -> list[tuple]:
    return [(s.type, s.offset, s.vaddr, s.paddr, s.filesz, s.memsz, s.flags, s.align) for s in info.segments]


_SYM_LINE = re.compile(r"^\s*(\d+): ([0-9a-f]+)\s+(\S+) (\S+)\s+(\S+)\s+(\S+)\s+(\S+) ?(.*)$")
_READELF_SYM_TYPES = {"IFUNC": "GNU_IFUNC", "UNIQUE": "GNU_UNIQUE"}


def readelf_dynsyms(path: str | Path) -> list[tuple]:
    """(value, size, type, bind, visibility, defined, name, version, hidden)
    per .dynsym entry, from `readelf --dyn-syms`."""
    rows = []
    in_dynsym = False
    for line in readelf("--dyn-syms", "-W", str(path)).splitlines():
        if line.startswith("Symbol table"):
            in_dynsym = "'.dynsym'" in line
            continue
        m = _SYM_LINE.match(line)
        if not (in_dynsym and m):
            continue
        _, value, size, sym_type, bind, vis, ndx, name = m.groups()
        # "name@@V": default version; "name@V" on a definition: hidden,
        # unless followed by " (N)": a verneed index (a COPY-relocated
        # definition), which is not hidden.
        needed = re.search(r" \(\d+\)$", name) is not None
        name = re.sub(r" \(\d+\)$", "", name)
        base, at, version = name.partition("@")
        hidden = bool(at) and not version.startswith("@") and ndx != "UND" and not needed
        rows.append((int(value, 16), int(size, 0), _READELF_SYM_TYPES.get(sym_type, sym_type),
                     _READELF_SYM_TYPES.get(bind, bind), vis, ndx != "UND", base,
                     version.lstrip("@") or None, hidden))
    return rows


def our_dynsyms(info: ElfInfo) -> list[tuple]:
    # readelf prints a version-definition symbol (GLIBC_2.10, ABS) without
    # its own name as suffix.
    return [(s.value, s.size, s.type, s.bind, s.visibility, s.shndx_defined, s.name,
             None if s.version == s.name else s.version, s.version_hidden) for s in info.dynsyms]


def check_against_readelf(path: str | Path) -> ElfInfo:
    info = parsed(path)
    assert our_segments(info) == readelf_segments(path)
    assert our_dynamic(info) == readelf_dynamic(path)
    assert our_relocations(info) == readelf_relocations(path)
    assert our_dynsyms(info) == readelf_dynsyms(path)
    assert info.build_id == readelf_build_id(path)
    flags_1 = next((v for _, n, v in readelf_dynamic(path) if n == "FLAGS_1"), "")
    assert info.flags_1 == tuple("DF_1_" + f for f in str(flags_1).split())
    return info


# -- system binaries ---------------------------------------------------------


@pytest.mark.parametrize("path", SYSTEM)
def test_system_binary_matches_readelf(path: str) -> None:
    info = check_against_readelf(path)
    assert info.elf_class == 64 and info.machine == "EM_X86_64"
    assert info.phnum == len(info.segments)
    assert info.warnings == ()


def test_libc_details() -> None:
    info = parsed(LIBC)
    assert info.soname == "libc.so.6"
    assert info.needed == ("ld-linux-x86-64.so.2",)
    assert info.type == "ET_DYN" and not info.is_pie
    assert info.tls is not None and info.tls.type == "TLS"
    tables = {r.table for r in info.relocations}
    assert {"RELA", "JMPREL"} <= tables
    if "RELR" in tables:  # Debian 12's libc packs most RELATIVEs in .relr.dyn
        relr = [r for r in info.relocations if r.table == "RELR"]
        assert all(r.addend is None and r.type_name == "R_X86_64_RELATIVE" for r in relr)
    # Versioned definitions: memcpy@GLIBC_2.2.5 (hidden) and memcpy@@GLIBC_2.14.
    memcpy = info.definitions("memcpy")
    assert {s.version for s in memcpy} >= {"GLIBC_2.14"}
    assert info.symbol_named("memcpy").version == "GLIBC_2.14"
    # relro: page-rounded down at both ends, as glibc's _dl_protect_relro does.
    relro_seg = next(s for s in info.segments if s.type == "GNU_RELRO")
    assert info.relro == (relro_seg.vaddr & ~0xFFF, (relro_seg.vaddr + relro_seg.memsz) & ~0xFFF)


def test_libc_relr_independent_decoder() -> None:
    """Second opinion on RELR: decode .relr.dyn's raw words with a ten-line
    decoder written from the gABI proposal text, not from pyelftools."""
    info = parsed(LIBC)
    relr_addr = info.dynamic_value("DT_RELR")
    if relr_addr is None:
        pytest.skip("this libc has no DT_RELR")
    size = info.dynamic_value("DT_RELRSZ")
    off = info.vaddr_to_file_offset(relr_addr)
    words = struct.unpack(f"<{size // 8}Q", Path(LIBC).read_bytes()[off:off + size])
    expected, where = [], 0
    for word in words:
        if word & 1 == 0:
            expected.append(word)
            where = word + 8
        else:
            for bit in range(1, 64):
                if word >> bit & 1:
                    expected.append(where + (bit - 1) * 8)
            where += 63 * 8
    assert [r.offset for r in info.relocations if r.table == "RELR"] == expected


def test_libc_parses_fast() -> None:
    data = Path(LIBC).read_bytes()
    # CPU time of this thread (parsing is pure computation): the wall clock
    # would also count other processes' turns on a loaded machine.
    start = time.thread_time()
    parse_elf(data, LIBC)
    assert time.thread_time() - start < 0.5


def test_bin_true_helpers() -> None:
    info = parsed("/bin/true")
    assert info.is_pie and "DF_1_PIE" in info.flags_1
    assert info.interp == "/lib64/ld-linux-x86-64.so.2"
    assert info.needed == ("libc.so.6",)
    text = next(s for s in info.load_segments() if "E" in s.flags)
    assert info.segment_for_vaddr(text.vaddr + 4) == text
    assert info.segment_for_vaddr(0xFFFF_FFFF_0000) is None
    assert info.vaddr_to_file_offset(text.vaddr + 0x10) == text.offset + 0x10
    assert info.file_offset_to_vaddr(text.offset + 0x10) == text.vaddr + 0x10
    assert section_name_for_vaddr(info, info.entry) == ".text"
    got = next(r for r in info.relocations if r.table == "JMPREL")
    assert section_name_for_vaddr(info, got.offset) in (".got", ".got.plt")  # .got when linked -z now
    assert section_name_for_vaddr(info, info.dynamic_vaddr) == ".dynamic"
    assert info.min_vaddr == 0


def test_zoo_symtab_symbolization() -> None:
    """Functions the PIE does not export are named from .symtab (sections
    are read for names only)."""
    info = parsed(fixture(ZOO / "sframe"))
    assert not info.definitions("zoo_sframe_mid")
    mid = info.symbol_named("zoo_sframe_mid")
    assert mid is not None and mid.type == "FUNC"
    assert info.symbolize(mid.value + 2) == ("zoo_sframe_mid", 2)
    assert info.symbolize(info.entry) == ("_start", 0)


def test_symbolize_and_lookup() -> None:
    info = parsed(LIBC)
    malloc = info.symbol_named("malloc")
    assert malloc is not None and malloc.type == "FUNC" and malloc.bind == "GLOBAL"
    assert info.symbolize(malloc.value + 3) == ("malloc", 3)
    assert info.symbol_named("no_such_symbol_xyz") is None
    ifunc = info.definitions("strlen")
    assert any(s.type == "GNU_IFUNC" for s in ifunc)


def test_section_headers_are_not_needed() -> None:
    """Zero e_shoff/e_shnum/e_shstrndx (what sstrip does): the loader's view
    is unchanged, only section names disappear."""
    data = bytearray(Path("/bin/true").read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)
    struct.pack_into("<HH", data, 0x3C, 0, 0)
    stripped = parse_elf(bytes(data), "sstripped")
    original = parsed("/bin/true")
    assert stripped.relocations == original.relocations
    assert stripped.dynamic == original.dynamic
    assert stripped.dynsyms == original.dynsyms
    assert stripped.build_id == original.build_id
    assert section_name_for_vaddr(stripped, stripped.entry) is None


def test_garbage_section_headers_do_not_break_the_loader_view() -> None:
    data = bytearray(Path("/bin/true").read_bytes())
    struct.pack_into("<Q", data, 0x28, len(data) + 0x1000)  # e_shoff past EOF
    info = parse_elf(bytes(data))
    assert info.relocations == parsed("/bin/true").relocations
    assert info.section_name_for_vaddr(info.entry) is None


# -- errors ------------------------------------------------------------------


def test_not_elf() -> None:
    with pytest.raises(DecodeError, match="not an ELF"):
        parse_elf(b"#!/bin/sh\necho hi\n", "script")
    with pytest.raises(DecodeError, match="not an ELF"):
        parse_elf(b"")


def test_truncated_header() -> None:
    data = Path("/bin/true").read_bytes()
    with pytest.raises(DecodeError, match="truncated ELF header"):
        parse_elf(data[:40])


def test_truncated_program_headers() -> None:
    data = Path("/bin/true").read_bytes()
    with pytest.raises(DecodeError, match="truncated program headers"):
        parse_elf(data[:64 + 56 * 2])


def _minimal_elf32(machine: int = 3) -> bytes:
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    # e_type ET_EXEC, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags,
    # e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0x8048000, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, 0, 0x8048000, 0x8048000, 84, 84, 5, 0x1000)
    return header + phdr


def test_32_bit_header_parsed_and_marked() -> None:
    info = parse_elf(_minimal_elf32())
    assert info.elf_class == 32 and info.machine == "EM_386" and info.type == "ET_EXEC"
    assert [s.type for s in info.segments] == ["LOAD"] and info.segments[0].flags == "R E"
    assert info.relocations == () and info.interp is None


def test_foreign_machine_is_reported() -> None:
    data = bytearray(Path("/bin/true").read_bytes())
    struct.pack_into("<H", data, 18, 183)  # EM_AARCH64
    info = parse_elf(bytes(data))
    assert info.machine == "EM_AARCH64"
    assert len(info.relocations) == len(parsed("/bin/true").relocations)


def test_bad_dynamic_pointer_is_a_decode_error() -> None:
    data = bytearray(Path("/bin/true").read_bytes())
    info = parsed("/bin/true")
    dyn = info.segments_of_type("DYNAMIC")[0]
    # Point DT_RELA (or the first table) far outside every PT_LOAD.
    for i, entry in enumerate(info.dynamic):
        if entry.name == "DT_RELA":
            struct.pack_into("<Q", data, dyn.offset + i * 16 + 8, 0x7FFF_0000_0000)
    with pytest.raises(DecodeError, match="DT_RELA"):
        parse_elf(bytes(data), "bad")


def test_tables_decode_on_first_use_after_parse_checked_them() -> None:
    info = parse_elf(Path(LIBC).read_bytes(), LIBC)
    assert "dynsyms" not in vars(info) and "relocations" not in vars(info)
    assert info.dynsyms == parsed(LIBC).dynsyms and info.relocations == parsed(LIBC).relocations

    def damaged(path: str, tag: str, entry: int, offset: int, fmt: str, value: int) -> bytes:
        info = parsed(path)
        data = bytearray(Path(path).read_bytes())
        at = info.vaddr_to_file_offset(info.dynamic_value(tag))
        struct.pack_into(fmt, data, at + entry + offset, value)
        return bytes(data)

    # Whatever decoding would trip over later, parse_elf still refuses now.
    last_rela = (len([r for r in parsed("/bin/true").relocations if r.table == "RELA"]) - 1) * 24
    with pytest.raises(DecodeError, match="names symbol 65535"):
        parse_elf(damaged("/bin/true", "DT_RELA", last_rela, 8, "<Q", 0xFFFF << 32 | 6), "bad")
    with pytest.raises(DecodeError, match="outside DT_STRTAB"):
        parse_elf(damaged("/bin/true", "DT_SYMTAB", 24 * 3, 0, "<I", 0x7FFFFFF), "bad")
    with pytest.raises(DecodeError, match="DT_RELR starts with a bitmap"):
        parse_elf(damaged(LIBC, "DT_RELR", 0, 0, "<Q", 3), "bad")


# -- fixtures -------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO_PROGRAMS)
def test_zoo_matches_readelf(name: str) -> None:
    check_against_readelf(fixture(ZOO / name))


def test_zoo_ifunc_tls() -> None:
    info = parsed(fixture(ZOO / "ifunc-tls"))
    types = {r.type_name for r in info.relocations}
    assert "R_X86_64_IRELATIVE" in types
    assert info.tls is not None and info.tls.filesz > 0 and info.tls.memsz > info.tls.filesz
    assert info.is_pie
    # libc is where TPOFF64 lives on this system (initial-exec TLS).
    assert "R_X86_64_TPOFF64" in {r.type_name for r in parsed(LIBC).relocations}


def test_zoo_static_programs() -> None:
    static = parsed(fixture(ZOO / "hello-static"))
    assert static.type == "ET_EXEC" and static.interp is None and static.dynamic == ()
    assert static.relocations and {r.table for r in static.relocations} == {"IPLT"}
    assert {r.type_name for r in static.relocations} == {"R_X86_64_IRELATIVE"}
    spie = parsed(fixture(ZOO / "hello-static-pie"))
    assert spie.type == "ET_DYN" and spie.interp is None and spie.is_pie


def test_zoo_sframe() -> None:
    path = fixture(ZOO / "sframe")
    info = parsed(path)
    seg = next(s for s in info.segments if s.type == "GNU_SFRAME")
    assert seg.type_value == 0x6474E554
    header = info.sframe
    assert header is not None and header.magic == 0xDEE2
    assert header.abi_arch == "AMD64_ENDIAN_LITTLE"
    dump = readelf(f"--sframe=.sframe", str(path))
    assert f"Version: SFRAME_VERSION_{header.version}" in dump
    assert f"Num FDEs: {header.num_fdes}" in dump
    assert f"Num FREs: {header.num_fres}" in dump
    assert f"Flags: {' | '.join(header.flags) if header.flags else 'NONE'}" in dump
    assert header.cfa_fixed_ra_offset == -8
    raw = Path(path).read_bytes()[seg.offset:seg.offset + seg.filesz]
    assert parse_sframe_header(raw) == header


def test_zoo_lazy_and_runpath() -> None:
    lazy = parsed(fixture(ZOO / "lazy"))
    assert "DF_1_NOW" not in lazy.flags_1 and "DF_BIND_NOW" not in lazy.flags
    assert sum(r.type_name == "R_X86_64_JUMP_SLOT" for r in lazy.relocations) >= 2
    dl = parsed(fixture(ZOO / "dlmopen"))
    assert dl.runpath == "$ORIGIN"
    musl = parsed(fixture(ZOO / "hello-musl"))
    assert musl.interp == "/lib/ld-musl-x86_64.so.1"


EXECSOLIB_VARIANTS = ["glibc-O2", "glibc-O0", "glibc-relr", "musl-O2", "rdxbug"]


def _execsolib(variant: str, name: str = "libexecsolib.so") -> Path:
    return fixture(EXECSOLIB / variant / name)


@pytest.mark.parametrize("variant", EXECSOLIB_VARIANTS)
def test_execsolib_variants_match_readelf(variant: str) -> None:
    info = check_against_readelf(_execsolib(variant))
    # Entered straight from the kernel: ET_DYN, no interpreter, an entry point.
    assert info.type == "ET_DYN" and info.interp is None and info.entry != 0
    assert any(r.type_name == "R_X86_64_RELATIVE" for r in info.relocations)
    check_against_readelf(_execsolib(variant, "trampoline"))


def test_execsolib_embedded_trampoline_parses_from_a_slice() -> None:
    """The trampoline lives inside the .so at a page-aligned offset; decoding
    the slice gives the same object as decoding the standalone file."""
    data = _execsolib("glibc-O2").read_bytes()
    standalone = parsed(_execsolib("glibc-O2", "trampoline"))
    offsets = [off for off in range(0x1000, len(data), 0x1000) if data[off:off + 4] == b"\x7fELF"]
    assert offsets, "no embedded ELF image found"
    embedded = parse_elf(data[offsets[0]:], "embedded")
    assert embedded.segments == standalone.segments
    assert embedded.relocations == standalone.relocations
    assert embedded.dynamic == standalone.dynamic
    assert embedded.interp == standalone.interp == "/lib64/ld-linux-x86-64.so.2"


def test_execsolib_glibc_relr() -> None:
    info = parsed(_execsolib("glibc-relr"))
    assert info.dynamic_value("DT_RELR") is not None
    relr = [r for r in info.relocations if r.table == "RELR"]
    assert relr and all(r.type_name == "R_X86_64_RELATIVE" and r.addend is None for r in relr)
    # The RELA build of the same source has the same RELATIVE slots.
    rela = parsed(_execsolib("glibc-O2"))
    assert len(relr) == sum(r.type_name == "R_X86_64_RELATIVE" for r in rela.relocations)
