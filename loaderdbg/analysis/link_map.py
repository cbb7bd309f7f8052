"""The dynamic linker's own list of what it loaded: r_debug and link_map,
found the way debuggers find them (the main program's DT_DEBUG, which ld.so
fills in), and what changed between two looks at it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from loaderdbg.analysis.objects import MappedObject
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.linkmap import (LinkMapEntry, RDebug, find_r_debug_via_dt_debug, read_r_debug,
                                      walk_r_debug)
from loaderdbg.decode.memory import MemoryReader

if TYPE_CHECKING:
    from loaderdbg.analysis.symbols import LoadedObject

@dataclass(frozen=True)
class LinkMapView:
    debugs: tuple[RDebug, ...]  # one per namespace
    entries: tuple[LinkMapEntry, ...]

    @property
    def r_brk(self) -> int:
        """Where ld.so calls its debugger hook (_dl_debug_state) around
        every change; 0 before ld.so set it up."""
        return self.debugs[0].r_brk if self.debugs else 0

    @property
    def consistent(self) -> bool:
        return all(d.r_state == "RT_CONSISTENT" for d in self.debugs)

    def keys(self) -> frozenset[tuple[int, str, int]]:
        return frozenset((e.namespace, e.name, e.l_addr) for e in self.entries)


NO_LINK_MAP = LinkMapView((), ())


def read_link_map(program: "MappedObject | LoadedObject | None", memory: MemoryReader) -> LinkMapView:
    """Every namespace's list, or NO_LINK_MAP while ld.so has not published
    one (before it runs, in a static program, or when memory is unreadable)."""
    if program is None:
        return NO_LINK_MAP
    dynamic = next((s for s in program.info.segments if s.type == "DYNAMIC"), None)
    if dynamic is None:
        return NO_LINK_MAP
    try:
        r_debug = find_r_debug_via_dt_debug(memory, program.base + dynamic.vaddr)
        if not r_debug:
            return NO_LINK_MAP
        debugs, entries = walk_r_debug(memory, r_debug)
    except DecodeError:
        return NO_LINK_MAP
    return LinkMapView(tuple(debugs), tuple(entries))


def link_map_changes(before: LinkMapView, after: LinkMapView) -> tuple[list[LinkMapEntry], list[LinkMapEntry]]:
    """(added, removed) entries, in list order."""
    old, new = before.keys(), after.keys()
    added = [e for e in after.entries if (e.namespace, e.name, e.l_addr) not in old]
    removed = [e for e in before.entries if (e.namespace, e.name, e.l_addr) not in new]
    return added, removed


@dataclass(frozen=True)
class LoaderProgress:
    """What the loader has published about its own progress."""

    # The program's DT_DEBUG points at an r_debug; False while it is still
    # 0 (glibc and musl fill it before relocating anything but ld.so
    # itself), None when the program has no DT_DEBUG or is unknown.
    published: bool | None
    # Every object loaded at startup is relocated: r_state is RT_CONSISTENT
    # and each of the program's DT_NEEDED objects is in the list. glibc's
    # dl_main sets RT_ADD before loading them and RT_CONSISTENT only after
    # relocating them all; musl publishes the list once, after relocating.
    startup_relocated: bool
    r_debug: RDebug | None = None


NO_PROGRESS = LoaderProgress(None, False)


def loader_progress(program: "LoadedObject | None", objects: "Sequence[LoadedObject]",
                    memory: MemoryReader, before: LoaderProgress | None = None) -> LoaderProgress:
    """``before``: an earlier answer for the same process. Startup
    relocation, once done, stays done: while r_debug reads the same, the
    list is not walked again."""
    if program is None or program.info.dynamic_value("DT_DEBUG") is None:
        return NO_PROGRESS
    dynamic = next((seg for seg in program.info.segments if seg.type == "DYNAMIC"), None)
    if dynamic is None:
        return NO_PROGRESS
    try:
        address = find_r_debug_via_dt_debug(memory, program.base + dynamic.vaddr)
        if not address:
            return LoaderProgress(False, False)
        head = read_r_debug(memory, address)
        if head is None:
            return LoaderProgress(True, False)
        if before is not None and before.startup_relocated and before.r_debug == head:
            return before
        debugs, entries = walk_r_debug(memory, address)
    except DecodeError:
        return NO_PROGRESS
    if not debugs:
        return LoaderProgress(True, False)
    first = debugs[0]
    in_list = [e for e in entries if e.namespace == 0]
    names = {e.name.rsplit("/", 1)[-1] for e in in_list} | {e.name for e in in_list}
    bases = {e.l_addr for e in in_list}
    sonames = {o.info.soname: o.base for o in objects if o.info.soname}
    startup = (first.r_state == "RT_CONSISTENT" and first.r_map != 0 and first.r_brk != 0
               and all(needed in names or needed.rsplit("/", 1)[-1] in names or sonames.get(needed) in bases
                       for needed in program.info.needed))
    return LoaderProgress(True, startup, head)


def scope_from_link_map(objects: "Sequence[LoadedObject]", entries: Sequence[LinkMapEntry],
                        ) -> "tuple[LoadedObject, ...] | None":
    """The global scope in the loader's order: namespace 0's list (glibc
    keeps it in symbol search order, LD_PRELOAD objects after the program)
    without the vDSO, which no DT_NEEDED names, cut to the program's
    DT_NEEDED closure plus what precedes its first needed object
    (preloads). Objects are matched by load bias. None when the list does
    not name the objects (no link_map yet)."""
    from loaderdbg.analysis.symbols import global_scope

    by_base = {o.base: o for o in objects}
    ordered = []
    for entry in entries:
        if entry.namespace != 0 or entry.kind == "vdso":
            continue
        obj = by_base.get(entry.l_addr)
        if obj is not None and obj not in ordered:
            ordered.append(obj)
    if not ordered:
        return None
    closure = global_scope(objects)
    members = {id(o) for o in closure}
    first_needed = next((i for i, o in enumerate(ordered[1:], 1) if id(o) in members), len(ordered))
    preloads = {id(o) for o in ordered[1:first_needed]}
    return tuple(o for o in ordered if id(o) in members or id(o) in preloads)
