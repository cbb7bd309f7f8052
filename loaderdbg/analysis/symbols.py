"""Symbols across the loaded objects, resolved the way ld.so's default scope
resolves them: objects in load order, first matching definition wins.

Matching follows glibc's check_match (elf/dl-lookup.c) closely enough to
compute what the loader wrote into a GOT slot:
- only GLOBAL, WEAK and GNU_UNIQUE definitions with default or protected
  visibility are visible; the first one wins, weak or not (LD_DYNAMIC_WEAK
  is not the default);
- a reference that names a version (memcpy@GLIBC_2.14) binds only to a
  definition of that version in an object with version definitions;
- an unversioned reference skips hidden versions (memcpy@GLIBC_2.2.5, not
  @@), so it finds the default one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

from loaderdbg.decode.elf import PAGE_SIZE, DynSymbol, ElfInfo

_VISIBLE_BINDS = frozenset({"GLOBAL", "WEAK", "GNU_UNIQUE"})
_VISIBLE_VISIBILITY = frozenset({"DEFAULT", "PROTECTED"})


@dataclass(frozen=True)
class LoadedObject:
    path: str
    base: int  # load bias: runtime address = base + link-time vaddr
    info: ElfInfo

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] or self.path

    def runtime(self, vaddr: int) -> int:
        return (self.base + vaddr) & 0xFFFFFFFFFFFFFFFF

    def link(self, addr: int) -> int:
        return (addr - self.base) & 0xFFFFFFFFFFFFFFFF

    @property
    def versioned(self) -> bool:
        return any(s.version is not None for s in self.info.dynsyms)


def _visible(sym: DynSymbol, include_tls: bool) -> bool:
    return (sym.shndx_defined and sym.bind in _VISIBLE_BINDS and sym.visibility in _VISIBLE_VISIBILITY
            and (include_tls or sym.type != "TLS"))


def match_definition(obj: LoadedObject, name: str, version: str | None,
                     include_tls: bool = False) -> DynSymbol | None:
    """The definition of name[@version] that ld.so would take from obj."""
    defs = [s for s in obj.info.definitions(name) if _visible(s, include_tls)]
    if not defs:
        return None
    if version is not None and obj.versioned:
        return next((s for s in defs if s.version == version), None)
    return next((s for s in defs if not s.version_hidden), None)


class SymbolTable:
    """Built once per set of loaded objects (per stop, or per mmap event)."""

    def __init__(self, objects: Sequence[LoadedObject]) -> None:
        self.objects: tuple[LoadedObject, ...] = tuple(objects)
        ranges = []
        for index, obj in enumerate(self.objects):
            for seg in obj.info.load_segments():
                start = obj.runtime(seg.vaddr) & ~(PAGE_SIZE - 1)
                end = (obj.runtime(seg.vaddr + seg.memsz) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
                ranges.append((start, end, index))
        ranges.sort()
        self._starts = [r[0] for r in ranges]
        self._ranges = ranges
        self._lookups: dict[tuple, tuple[LoadedObject, DynSymbol] | None] = {}

    def lookup(self, name: str, version: str | None = None, *, include_tls: bool = False,
               skip: LoadedObject | None = None) -> tuple[LoadedObject, DynSymbol] | None:
        """(defining object, symbol) in load order. ``skip`` leaves one object
        out, as ld.so does when finding the source of a COPY relocation."""
        key = (name, version, include_tls, id(skip) if skip is not None else None)
        if key in self._lookups:
            return self._lookups[key]
        found = None
        for obj in self.objects:
            if obj is skip:
                continue
            sym = match_definition(obj, name, version, include_tls)
            if sym is not None:
                found = (obj, sym)
                break
        self._lookups[key] = found
        return found

    def resolve(self, name: str, version: str | None = None) -> int | None:
        """Runtime address of the first global/weak non-TLS definition."""
        found = self.lookup(name, version)
        if found is None:
            return None
        obj, sym = found
        return obj.runtime(sym.value)

    def locate(self, name: str) -> int | None:
        """Runtime address for a user's ``sym:NAME`` or ``b NAME``: what the
        dynamic linker would bind first, else any object's .symtab entry
        (static functions, ld.so's internals such as ``_dl_start``), as gdb
        does."""
        found = self.resolve(name)
        if found is not None:
            return found
        for obj in self.objects:
            symbol = obj.info.symbol_named(name)
            if symbol is not None and symbol.value:
                return obj.runtime(symbol.value)
        return None

    def object_at(self, addr: int) -> LoadedObject | None:
        index = bisect.bisect_right(self._starts, addr) - 1
        # Walk back over ranges that start before addr (objects interleave
        # only through page rounding).
        for i in range(index, max(index - 8, -1), -1):
            start, end, obj_index = self._ranges[i]
            if start <= addr < end:
                return self.objects[obj_index]
        return None

    def symbolize(self, addr: int) -> str | None:
        """"name+0x12", else "libc.so.6+0x1234" (offset from the object's
        first mapped page), else None outside every object."""
        obj = self.object_at(addr)
        if obj is None:
            return None
        link = obj.link(addr)
        found = obj.info.symbolize(link)
        if found is not None:
            name, offset = found
            return f"{name}+{offset:#x}" if offset else name
        return f"{obj.name}+{link - obj.info.min_vaddr:#x}"
