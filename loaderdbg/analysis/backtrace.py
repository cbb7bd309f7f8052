"""Unwinding the stack (gdb's `bt`): each object's .eh_frame CFI (pyelftools
reads it), frame pointers where an object has none for a pc.

``unwind`` is a function of the stop's registers, a memory reader and the
mapped objects, so a live process, a recording, the TUI, inspect --json
and a gdb server get the same frames. ``backtrace_of`` applies it to a
StateSource (loaderdbg/snapshot.py): an Inferior or a replay's state.
An object's call-frame table is parsed once per file and kept (libc's:
~0.4 s), so a session pays for it on its first unwind through libc.
"""

from __future__ import annotations

import bisect
import io
import struct
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from elftools.common.exceptions import ELFError
from elftools.dwarf.callframe import FDE, CallFrameInfo, RegisterRule
from elftools.dwarf.structs import DWARFStructs

from loaderdbg.analysis.objects import MappedObject
from loaderdbg.arch import X86_64, ArchTables
from loaderdbg.decode.elf_structs import SharedELFFile
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import MapEntry
from loaderdbg.decode.registers import decode_registers

MAX_FRAMES = 64
WORD = 8

MemoryReader = Callable[[int, int], "bytes | None"]


@dataclass(frozen=True)
class Frame:
    """One frame of a backtrace, innermost first (gdb's `bt` numbering)."""

    number: int
    pc: int
    sp: int | None         # sp in this frame (frame 0: the register; a caller: the callee's CFA)
    cfa: int | None        # the caller's sp once this frame returns
    symbol: str | None     # `name+0xoff` as symbolize spells it
    object: str | None     # the mapped object's name (MappedObject.name), None outside any
    path: str | None       # the mapping's path ([vdso] too)
    how: str               # "registers" (frame 0), "cfi" or "frame pointer": how this frame was found


class CallFrameTable:
    """An object's FDEs by link-time start address; an FDE is parsed, and
    its rows decoded, the first time a pc needs it."""

    def __init__(self, starts: list[int], load: Callable[[int], "FDE | None"]) -> None:
        self._starts = starts
        self._load = load  # index in starts -> its FDE
        self._fdes: dict[int, FDE | None] = {}
        self._decoded: dict[int, list] = {}
        self._lock = threading.Lock()  # pyelftools reads one shared stream

    def row(self, vaddr: int) -> dict | None:
        """The CFI row in force at vaddr, None if no FDE covers it."""
        index = bisect.bisect_right(self._starts, vaddr) - 1
        if index < 0:
            return None
        with self._lock:
            try:
                if index not in self._fdes:
                    self._fdes[index] = self._load(index)
                fde = self._fdes[index]
                if fde is None or not vaddr < fde.header["initial_location"] + fde.header["address_range"]:
                    return None
                rows = self._decoded.get(index)
                if rows is None:
                    rows = self._decoded[index] = fde.get_decoded().table
            except Exception:  # noqa: BLE001 — pyelftools on CFI it cannot read (gdb's
                # own .eh_frame has opcodes it does not know): unwind without it.
                self._fdes[index] = None
                return None
        found = None
        for row in rows:
            if row["pc"] > vaddr:
                break
            found = row
        return found


# DW_EH_PE encodings .eh_frame_hdr uses (LSB gABI, "Exception Frame Header").
EH_PE_UDATA4, EH_PE_SDATA4, EH_PE_DATAREL = 0x03, 0x0B, 0x30
EH_PE_SIZES = {0x00: 8, 0x02: 2, 0x03: 4, 0x04: 8, 0x0A: 2, 0x0B: 4, 0x0C: 8}


def eh_frame_search_table(header: bytes, address: int) -> list[tuple[int, int]] | None:
    """.eh_frame_hdr's sorted (initial location, FDE address) pairs, as
    link-time addresses; None for an encoding other than the datarel
    sdata4 table every linker writes (then the whole .eh_frame is read)."""
    if len(header) < 4 or header[0] != 1:
        return None
    pointer_size = EH_PE_SIZES.get(header[1] & 0x0F)
    count_encoding, table_encoding = header[2], header[3]
    if pointer_size is None or count_encoding != EH_PE_UDATA4 or table_encoding != EH_PE_DATAREL | EH_PE_SDATA4:
        return None
    at = 4 + pointer_size
    if len(header) < at + 4:
        return None
    (count,) = struct.unpack_from("<I", header, at)
    at += 4
    if len(header) < at + 8 * count:
        return None
    return [(address + start, address + fde) for start, fde in struct.iter_unpack("<ii", header[at:at + 8 * count])]


