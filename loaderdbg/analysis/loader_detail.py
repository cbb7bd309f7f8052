"""What the loader did to each object: flags, RELRO, TLS, SFrame, GOT, ifuncs.

Everything here is derived from a mapped object's ElfInfo, the current maps
and the relocation states; nothing reads the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Iterator, Sequence

from loaderdbg.analysis.objects import MappedObject
from loaderdbg.analysis.relocations import LAZY, RelocationTable
from loaderdbg.analysis.symbols import SymbolTable
from loaderdbg.decode.elf import DynamicEntry
from loaderdbg.decode.maps import MapEntry, find_mapping

if TYPE_CHECKING:
    from loaderdbg.decode.sframe import SFrameHeader


@dataclass(frozen=True)
class RelroState:
    start: int  # runtime addresses
    end: int
    protected: bool  # already mprotect'ed read-only


@dataclass(frozen=True)
class TlsBlock:
    init_size: int  # .tdata bytes copied into every thread's block
    size: int  # the whole block (.tdata + .tbss)
    align: int


@dataclass(frozen=True)
class ObjectDetail:
    name: str
    type: str
    entry: int | None  # runtime address; None when e_entry is 0 (most libraries: no entry point)
    interp: str | None
    soname: str | None
    needed: tuple[str, ...]
    flags: tuple[str, ...]
    flags_1: tuple[str, ...]
    gnu_flags_1: tuple[str, ...]
    build_id: str | None
    relro: RelroState | None
    tls: TlsBlock | None
    sframe: SFrameHeader | None
    sframe_size: int | None
    has_eh_frame_hdr: bool
    gnu_stack: str | None  # "RW" or "RWE": is the stack executable?
    has_gnu_property: bool  # a GNU property note (PT_GNU_PROPERTY, or only in a PT_NOTE as gold writes it)
    dynamic: tuple[DynamicEntry, ...] = ()  # the file's dynamic section, as readelf -d lists it
    rpath: str | None = None
    runpath: str | None = None


@dataclass(frozen=True)
class GotSlot:
    object: str
    address: int
    type_name: str
    symbol: str | None
    current: int | None
    target: str | None  # the current value, symbolised
    state: str  # resolved | lazy | pending | unknown


@dataclass(frozen=True)
class IfuncChoice:
    object: str
    address: int
    resolver: int
    resolver_name: str | None
    chosen: int | None
    chosen_name: str | None
    state: str


def object_detail(obj: MappedObject, maps: Sequence[MapEntry]) -> ObjectDetail:
    info = obj.info
    relro = None
    if info.relro:
        start, end = obj.base + info.relro[0], obj.base + info.relro[1]
        mapping = find_mapping(maps, start)
        relro = RelroState(start, end, mapping is not None and "w" not in mapping.perms)
    tls = None
    if info.tls is not None:
        tls = TlsBlock(info.tls.filesz, info.tls.memsz, info.tls.align)
    sframe_segment = next((s for s in info.segments if s.type == "GNU_SFRAME"), None)
    stack = next((s for s in info.segments if s.type == "GNU_STACK"), None)
    sframe_size = None
    if info.sframe is not None:
        # PT_GNU_SFRAME's p_filesz can overstate the section (binutils 2.40):
        # the header's own offsets are what a reader uses.
        sframe_size = info.sframe.header_size + info.sframe.freoff + info.sframe.fre_len
    elif sframe_segment is not None:
        sframe_size = sframe_segment.filesz
    return ObjectDetail(
        name=obj.name,
        type=info.type,
        entry=obj.base + info.entry if info.entry else None,
        interp=info.interp,
        soname=info.soname,
        needed=tuple(info.needed),
        flags=tuple(info.flags),
        flags_1=tuple(info.flags_1),
        gnu_flags_1=tuple(info.gnu_flags_1),
        build_id=info.build_id,
        relro=relro,
        tls=tls,
        sframe=info.sframe,
        sframe_size=sframe_size,
        has_eh_frame_hdr=any(s.type == "GNU_EH_FRAME" for s in info.segments),
        gnu_stack=None if stack is None else ("RWE" if "E" in stack.flags or "x" in stack.flags else "RW"),
        has_gnu_property=info.has_gnu_property_note or any(s.type == "GNU_PROPERTY" for s in info.segments),
        dynamic=info.dynamic,
        rpath=info.rpath,
        runpath=info.runpath,
    )


GOT_TYPES = ("R_X86_64_JUMP_SLOT", "R_X86_64_GLOB_DAT", "R_AARCH64_JUMP_SLOT", "R_AARCH64_GLOB_DAT")
IRELATIVE_TYPES = ("R_X86_64_IRELATIVE", "R_AARCH64_IRELATIVE")


_GOT_TYPES = frozenset(GOT_TYPES)
_IRELATIVE_TYPES = frozenset(IRELATIVE_TYPES)


def _rows_of_types(states: RelocationTable, types: frozenset[str], fields: tuple[str, ...]) -> Iterator[tuple]:
    """The given fields of the relocations of the given types, in order,
    from the table's columns (no RelocationState made for the others,
    gdb's 150,000)."""
    for part in states.per_object:
        chosen = list(compress(range(len(part)), map(types.__contains__, part.column("type_name"))))
        if not chosen:
            continue
        if len(chosen) == 1:
            yield tuple(part.column(name)[chosen[0]] for name in fields)
            continue
        pick = itemgetter(*chosen)
        yield from zip(*[pick(part.column(name)) for name in fields])


