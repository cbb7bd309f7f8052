"""Source lines for code addresses, from DWARF's line programs (.debug_line).

pyelftools decodes the DWARF (compressed sections included). A big object
(libc's debug file has some 1,700 compilation units) is never read whole:
.debug_aranges says which compilation unit holds an address, and only that
unit's line program is decoded, once. Objects without aranges fall back to
each unit's address ranges, found once from the units' top entries.
"""

from __future__ import annotations

import bisect
import io
import posixpath
import struct
import threading
from dataclasses import dataclass

from elftools.common.exceptions import DWARFError, ELFError
from elftools.construct import ConstructError
from elftools.dwarf.dwarfinfo import DWARFInfo
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from loaderdbg.decode.elf_structs import SharedELFFile

# What pyelftools raises on damaged DWARF: a bad debug file costs its
# source lines, nothing more.
_DWARF_ERRORS = (
    DWARFError, ELFError, ConstructError, struct.error, ValueError, TypeError, KeyError, IndexError,
    AssertionError, StopIteration, UnicodeDecodeError, OverflowError, AttributeError, RecursionError,
    EOFError, MemoryError,
)


@dataclass(frozen=True)
class SourceLine:
    """Where an instruction came from. ``file`` is as the compiler recorded
    it, joined with its include directory; a relative one is relative to
    ``comp_dir`` (itself possibly relative, e.g. glibc's "./elf")."""

    file: str
    line: int
    column: int = 0
    comp_dir: str | None = None

    @property
    def text(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class _Unit:
    """One compilation unit's line table: rows sorted by address."""

    addresses: tuple[int, ...]
    rows: tuple[tuple[int, int, int, bool, bool], ...]  # (file index, line, column, end of sequence, is_stmt)
    files: tuple[str, ...]
    comp_dir: str | None


# What a relocation section aimed at a DWARF section is called (pyelftools'
# RelocationHandler.find_relocations_for_section: ".rel"/".rela" + its name).
_DWARF_RELOCATION_PREFIXES = tuple(kind + name for kind in (".rel", ".rela")
                                   for name in (".debug", ".zdebug", ".eh_frame", ".gnu_debugaltlink"))


def dwarf_info(elffile: ELFFile) -> DWARFInfo:
    """elffile.get_dwarf_info(), relocating its DWARF sections only when a
    relocation section is aimed at one (an object file's): pyelftools
    otherwise walks every section header once per DWARF section to find
    none, which was most of opening ld.so's and libc's debug files."""
    relocated = any(isinstance(section, RelocationSection) and section.name.startswith(_DWARF_RELOCATION_PREFIXES)
                    for section in elffile.iter_sections())
    return elffile.get_dwarf_info(relocate_dwarf_sections=relocated)


class LineTable:
    """Address -> SourceLine for one ELF image (an object or its separate
    debug file). Thread-safe: sessions ask from the tracer thread and from
    the UI's prefetching alike."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._lock = threading.Lock()
        self._dwarf: DWARFInfo | None = None
        self._opened = False
        self._aranges = None
        self._units: dict[int, _Unit | None] = {}
        self._unit_ranges: tuple[list[int], list[tuple[int, int, int]]] | None = None

    @property
    def available(self) -> bool:
        """Whether the image has line programs at all."""
        with self._lock:
            return self._open() is not None

    def line_for(self, vaddr: int) -> SourceLine | None:
        """The source line of a link-time code address, or None."""
        with self._lock:
            dwarf = self._open()
            if dwarf is None:
                return None
            try:
                offset = self._unit_offset(dwarf, vaddr)
                if offset is None:
                    return None
                unit = self._unit(dwarf, offset)
            except _DWARF_ERRORS:
                return None
            return _lookup(unit, vaddr) if unit is not None else None

    # -- pyelftools, under the lock ---------------------------------------

    def _open(self) -> DWARFInfo | None:
        if not self._opened:
            self._opened = True
            try:
                elffile = SharedELFFile(io.BytesIO(self._data))
                if elffile.get_section_by_name(".debug_line") is not None and elffile.has_dwarf_info():
                    self._dwarf = dwarf_info(elffile)
                    self._aranges = self._dwarf.get_aranges()
            except _DWARF_ERRORS:
                self._dwarf = None
        return self._dwarf

    def _unit_offset(self, dwarf: DWARFInfo, vaddr: int) -> int | None:
        if self._aranges is not None and self._aranges.entries:
            offset = self._aranges.cu_offset_at_addr(vaddr)
            if offset is not None:
                return offset
        starts, ranges = self._ranges_from_units(dwarf)
        index = bisect.bisect_right(starts, vaddr) - 1
        for i in range(index, max(index - 16, -1), -1):
            low, high, offset = ranges[i]
            if low <= vaddr < high:
                return offset
        return None

    def _ranges_from_units(self, dwarf: DWARFInfo) -> tuple[list[int], list[tuple[int, int, int]]]:
        if self._unit_ranges is None:
            found = []
            try:
                for cu in dwarf.iter_CUs():
                    for low, high in _unit_address_ranges(dwarf, cu):
                        found.append((low, high, cu.cu_offset))
            except _DWARF_ERRORS:
                pass
            found.sort()
            self._unit_ranges = ([r[0] for r in found], found)
        return self._unit_ranges

    def _unit(self, dwarf: DWARFInfo, offset: int) -> _Unit | None:
        if offset not in self._units:
            cu = dwarf.get_CU_at(offset)
            program = dwarf.line_program_for_CU(cu)
            self._units[offset] = _decode_unit(cu, program) if program is not None else None
        return self._units[offset]


def _text(value) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _decode_unit(cu, program) -> _Unit:
    top = cu.get_top_DIE()
    comp_attr = top.attributes.get("DW_AT_comp_dir")
    comp_dir = _text(comp_attr.value) if comp_attr is not None else None
    version = program["version"]
    directories = [_text(d) for d in program["include_directory"]]
    files = []
    for entry in program["file_entry"]:
        name = _text(entry.name)
        index = entry.dir_index
        # DWARF 5 numbers directories from 0 (the compilation directory);
        # earlier versions use 0 for the compilation directory and 1.. for
        # include_directory.
        if version >= 5:
            directory = directories[index] if index < len(directories) else ""
        else:
            directory = directories[index - 1] if 0 < index <= len(directories) else ""
        files.append(posixpath.join(directory, name) if directory and not name.startswith("/") else name)
    if version < 5:
        files.insert(0, "")  # file numbers start at 1 before DWARF 5
    rows = []
    previous = None  # (address, file, line) of the last row kept
    for entry in program.get_entries():
        state = entry.state
        if state is None:
            continue
        # As gdb records them: rows of line 0 and a repeat of the last line
        # under a discriminator are left out.
        if not state.end_sequence and previous is not None and (
                (state.discriminator and previous[1:] == (state.file, state.line))):
            continue
        if not state.end_sequence and state.line == 0:
            continue
        previous = None if state.end_sequence else (state.address, state.file, state.line)
        rows.append((state.address, 0 if state.end_sequence else 1,
                     (state.file, state.line, state.column, state.end_sequence, state.is_stmt)))
    # A sequence that starts where another ends wins over the end marker;
    # rows at one address keep their order (the sort is stable).
    rows.sort(key=lambda r: (r[0], r[1]))
    return _Unit(tuple(r[0] for r in rows), tuple(r[2] for r in rows), tuple(files), comp_dir)


def _lookup(unit: _Unit, vaddr: int) -> SourceLine | None:
    index = bisect.bisect_right(unit.addresses, vaddr) - 1
    if index < 0:
        return None
    # gdb's choice: the last row at or before the address, but a
    # statement row at that same address over a non-statement one.
    if not unit.rows[index][4]:
        candidate = index
        while candidate > 0 and unit.addresses[candidate - 1] == unit.addresses[candidate] \
                and not unit.rows[candidate - 1][3] and not unit.rows[candidate][4]:
            candidate -= 1
        if unit.rows[candidate][4]:
            index = candidate
    file_index, line, column, end, _ = unit.rows[index]
    if end or line == 0 or not 0 <= file_index < len(unit.files) or not unit.files[file_index]:
        return None
    return SourceLine(unit.files[file_index], line, column, unit.comp_dir)


def _unit_address_ranges(dwarf: DWARFInfo, cu) -> list[tuple[int, int]]:
    top = cu.get_top_DIE()
    attrs = top.attributes
    if "DW_AT_ranges" in attrs:
        ranges = dwarf.range_lists()
        if ranges is None:
            return []
        base = attrs["DW_AT_low_pc"].value if "DW_AT_low_pc" in attrs else 0
        out = []
        for entry in ranges.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=cu):
            begin, end = getattr(entry, "begin_offset", None), getattr(entry, "end_offset", None)
            if begin is None or end is None:
                continue
            if getattr(entry, "is_absolute", False):
                out.append((begin, end))
            else:
                out.append((base + begin, base + end))
        return out
    if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
        low = attrs["DW_AT_low_pc"].value
        high = attrs["DW_AT_high_pc"]
        # DW_AT_high_pc of a constant class is a length.
        end = low + high.value if high.form.startswith("DW_FORM_data") or high.form == "DW_FORM_udata" \
            else high.value
        return [(low, end)]
    return []
