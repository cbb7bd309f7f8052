"""ELF objects as the dynamic loader sees them: bytes -> frozen dataclasses.

Everything the loader acts on is found the way ld.so finds it: the ELF header,
the program headers, and PT_DYNAMIC. Section headers are never needed, so a
stripped (sstrip'ed) file or a memfd copy with a patched ``.dynamic`` decodes
the same as the original; they are read only for names (``.symtab`` for
symbolization, section names for map annotation), and a damaged section
header table only loses those names.

pyelftools does the structure decoding (headers, Elf_Dyn, Elf_Sym, Elf_Rel[a],
RELR, hash tables, version tables, notes). We drive it from dynamic tags
ourselves rather than through ``DynamicSegment.iter_tags`` and
``get_relocation_tables`` because those (a) look up the string table per tag
and re-walk the dynamic array per symbol (0.75 s for libc's .dynsym instead of
0.05 s), (b) raise StopIteration/AssertionError on a missing size tag, and (c)
do not trim DT_RELA when it also covers DT_JMPREL, which glibc does.
"""

from __future__ import annotations

import array
import bisect
import io
import struct
import sys
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from typing import TYPE_CHECKING, AbstractSet, Iterable, Iterator, Mapping

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.construct.lib.container import Container
from elftools.elf import enums as E
from elftools.elf.descriptions import describe_p_flags
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
from elftools.elf.hash import ELFHashTable
from elftools.elf.relocation import RelocationTable, RelrRelocationTable
from elftools.elf.sections import NoteSection, SymbolTableSection
from elftools.elf.segments import InterpSegment, NoteSegment

from loaderdbg.decode.dwarf_lines import LineTable, SourceLine
from loaderdbg.decode.elf_structs import SharedELFFile, SharedStructs
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.frozen_init import dict_init

if TYPE_CHECKING:
    from loaderdbg.decode.sframe import SFrameHeader

PAGE_SIZE = 4096

# Everything pyelftools (and the construct library under it) raises on bad
# bytes. parse_elf turns these into DecodeError so no pyelftools traceback
# reaches a caller.
_PARSE_ERRORS = (
    ELFError, ConstructError, struct.error, ValueError, TypeError, KeyError,
    IndexError, AssertionError, StopIteration, UnicodeDecodeError,
    OverflowError, AttributeError, RecursionError, MemoryError,
)

# ---------------------------------------------------------------------------
# Name tables. pyelftools' enums map names to numbers; we need the reverse,
# spelled as readelf spells it, plus the values pyelftools 0.33 does not know.
# ---------------------------------------------------------------------------


def _reverse(enum: Mapping[str, int], skip: Iterable[str] = ()) -> dict[int, str]:
    out: dict[int, str] = {}
    skipped = set(skip)
    for name, value in enum.items():
        if name.startswith("_") or name in skipped or not isinstance(value, int):
            continue
        out.setdefault(value, name)
    return out


# Range markers are not types; readelf never prints them.
_RANGE_MARKERS = ("PT_LOOS", "PT_HIOS", "DT_LOOS", "DT_HIOS", "DT_LOPROC", "DT_HIPROC",
                  "DT_NUM", "DT_PROCNUM", "DT_VALRNGLO", "DT_ENCODING")

PT_GNU_SFRAME = 0x6474E554
_P_TYPE_NAMES: dict[int, str] = {
    value: name[3:] for value, name in _reverse(E.ENUM_P_TYPE_BASE, skip=_RANGE_MARKERS).items()
} | {PT_GNU_SFRAME: "GNU_SFRAME"}
_P_TYPE_VALUES: dict[str, int] = (
    dict(E.ENUM_P_TYPE_BASE) | dict(E.ENUM_P_TYPE_ARM) | dict(E.ENUM_P_TYPE_AARCH64)
    | dict(E.ENUM_P_TYPE_MIPS) | dict(E.ENUM_P_TYPE_RISCV)
)

DT_GNU_FLAGS_1 = 0x6FFFFDF4
_D_TAG_VALUES: dict[str, int] = {k: v for k, v in E.ENUM_D_TAG.items() if isinstance(v, int)}
_D_TAG_COMMON_NAMES: dict[int, str] = _reverse(
    E.ENUM_D_TAG_COMMON, skip=_RANGE_MARKERS + tuple(k for k in E.ENUM_D_TAG_COMMON if "ANDROID" in k),
) | {DT_GNU_FLAGS_1: "DT_GNU_FLAGS_1"}
# Processor-specific tags share numbers across machines: name them per machine.
_D_TAG_MACHINE_NAMES: dict[str, dict[int, str]] = {
    "EM_X86_64": {0x70000000: "DT_X86_64_PLT", 0x70000001: "DT_X86_64_PLTSZ", 0x70000003: "DT_X86_64_PLTENT"},
    "EM_AARCH64": _reverse(E.ENUM_D_TAG_AARCH64) | {0x70000003: "DT_AARCH64_PAC_PLT", 0x70000005: "DT_AARCH64_VARIANT_PCS"},
    "EM_MIPS": _reverse(E.ENUM_D_TAG_MIPS),
}

# Tags whose value is an offset into DT_STRTAB.
_STRING_TAGS = frozenset({"DT_NEEDED", "DT_SONAME", "DT_RPATH", "DT_RUNPATH", "DT_AUXILIARY",
                          "DT_FILTER", "DT_CONFIG", "DT_DEPAUDIT", "DT_AUDIT"})

# Flag words: tag -> {bit name: value}. readelf shows the names without the
# prefix in the text column ("NOW PIE"); ElfInfo keeps the full names.
_FLAG_BITS: dict[str, tuple[str, dict[str, int]]] = {
    "DT_FLAGS": ("DF_", dict(E.ENUM_DT_FLAGS)),
    "DT_FLAGS_1": ("DF_1_", dict(E.ENUM_DT_FLAGS_1) | {
        "DF_1_KMOD": 0x10000000, "DF_1_WEAKFILTER": 0x20000000, "DF_1_NOCOMMON": 0x40000000}),
    "DT_GNU_FLAGS_1": ("DF_GNU_1_", {"DF_GNU_1_UNIQUE": 0x1}),
}

# Relocation type numbers per machine, and the type RELR entries imply.
_RELOC_TYPE_NAMES: dict[str, dict[int, str]] = {
    "EM_X86_64": _reverse(E.ENUM_RELOC_TYPE_x64),
    "EM_386": _reverse(E.ENUM_RELOC_TYPE_i386),
    # pyelftools numbers the LP64 dynamic TLS types and IRELATIVE wrongly
    # (1028 as DTPREL64, 1032 as DTPMOD32); the ABI's (binutils' elf/aarch64.h):
    "EM_AARCH64": _reverse(E.ENUM_RELOC_TYPE_AARCH64) | {
        1028: "R_AARCH64_TLS_DTPMOD64", 1029: "R_AARCH64_TLS_DTPREL64", 1030: "R_AARCH64_TLS_TPREL64",
        1031: "R_AARCH64_TLSDESC", 1032: "R_AARCH64_IRELATIVE"},
    "EM_ARM": _reverse(E.ENUM_RELOC_TYPE_ARM),
}
_RELR_TYPE: dict[str, str] = {
    "EM_X86_64": "R_X86_64_RELATIVE",
    "EM_386": "R_386_RELATIVE",
    "EM_AARCH64": "R_AARCH64_RELATIVE",
    "EM_ARM": "R_ARM_RELATIVE",
}

# st_info: pyelftools calls the OS-specific values STT_LOOS / STB_LOOS; on
# Linux those are GNU_IFUNC and GNU_UNIQUE (readelf's names).
_SYM_TYPE_NAMES = {"STT_LOOS": "GNU_IFUNC"}
_SYM_BIND_NAMES = {"STB_LOOS": "GNU_UNIQUE"}

# Version indexes: 0 local, 1 global (unversioned); bit 15 = hidden (not the
# default version of a name: only found by a reference asking for it).
_VERSYM_HIDDEN = 0x8000
_VER_FLG_BASE = 0x1

# The dynamic relocation tables: (address tag, size tag, entry-size tag).
_RELOC_TABLE_TAGS = {
    "REL": ("DT_REL", "DT_RELSZ", "DT_RELENT"),
    "RELA": ("DT_RELA", "DT_RELASZ", "DT_RELAENT"),
    "RELR": ("DT_RELR", "DT_RELRSZ", "DT_RELRENT"),
    "JMPREL": ("DT_JMPREL", "DT_PLTRELSZ", None),
}
# glibc's processing order (ELF_DYNAMIC_RELOCATE): RELR, then REL/RELA, then
# the PLT relocations; ElfInfo.relocations keeps it, and the relocation
# analysis relies on it to infer progress. (musl does JMPREL, REL, RELA, RELR,
# but has no ifuncs, the only case where the order is used.)
_RELOC_TABLE_ORDER = ("RELR", "REL", "RELA", "JMPREL")


# ---------------------------------------------------------------------------
# Dataclasses
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    index: int
    type: str  # readelf's name ("LOAD", "GNU_RELRO", ...) or "0x…"
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    flags: str  # readelf style: "R E", "RW ", "R  "
    align: int
    type_value: int = 0
    paddr: int = 0

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz

    def contains_vaddr(self, vaddr: int) -> bool:
        return self.vaddr <= vaddr < self.vaddr + self.memsz

    @property
    def readable(self) -> bool:
        return "R" in self.flags

    @property
    def writable(self) -> bool:
        return "W" in self.flags

    @property
    def executable(self) -> bool:
        return "E" in self.flags


@dataclass(frozen=True)
class DynamicEntry:
    tag: int
    name: str  # "DT_NEEDED"; unknown -> "0x…"
    value: int
    text: str  # string for NEEDED/SONAME/..., flag names for FLAGS*, else hex


@dict_init
@dataclass(frozen=True)
class Relocation:
    offset: int  # link-time vaddr of the slot
    type: int
    type_name: str
    symbol: str | None
    symbol_index: int
    addend: int | None  # None when implicit (REL, RELR)
    table: str  # "RELA", "REL", "RELR", "JMPREL"; "IPLT" for a static program's .rela.iplt
    symbol_version: str | None = None  # version the reference asks for


@dataclass(frozen=True, eq=False)
class RelocationColumns:
    """ElfInfo.relocations as columns, item i of each being relocation i's
    field: what a pass over every relocation reads without making a
    Relocation each (gdb's objects have 150,000)."""

    offsets: tuple[int, ...]
    types: tuple[int, ...]
    type_names: tuple[str, ...]
    symbols: tuple[str | None, ...]
    symbol_indexes: tuple[int, ...]
    addends: tuple[int | None, ...]
    tables: tuple[str, ...]
    symbol_versions: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.offsets)

    def relocation(self, index: int) -> Relocation:
        return Relocation(self.offsets[index], self.types[index], self.type_names[index], self.symbols[index],
                          self.symbol_indexes[index], self.addends[index], self.tables[index],
                          self.symbol_versions[index])

    def relocations(self) -> tuple[Relocation, ...]:
        return tuple(map(Relocation, self.offsets, self.types, self.type_names, self.symbols,
                         self.symbol_indexes, self.addends, self.tables, self.symbol_versions))

    @classmethod
    def of(cls, relocations: Iterable[Relocation]) -> RelocationColumns:
        rows = [(r.offset, r.type, r.type_name, r.symbol, r.symbol_index, r.addend, r.table, r.symbol_version)
                for r in relocations]
        return cls(*(tuple(column) for column in zip(*rows))) if rows else cls(*((),) * 8)