_GOT_FIELDS = ("object", "address", "type_name", "symbol", "current", "state")


def got_view(states: RelocationTable, symbols: SymbolTable) -> tuple[GotSlot, ...]:
    """gdb-style `got`: each JUMP_SLOT/GLOB_DAT slot, where it points now."""
    # Picked out of every relocation (gdb's 150,000) by their type column;
    # each address they hold is named once (every library's malloc slot).
    slots = list(_rows_of_types(states, _GOT_TYPES, _GOT_FIELDS))
    # A lazy slot holds its own PLT stub: named for its symbol, as pwndbg
    # does (gdb's 15,000 slots are mostly lazy), not by the symbol index.
    stubs = {(obj, current): symbols.lazy_stub(current, obj, symbol)
             for obj, _, _, symbol, current, state in slots if state == LAZY and current and symbol}
    names = symbols.symbolize_many({slot[4] for slot in slots if slot[4] and not stubs.get((slot[0], slot[4]))})
    return tuple([GotSlot(obj, address, type_name, symbol, current,
                          (stubs.get((obj, current)) or names[current]) if current else None,
                          "resolved" if state == "applied" else state)
                  for obj, address, type_name, symbol, current, state in slots])


_IFUNC_FIELDS = ("object", "address", "addend", "current", "state")


def ifunc_choices(states: RelocationTable, symbols: SymbolTable,
                  objects: Sequence[MappedObject]) -> tuple[IfuncChoice, ...]:
    """IRELATIVE relocations: which resolver ran and what it picked."""
    bases = {o.name: o.base for o in objects}
    rows = []
    for obj, address, addend, current, state in _rows_of_types(states, _IRELATIVE_TYPES, _IFUNC_FIELDS):
        if addend is None:
            continue
        # The base of the object the slot is in: two copies of a library
        # (dlmopen namespaces) share a name, not a base.
        holder = symbols.object_at(address)
        base = holder.base if holder is not None else bases.get(obj, 0)
        rows.append((obj, address, base + addend, current if state == "applied" else None, state))
    # Named together: resolvers and their choices are symbol starts.
    names = symbols.symbolize_many({row[2] for row in rows} | {row[3] for row in rows if row[3]})
    return tuple([IfuncChoice(obj, address, resolver, names[resolver], chosen, names[chosen] if chosen else None,
                              state)
                  for obj, address, resolver, chosen, state in rows])