def parse_call_frame_table(image: bytes) -> CallFrameTable | None:
    """The .eh_frame table of one ELF image, None without CFI or unreadable.
    With .eh_frame_hdr's search table only the FDEs a backtrace passes
    through are parsed (python3.11 has ~10k: ~2 s for all of them)."""
    try:
        elf = SharedELFFile(io.BytesIO(image))
        eh_frame = elf.get_section_by_name(".eh_frame")
        if eh_frame is None or not elf.little_endian:
            return None
        frames = CallFrameInfo(stream=io.BytesIO(eh_frame.data()), size=eh_frame["sh_size"],
                               address=eh_frame["sh_addr"],
                               base_structs=DWARFStructs(little_endian=True, dwarf_format=32,
                                                         address_size=elf.elfclass // 8),
                               for_eh_frame=True)
        header = elf.get_section_by_name(".eh_frame_hdr")
        table = eh_frame_search_table(header.data(), header["sh_addr"]) if header is not None else None
        if table is None:
            fdes = sorted((e for e in frames.get_entries() if isinstance(e, FDE)),
                          key=lambda f: f.header["initial_location"])
            return CallFrameTable([f.header["initial_location"] for f in fdes], fdes.__getitem__)
        table.sort()
        section_start, section_size = eh_frame["sh_addr"], eh_frame["sh_size"]

        def load(index: int) -> FDE | None:
            offset = table[index][1] - section_start
            if not 0 <= offset < section_size:
                return None
            # pyelftools parses one entry (and its CIE) at an offset only
            # through this method; the public get_entries parses them all.
            entry = frames._parse_entry_at(offset)
            return entry if isinstance(entry, FDE) else None
        return CallFrameTable([start for start, _ in table], load)
    except (ELFError, ValueError, KeyError, AttributeError, TypeError, IndexError, struct.error):
        return None


_TABLES: dict[tuple, CallFrameTable | None] = {}
_TABLES_LOCK = threading.Lock()


def call_frame_table(obj: MappedObject, object_bytes: Callable[[MappedObject], bytes | None]) -> CallFrameTable | None:
    """obj's table, parsed once per (file, ELF offset) for the whole process:
    the same libc in a live run and its recording parses once."""
    key = (obj.file_key, obj.path, obj.elf_offset)
    with _TABLES_LOCK:
        if key in _TABLES:
            return _TABLES[key]
    image = object_bytes(obj)
    table = parse_call_frame_table(image) if image else None
    with _TABLES_LOCK:
        _TABLES[key] = table
    return table


def _read_word(read_memory: MemoryReader, address: int) -> int | None:
    data = read_memory(address, WORD)
    if data is None or len(data) < WORD:
        return None
    return int.from_bytes(data, "little")


def unwind(registers: Mapping[str, int], read_memory: MemoryReader, maps: Sequence[MapEntry],
           objects: Sequence[MappedObject], object_bytes: Callable[[MappedObject], bytes | None],
           symbolize: Callable[[int], str | None], limit: int = MAX_FRAMES,
           arch: ArchTables = X86_64) -> tuple[Frame, ...]:
    """Frames from the stop's registers outwards, innermost first; the
    registers dicts are keyed by arch's register names."""
    known = {name: registers[name] for name in (*arch.dwarf_registers.values(), arch.pc_register)
             if name in registers}
    pc = known.get(arch.pc_register)
    if pc is None:
        return ()
    frames: list[Frame] = []
    seen: set[tuple[int, int | None]] = set()
    found_by = "registers"
    for number in range(max(limit, 0)):
        obj = next((o for o in objects if o.contains(pc)), None)
        mapping = next((m for m in maps if m.start <= pc < m.end), None)
        symbol = symbolize(pc)
        # A caller's pc is a return address: look up the call, one byte
        # before (inside the call instruction on x86 and arm64 alike).
        lookup = pc if number == 0 else pc - 1
        caller, how = None, "frame pointer"
        table = call_frame_table(obj, object_bytes) if obj is not None else None
        row = table.row(lookup - obj.base) if table is not None else None
        if row is not None:
            caller = _unwind_cfi(read_memory, row, known, arch)
            how = "cfi"
        if caller is None:
            how = "frame pointer"
            caller = _unwind_frame_pointer(read_memory, known, arch,
                                           at_entry=bool(symbol) and "+" not in symbol)
        cfa = caller.get(arch.sp_register) if caller is not None else None
        frames.append(Frame(number, pc, known.get(arch.sp_register), cfa, symbol, obj.name if obj is not None else None,
                            mapping.path if mapping is not None and mapping.path else None, found_by))
        if caller is None:
            break
        next_pc = caller.get(arch.pc_register)
        if next_pc and arch.return_address_bits:
            next_pc &= (1 << arch.return_address_bits) - 1
        if not next_pc or (next_pc, cfa) in seen or \
                not any(m.start <= next_pc < m.end and m.executable for m in maps):
            break
        seen.add((next_pc, cfa))
        known, pc, found_by = caller, next_pc, how
    return tuple(frames)


def backtrace_of(source, limit: int = MAX_FRAMES) -> tuple[Frame, ...]:
    """unwind at a StateSource's stop (an Inferior, a replay's state): its
    registers, memory, maps, objects and the object bytes its ELF cache
    holds (a recording's own copies when replayed)."""
    raw = source.registers_raw()
    if raw is None:
        return ()
    try:
        registers = decode_registers(raw, source.arch)
    except DecodeError:
        return ()
    symbols = source.symbols()
    return unwind(registers, source.read_memory, source.maps(), source.objects(),
                  source.elf_cache.object_bytes, symbols.symbolize, limit, source.arch)


def _return_address_in_register(arch: ArchTables) -> str | None:
    """The register a call leaves the return address in (arm64's x30);
    None where the call pushes it (x86: a column of no register)."""
    return arch.dwarf_registers.get(arch.return_address_register)


def _unwind_cfi(read_memory: MemoryReader, row: dict, known: dict[str, int],
                arch: ArchTables) -> dict[str, int] | None:
    pc_name, sp_name = arch.pc_register, arch.sp_register
    rule = row["cfa"]
    if rule.expr is not None or rule.reg not in arch.dwarf_registers:
        return None
    base = known.get(arch.dwarf_registers[rule.reg])
    if base is None:
        return None
    cfa = base + rule.offset
    caller = {name: value for name, value in known.items() if name in arch.callee_saved_registers}
    caller[sp_name] = cfa
    for register, saved in row.items():
        if not isinstance(register, int) or not isinstance(saved, RegisterRule):
            continue
        name = pc_name if register == arch.return_address_register else arch.dwarf_registers.get(register)
        if name is None:
            continue
        if saved.type == RegisterRule.OFFSET:
            value = _read_word(read_memory, cfa + saved.arg)
            if value is None:
                return None
            caller[name] = value
        elif saved.type == RegisterRule.UNDEFINED:
            caller.pop(name, None)
            if name == pc_name:
                return None  # the outermost frame (_start marks its return address undefined)
        elif saved.type == RegisterRule.SAME_VALUE and name in known:
            caller[name] = known[name]
    # No rule for a link register's column: the return address is still in
    # it (a leaf, or a function before it saves x30); only frame 0 knows it.
    link = _return_address_in_register(arch)
    if pc_name not in caller and link is not None and arch.return_address_register not in row \
            and link in known:
        caller[pc_name] = known[link]
    return caller if pc_name in caller else None


def _unwind_frame_pointer(read_memory: MemoryReader, known: dict[str, int], arch: ArchTables, *,
                          at_entry: bool) -> dict[str, int] | None:
    """No CFI for pc: at a function's first instruction the return address
    is at sp (x86) or still in the link register (arm64); elsewhere the
    frame pointer chains frame records: [fp] = the caller's fp, [fp + 8] =
    the return address (x86: push rbp; mov rbp, rsp)."""
    sp_name, fp_name, pc_name = arch.sp_register, arch.frame_pointer_register, arch.pc_register
    sp, fp = known.get(sp_name), known.get(fp_name)
    link = _return_address_in_register(arch)
    kept = {k: v for k, v in known.items() if k in arch.callee_saved_registers}
    if at_entry and sp is not None:
        if link is not None:
            return {**kept, pc_name: known[link], sp_name: sp} if link in known else None
        ra = _read_word(read_memory, sp)
        return None if ra is None else {**kept, pc_name: ra, sp_name: sp + WORD}
    if not fp or (sp is not None and fp < sp) or (sp is None and link is None):
        return None
    saved, ra = _read_word(read_memory, fp), _read_word(read_memory, fp + WORD)
    if ra is None or saved is None:
        return None
    caller = {**kept, fp_name: saved, pc_name: ra}
    if link is None:
        caller[sp_name] = fp + 2 * WORD  # the pushed return address and rbp sit right above the caller's sp
    elif saved and saved <= fp:
        return None  # arm64's record is anywhere in its frame: the chain must at least go up the stack
    return caller