@dict_init
@dataclass(frozen=True)
class DynSymbol:
    name: str
    value: int
    size: int
    type: str  # "FUNC", "OBJECT", "GNU_IFUNC", "TLS", "NOTYPE", ...
    bind: str  # "GLOBAL", "WEAK", "LOCAL", "GNU_UNIQUE"
    shndx_defined: bool
    version: str | None = None
    version_hidden: bool = False  # name@VER (not @@VER): only versioned references bind to it
    visibility: str = "DEFAULT"

    @property
    def defined(self) -> bool:
        return self.shndx_defined


@dataclass(frozen=True)
class VersionNeed:
    """One DT_VERNEED entry: a needed file and the versions asked of it."""

    file: str
    versions: tuple[str, ...]


@dataclass(frozen=True)
class VersionDefinition:
    """One DT_VERDEF entry; ``base`` (VER_FLG_BASE) names the file itself."""

    index: int
    name: str
    base: bool
    parents: tuple[str, ...]


@dataclass(frozen=True)
class VersionNames:
    needs: tuple[VersionNeed, ...]
    definitions: tuple[VersionDefinition, ...]


@dataclass(frozen=True)
class DebugLink:
    """.gnu_debuglink: the name of the object's separate debug file and the
    CRC-32 (zlib's) of that file's bytes."""

    name: str
    crc: int


@dataclass(frozen=True)
class DebugFile:
    """A separate debug file (``objcopy --only-keep-debug``) of an object:
    its .symtab names what the stripped object no longer does. Whoever found
    it checked that it belongs to the object (build-id, or the debug link's
    CRC). Its program headers describe sections it does not carry, so only
    its sections are read."""

    path: str
    data: bytes = field(repr=False, compare=False)

    @cached_property
    def _elffile(self) -> ELFFile | None:
        return _section_view(self.data)

    @cached_property
    def symbols(self) -> tuple[DynSymbol, ...]:
        return _symtab_symbols(self._elffile)

    def index_entries(self, only: AbstractSet[int] | None = None) -> tuple[int, list[tuple[int, int, int, str]]]:
        """(len(symbols), ElfInfo._address_index's entries of them), read
        without making the symbols (each ElfInfo's index reads them once:
        not kept here); with ``only``, the entries of the symbols whose
        value is one of those addresses."""
        if "symbols" in self.__dict__:
            return len(self.symbols), _index_entries(_valued(self.symbols, only), 0)
        return _symtab_index_entries(self._elffile, only)

    @cached_property
    def build_id(self) -> str | None:
        return _section_build_id(self._elffile)

    @cached_property
    def lines(self) -> LineTable:
        return LineTable(self.data)


