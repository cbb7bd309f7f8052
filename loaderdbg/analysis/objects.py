"""Which ELF objects are mapped where, read off /proc/PID/maps like a loader.

An object starts at a file-backed mapping whose file bytes at the mapping's
offset are an ELF header; the following mappings of the same file belong to
it until the next header. That finds ordinary libraries, ld.so mapped by
hand, and ELF images embedded in another file (the exec-solib trampoline
lives inside the .so at a page-aligned offset) with one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Callable, Sequence

from loaderdbg.analysis.relocation_cache import RelocationCache
from loaderdbg.debug_files import find_debug_file
from loaderdbg.decode.elf import DebugFile, ElfInfo, parse_elf
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import MapEntry

PAGE = 4096
ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class MappedObject:
    path: str  # as /proc/PID/maps names it
    base: int  # load bias: runtime address = base + link-time vaddr
    elf_offset: int  # where the ELF image starts in the file
    file_key: tuple  # (dev, inode) identifying the file
    info: ElfInfo
    maps: tuple[MapEntry, ...]

    @property
    def name(self) -> str:
        label = self.path.rsplit("/", 1)[-1] or self.path
        return f"{label}@{self.elf_offset:#x}" if self.elf_offset else label

    def contains(self, addr: int) -> bool:
        return any(m.start <= addr < m.end for m in self.maps)

    def runtime(self, vaddr: int) -> int:
        return self.base + vaddr


@dataclass(frozen=True)
class MapAnnotation:
    entry: MapEntry
    object: str | None
    segment: str | None


DebugFileFinder = Callable[[str, ElfInfo], "DebugFile | None"]


class ElfCache:
    """Parsed ELF images keyed by (file, offset): a library is parsed once per
    session, not once per stop. File bytes are kept for relocation checks.
    Each image is named by its separate debug file when this machine has one
    (ld.so's and libc's from libc6-dbg), live or replayed alike."""

    def __init__(self, read_file: Callable[[MapEntry], bytes | None],
                 find_debug: DebugFileFinder | None = find_debug_file) -> None:
        self._read_file = read_file
        self._find_debug = find_debug
        self._files: dict[tuple, bytes | None] = {}
        self._infos: dict[tuple, ElfInfo | None] = {}
        # What the relocation analysis keeps between stops of this session.
        self.relocations = RelocationCache()

    def file_bytes(self, entry: MapEntry) -> bytes | None:
        key = (entry.dev, entry.inode, entry.path)
        if key not in self._files:
            self._files[key] = self._read_file(entry)
        return self._files[key]

    def elf_at(self, entry: MapEntry, offset: int) -> ElfInfo | None:
        key = (entry.dev, entry.inode, entry.path, offset)
        if key not in self._infos:
            data = self.file_bytes(entry)
            info = None
            if data is not None and data[offset:offset + 4] == ELF_MAGIC:
                try:
                    info = parse_elf(data[offset:] if offset else data, entry.path)
                except DecodeError:
                    info = None
                if info is not None and self._find_debug is not None:
                    debug_file = self._find_debug(entry.path, info)
                    if debug_file is not None:
                        info = info.with_debug_file(debug_file)
            self._infos[key] = info
        return self._infos[key]

    def object_bytes(self, obj: MappedObject) -> bytes | None:
        data = self.file_bytes(obj.maps[0])
        if data is None:
            return None
        return data[obj.elf_offset:] if obj.elf_offset else data


def _is_file_backed(entry: MapEntry) -> bool:
    return entry.inode != 0 and entry.path.startswith("/")


def discover_objects(maps: Sequence[MapEntry], cache: ElfCache) -> tuple[MappedObject, ...]:
    """ELF objects in address order, each with its load bias and mappings."""
    # index in maps -> _object_start's record
    starts: dict[int, list] = {}
    last_start: dict[tuple, list] = {}  # file key -> the record of its latest object
    for index, entry in enumerate(maps):
        if not _is_file_backed(entry) or (record := _object_start(entry, cache)) is None:
            continue
        key = (entry.dev, entry.inode)
        if key in last_start and _maps_segment_of(last_start[key], entry):
            continue  # the object's own segment, mapped from the page holding its ELF header
        starts[index] = last_start[key] = record
    # file key -> index of its last mapping (anonymous ones' too: unused)
    last_of_file = {(entry.dev, entry.inode): index for index, entry in enumerate(maps)}
    for index, record in starts.items():
        entry = maps[index]
        _members(maps, index, record, starts.__contains__, last_of_file[(entry.dev, entry.inode)])
    return tuple(_mapped_object(record) for record in starts.values())


def object_containing(maps: Sequence[MapEntry], cache: ElfCache, addr: int) -> MappedObject | None:
    """The object of discover_objects(maps, cache) that contains addr, the
    same one, parsing only the files that decide it: the file mapped at addr
    (or, for an anonymous bss, the object before it), not every mapped
    library. It gathers the object's mappings as discover_objects does
    (_members), asking of another file's mapping whether it starts an
    object only when that decides who owns a bss."""
    index = next((i for i, e in enumerate(maps) if e.start <= addr < e.end), None)
    if index is None:
        return None
    entry = maps[index]
    if _is_file_backed(entry):
        key = (entry.dev, entry.inode)
        first = next((i for i in range(index, -1, -1)
                      if _is_file_backed(maps[i]) and (maps[i].dev, maps[i].inode) == key
                      and _starts_object(maps, i, cache)), None)
    elif _is_anonymous(entry):
        # Only the object that started last before a bss can own it.
        first = next((i for i in range(index - 1, -1, -1)
                      if _is_file_backed(maps[i]) and _starts_object(maps, i, cache)), None)
    else:
        return None
    if first is None:
        return None
    record = _object_start(maps[first], cache)
    members = _members(maps, first, record, lambda i: _starts_object(maps, i, cache), len(maps))
    return _mapped_object(record) if entry in members else None


def _members(maps: Sequence[MapEntry], first: int, record: list, starts_object: Callable[[int], bool],
             last_of_file: int) -> list[MapEntry]:
    """The mappings of the object starting at maps[first] (record as
    _object_start made it), added to record's: its file's next mappings
    until the file starts another object, and a bss right after its last
    mapping for as long as no other object has started since.
    ``starts_object(i)``: whether the file-backed maps[i] starts an object
    (asked of another file's mapping only when a bss could be this
    object's); ``last_of_file``: no mapping of the file lies past this
    index (len(maps) when not known). Maps are sorted by address, so past
    it the first mapping that does not join this object ends it."""
    info, _, base, members, _ = record
    start = maps[first]
    key = (start.dev, start.inode)
    others: list[int] = []  # other files' mappings since: object starts or not, asked only if it matters
    last_started = True  # whether this object is still the last one to have started
    for index, entry in enumerate(islice(maps, first + 1, None), first + 1):
        if _is_file_backed(entry):
            if (entry.dev, entry.inode) != key:
                others.append(index)
            elif starts_object(index):
                break  # the file's next object: it takes the rest
            elif _within_object(info, base, entry):
                members.append(entry)
                continue
        elif _is_anonymous(entry) and members[-1].end == entry.start and _within_object(info, base, entry):
            if others and last_started:
                last_started = not any(map(starts_object, others))
                others.clear()
            if last_started:
                members.append(entry)
                continue
        if index > last_of_file:
            break  # nothing later is adjacent to this object's last mapping
    return members


def _object_start(entry: MapEntry, cache: ElfCache) -> list | None:
    """[info, elf_offset, base, maps, path] when a file-backed ``entry``
    starts an object: its file's bytes at its offset are an ELF image that
    parses (a fresh list each call, the maps holding ``entry`` alone)."""
    data = cache.file_bytes(entry)
    if data is None or data[entry.offset:entry.offset + 4] != ELF_MAGIC:
        return None
    info = cache.elf_at(entry, entry.offset)
    if info is None:
        return None
    first_load = min((s for s in info.segments if s.type == "LOAD"), key=lambda s: s.vaddr, default=None)
    link_start = (first_load.vaddr if first_load else 0) & ~(PAGE - 1)
    return [info, entry.offset, entry.start - link_start, [entry], entry.path]


def _starts_object(maps: Sequence[MapEntry], index: int, cache: ElfCache) -> bool:
    """Whether the file-backed maps[index] starts an object, as
    discover_objects decides it: an ELF header at its offset that is not
    one of the file's earlier object's own segments (_maps_segment_of)."""
    entry = maps[index]
    if _object_start(entry, cache) is None:
        return False
    key = (entry.dev, entry.inode)
    earlier = next((i for i in range(index - 1, -1, -1)
                    if _is_file_backed(maps[i]) and (maps[i].dev, maps[i].inode) == key
                    and _starts_object(maps, i, cache)), None)
    return earlier is None or not _maps_segment_of(_object_start(maps[earlier], cache), entry)


def _maps_segment_of(record: list, entry: MapEntry) -> bool:
    """Whether ``entry`` is one of the object's (record as _object_start
    made it) own PT_LOADs, at the address and file offset the loader maps it
    to. A small object whose writable segment starts in the file's first
    page (gold, lld) has that segment mapped from offset 0, ELF header and
    all: it is the same object, not a second copy loaded 0x1000 higher."""
    info, elf_offset, base, _, _ = record
    seg = _load_segment_at(info, base, entry.start)
    if seg is None:
        return False
    lo = (base + seg.vaddr) & ~(PAGE - 1)
    return entry.offset == elf_offset + (seg.offset & ~(PAGE - 1)) + (entry.start - lo)


def _mapped_object(record: list) -> MappedObject:
    info, elf_offset, base, maps, path = record
    return MappedObject(path=path, base=base, elf_offset=elf_offset, file_key=(maps[0].dev, maps[0].inode),
                        info=info, maps=tuple(maps))


def _is_anonymous(entry: MapEntry) -> bool:
    return entry.inode == 0 and not entry.path


def _within_object(info: ElfInfo, base: int, entry: MapEntry) -> bool:
    return _load_segment_at(info, base, entry.start) is not None


def _load_segment_at(info: ElfInfo, base: int, address: int):
    """The PT_LOAD whose pages (loaded at ``base``) hold ``address``, or None."""
    for seg in info.segments:
        if seg.type != "LOAD":
            continue
        lo = (base + seg.vaddr) & ~(PAGE - 1)
        hi = (base + seg.vaddr + seg.memsz + PAGE - 1) & ~(PAGE - 1)
        if lo <= address < hi:
            return seg
    return None


def annotate_maps(maps: Sequence[MapEntry], objects: Sequence[MappedObject]) -> tuple[MapAnnotation, ...]:
    """Each mapping with its object and segment (LOAD index, RELRO, sections)."""
    owner: dict[int, MappedObject] = {}
    for obj in objects:
        for entry in obj.maps:
            owner[entry.start] = obj
    out = []
    for entry in maps:
        obj = owner.get(entry.start)
        if obj is None:
            out.append(MapAnnotation(entry, None, _special_segment(entry)))
            continue
        out.append(MapAnnotation(entry, obj.name, _segment_label(obj, entry)))
    return tuple(out)


def _special_segment(entry: MapEntry) -> str | None:
    kind = entry.kind
    if kind in ("stack", "heap", "vdso", "vvar", "vsyscall"):
        return f"[{kind}]"
    if kind == "memfd":
        return f"memfd {entry.memfd_name}"
    return None


def _segment_label(obj: MappedObject, entry: MapEntry) -> str:
    vaddr = entry.start - obj.base
    parts = []
    loads = [s for s in obj.info.segments if s.type == "LOAD"]
    # Usually one; the kernel merges two adjacent segments' mappings of the
    # same file with the same rights (patchelf's added PT_LOAD right after
    # the data segment) into one: it names each.
    numbers = [f"LOAD[{number}]" for number, seg in enumerate(loads)
               if seg.vaddr & ~(PAGE - 1) < vaddr + entry.size
               and vaddr < (seg.vaddr + seg.memsz + PAGE - 1) & ~(PAGE - 1)]
    if numbers:
        parts.append("+".join(numbers))
    relro = obj.info.relro
    if relro and relro[0] <= vaddr < relro[1]:
        parts.append("RELRO")
    sections = obj.info.sections_in_range(vaddr, vaddr + entry.size) if hasattr(
        obj.info, "sections_in_range") else ()
    if sections:
        parts.append(" ".join(sections[:4]) + (" …" if len(sections) > 4 else ""))
    return " ".join(parts) if parts else "?"
