"""pyelftools' struct definitions made once per ELF layout, not once per file.

pyelftools' ELFFile builds a fresh ELFStructs for every file it opens: some
hundred construct objects describing the headers, symbols, relocations and
notes, ~0.2 ms of each parse_elf here (0.5 ms for ld.so; gdb's 59 objects,
~12 ms; issue 19). They depend only on the byte order, the class and the
header's e_type, e_machine and OS ABI, and parsing never changes them, so
files of one layout can share them. What is shared is pyelftools' schema,
not anything read from a file.
"""

from __future__ import annotations

import threading

from elftools.elf.elffile import ELFFile
from elftools.elf.structs import ELFStructs

_lock = threading.Lock()
_made: dict[tuple, dict] = {}


class _SharedStructs(ELFStructs):
    """An ELFStructs whose create_* steps take the definitions made for the
    same layout before (or make and keep them)."""

    def create_basic_structs(self) -> None:
        self._take(("basic", self.little_endian, self.elfclass), super().create_basic_structs)

    def create_advanced_structs(self, e_type=None, e_machine=None, e_ident_osabi=None) -> None:
        self._take(("advanced", self.little_endian, self.elfclass, e_type, e_machine, e_ident_osabi),
                   lambda: super(_SharedStructs, self).create_advanced_structs(e_type, e_machine, e_ident_osabi))

    def _take(self, key: tuple, make) -> None:
        with _lock:
            made = _made.get(key)
        if made is None:
            make()
            with _lock:
                made = _made.setdefault(key, dict(self.__dict__))
        self.__dict__.update(made)


class SharedStructs:
    """Mixed into an ELFFile subclass (before ELFFile): its ``structs`` are
    _SharedStructs. ELFFile.__init__ assigns a plain ELFStructs and then
    calls its create_* steps; the assignment is taken over here."""

    @property
    def structs(self) -> ELFStructs:
        return self.__dict__["structs"]

    @structs.setter
    def structs(self, value: ELFStructs) -> None:
        self.__dict__["structs"] = _SharedStructs(little_endian=value.little_endian, elfclass=value.elfclass)


class SharedELFFile(SharedStructs, ELFFile):
    """A plain ELFFile over the shared definitions: for a look at a header,
    as the launch's check of the program takes, made again each launch."""


def layouts_made() -> int:
    """How many layouts have their definitions kept."""
    with _lock:
        return len(_made)


def forget_layouts() -> None:
    """Drop the kept definitions (the next file of each layout makes them again)."""
    with _lock:
        _made.clear()
