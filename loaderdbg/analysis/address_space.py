"""One memory map's loaded objects, symbols and relocation states, derived
once per map and shared by every front: a live process, the recorder and a
replay each hold one per version of the map, so they cannot disagree on
which object is where or how a relocation is judged.
"""

from __future__ import annotations

from typing import Sequence

from loaderdbg.analysis.objects import ElfCache, MappedObject, discover_objects, object_containing
from loaderdbg.analysis.relocations import ObjectRelocations, relocation_states
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.maps import MapEntry
from loaderdbg.decode.memory import MemoryReader


class AddressSpace:
    def __init__(self, maps: Sequence[MapEntry], elf_cache: ElfCache) -> None:
        self.maps = tuple(maps)
        self.elf_cache = elf_cache
        self._objects: tuple[MappedObject, ...] | None = None
        self._symbols: SymbolTable | None = None
        # Objects found one by one (object_at) before the whole list was
        # asked for, by address asked: the list later holds these same ones.
        self._found: dict[int, MappedObject | None] = {}

    def objects(self) -> tuple[MappedObject, ...]:
        if self._objects is None:
            objects = discover_objects(self.maps, self.elf_cache)
            known = {o.maps[0].start: o for o in self._found.values() if o is not None}
            self._objects = tuple(known.get(o.maps[0].start, o) for o in objects)
        return self._objects

    def symbols(self) -> SymbolTable:
        if self._symbols is None:
            self._symbols = SymbolTable([LoadedObject(o.name, o.base, o.info) for o in self.objects()])
        return self._symbols

    def object_at(self, addr: int) -> MappedObject | None:
        """The object mapped at addr. Before the whole list is needed, only
        the files that decide it are parsed: a run to AT_ENTRY asks where
        ld.so and the program are at a few stops, and libc's parse (~1.5 ms
        of the demo's launch + cont, issue 19) waits for the snapshot."""
        if self._objects is not None:
            return next((o for o in self._objects if o.contains(addr)), None)
        if addr not in self._found:
            known = next((o for o in self._found.values() if o is not None and o.contains(addr)), None)
            self._found[addr] = known or object_containing(self.maps, self.elf_cache, addr)
        return self._found[addr]

    def object_loaded_at(self, base: int) -> MappedObject | None:
        """The object whose ELF image starts a file mapped at ``base`` (ld.so)."""
        return next((o for o in self.objects() if o.elf_offset == 0 and o.base == base), None)

    def program_object(self, at_entry: int | None, entry_pc: int) -> MappedObject | None:
        """The program ld.so runs (the object at AT_ENTRY), else the one the
        kernel entered."""
        if at_entry is not None:
            found = self.object_at(at_entry)
            if found is not None:
                return found
        return self.object_at(entry_pc)

    def relocation_states(self, obj: MappedObject, memory: MemoryReader) -> ObjectRelocations:
        """Every relocation of ``obj`` judged against ``memory`` as the
        program sees it (a live session's int3s hidden); none when its file
        cannot be read."""
        data = self.elf_cache.object_bytes(obj)
        if data is None:
            return ObjectRelocations.of_rows(obj.path, ())
        return relocation_states(LoadedObject(obj.name, obj.base, obj.info), data, memory, self.symbols(),
                                 cache=self.elf_cache.relocations)