@dataclass(frozen=True)
class ElfInfo:
    path: str
    elf_class: int  # 32 or 64; the engine only runs 64-bit targets
    machine: str  # "EM_X86_64", or "0x…" when pyelftools does not know it
    type: str  # "ET_DYN", "ET_EXEC", ...
    entry: int
    phoff: int
    phentsize: int
    phnum: int
    segments: tuple[Segment, ...]
    interp: str | None
    dynamic: tuple[DynamicEntry, ...]
    flags: tuple[str, ...]
    flags_1: tuple[str, ...]
    gnu_flags_1: tuple[str, ...]
    build_id: str | None
    needed: tuple[str, ...]
    soname: str | None
    sframe: SFrameHeader | None
    tls: Segment | None
    relro: tuple[int, int] | None  # link-time [start, end) ld.so mprotects (both ends page-rounded down)
    is_pie: bool  # an executable ET_DYN (DF_1_PIE, or interpreter without soname), not a library
    min_vaddr: int  # lowest PT_LOAD vaddr, page-rounded down: base + min_vaddr is the first mapping
    little_endian: bool = True
    rpath: str | None = None
    runpath: str | None = None
    has_gnu_property_note: bool = False  # NT_GNU_PROPERTY_TYPE_0 in a PT_NOTE (PT_GNU_PROPERTY or not)
    # Problems that do not stop the loader (a bad note, a bad .sframe): kept
    # visible rather than dropped.
    warnings: tuple[str, ...] = ()
    _data: bytes = field(default=b"", repr=False, compare=False)
    # The separate debug file whose .symtab replaces this file's (see
    # with_debug_file); None when none was found or looked for.
    debug_file: DebugFile | None = field(default=None, repr=False, compare=False)
    # .dynsym and the relocation tables, checked by parse_elf and decoded on
    # first use: a run to AT_ENTRY reads few of them (see _Tables).
    _tables: _Tables | None = field(default=None, repr=False, compare=False)
    # Facts an analysis derives from this file alone, kept with it rather
    # than in a process-wide cache keyed by id(): name -> value. A copy made
    # by with_debug_file starts empty.
    derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def with_debug_file(self, debug_file: DebugFile) -> ElfInfo:
        """This object, named by its separate debug file's symbols."""
        return replace(self, debug_file=debug_file)

    # -- dynamic symbols and relocations (decoded on first use) -------------

    @cached_property
    def dynsyms(self) -> tuple[DynSymbol, ...]:
        return self._tables.dynsyms() if self._tables is not None else ()

    @cached_property
    def relocations(self) -> tuple[Relocation, ...]:
        """In glibc's processing order (RELR, REL, RELA, JMPREL)."""
        return self._tables.relocations(self.dynsyms) if self._tables is not None else ()

    @cached_property
    def relocation_columns(self) -> RelocationColumns:
        """The same relocations as columns (no Relocation objects made)."""
        if self._tables is None:
            return RelocationColumns.of(())
        return self._tables.relocation_columns(self.dynsyms)

    # -- segments ---------------------------------------------------------

    def load_segments(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.type == "LOAD")

    def segment_for_vaddr(self, vaddr: int) -> Segment | None:
        for seg in self.load_segments():
            if seg.contains_vaddr(vaddr):
                return seg
        return None

    def segments_of_type(self, type_name: str) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.type == type_name)

    def file_offset_to_vaddr(self, off: int) -> int | None:
        for seg in self.load_segments():
            if seg.offset <= off < seg.offset + seg.filesz:
                return seg.vaddr + (off - seg.offset)
        return None

    def vaddr_to_file_offset(self, vaddr: int) -> int | None:
        for seg in self.load_segments():
            if seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                return seg.offset + (vaddr - seg.vaddr)
        return None

    @property
    def dynamic_vaddr(self) -> int | None:
        segs = self.segments_of_type("DYNAMIC")
        return segs[0].vaddr if segs else None

    def dynamic_value(self, name: str) -> int | None:
        return self._first_dynamic_values.get(name)

    @cached_property
    def _first_dynamic_values(self) -> dict[str, int]:
        """Each tag's first value (the relocation analysis asks per slot)."""
        first: dict[str, int] = {}
        for entry in self.dynamic:
            first.setdefault(entry.name, entry.value)
        return first

    # -- symbols ----------------------------------------------------------

    @cached_property
    def _dynsyms_by_name(self) -> dict[str, tuple[DynSymbol, ...]]:
        by_name: dict[str, list[DynSymbol]] = {}
        for sym in self.dynsyms:
            if sym.name:
                by_name.setdefault(sym.name, []).append(sym)
        return {k: tuple(v) for k, v in by_name.items()}

    def definitions(self, name: str) -> tuple[DynSymbol, ...]:
        """Defined dynamic symbols of this name (several when versioned)."""
        return tuple(s for s in self._dynsyms_by_name.get(name, ()) if s.shndx_defined)

    def symbol_named(self, name: str) -> DynSymbol | None:
        """The definition of ``name``: the default-version dynamic symbol,
        else any dynamic definition, else a .symtab symbol."""
        defs = self.definitions(name)
        if defs:
            return next((s for s in defs if not s.version_hidden), defs[0])
        return self._symtab_by_name.get(name)

    @cached_property
    def _symtab_by_name(self) -> dict[str, DynSymbol]:
        by_name: dict[str, DynSymbol] = {}
        for sym in self._symtab:
            if sym.name and sym.shndx_defined and sym.type not in ("SECTION", "FILE"):
                by_name.setdefault(sym.name, sym)
        return by_name

    @cached_property
    def _symtab(self) -> tuple[DynSymbol, ...]:
        """.symtab of the separate debug file, else of the file when it still
        has one (names only; the loader never reads it)."""
        if self.debug_file is not None and self.debug_file.symbols:
            return self.debug_file.symbols
        return _symtab_symbols(self._section_file)

    def _symtab_index_entries(self, only: AbstractSet[int] | None = None) -> list[tuple[int, int, int, str]]:
        """_index_entries of _symtab (with ``only``, of its symbols whose
        value is one of those addresses), without decoding it into
        DynSymbols unless it already is."""
        if "_symtab" in self.__dict__:
            return _index_entries(_valued(self._symtab, only), 0)
        if self.debug_file is not None:
            count, entries = self.debug_file.index_entries(only)
            if count:
                return entries
        return _symtab_index_entries(self._section_file, only)[1]

    @cached_property
    def debuglink(self) -> DebugLink | None:
        """The .gnu_debuglink section, when the file has one."""
        elffile = self._section_file
        if elffile is None:
            return None
        try:
            # Found by the section headers alone: pyelftools' by-name lookup
            # makes every section first, hash tables parsed and all (gdb's 59
            # objects: most of finding their debug files).
            rows = _section_headers(elffile, self._data)
            if rows is None:
                section = elffile.get_section_by_name(".gnu_debuglink")
                if section is None or section["sh_type"] == "SHT_NOBITS":
                    return None
                return parse_debuglink(section.data(), self.little_endian)
            # The last of that name, as pyelftools' name map keeps it.
            row = next((r for r in reversed(rows) if r.name == ".gnu_debuglink"), None)
            if row is None or row.type == _SHT_NOBITS:
                return None
            if row.flags & _SHF_COMPRESSED:
                return parse_debuglink(elffile.get_section(row.index).data(), self.little_endian)
            return parse_debuglink(self._data[row.offset:row.offset + row.size], self.little_endian)
        except _PARSE_ERRORS:
            return None

    @cached_property
    def _address_index(self) -> tuple[list[int], list[int], list[str]]:
        """(starts, ends, names) of the symbols with an address, sorted:
        three lists, not a tuple per symbol (libc's debug file names
        11,000, each a tuple the collector would walk)."""
        # Ordered by address, then rank (global first, then fewer leading
        # underscores, then .dynsym before .symtab), then end and name.
        entries = _index_entries(self.dynsyms, 1) + self._symtab_index_entries()
        entries.sort()
        starts = [e[0] for e in entries]
        ends = [e[2] for e in entries]
        names = [e[3] for e in entries]
        loads = self.load_segments()
        # An assembler label in code (ld.so's _start, _dl_start_user) has no
        # size: like gdb, let it cover the code up to the next symbol, in
        # its own section (crti's _init does not reach over .plt).
        for i in [i for i, (start, end) in enumerate(zip(starts, ends)) if end == start + 1]:
            start, end = starts[i], ends[i]
            segment = next((seg for seg in loads if seg.contains_vaddr(start)), None)
            if segment is None or not segment.executable:
                continue
            following = bisect.bisect_right(starts, start)
            limit = min(starts[following] if following < len(starts) else segment.end, segment.end)
            section = self.section_at(start)
            if section is not None:
                limit = min(limit, section[1])
            ends[i] = max(end, limit)
        return starts, ends, names

    def symbolize_many(self, vaddrs: Iterable[int], plt: bool = False) -> dict[int, tuple[str, int] | None]:
        """symbolize() of each address. Before the address index is made,
        the addresses where a symbol starts (a GOT's or an ifunc's targets,
        nearly all of them) are named from one pass over the symbols that
        decodes only those symbols' names: libc's index names 11,000, made
        for a dozen lookups. With ``plt``, the rest that are in a PLT
        section are named by plt_symbolize, still without the index; the
        others go to the index."""
        vaddrs = set(vaddrs)
        if "_address_index" in self.__dict__ or not vaddrs:
            return {vaddr: self.symbolize(vaddr, plt) for vaddr in vaddrs}
        # The index's answer at a symbol's start is the entry that sorts
        # last among those starting there: the same (rank, end, name) max.
        best: dict[int, tuple[int, int, int, str]] = {}
        for entry in _index_entries(_valued(self.dynsyms, vaddrs), 1) + self._symtab_index_entries(vaddrs):
            held = best.get(entry[0])
            if held is None or entry > held:
                best[entry[0]] = entry
        return {vaddr: (best[vaddr][3], 0) if vaddr in best else self.symbolize(vaddr, plt) for vaddr in vaddrs}

    def symbolize(self, vaddr: int, plt: bool = False) -> tuple[str, int] | None:
        """(symbol name, offset) for a link-time address inside a sized
        symbol (or after a code label), preferring the global,
        least-underscored alias. With ``plt``, an address in a PLT section
        is named by plt_symbolize alone (``puts@plt``, or None where gdb
        says No symbol matches: PLT0, IBT's lazy stubs), as gdb names it
        from BFD's synthetic symbols: no linker puts a symbol there (an
        aarch64 `$x` mapping symbol, which gdb ignores), and the index is
        not made for it."""
        if plt and self.machine in _PLT_ARCHES and self._in_plt(vaddr):
            return self.plt_symbolize(vaddr)
        starts, ends, names = self._address_index
        index = bisect.bisect_right(starts, vaddr) - 1
        # Symbols nest rarely; a short walk back finds an enclosing one.
        for i in range(index, max(index - 64, -1), -1):
            if starts[i] <= vaddr < ends[i]:
                return names[i], vaddr - starts[i]
        return None

    # -- source lines ---------------------------------------------------------

    def line_for(self, vaddr: int) -> SourceLine | None:
        """The source file and line of a link-time code address, from the
        separate debug file's DWARF, else the file's own (a -g build)."""
        return self._line_table.line_for(vaddr)

    @cached_property
    def _line_table(self) -> LineTable:
        if self.debug_file is not None and self.debug_file.lines.available:
            return self.debug_file.lines
        return LineTable(self._data)

    # -- sections (names only) ---------------------------------------------

    @cached_property
    def _section_file(self) -> ELFFile | None:
        return _section_view(self._data)

    @cached_property
    def _sections(self) -> tuple[tuple[int, int, str], ...]:
        rows = _image_section_headers(self._data, self.elf_class, self.little_endian) if self._data else None
        if rows is not None:
            return tuple(sorted((row.addr, row.addr + row.size, row.name) for row in rows
                                if row.flags & 0x2 and row.addr and row.size
                                and not (row.flags & 0x400 and row.type == _SHT_NOBITS)))
        elffile = self._section_file
        if elffile is None:
            return ()
        out = []
        try:
            for section in elffile.iter_sections():
                header = section.header
                flags = header["sh_flags"]
                # Only what occupies memory; .tbss overlaps the next section's
                # addresses (it lives in the TLS block, not there).
                if not flags & 0x2 or not header["sh_addr"] or not header["sh_size"]:
                    continue
                if flags & 0x400 and header["sh_type"] == "SHT_NOBITS":
                    continue
                out.append((header["sh_addr"], header["sh_addr"] + header["sh_size"], section.name))
        except _PARSE_ERRORS:
            pass
        return tuple(sorted(out))

    def section_name_for_vaddr(self, vaddr: int) -> str | None:
        found = self.section_at(vaddr)
        return None if found is None else found[2]

    def section_at(self, vaddr: int) -> tuple[int, int, str] | None:
        """(start, end, name) of the allocated section holding a link-time
        address, from the section headers when the file has them."""
        for start, end, name in self._sections:
            if start <= vaddr < end:
                return start, end, name
        return None

    def section_named(self, name: str) -> tuple[int, int, str] | None:
        """(start, end, name) of the first allocated section of that name."""
        return next((section for section in self._sections if section[2] == name), None)

    def sections_in_range(self, lo: int, hi: int) -> tuple[str, ...]:
        """Names of allocated sections overlapping [lo, hi) (link-time)."""
        return tuple(name for start, end, name in self._sections if start < hi and lo < end)

    # -- PLT entries (names only) ---------------------------------------------

    @cached_property
    def _plt_ranges(self) -> tuple[tuple[int, int, str], ...]:
        return tuple(section for section in self._sections if section[2] in PLT_SECTIONS)

    def _in_plt(self, vaddr: int) -> bool:
        return any(start <= vaddr < end for start, end, _ in self._plt_ranges)

    def plt_entry(self, vaddr: int) -> tuple[int, int, str] | None:
        """(start, size, section name) of the PLT entry holding a link-time
        address: in .plt after its header (PLT0), .plt.sec or .plt.got.
        The layout is the psABI's (every linker's): x86-64's .plt and
        .plt.sec entries are 16 bytes after a 16-byte PLT0, .plt.got's 8
        (16 with IBT: its sh_entsize says), aarch64's .plt entries 16 (24
        with BTI and PAC) after a 32-byte PLT0. None elsewhere, and for
        other machines."""
        for start, end, name in self._plt_ranges:
            if start <= vaddr < end:
                break
        else:
            return None
        if self.machine == "EM_X86_64":
            header = 16 if name == ".plt" else 0
            size = self._plt_entry_sizes.get(name, 8) if name == ".plt.got" else 16
        elif self.machine == "EM_AARCH64" and name == ".plt":
            header, size = 32, 16
            count = (self.dynamic_value("DT_PLTRELSZ") or 0) // 24  # Elf64_Rela
            if count and (end - start - header) % count == 0 and (end - start - header) // count in (16, 24):
                size = (end - start - header) // count
        else:
            return None
        if vaddr < start + header:
            return None
        entry = start + header + (vaddr - start - header) // size * size
        return (entry, size, name) if entry + size <= end else None

    @cached_property
    def _plt_entry_sizes(self) -> dict[str, int]:
        """PLT section name -> its sh_entsize when 8 or 16 (.plt.got's tells
        IBT's 16-byte entries from the 8-byte ones); read on first use."""
        rows = _image_section_headers(self._data, self.elf_class, self.little_endian) if self._data else None
        if rows is not None:
            found = {row.name: row.entsize for row in rows if row.name in PLT_SECTIONS}
        else:
            found = {}
            elffile = self._section_file
            try:
                for section in [] if elffile is None else elffile.iter_sections():
                    if section.name in PLT_SECTIONS:
                        found.setdefault(section.name, section["sh_entsize"])
            except _PARSE_ERRORS:
                pass
        return {name: size for name, size in found.items() if size in (8, 16)}

    def plt_symbolize(self, vaddr: int) -> tuple[str, int] | None:
        """(``name@plt``, offset) for a link-time address in a PLT entry, as
        BFD's synthetic symbols (objdump's labels, gdb's minimal symbols)
        name it: the entry's code, decoded with capstone, jumps through a
        GOT slot, and the relocation of that slot names it (``puts@plt``;
        an IRELATIVE one ``*ABS*+0x9f550@plt``). None outside PLT entries,
        for PLT0, and for an entry of .plt when the file has .plt.sec
        (IBT's second PLT: ``puts@plt`` is the .plt.sec entry callers call,
        and the lazy stub in .plt has no name; gdb: No symbol matches).
        Each entry is decoded when first named: a snapshot that names no PLT
        address does not pay for it, nor import capstone. A program's
        canonical PLT entry (the value of its undefined symbol: a non-PIE
        program took the function's address, and libraries' GOT slots hold
        it) is the entry that symbol's slot is jumped through by
        construction, and is named from the symbol without decoding."""
        found = self.plt_entry(vaddr)
        if found is None:
            return None
        entry, size, section = found
        names = self._plt_names
        if entry not in names:
            canonical = self._canonical_plt_entries.get(entry)
            names[entry] = plt_label(canonical) if canonical else self._plt_entry_name(entry, size, section)
        name = names[entry]
        return None if name is None else (name, vaddr - entry)

    def plt_entry_named(self, name: str) -> int | None:
        """Link-time start of the PLT entry plt_symbolize names ``name``
        (``puts@plt``): where gdb's ``break puts@plt`` sets this object's
        location (the .plt.sec entry with IBT, never its lazy stub; a
        .plt.got entry of a GLOB_DAT slot too). None when no entry is
        named so. Only an object whose JUMP_SLOT, GLOB_DAT or IRELATIVE
        relocations name it is looked at: first the entry the psABI's
        layout puts it at (checked by decoding it), else its entries in
        turn, .plt.got's first for a name no JMPREL relocation has, each
        decoded once (plt_symbolize's names), up to the one found."""
        if not name.endswith("@plt") or self.machine not in _PLT_ARCHES:
            return None
        try:
            if name not in self._plt_slot_labels:
                return None
            guesses = self._plt_entry_guesses
            for guess in guesses.get(name, ()):
                if self.plt_symbolize(guess) == (name, 0):
                    return guess
            ranges = sorted(self._plt_ranges, key=lambda found: name in guesses or found[2] != ".plt.got")
            for start, end, _section in ranges:
                vaddr = start
                while vaddr < end:
                    found = self.plt_entry(vaddr)
                    if found is None:  # PLT0
                        vaddr += 8
                        continue
                    named = self.plt_symbolize(found[0])
                    if named is not None and named[0] == name:
                        return found[0]
                    vaddr = found[0] + found[1]
        except (DecodeError, *_PARSE_ERRORS):
            return None
        return None

    @cached_property
    def _plt_entry_guesses(self) -> dict[str, list[int]]:
        """name@plt -> the entry the psABI layout gives it (BFD, gold and
        lld alike): the i-th JMPREL relocation's slot is jumped through by
        the i-th entry of .plt.sec, else of .plt. A guess, checked before
        use (python3's malloc@plt without decoding 5,000 of gdb's
        libraries' entries first)."""
        guesses: dict[str, list[int]] = {}
        section = self.section_named(".plt.sec") or self.section_named(".plt")
        if section is None:
            return guesses
        first, vaddr = None, section[0]
        while first is None and vaddr < section[1]:
            first = self.plt_entry(vaddr)
            vaddr += 8
        if first is None:
            return guesses
        columns = self.relocation_columns
        index = 0
        for symbol, addend, table in zip(columns.symbols, columns.addends, columns.tables):
            if table == "JMPREL":
                guesses.setdefault(plt_label(symbol, addend or 0), []).append(first[0] + index * first[1])
                index += 1
        return guesses

    @cached_property
    def _plt_slot_labels(self) -> frozenset[str]:
        """The names PLT entries may have here: one per slot relocation."""
        return frozenset(plt_label(*reloc) for reloc in self._plt_slot_relocations.values())

    @cached_property
    def _plt_names(self) -> dict[int, str | None]:
        """PLT entry start -> its name, filled as entries are named."""
        return {}

    @cached_property
    def _canonical_plt_entries(self) -> dict[int, str]:
        """Canonical PLT entry -> the undefined symbol whose value it is."""
        return {sym.value: sym.name for sym in self.dynsyms
                if sym.value and not sym.shndx_defined and sym.name and sym.type == "FUNC"}

    def _plt_entry_name(self, entry: int, size: int, section: str) -> str | None:
        if section == ".plt" and self.section_named(".plt.sec") is not None:
            return None
        arch_name = _PLT_ARCHES.get(self.machine)
        offset = self.vaddr_to_file_offset(entry)
        if arch_name is None or offset is None or not self._data:
            return None
        from loaderdbg.arch import get_arch
        from loaderdbg.decode.disasm import jump_slot

        slot = jump_slot(self._data[offset:offset + size], entry, get_arch(arch_name))
        reloc = None if slot is None else self._plt_slot_relocations.get(slot)
        return None if reloc is None else plt_label(*reloc)

    @cached_property
    def _plt_slot_relocations(self) -> dict[int, tuple[str | None, int]]:
        """GOT slot (link-time) -> (symbol, addend) of the first JUMP_SLOT,
        GLOB_DAT or IRELATIVE relocation of it: what a PLT entry jumping
        through the slot is named for. Empty for an object with no dynamic
        symbols but the null one (a static program, static-pie): BFD makes
        no synthetic symbols there, and gdb names no PLT entry."""
        slots: dict[int, tuple[str | None, int]] = {}
        if len(self.dynsyms) < 2:
            return slots
        columns = self.relocation_columns
        for offset, type_name, symbol, addend, table in zip(columns.offsets, columns.type_names, columns.symbols,
                                                            columns.addends, columns.tables):
            if type_name in _PLT_SLOT_TYPES and table != "IPLT" and offset not in slots:
                slots[offset] = (symbol, addend or 0)
        return slots

    @cached_property
    def version_names(self) -> VersionNames | None:
        """The names behind DT_VERNEED/DT_VERDEF (readelf -V), read on first
        use rather than in every parse; None when the tables do not read."""
        dynamic = self._tables.dynamic if self._tables is not None else None
        if dynamic is not None:
            # The parse's own view of the dynamic array: a second parse of
            # the image (pyelftools' ELFFile and all) cost ~0.7 ms an object.
            try:
                return dynamic.version_lists()
            except (DecodeError, *_PARSE_ERRORS):
                return None
        if self._tables is not None and self._data:
            return VersionNames((), ())  # parsed, without PT_DYNAMIC
        return _version_names_of(self._data, self.path)


