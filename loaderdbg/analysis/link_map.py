"""The dynamic linker's own list of what it loaded: r_debug and link_map,
found the way debuggers find them (the main program's DT_DEBUG, which ld.so
fills in), and what changed between two looks at it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

from loaderdbg.analysis.objects import MappedObject
from loaderdbg.decode.errors import DecodeError
from loaderdbg.analysis.link_map_layout import private_layout
from loaderdbg.decode.linkmap import (LinkMapEntry, LinkMapPrivate, RDebug, find_r_debug_via_dt_debug,
                                      read_private_fields, read_r_debug, walk_r_debug)
from loaderdbg.decode.memory import MemoryReader

if TYPE_CHECKING:
    from loaderdbg.analysis.symbols import LoadedObject, SymbolTable

@dataclass(frozen=True)
class LinkMapView:
    """Every namespace's r_debug and the link_map entries they list, in order."""

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


def with_private_fields(view: LinkMapView, ldso: "MappedObject | LoadedObject | None",
                        memory: MemoryReader) -> LinkMapView:
    """view's entries with l_relocated, l_init_called and the TLS module
    id/offset read where ld.so's DWARF says they are; where it cannot say,
    each entry's private part is all None with the reason."""
    if not view.entries:
        return view
    answer = None if ldso is None else private_layout(ldso.path, ldso.info)
    if answer is None or answer.layout is None:
        unknown = LinkMapPrivate(reason="ld.so is not among the mapped objects: its link_map layout is unknown"
                                 if answer is None else answer.reason)
        return LinkMapView(view.debugs, tuple(replace(e, private=unknown) for e in view.entries))
    little = ldso.info.little_endian
    return LinkMapView(view.debugs, tuple(
        replace(e, private=read_private_fields(memory, e.address, answer.layout, little)) for e in view.entries))


def link_map_changes(before: LinkMapView, after: LinkMapView) -> tuple[list[LinkMapEntry], list[LinkMapEntry]]:
    """(added, removed) entries, in list order."""
    old, new = before.keys(), after.keys()
    added = [e for e in after.entries if (e.namespace, e.name, e.l_addr) not in old]
    removed = [e for e in before.entries if (e.namespace, e.name, e.l_addr) not in new]
    return added, removed


def loader_head(program: "LoadedObject | None", memory: MemoryReader) -> tuple[bool | None, RDebug | None]:
    """(published, namespace 0's r_debug): published is None when the
    program has no DT_DEBUG (or is unknown), False while DT_DEBUG is 0."""
    if program is None:
        return None, None
    info = program.info
    index = next((i for i, entry in enumerate(info.dynamic) if entry.name == "DT_DEBUG"), None)
    dynamic = next((seg for seg in info.segments if seg.type == "DYNAMIC"), None)
    if index is None or dynamic is None or info.elf_class != 64:
        return None, None
    # .dynamic keeps the file's order in memory: read DT_DEBUG's d_val
    # alone (this runs for every object at every stop).
    raw = memory.read(program.base + dynamic.vaddr + index * 16 + 8, 8)
    if raw is None:
        return None, None
    address = int.from_bytes(raw, "little" if info.little_endian else "big")
    if not address:
        return False, None
    try:
        return True, read_r_debug(memory, address)
    except DecodeError:
        return None, None


_L_NEXT = 24  # offset of l_next in struct link_map (LP64)


def _tails(entries: Sequence[LinkMapEntry]) -> tuple[int, ...]:
    last: dict[int, int] = {}
    for entry in entries:
        last[entry.namespace] = entry.address
    return tuple(last.values())


def _tails_unchanged(memory: MemoryReader, tails: tuple[int, ...]) -> bool:
    """ld.so appends new objects at a list's tail (and moves itself from
    there once the startup objects are loaded): a tail whose l_next is
    still 0 means the list is as it was."""
    for tail in tails:
        raw = memory.read(tail + _L_NEXT, 8)
        if raw is None or any(raw):
            return False
    return True


