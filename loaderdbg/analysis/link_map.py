"""The dynamic linker's own list of what it loaded: r_debug and link_map,
found the way debuggers find them (the main program's DT_DEBUG, which ld.so
fills in), and what changed between two looks at it."""

from __future__ import annotations

from dataclasses import dataclass

from loaderdbg.analysis.objects import MappedObject
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.linkmap import LinkMapEntry, RDebug, find_r_debug_via_dt_debug, walk_r_debug
from loaderdbg.decode.memory import MemoryReader

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


def read_link_map(program: MappedObject | None, memory: MemoryReader) -> LinkMapView:
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