PLT_SECTIONS = frozenset({".plt", ".plt.sec", ".plt.got"})
_PLT_ARCHES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}
_PLT_SLOT_TYPES = frozenset({"R_X86_64_JUMP_SLOT", "R_X86_64_GLOB_DAT", "R_X86_64_IRELATIVE",
                             "R_AARCH64_JUMP_SLOT", "R_AARCH64_GLOB_DAT", "R_AARCH64_IRELATIVE"})


def plt_label(symbol: str | None, addend: int = 0) -> str:
    """BFD's name for the PLT entry of a slot relocated for symbol + addend:
    ``puts@plt``; with no symbol (IRELATIVE) ``*ABS*+0x9f550@plt``."""
    return f"{symbol or '*ABS*'}{f'+{addend:#x}' if addend else ''}@plt"


_ADDRESS_TYPES = frozenset({"FUNC", "OBJECT", "GNU_IFUNC", "NOTYPE", "COMMON"})
_BIND_RANK = {"GLOBAL": 3, "GNU_UNIQUE": 2, "WEAK": 1, "LOCAL": 0}


def section_name_for_vaddr(info: ElfInfo, vaddr: int) -> str | None:
    """Section containing a link-time address, from section headers when the
    file has them (annotation only)."""
    return info.section_name_for_vaddr(vaddr)


def parse_debuglink(section: bytes, little_endian: bool = True) -> DebugLink | None:
    """.gnu_debuglink's contents: a NUL-terminated file name, padding to a
    multiple of 4, then the CRC-32 as a word in the file's byte order."""
    end = section.find(b"\0")
    if end <= 0:
        return None
    crc_at = (end + 4) & ~3
    if crc_at + 4 > len(section):
        return None
    crc = struct.unpack_from("<I" if little_endian else ">I", section, crc_at)[0]
    return DebugLink(section[:end].decode("utf-8", "surrogateescape"), crc)


_SHT_NOBITS, _SHF_COMPRESSED = 8, 0x800


@dataclass(frozen=True)
class _SectionHeader:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    addr: int = 0
    entsize: int = 0


def _image_section_headers(image: bytes, elf_class: int, little_endian: bool) -> list[_SectionHeader] | None:
    """_section_headers from the ELF header's own fields, without making a
    pyelftools ELFFile (its structs cost ~0.3 ms an object); None for what
    only pyelftools' reading settles (an extended count or name index, an
    odd entry size, a table or name index out of bounds)."""
    order = "<" if little_endian else ">"
    if elf_class == 64:
        layout, header = struct.Struct(order + "IIQQQQIIQQ"), struct.Struct(order + "40xQ10xHHH")
    else:
        layout, header = struct.Struct(order + "IIIIIIIIII"), struct.Struct(order + "32xI10xHHH")
    if len(image) < header.size:
        return None
    table, entry_size, count, names_index = header.unpack_from(image)
    if table == 0:
        return []
    if entry_size != layout.size or count == 0 or names_index >= count:
        return None
    raw = image[table:table + count * layout.size]
    if len(raw) != count * layout.size:
        return None
    rows = list(layout.iter_unpack(raw))
    names_at = rows[names_index][4]
    out = []
    for index, (name, sh_type, flags, addr, offset, size, _link, _info, _align, entsize) in enumerate(rows):
        start = names_at + name
        end = image.find(b"\0", start)
        out.append(_SectionHeader(index, image[start:end].decode("utf-8", "replace") if end > start else "",
                                  sh_type, flags, offset, size, addr, entsize))
    return out


def image_section_headers(image: bytes) -> list[_SectionHeader] | None:
    """The section header table of an ELF image (index, name, type,
    flags, offset, size, addr per section), unpacked in bulk from the ELF
    header's fields; None when it is not a plain table (see
    _image_section_headers) or the image is not ELF."""
    if len(image) < 6 or image[:4] != b"\x7fELF" or image[4] not in (1, 2) or image[5] not in (1, 2):
        return None
    return _image_section_headers(image, 64 if image[4] == 2 else 32, image[5] == 1)


def _section_headers(elffile: ELFFile, image: bytes) -> list[_SectionHeader] | None:
    """The section header table decoded in bulk (pyelftools' Elf_Shdr
    layout), names read as pyelftools reads them from the section name
    table; None when the entries are not of that size (pyelftools then)."""
    order = "<" if elffile.little_endian else ">"
    layout = struct.Struct(order + ("IIQQQQIIQQ" if elffile.elfclass == 64 else "IIIIIIIIII"))
    if elffile["e_shentsize"] != layout.size:
        return None
    count, table = elffile.num_sections(), elffile["e_shoff"]
    raw = image[table:table + count * layout.size]
    if len(raw) != count * layout.size:
        raise ELFError("section header table past the end of the file")
    rows = list(layout.iter_unpack(raw))
    names_at = rows[elffile.get_shstrndx()][4] if count else 0
    out = []
    for index, (name, sh_type, flags, _, offset, size, *_rest) in enumerate(rows):
        start = names_at + name
        end = image.find(b"\0", start)
        out.append(_SectionHeader(index, image[start:end].decode("utf-8", "replace") if end > start else "",
                                  sh_type, flags, offset, size))
    return out


def _section_view(data: bytes) -> ELFFile | None:
    """pyelftools over an image's section headers, or None when it has none
    that parse (names are optional; decoding never needs them)."""
    if not data:
        return None
    try:
        elffile = SharedELFFile(io.BytesIO(data))
        elffile.num_sections()
        return elffile
    except _PARSE_ERRORS:
        return None


def _symtab_symbols(elffile: ELFFile | None) -> tuple[DynSymbol, ...]:
    out: list[DynSymbol] = []
    symbol = DynSymbol
    try:
        for kind, part in _symtab_parts(elffile):
            if kind == "symbols":
                out += part
                continue
            rows, get_string, byte_names = part
            # Positional, in one comprehension: a debug file's .symtab names
            # 10,000 symbols (libc's).
            out += [symbol(get_string(name), value, size, byte_names[info][0], byte_names[info][1], shndx != 0,
                           None, False, byte_names[other][2])
                    for name, info, other, shndx, value, size in rows]
    except _PARSE_ERRORS:
        pass
    return tuple(out)


def _symtab_index_entries(elffile: ELFFile | None, only: AbstractSet[int] | None = None
                          ) -> tuple[int, list[tuple[int, int, int, str]]]:
    """(how many symbols _symtab_symbols decodes, ElfInfo._address_index's
    entries for those with an address), straight from the rows: no
    DynSymbol per symbol, a name read only for a symbol with an address
    (with ``only``: with one of those addresses)."""
    count = 0
    entries: list[tuple[int, int, int, str]] = []
    try:
        for kind, part in _symtab_parts(elffile):
            if kind == "symbols":
                count += len(part)
                entries += _index_entries(_valued(part, only), 0)
                continue
            rows, get_string, _ = part
            rows = list(rows)
            count += len(rows)
            if only is not None:
                rows = [row for row in rows if row[4] in only]
            ranks, addressed = _index_byte_ranks()
            entries += [(value, ((ranks[info] << 32) - len(name) + len(name.lstrip("_"))) << 1, value + (size or 1),
                         name)
                        for name_at, info, _, shndx, value, size in rows
                        if value and shndx and addressed[info] and (name := get_string(name_at))
                        and (name[0] != "$" or not is_mapping_symbol(name))]
    except _PARSE_ERRORS:
        pass
    return count, entries


def _valued(symbols: Iterable[DynSymbol], only: AbstractSet[int] | None) -> Iterable[DynSymbol]:
    """The symbols whose value is one of ``only`` (all without it)."""
    return symbols if only is None else [sym for sym in symbols if sym.value in only]


def _symtab_parts(elffile: ELFFile | None) -> Iterator[tuple[str, object]]:
    """The .symtab sections, each as ("rows", (Elf_Sym rows, name reader,
    _symbol_byte_names)), or, with an odd entry size, as ("symbols",
    DynSymbols pyelftools decoded); what precedes damage, when damaged."""
    if elffile is None:
        return
    try:
        for section in _sections_of_type(elffile, _SHT_SYMTAB):
            if not isinstance(section, SymbolTableSection) or section["sh_type"] != "SHT_SYMTAB":
                continue
            layout_size = elffile.structs.Elf_Sym.sizeof()
            if section["sh_entsize"] != layout_size or section["sh_type"] == "SHT_NOBITS":
                decoded = []
                try:
                    for sym in section.iter_symbols():
                        decoded.append(_dynsymbol(sym.entry, sym.name, None, False))
                except _PARSE_ERRORS:
                    yield "symbols", decoded
                    return
                yield "symbols", decoded
                continue
            byte_names = _symbol_byte_names(elffile.elfclass, elffile.little_endian)
            get_string = section.stringtable.get_string
            if isinstance(elffile.stream, io.BytesIO):
                get_string = _string_reader(elffile.stream.getvalue(), section.stringtable["sh_offset"])
            yield "rows", (_symbol_rows(elffile, section.data()), get_string, byte_names)
    except _PARSE_ERRORS:
        return