def symbols_in_loader_order(symbols: "SymbolTable", memory: MemoryReader) -> "SymbolTable":
    """symbols with the scopes the link_map gives (namespaces, preloads,
    dlopen'ed objects) and the objects it lists, or symbols itself before
    ld.so publishes one. While r_debug reads the same and no list grew at
    its tail, the answer is the last one."""
    from loaderdbg.analysis.symbols import SymbolTable, object_key

    published, head = loader_head(symbols.program, memory)
    if not published or head is None or not head.r_map:
        return symbols
    hit = symbols.loader_order
    if hit is not None and hit[0] == head and _tails_unchanged(memory, hit[1]):
        return hit[2]
    try:
        _, entries = walk_r_debug(memory, head.address)
    except DecodeError:
        return symbols
    scopes = loader_scopes(symbols.objects, entries)
    if scopes is None:
        table = symbols
    else:
        listed = {o.base for o in symbols.objects} & {e.l_addr for e in entries if e.kind != "vdso"}
        table = SymbolTable(symbols.objects, scopes[0], scopes[1],
                            listed=frozenset(object_key(o) for o in symbols.objects if o.base in listed))
    symbols.loader_order = (head, _tails(entries), table)
    return table


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
    published, head = loader_head(program, memory)
    if published is None:
        return NO_PROGRESS
    if head is None:
        return LoaderProgress(published, False)
    address = head.address
    try:
        if before is not None and before.startup_relocated and before.r_debug == head:
            return before
        if head.r_state != "RT_CONSISTENT" or not head.r_map or not head.r_brk:
            return LoaderProgress(True, False, head)
        debugs, entries = walk_r_debug(memory, address)
    except DecodeError:
        return NO_PROGRESS
    if not debugs:
        return LoaderProgress(True, False)
    in_list = [e for e in entries if e.namespace == 0]
    names = {e.name.rsplit("/", 1)[-1] for e in in_list} | {e.name for e in in_list}
    bases = {e.l_addr for e in in_list}
    sonames = {o.info.soname: o.base for o in objects if o.info.soname}
    startup = all(needed in names or needed.rsplit("/", 1)[-1] in names or sonames.get(needed) in bases
                  for needed in program.info.needed)
    return LoaderProgress(True, startup, head)


def scope_from_link_map(objects: "Sequence[LoadedObject]", entries: Sequence[LinkMapEntry],
                        ) -> "tuple[LoadedObject, ...] | None":
    """The global scope in the loader's order: namespace 0's list (glibc
    keeps it in symbol search order, LD_PRELOAD objects after the program)
    without the vDSO, which no DT_NEEDED names, cut to the program's
    DT_NEEDED closure plus what precedes its first needed object
    (preloads). Objects are matched by load bias. None when the list does
    not name the objects (no link_map yet)."""
    scopes = loader_scopes(objects, entries)
    return None if scopes is None else scopes[0]


def _namespaces(objects: "Sequence[LoadedObject]", entries: Sequence[LinkMapEntry],
                ) -> "dict[int, list[LoadedObject]]":
    by_base = {o.base: o for o in objects}
    lists: dict[int, list] = {}
    seen: set[tuple[int, int]] = set()
    for entry in entries:
        obj = by_base.get(entry.l_addr)
        if entry.kind == "vdso" or obj is None or (entry.namespace, entry.l_addr) in seen:
            continue
        seen.add((entry.namespace, entry.l_addr))
        lists.setdefault(entry.namespace, []).append(obj)
    return lists


def loader_scopes(objects: "Sequence[LoadedObject]", entries: Sequence[LinkMapEntry],
                  ) -> "tuple[tuple[LoadedObject, ...], dict[tuple[str, int], tuple[LoadedObject, ...]]] | None":
    """(global scope, search list of every other listed object) from the
    link_map. Namespace 0's global scope is its list cut to the program's
    DT_NEEDED closure plus what precedes the first needed object
    (preloads); another object there (dlopen'ed RTLD_LOCAL) searches the
    global scope, then its own dependencies. A dlmopen namespace searches
    its first object's closure, then the object's own dependencies, never
    namespace 0. DT_NEEDED names are matched among the namespace's own
    objects (two namespaces may each load a libc.so.6)."""
    from loaderdbg.analysis.symbols import needed_closure, object_key

    lists = _namespaces(objects, entries)
    main_list = lists.get(0)
    if not main_list:
        return None
    program = main_list[0]
    closure = needed_closure([program], main_list)
    members = {id(o) for o in closure}
    first_needed = next((i for i, o in enumerate(main_list[1:], 1) if id(o) in members), len(main_list))
    preloads = {id(o) for o in main_list[1:first_needed]}
    global_scope = tuple(o for o in main_list if id(o) in members or id(o) in preloads)
    in_global = {object_key(o) for o in global_scope}
    scopes: dict[tuple[str, int], tuple] = {}
    for namespace, listed in lists.items():
        base_scope = global_scope if namespace == 0 else tuple(needed_closure([listed[0]], listed))
        for obj in listed:
            key = object_key(obj)
            if namespace == 0 and key in in_global:
                continue
            searched = {object_key(o) for o in base_scope}
            own = [o for o in needed_closure([obj], listed) if object_key(o) not in searched]
            scopes[key] = base_scope + tuple(own)
    return global_scope, scopes