def _index_entries(symbols: Iterable[DynSymbol], source_rank: int) -> list[tuple[int, int, int, str]]:
    """ElfInfo._address_index's entries for the symbols with an address:
    (value, rank, end, name), the rank one int, (bind << 32) -
    underscores << 1 | source, which orders as (bind, fewer leading
    underscores, .dynsym before .symtab) does. A size is never negative:
    "or 1" is max(size, 1)."""
    bind_rank, address_types = _BIND_RANK, _ADDRESS_TYPES
    return [(sym.value, ((bind_rank.get(sym.bind, 0) << 32) - len(sym.name) + len(sym.name.lstrip("_"))) << 1
             | source_rank, sym.value + (sym.size or 1), sym.name)
            for sym in symbols
            if sym.value and sym.shndx_defined and sym.name and sym.type in address_types
            and (sym.name[0] != "$" or not is_mapping_symbol(sym.name))]


def is_mapping_symbol(name: str) -> bool:
    """An ARM, aarch64 (or RISC-V) mapping symbol: ``$x``/``$d`` (``$a``,
    ``$t`` on arm), alone or as ``$x.suffix``. It marks where code or data
    starts for disassemblers and names nothing: BFD's
    bfd_is_arm_special_symbol_name, which objdump and gdb skip when naming
    addresses (gdb: No symbol matches, or the enclosing function)."""
    return len(name) >= 2 and name[0] == "$" and name[1] in "adtx" and (len(name) == 2 or name[2] == ".")


@cache
def _index_byte_ranks() -> tuple[list[int], list[bool]]:
    """Per st_info byte: its bind's rank and whether its type has an
    address (from _symbol_byte_names, the same for every layout)."""
    byte_names = _symbol_byte_names(64, True)
    return ([_BIND_RANK.get(bind, 0) for _, bind, _ in byte_names],
            [type_name in _ADDRESS_TYPES for type_name, _, _ in byte_names])


def _string_reader(image: bytes, table: int):
    """pyelftools' StringTableSection.get_string over the image's bytes: the
    bytes from the table's offset up to a NUL ('' without one), found with
    one find instead of 64-byte stream reads (a debug file's .symtab names
    10,000 symbols)."""

    def get_string(offset: int) -> str:
        start = table + offset
        end = image.find(b"\0", start)
        return image[start:end].decode("utf-8", "replace") if end > start else ""

    return get_string


def _sections_of_type(elffile: ELFFile, sh_type: int) -> Iterator:
    """The sections of one type, in order, made alone from the headers
    decoded in bulk when the file is in memory (pyelftools' iter_sections
    makes every section, hash tables parsed and all)."""
    rows = (_section_headers(elffile, elffile.stream.getvalue())
            if isinstance(elffile.stream, io.BytesIO) else None)
    if rows is None:
        yield from elffile.iter_sections()
        return
    for row in rows:
        if row.type == sh_type:
            yield elffile.get_section(row.index)


_SHT_SYMTAB, _SHT_NOTE = 2, 7


def _section_build_id(elffile: ELFFile | None) -> str | None:
    if elffile is None:
        return None
    try:
        for section in _sections_of_type(elffile, _SHT_NOTE):
            if isinstance(section, NoteSection):
                for note in section.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                        return note["n_desc"]
    except _PARSE_ERRORS:
        return None
    return None


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


class _LoaderView(SharedStructs, ELFFile):
    """An ELFFile that, like ld.so, never looks at section headers: pyelftools'
    DynamicSegment then finds the string table through DT_STRTAB, and a bogus
    section header table cannot break decoding."""

    def num_sections(self) -> int:
        return 0


def _hex(value: int) -> str:
    return f"{value:#x}"


def _enum_value(value: int | str, table: Mapping[str, int]) -> int:
    return value if isinstance(value, int) else table[value]


def _machine_name(value: int | str) -> str:
    return value if isinstance(value, str) else _hex(value)


def _flag_names(tag_name: str, value: int) -> tuple[str, ...]:
    _, bits = _FLAG_BITS[tag_name]
    names = [name for name, bit in sorted(bits.items(), key=lambda kv: kv[1]) if value & bit]
    rest = value & ~sum(bits.values())
    if rest:
        names.append(_hex(rest))
    return tuple(names)


# Bulk decoding of fixed-size table entries: pyelftools parses one entry at a
# time through construct (~10 µs each, most of gdb's startup analysis); the
# layouts below are its ELFStructs', and the bit fields of st_info/st_other are
# named through pyelftools' own enums, once per byte value.

def _symbol_rows(elf: ELFFile, raw: bytes) -> Iterator[tuple[int, int, int, int, int, int]]:
    """(st_name, st_info, st_other, st_shndx, st_value, st_size) per Elf_Sym."""
    order = "<" if elf.little_endian else ">"
    if elf.elfclass == 64:
        layout = struct.Struct(order + "IBBHQQ")
        return layout.iter_unpack(raw[:len(raw) // layout.size * layout.size])
    layout = struct.Struct(order + "IIIBBH")
    return ((name, info, other, shndx, value, size)
            for name, value, size, info, other, shndx in
            layout.iter_unpack(raw[:len(raw) // layout.size * layout.size]))


def _gnu_hash_symbol_count(image: bytes, offset: int, elf: ELFFile) -> tuple[int, int, int]:
    """pyelftools' GNUHashTable.get_number_of_symbols over its Gnu_Hash
    layout, the buckets unpacked in bulk (construct parsed them one by one:
    thousands in a big library): (symbol count, highest bucket, symoffset).
    Raises as it does on a truncated table (struct.error) or no bucket
    (ValueError)."""
    order = "<" if elf.little_endian else ">"
    nbuckets, symoffset, bloom_size, _ = struct.unpack_from(order + "IIII", image, offset)
    bloom_word = 8 if elf.elfclass == 64 else 4
    buckets_at = offset + 16 + bloom_size * bloom_word
    if buckets_at + 4 * nbuckets > len(image):
        raise struct.error("GNU hash buckets past the end of the image")
    highest = max(struct.unpack_from(f"{order}{nbuckets}I", image, buckets_at))
    if highest < symoffset:
        return symoffset, highest, symoffset
    # Walk the highest bucket's chain to its end (lowest bit set).
    at = buckets_at + 4 * nbuckets + (highest - symoffset) * 4
    index = highest
    word = struct.Struct(order + "I")
    while not word.unpack_from(image, at)[0] & 1:
        index += 1
        at += 4
    return index + 1, highest, symoffset


def _highest_word(raw: bytes, elf: ELFFile, word: int, stride: int, index: int) -> int:
    """The largest of one word-sized field (st_name, r_info) over a table of
    entries ``stride`` words long, the field ``index`` words in: what
    parse_elf checks a table by without decoding each entry."""
    words = array.array("Q" if word == 8 else "I")
    assert words.itemsize == word
    words.frombytes(raw[:len(raw) // (stride * word) * stride * word])
    if elf.little_endian != (sys.byteorder == "little"):
        words.byteswap()
    return max(words[index::stride], default=0)


_SYMBOL_BYTE_NAMES: dict[tuple[int, bool], list[tuple[str, str, str]]] = {}


def _symbol_byte_names(elfclass: int, little_endian: bool) -> list[tuple[str, str, str]]:
    """Per byte value b: (type, bind) when st_info is b, visibility when
    st_other is b, as _dynsymbol names pyelftools' parse of them: bind the
    high nibble, type the low one, visibility st_other's low three bits,
    each through its pyelftools enum as construct's Enum decodes it (the
    last name of a value; a value without one stays a number). Made from
    the enums rather than 256 parses of an Elf_Sym (~10 ms, which every
    command paid); the same for every class and byte order."""
    names = _SYMBOL_BYTE_NAMES.get((elfclass, little_endian))
    if names is None:
        types, binds, visibilities = (_construct_decoding(enum) for enum in (
            E.ENUM_ST_INFO_TYPE, E.ENUM_ST_INFO_BIND, E.ENUM_ST_VISIBILITY))

        def spelled(value: int, by_value: dict[int, str], special: dict[str, str]) -> str:
            name = by_value.get(value)
            return _hex(value) if name is None else special.get(name, name[4:])

        names = _SYMBOL_BYTE_NAMES[(elfclass, little_endian)] = [
            (spelled(byte & 0xF, types, _SYM_TYPE_NAMES), spelled(byte >> 4, binds, _SYM_BIND_NAMES),
             spelled(byte & 0x7, visibilities, {}))
            for byte in range(256)]
    return names


def _construct_decoding(enum: Mapping[str, object]) -> dict[int, str]:
    """value -> name, as construct's Enum decodes (its reversed mapping:
    the last name given a value)."""
    return {value: name for name, value in enum.items() if name != "_default_" and isinstance(value, int)}


def _dynsymbol(entry: Container, name: str, version: str | None, hidden: bool) -> DynSymbol:
    info = entry["st_info"]
    sym_type = info["type"]
    bind = info["bind"]
    type_name = _SYM_TYPE_NAMES.get(sym_type, sym_type[4:]) if isinstance(sym_type, str) else _hex(sym_type)
    bind_name = _SYM_BIND_NAMES.get(bind, bind[4:]) if isinstance(bind, str) else _hex(bind)
    visibility = entry["st_other"]["visibility"]
    return DynSymbol(
        name=name,
        value=entry["st_value"],
        size=entry["st_size"],
        type=type_name,
        bind=bind_name,
        shndx_defined=entry["st_shndx"] != "SHN_UNDEF",
        version=version,
        version_hidden=hidden,
        visibility=visibility[4:] if isinstance(visibility, str) else _hex(visibility),
    )


class _StringTable:
    """DT_STRTAB, bounded by DT_STRSZ; also the get_string() pyelftools'
    version tables ask for."""

    def __init__(self, data: bytes, offset: int | None, size: int | None) -> None:
        self._data = data
        self._offset = offset
        self._size = size
        self._limit = 0 if offset is None else min(offset + size if size else len(data), len(data))

    @property
    def offset(self) -> int | None:
        return self._offset

    @property
    def limit(self) -> int:
        """Where the table ends in the image (DT_STRSZ, or the image's end)."""
        return self._limit

    def get_string(self, offset: int) -> str:
        if self._offset is None:
            raise DecodeError("dynamic string reference but no DT_STRTAB in a PT_LOAD")
        limit = self._limit
        start = self._offset + offset
        if offset < 0 or start >= limit:
            raise DecodeError(f"dynamic string offset {offset:#x} outside DT_STRTAB")
        end = self._data.find(b"\0", start, limit)
        if end < 0:
            raise DecodeError(f"unterminated dynamic string at {offset:#x}")
        return self._data[start:end].decode("utf-8", "replace")


class _Parser:
    """One parse of one image. Holds the pyelftools objects so every table is
    decoded once."""

    def __init__(self, data: bytes, path: str) -> None:
        self.data = data
        self.path = path
        self.warnings: list[str] = []
        self._check_header()
        self.elf = _LoaderView(io.BytesIO(data))
        self.machine = _machine_name(self.elf["e_machine"])
        self.segments = self._segments()
        self.loads = [s for s in self.segments if s.type == "LOAD"]

    # -- header / program headers ---------------------------------------

    def _check_header(self) -> None:
        data = self.data
        if len(data) < 4 or data[:4] != b"\x7fELF":
            raise DecodeError("not an ELF file (bad magic)")
        if len(data) < 6 or data[4] not in (1, 2) or data[5] not in (1, 2):
            raise DecodeError("bad ELF identification (EI_CLASS/EI_DATA)")
        header_size = 52 if data[4] == 1 else 64
        if len(data) < header_size:
            raise DecodeError(f"truncated ELF header ({len(data)} of {header_size} bytes)")

    def _segments(self) -> list[Segment]:
        elf = self.elf
        phoff, phnum, phentsize = elf["e_phoff"], elf["e_phnum"], elf["e_phentsize"]
        if phnum:
            need = elf.structs.Elf_Phdr.sizeof()
            if phentsize < need:
                raise DecodeError(f"e_phentsize {phentsize} smaller than Elf_Phdr ({need})")
            if phnum >= 0xFFFF:
                raise DecodeError("PN_XNUM program header count is not supported by Linux")
            if phoff + phnum * phentsize > len(self.data):
                raise DecodeError(
                    f"truncated program headers ({phnum} x {phentsize} at {phoff:#x}, file is {len(self.data):#x})")
        out = []
        # Elf_Phdr unpacked in bulk (pyelftools' layout): a pyelftools
        # segment per header made PT_DYNAMIC's DynamicSegment, which walks
        # every section to find its string table (~2 ms for libc).
        order = "<" if elf.little_endian else ">"
        if elf.elfclass == 64:
            layout, names = struct.Struct(order + "IIQQQQQQ"), ("p_type", "p_flags", "p_offset", "p_vaddr",
                                                                 "p_paddr", "p_filesz", "p_memsz", "p_align")
        else:
            layout, names = struct.Struct(order + "IIIIIIII"), ("p_type", "p_offset", "p_vaddr", "p_paddr",
                                                                 "p_filesz", "p_memsz", "p_flags", "p_align")
        for index in range(phnum):
            header = dict(zip(names, layout.unpack_from(self.data, phoff + index * phentsize)))
            type_value = header["p_type"]
            out.append(Segment(
                index=index,
                type=_P_TYPE_NAMES.get(type_value, _hex(type_value)),
                offset=header["p_offset"],
                vaddr=header["p_vaddr"],
                filesz=header["p_filesz"],
                memsz=header["p_memsz"],
                flags=describe_p_flags(header["p_flags"]),
                align=header["p_align"],
                type_value=type_value,
                paddr=header["p_paddr"],
            ))
        return out

    def vaddr_to_offset(self, vaddr: int, size: int = 1) -> int | None:
        for seg in self.loads:
            if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
                return seg.offset + (vaddr - seg.vaddr)
        return None

    def segment_bytes(self, seg: Segment) -> bytes:
        if seg.offset + seg.filesz > len(self.data):
            raise DecodeError(f"{seg.type} segment [{seg.offset:#x}+{seg.filesz:#x}] runs past end of file")
        return self.data[seg.offset:seg.offset + seg.filesz]

    # -- PT_INTERP, PT_NOTE, PT_GNU_SFRAME ---------------------------------

    def interp(self) -> str | None:
        for index, seg in enumerate(self.segments):
            if seg.type == "INTERP":
                raw = self.segment_bytes(seg)
                interp = self.elf.get_segment(index)
                assert isinstance(interp, InterpSegment)
                try:
                    return interp.get_interp_name()
                except UnicodeDecodeError:
                    # The kernel takes any bytes for a path; so do we.
                    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        return None

    def gnu_notes(self) -> tuple[str | None, bool]:
        """The build-id, and whether a PT_NOTE holds a GNU property note
        (NT_GNU_PROPERTY_TYPE_0: gold and older linkers write one without a
        PT_GNU_PROPERTY, and readelf -n lists it all the same)."""
        build_id = None
        property_note = False
        for index, seg in enumerate(self.segments):
            if seg.type != "NOTE":
                continue
            try:
                self.segment_bytes(seg)
                note_segment = self.elf.get_segment(index)
                assert isinstance(note_segment, NoteSegment)
                for note in note_segment.iter_notes():
                    if note["n_name"] != "GNU":
                        continue
                    if note["n_type"] == "NT_GNU_BUILD_ID" and build_id is None:
                        build_id = note["n_desc"]
                    elif note["n_type"] == "NT_GNU_PROPERTY_TYPE_0":
                        property_note = True
            except (DecodeError, *_PARSE_ERRORS) as exc:
                self.warnings.append(f"PT_NOTE[{index}]: {exc}")
        return build_id, property_note

    def sframe(self) -> SFrameHeader | None:
        for seg in self.segments:
            if seg.type == "GNU_SFRAME":
                from loaderdbg.decode.sframe import parse_sframe_header  # few files have one
                try:
                    return parse_sframe_header(self.segment_bytes(seg))
                except DecodeError as exc:
                    self.warnings.append(f"PT_GNU_SFRAME: {exc}")
        return None

    # -- PT_DYNAMIC ----------------------------------------------------------

    def dynamic_segment(self) -> Segment | None:
        """PT_DYNAMIC, checked to lie in the file (pyelftools' view of it,
        which walks every section to find a string table, is made only if
        the hash tables cannot count the symbols: _Dynamic.dyn)."""
        for seg in self.segments:
            if seg.type == "DYNAMIC":
                self.segment_bytes(seg)
                return seg
        return None

    def dynamic_tags(self, seg: Segment) -> list[tuple[int, int]]:
        """(tag, value) pairs up to and including DT_NULL, bounded by the
        segment (a missing DT_NULL ends the table at the segment's end)."""
        raw = self.segment_bytes(seg)
        entry = self.elf.structs.Elf_Dyn
        size = entry.sizeof()
        out = []
        for pos in range(0, len(raw) - size + 1, size):
            parsed = entry.parse(raw[pos:pos + size])
            tag = _enum_value(parsed["d_tag"], _D_TAG_VALUES)
            out.append((tag, parsed["d_val"]))
            if tag == 0:
                return out
        self.warnings.append("PT_DYNAMIC has no DT_NULL terminator")
        return out


def _tag_name(tag: int, machine: str) -> str:
    name = _D_TAG_MACHINE_NAMES.get(machine, {}).get(tag) or _D_TAG_COMMON_NAMES.get(tag)
    return name or _hex(tag & 0xFFFFFFFFFFFFFFFF)


# pyelftools' Elf_Verdef/Elf_Verdaux and Elf_Verneed/Elf_Vernaux: (entry
# layout, its fields, auxiliary layout, its fields) by field prefix.
_VERSION_LAYOUTS = {
    "vd": ("HHHHIII", ("vd_version", "vd_flags", "vd_ndx", "vd_cnt", "vd_hash", "vd_aux", "vd_next"),
           "II", ("vda_name", "vda_next")),
    "vn": ("HHIII", ("vn_version", "vn_cnt", "vn_file", "vn_aux", "vn_next"),
           "IHHII", ("vna_hash", "vna_flags", "vna_other", "vna_name", "vna_next")),
}


class _Dynamic:
    """The dynamic array, its string table, symbols, versions and relocations."""

    def __init__(self, parser: _Parser, seg: Segment) -> None:
        self.p = parser
        self.seg = seg
        self.tags = parser.dynamic_tags(seg)
        self.names = [_tag_name(tag, parser.machine) for tag, _ in self.tags]
        self.first: dict[str, int] = {}
        self.table_spans: dict[str, tuple[int, int]] = {}  # relocation table -> (file offset, size)
        for name, (_, value) in zip(self.names, self.tags):
            self.first.setdefault(name, value)
        strtab = self.first.get("DT_STRTAB")
        self.strings = _StringTable(
            parser.data,
            parser.vaddr_to_offset(strtab) if strtab is not None else None,
            self.first.get("DT_STRSZ"),
        )

    @cached_property
    def dyn(self) -> DynamicSegment:
        dyn = self.p.elf.get_segment(self.seg.index)
        assert isinstance(dyn, DynamicSegment)
        return dyn

    def table_offset(self, tag: str, size: int = 1) -> int | None:
        vaddr = self.first.get(tag)
        if vaddr is None:
            return None
        offset = self.p.vaddr_to_offset(vaddr, max(size, 1))
        if offset is None:
            raise DecodeError(f"{tag} {vaddr:#x} (+{size:#x}) is not inside a PT_LOAD's file bytes")
        return offset

    def entries(self) -> tuple[DynamicEntry, ...]:
        out = []
        for name, (tag, value) in zip(self.names, self.tags):
            if name in _STRING_TAGS:
                text = self.strings.get_string(value)
            elif name in _FLAG_BITS:
                prefix = _FLAG_BITS[name][0]
                text = " ".join(n.removeprefix(prefix) for n in _flag_names(name, value))
            else:
                text = _hex(value)
            out.append(DynamicEntry(tag=tag, name=name, value=value, text=text))
        return tuple(out)

    # -- symbols and versions ------------------------------------------------

    def symbol_count(self) -> int:
        if "DT_SYMTAB" not in self.first:
            return 0
        # The hash tables are the loader's way to bound .dynsym.
        gnu_hash = self.table_offset("DT_GNU_HASH")
        if gnu_hash is not None:
            count, highest_bucket, symoffset = _gnu_hash_symbol_count(self.p.data, gnu_hash, self.p.elf)
            # A table that hashes nothing (a -no-pie program exporting no
            # symbol) only counts the symbols before the hashed ones, and ld
            # writes 1 there: the relocations say how many there are.
            if highest_bucket < symoffset:
                count = max(count, self._highest_relocated_symbol() + 1)
            return count
        elf_hash = self.table_offset("DT_HASH")
        if elf_hash is not None:
            return ELFHashTable(self.p.elf, elf_hash, None, self.dyn).get_number_of_symbols()
        return self.dyn.num_symbols()

    def _highest_relocated_symbol(self) -> int:
        highest = 0
        for table_name, table in self.relocation_tables():
            if table_name != "RELR":
                for reloc in table.iter_relocations():  # type: ignore[attr-defined]
                    highest = max(highest, reloc["r_info_sym"])
        return highest

    def check(self) -> None:
        """Read and check now whatever symbols() and relocations() would
        find malformed (table bounds, the symbol count, version chains,
        string offsets, symbol indexes, RELR bitmaps), so that decoding
        them later, on first use, cannot fail: parse_elf still raises
        DecodeError for a malformed image."""
        elf = self.p.elf
        self.symbol_count_total = count = self.symbol_count()
        self.symbol_raw = b""
        self.version_names: dict[int, str] = {}
        if count:
            size = elf.structs.Elf_Sym.sizeof()
            offset = self.table_offset("DT_SYMTAB", count * size)
            raw = self.p.data[offset:offset + count * size]
            self.symbol_raw = raw[:len(raw) // size * size]
            if "DT_VERSYM" in self.first:
                self.version_names = self._version_names()
                versym = self.table_offset("DT_VERSYM", count * 2)
                # An empty DT_VERSYM reads as none; a short one names too few.
                if 0 < min(count, (len(self.p.data) - versym) // 2) < len(self.symbol_raw) // size:
                    raise DecodeError("DT_VERSYM runs past the end of the file")
            if self.symbol_raw:
                self._check_symbol_names()
        self.tables = self.relocation_tables()
        for table_name, table in self.tables:
            if table_name == "RELR":
                self._check_relr()
            else:
                self._check_symbol_indexes(table_name, table)

    def _check_relr(self) -> None:
        """pyelftools reads whole entries up to DT_RELRSZ, the first one an
        address (even), not a bitmap."""
        entry = self.first.get("DT_RELRENT", self.p.elf.structs.Elf_Relr.sizeof())
        offset = self.table_offset("DT_RELR")
        size = self.first["DT_RELRSZ"]
        if offset + -(-size // entry) * entry > len(self.p.data):
            raise DecodeError("DT_RELR runs past the end of the file")
        if self.p.data[offset if self.p.elf.little_endian else offset + entry - 1] & 1:
            raise DecodeError("DT_RELR starts with a bitmap, not an address")

    def _check_symbol_names(self) -> None:
        """Every st_name is a terminated string inside DT_STRTAB: the largest
        one is, when a NUL follows it before the table's end."""
        elf = self.p.elf
        highest = _highest_word(self.symbol_raw, elf, 4, 6 if elf.elfclass == 64 else 4, 0)
        strings = self.strings
        if strings.offset is None:
            raise DecodeError("dynamic string reference but no DT_STRTAB in a PT_LOAD")
        start, limit = strings.offset + highest, strings.limit
        if start >= limit:
            raise DecodeError(f"dynamic string offset {highest:#x} outside DT_STRTAB")
        if self.p.data.rfind(b"\0", start, limit) < 0:
            raise DecodeError(f"unterminated dynamic string at {highest:#x}")

    def _check_symbol_indexes(self, table_name: str, table) -> None:
        """Every relocation names a symbol .dynsym has."""
        symbols = len(self.symbol_raw) // self.p.elf.structs.Elf_Sym.sizeof()
        elf = self.p.elf
        if elf.elfclass == 64 and self.p.machine == "EM_MIPS":
            highest = max((r[1] for r in self._relocation_rows(table_name, table, table.is_RELA())), default=0)
        else:
            offset, size = self.table_spans[table_name]
            word, shift = (8, 32) if elf.elfclass == 64 else (4, 8)
            stride = 3 if table.is_RELA() else 2
            entries = self.p.data[offset:offset + size // (stride * word) * stride * word]
            highest = _highest_word(entries, elf, word, stride, 1) >> shift
        if highest < symbols or highest == 0:  # 0 is STN_UNDEF: no symbol
            return
        for r_offset, sym_index, _, _ in self._relocation_rows(table_name, table, table.is_RELA()):
            if sym_index and sym_index >= symbols:
                raise DecodeError(f"{table_name} relocation at {r_offset:#x} names symbol "
                                  f"{sym_index}, .dynsym has {symbols}")

    def symbols(self) -> tuple[DynSymbol, ...]:
        if not self.symbol_raw:
            return ()
        elf = self.p.elf
        versions = self._symbol_versions(self.symbol_count_total)
        byte_names = _symbol_byte_names(elf.elfclass, elf.little_endian)
        rows = _symbol_rows(elf, self.symbol_raw)
        # check() found every name terminated inside DT_STRTAB (the highest
        # one is), so they are read without get_string's checks, positionally
        # and in one comprehension: a big program's objects have 60,000.
        data, table, limit, symbol = self.p.data, self.strings.offset, self.strings.limit, DynSymbol
        find = data.find
        if not versions:
            versions = ((None, False),) * len(self.symbol_raw)
        return tuple([symbol(data[table + name:find(b"\0", table + name, limit)].decode("utf-8", "replace"),
                             value, sym_size, byte_names[info][0], byte_names[info][1], shndx != 0, version, hidden,
                             byte_names[other][2])
                      for (name, info, other, shndx, value, sym_size), (version, hidden) in zip(rows, versions)])

    def _symbol_versions(self, count: int) -> list[tuple[str | None, bool]] | None:
        """Per symbol: (version name, hidden) from DT_VERSYM + DT_VERDEF/DT_VERNEED,
        decoded by pyelftools' version tables laid over the dynamic view."""
        if "DT_VERSYM" not in self.first:
            return None
        versym_struct = self.p.elf.structs.Elf_Versym
        offset = self.table_offset("DT_VERSYM", count * versym_struct.sizeof())
        # Elf_Versym is one half-word (pyelftools' enum names only 0 and 1).
        layout = struct.Struct("<H" if self.p.elf.little_endian else ">H")
        raw = self.p.data[offset:offset + count * layout.size]
        names = self.version_names
        out = []
        for (ndx,) in layout.iter_unpack(raw):
            index = ndx & ~_VERSYM_HIDDEN
            out.append((names.get(index) if index >= 2 else None, bool(ndx & _VERSYM_HIDDEN)))
        return out

    def _version_table(self, cls: type, addr_tag: str, num_tag: str, prefix: str) -> Iterator[tuple[Container, list]]:
        if addr_tag not in self.first:
            return
        count = self.first.get(num_tag, 0)
        header = Container(sh_offset=self.table_offset(addr_tag), sh_size=0, sh_flags=0,
                           sh_addralign=0, sh_info=count, sh_type="SHT_GNU_" + addr_tag[6:].lower())
        table = cls(header, addr_tag.lower(), self.p.elf, self.strings)
        # pyelftools trusts the counts alone; a zero "next" ends a chain in
        # glibc (_dl_check_map_versions), which also keeps a bad count from
        # walking one entry forever.
        budget = len(self.p.data) // 8 + 16
        for version, aux_iter in table.iter_versions():
            aux = []
            for entry in aux_iter:
                aux.append(entry)
                budget -= 1
                if entry[prefix + "a_next"] == 0 or budget < 0:
                    break
            yield version, aux
            budget -= 1
            if version[prefix + "_next"] == 0:
                return
            if budget < 0:
                raise DecodeError(f"{addr_tag} table does not end")

    def _version_names(self) -> dict[int, str]:
        names: dict[int, str] = {}
        for verdef, aux in self._version_table(GNUVerDefSection, "DT_VERDEF", "DT_VERDEFNUM", "vd"):
            if aux and not verdef["vd_flags"] & _VER_FLG_BASE:
                names[verdef["vd_ndx"]] = aux[0].name
        for _verneed, aux in self._version_table(GNUVerNeedSection, "DT_VERNEED", "DT_VERNEEDNUM", "vn"):
            for vernaux in aux:
                names[vernaux["vna_other"]] = vernaux.name
        return names

    def version_lists(self) -> VersionNames:
        definitions = tuple(
            VersionDefinition(verdef["vd_ndx"], aux[0]["name"], bool(verdef["vd_flags"] & _VER_FLG_BASE),
                              tuple(a["name"] for a in aux[1:]))
            for verdef, aux in self._version_entries("DT_VERDEF", "DT_VERDEFNUM", "vd") if aux)
        needs = tuple(
            VersionNeed(verneed["name"], tuple(a["name"] for a in aux))
            for verneed, aux in self._version_entries("DT_VERNEED", "DT_VERNEEDNUM", "vn"))
        return VersionNames(needs, definitions)

    def _version_entries(self, addr_tag: str, num_tag: str, prefix: str) -> Iterator[tuple[dict, list[dict]]]:
        """_version_table's walk, each entry unpacked with struct rather
        than parsed by construct (a snapshot names every object's versions:
        gdb's 59 took ~20 ms). The same entries and names where pyelftools
        reads them, and an exception where it raises one (a zero count, a
        read past the end, a bad name); parse_elf's check still goes
        through pyelftools, for its messages."""
        if addr_tag not in self.first:
            return
        count = self.first.get(num_tag, 0)
        order = "<" if self.p.elf.little_endian else ">"
        main, names, aux_struct, aux_names = _VERSION_LAYOUTS[prefix]
        main, aux_struct = struct.Struct(order + main), struct.Struct(order + aux_struct)
        data, get_string = self.p.data, self.strings.get_string
        entry_offset = self.table_offset(addr_tag)
        budget = len(data) // 8 + 16
        for _ in range(count):
            version = dict(zip(names, main.unpack_from(data, entry_offset)))
            if not version[prefix + "_cnt"] > 0:
                raise ELFError(f"{addr_tag}: a version entry with no auxiliary entries")
            if prefix == "vn":
                version["name"] = get_string(version["vn_file"])
            aux = []
            aux_offset = entry_offset + version[prefix + "_aux"]
            for _ in range(version[prefix + "_cnt"]):
                entry = dict(zip(aux_names, aux_struct.unpack_from(data, aux_offset)))
                entry["name"] = get_string(entry[prefix + "a_name"])
                aux.append(entry)
                budget -= 1
                if entry[prefix + "a_next"] == 0 or budget < 0:
                    break
                aux_offset += entry[prefix + "a_next"]
            yield version, aux
            budget -= 1
            if version[prefix + "_next"] == 0:
                return
            if budget < 0:
                raise DecodeError(f"{addr_tag} table does not end")
            entry_offset += version[prefix + "_next"]

    # -- relocations -----------------------------------------------------------

    def relocation_tables(self) -> list[tuple[str, object]]:
        tables: dict[str, object] = {}
        ranges: dict[str, tuple[int, int]] = {}
        for table, (addr_tag, size_tag, ent_tag) in _RELOC_TABLE_TAGS.items():
            if addr_tag not in self.first:
                continue
            size = self.first.get(size_tag)
            if size is None:
                raise DecodeError(f"{addr_tag} without {size_tag}")
            ranges[table] = (self.first[addr_tag], size)
        # glibc (ELF_DYNAMIC_DO_RELA): if DT_RELASZ also covers the PLT
        # relocations (they end at the same place), trim them off so each
        # relocation is counted once.
        if "JMPREL" in ranges:
            jmp_start, jmp_size = ranges["JMPREL"]
            for table in ("RELA", "REL"):
                if table in ranges:
                    start, size = ranges[table]
                    if jmp_size and start + size == jmp_start + jmp_size and size >= jmp_size:
                        ranges[table] = (start, size - jmp_size)
        for table, (_, size) in ranges.items():
            if size == 0:
                continue
            addr_tag, _, ent_tag = _RELOC_TABLE_TAGS[table]
            offset = self.table_offset(addr_tag, size)
            structs = self.p.elf.structs
            if table == "RELR":
                entsize = self.first.get("DT_RELRENT", structs.Elf_Relr.sizeof())
                tables[table] = RelrRelocationTable(self.p.elf, offset, size, entsize)
                continue
            if table == "JMPREL":
                is_rela = self.first.get("DT_PLTREL") == E.ENUM_D_TAG["DT_RELA"]
            else:
                is_rela = table == "RELA"
            entry_size = (structs.Elf_Rela if is_rela else structs.Elf_Rel).sizeof()
            if ent_tag in self.first and self.first[ent_tag] != entry_size:
                raise DecodeError(f"{ent_tag} is {self.first[ent_tag]}, expected {entry_size}")
            tables[table] = RelocationTable(self.p.elf, offset, size, is_rela)
            self.table_spans[table] = (offset, size)
        return [(name, tables[name]) for name in _RELOC_TABLE_ORDER if name in tables]

    def relocation_columns(self, symbols: tuple[DynSymbol, ...]) -> RelocationColumns:
        type_names = _RELOC_TYPE_NAMES.get(self.p.machine, {})
        relr_name = _RELR_TYPE.get(self.p.machine, "RELATIVE")
        relr_type = next((v for v, n in type_names.items() if n == relr_name), 0)
        offsets: list[int] = []
        types: list[int] = []
        spelled_types: list[str] = []
        names: list[str | None] = []
        indexes: list[int] = []
        addends: list[int | None] = []
        tables: list[str] = []
        versions: list[str | None] = []
        symbol_names = symbol_versions = None
        for table_name, table in self.tables:
            if table_name == "RELR":
                # pyelftools yields one entry per address, anchors included.
                relr = [reloc["r_offset"] for reloc in table.iter_relocations()]  # type: ignore[attr-defined]
                count = len(relr)
                offsets += relr
                types += [relr_type] * count
                spelled_types += [relr_name] * count
                names += [None] * count
                indexes += [0] * count
                addends += [None] * count
                tables += ["RELR"] * count
                versions += [None] * count
                continue
            is_rela = table.is_RELA()  # type: ignore[attr-defined]
            columns = self._relocation_column_lists(table_name, is_rela)
            if columns is None:
                rows = self._relocation_rows(table_name, table, is_rela)
                if not rows:
                    continue
                # Transposed in C: a big program has 150,000 rows.
                columns = zip(*rows)
            r_offsets, sym_indexes, type_values, r_addends = columns
            if not r_offsets:
                continue
            if max(sym_indexes) >= len(symbols):
                r_offset, sym_index = next((o, i) for o, i in zip(r_offsets, sym_indexes) if i >= len(symbols))
                raise DecodeError(f"{table_name} relocation at {r_offset:#x} names symbol "
                                  f"{sym_index}, .dynsym has {len(symbols)}")
            if symbol_names is None:
                # Index 0 (STN_UNDEF, every RELATIVE) names no symbol.
                symbol_names = [None] + [sym.name for sym in symbols[1:]]
                symbol_versions = [None] + [sym.version for sym in symbols[1:]]
            spelled = {value: type_names.get(value) or _hex(value) for value in set(type_values)}
            offsets += r_offsets
            types += type_values
            spelled_types += map(spelled.__getitem__, type_values)
            names += map(symbol_names.__getitem__, sym_indexes)
            indexes += sym_indexes
            addends += r_addends
            tables += [table_name] * len(r_offsets)
            versions += map(symbol_versions.__getitem__, sym_indexes)
        return RelocationColumns(tuple(offsets), tuple(types), tuple(spelled_types), tuple(names), tuple(indexes),
                                 tuple(addends), tuple(tables), tuple(versions))

    def _relocation_column_lists(self, table_name: str, is_rela: bool) -> tuple[list, list, list, list] | None:
        """_relocation_rows as four columns (r_offset, symbol index, type,
        addend or None), each sliced out of a word view of the table in C,
        for a 64-bit little-endian object on a little-endian host (None
        otherwise: rows then). An Elf64_Rel[a] is words, r_info's low half
        the type and its high half the symbol."""
        elf = self.p.elf
        if elf.elfclass != 64 or not elf.little_endian or sys.byteorder != "little" or self.p.machine == "EM_MIPS":
            return None
        offset, size = self.table_spans[table_name]
        words = 3 if is_rela else 2
        entries = size // (8 * words)
        raw = self.p.data[offset:offset + entries * 8 * words]
        if entries == 0:
            return [], [], [], []
        quads, halves = memoryview(raw).cast("Q"), memoryview(raw).cast("I")
        addends = memoryview(raw).cast("q")[2::3].tolist() if is_rela else [None] * entries
        return (quads[0::words].tolist(), halves[3::2 * words].tolist(), halves[2::2 * words].tolist(), addends)

    def _relocation_rows(self, table_name: str, table, is_rela: bool) -> list[tuple[int, int, int, int | None]]:
        """(r_offset, symbol index, type, addend or None) of each entry."""
        elf = self.p.elf
        if elf.elfclass == 64 and self.p.machine == "EM_MIPS":
            # ELF64 MIPS splits r_info its own way: pyelftools knows how.
            return [(r["r_offset"], r["r_info_sym"], r["r_info_type"], r["r_addend"] if is_rela else None)
                    for r in table.iter_relocations()]
        offset, size = self.table_spans[table_name]
        # The layouts of pyelftools' Elf_Rel/Elf_Rela, unpacked in bulk.
        fields, shift, type_mask = ("QQq", 32, 0xFFFFFFFF) if elf.elfclass == 64 else ("IIi", 8, 0xFF)
        layout = struct.Struct(("<" if elf.little_endian else ">") + (fields if is_rela else fields[:2]))
        raw = self.p.data[offset:offset + size // layout.size * layout.size]
        if is_rela:
            return [(r_offset, info >> shift, info & type_mask, addend)
                    for r_offset, info, addend in layout.iter_unpack(raw)]
        return [(r_offset, info >> shift, info & type_mask, None) for r_offset, info in layout.iter_unpack(raw)]


def _iplt_relocations(p: _Parser) -> tuple[Relocation, ...]:
    """A static non-PIE program has no PT_DYNAMIC, yet its startup code
    (glibc's apply_irel) applies IRELATIVE relocations it finds through the
    linker-defined __rela_iplt_start/__rela_iplt_end, i.e. the .rela.iplt
    input section. Section headers are the only way to find them afterwards; they
    are reported with table "IPLT"."""
    try:
        elffile = SharedELFFile(io.BytesIO(p.data))
        # ld's scripts put .rela.iplt into an allocated .rela.plt; in a static
        # program nothing else allocated carries relocations.
        sections = [s for s in elffile.iter_sections()
                    if s["sh_type"] in ("SHT_RELA", "SHT_REL") and s["sh_flags"] & 0x2]
    except _PARSE_ERRORS as exc:
        p.warnings.append(f"section headers: {exc}")
        return ()
    type_names = _RELOC_TYPE_NAMES.get(p.machine, {})
    out = []
    for section in sections:
        is_rela = section["sh_type"] == "SHT_RELA"
        for reloc in section.iter_relocations():
            type_value = reloc["r_info_type"]
            out.append(Relocation(
                offset=reloc["r_offset"], type=type_value,
                type_name=type_names.get(type_value, _hex(type_value)),
                symbol=None, symbol_index=reloc["r_info_sym"],
                addend=reloc["r_addend"] if is_rela else None, table="IPLT"))
    return tuple(out)


class _Tables:
    """An image's .dynsym and relocations, checked by parse_elf
    (_Dynamic.check) and decoded once, on first use."""

    def __init__(self, dynamic: _Dynamic | None, static_relocations: tuple[Relocation, ...] = ()) -> None:
        self._dynamic = dynamic
        self.dynamic = dynamic  # the parse's view of PT_DYNAMIC (None: the image has none)
        self._dynsyms: tuple[DynSymbol, ...] | None = None if dynamic is not None else ()
        self._relocations: tuple[Relocation, ...] | None = None if dynamic is not None else static_relocations
        self._columns: RelocationColumns | None = None

    def dynsyms(self) -> tuple[DynSymbol, ...]:
        if self._dynsyms is None:
            assert self._dynamic is not None
            self._dynsyms = self._dynamic.symbols()
        return self._dynsyms

    def relocations(self, dynsyms: tuple[DynSymbol, ...]) -> tuple[Relocation, ...]:
        if self._relocations is None:
            self._relocations = self.relocation_columns(dynsyms).relocations()
        return self._relocations

    def relocation_columns(self, dynsyms: tuple[DynSymbol, ...]) -> RelocationColumns:
        if self._columns is None:
            if self._dynamic is None:
                self._columns = RelocationColumns.of(self._relocations or ())
            else:
                self._columns = self._dynamic.relocation_columns(dynsyms)
        return self._columns


def parse_elf(data: bytes, path: str = "") -> ElfInfo:
    """Decode an ELF image (file bytes, or an image read from memory laid out
    by file offset). Raises DecodeError for anything malformed."""
    data = bytes(data)
    label = path or "ELF image"
    try:
        return _parse(data, path)
    except DecodeError as exc:
        raise DecodeError(f"{label}: {exc}") from None
    except _PARSE_ERRORS as exc:
        raise DecodeError(f"{label}: malformed ELF ({type(exc).__name__}: {exc})") from None


def _version_names_of(data: bytes, path: str) -> VersionNames | None:
    if not data:
        return None
    try:
        p = _Parser(data, path)
        seg = p.dynamic_segment()
        if seg is None:
            return VersionNames((), ())
        return _Dynamic(p, seg).version_lists()
    except (DecodeError, *_PARSE_ERRORS):
        return None


def _parse(data: bytes, path: str) -> ElfInfo:
    p = _Parser(data, path)
    elf = p.elf
    interp = p.interp()

    dynamic: tuple[DynamicEntry, ...] = ()
    seg = p.dynamic_segment()
    if seg is not None:
        d = _Dynamic(p, seg)
        dynamic = d.entries()
        d.check()
        tables = _Tables(d)
    else:
        tables = _Tables(None, _iplt_relocations(p))

    def flags_of(name: str) -> tuple[str, ...]:
        value = next((e.value for e in dynamic if e.name == name), 0)
        return tuple(n for n in _flag_names(name, value) if n.startswith("DF")) if value else ()

    def string_of(name: str) -> str | None:
        return next((e.text for e in dynamic if e.name == name), None)

    flags_1 = flags_of("DT_FLAGS_1")
    e_type = elf["e_type"]
    type_name = e_type if isinstance(e_type, str) else _hex(e_type)
    soname = string_of("DT_SONAME")
    # DF_1_PIE is what ld (>= 2.31) marks a PIE with; older PIEs are ET_DYN
    # with an interpreter and no soname.
    is_pie = type_name == "ET_DYN" and ("DF_1_PIE" in flags_1 or (interp is not None and soname is None))

    relro_segs = [s for s in p.segments if s.type == "GNU_RELRO"]
    relro = None
    if relro_segs:
        # glibc _dl_protect_relro / musl: both ends rounded *down* to a page.
        seg = relro_segs[0]
        start = seg.vaddr & ~(PAGE_SIZE - 1)
        end = (seg.vaddr + seg.memsz) & ~(PAGE_SIZE - 1)
        relro = (start, end) if end > start else None

    tls = next((s for s in p.segments if s.type == "TLS"), None)
    min_vaddr = min((s.vaddr for s in p.loads), default=0) & ~(PAGE_SIZE - 1)

    build_id, property_note = p.gnu_notes()
    if build_id is None:
        # A note outside every PT_NOTE (Go's linker: its PT_NOTE holds only
        # .note.go.buildid) is still the file's build-id, as readelf -n,
        # gdb and debuginfod read it from .note.gnu.build-id.
        build_id = _section_build_id(_section_view(data))
    sframe = p.sframe()
    return ElfInfo(
        path=path,
        elf_class=elf.elfclass,
        machine=p.machine,
        type=type_name,
        entry=elf["e_entry"],
        phoff=elf["e_phoff"],
        phentsize=elf["e_phentsize"],
        phnum=elf["e_phnum"],
        segments=tuple(p.segments),
        interp=interp,
        dynamic=dynamic,
        flags=flags_of("DT_FLAGS"),
        flags_1=flags_1,
        gnu_flags_1=flags_of("DT_GNU_FLAGS_1"),
        build_id=build_id,
        has_gnu_property_note=property_note,
        needed=tuple(e.text for e in dynamic if e.name == "DT_NEEDED"),
        soname=soname,
        sframe=sframe,
        tls=tls,
        relro=relro,
        is_pie=is_pie,
        min_vaddr=min_vaddr,
        little_endian=elf.little_endian,
        rpath=string_of("DT_RPATH"),
        runpath=string_of("DT_RUNPATH"),
        warnings=tuple(p.warnings),
        _data=data,
        _tables=tables,
    )
