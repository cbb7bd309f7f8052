"""Symbols across the loaded objects, resolved the way ld.so's scopes
resolve them (elf/dl-lookup.c: _dl_lookup_symbol_x, do_lookup_x,
check_match):

- Scope order. The global scope is the main program, then its DT_NEEDED
  objects breadth-first (glibc keeps the link_map chain in that order, as
  debuggers rely on); an object outside it (dlopen'ed with RTLD_LOCAL)
  searches the global scope, then its own dependencies. Once ld.so has
  published its link_map, link_map.symbols_in_loader_order rebuilds the
  table in its order (LD_PRELOAD objects after the program, a dlmopen
  namespace searching only itself).
- Only GLOBAL, WEAK and GNU_UNIQUE definitions with default or protected
  visibility and a value are visible; the first one wins, weak or not
  (LD_DYNAMIC_WEAK is not the default).
- An executable's undefined symbol with a value is its canonical PLT entry
  (a non-PIE program that takes a function's address): it is the
  definition for every lookup except a PLT (JUMP_SLOT) one.
- A reference naming a version (memcpy@GLIBC_2.14) takes a definition of
  that version, or an unversioned one (an object without DT_VERSYM, or a
  symbol with version index 0/1, such as a program's own exports), never a
  definition of another version.
- An unversioned reference prefers an unversioned definition, else the
  default (@@) version. (glibc takes version index 2, the object's oldest
  version, even when hidden; DynSymbol does not carry the index, and
  unversioned references to versioned libraries are rare.)
- A GNU_UNIQUE definition is one per name in a namespace
  (do_lookup_unique): the first lookup, in relocation order, that finds a
  unique definition of the name registers it, and every later lookup that
  finds one gets the registered one instead, whatever its version. ld.so
  relocates the last-loaded object first, so with two objects defining the
  name (the same inline function's static in two C++ libraries) the one a
  later object binds to can win for an earlier one too.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from loaderdbg.decode.elf import PAGE_SIZE, DynSymbol, ElfInfo, plt_label

_VISIBLE_BINDS = frozenset({"GLOBAL", "WEAK", "GNU_UNIQUE"})
_UNIQUE = "GNU_UNIQUE"
_NO_REFERENCE = object()
_VISIBLE_VISIBILITY = frozenset({"DEFAULT", "PROTECTED"})


@dataclass(frozen=True)
class LoadedObject:
    """An ELF file as mapped: its path, load bias and parsed contents."""

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


_CANDIDATES = "symbols: dynsym candidates"  # this module's key in ElfInfo.derived


def _candidates(info: ElfInfo) -> tuple[dict[str, DynSymbol | tuple[DynSymbol, ...]], dict[str, DynSymbol], bool]:
    """(name -> definitions with a value, name -> canonical PLT entry, has
    DT_VERSYM), one pass over .dynsym per file: a lookup asks every object
    in scope, and most do not define the name. A name defined once maps to
    its symbol, not a 1-tuple (gdb's objects define 42,000 names once:
    as many objects fewer to make and for the collector to walk)."""
    hit = info.derived.get(_CANDIDATES)
    if hit is not None:
        return hit
    defined: dict[str, DynSymbol | tuple[DynSymbol, ...]] = {}
    plt_entries: dict[str, DynSymbol] = {}
    program = info.type == "ET_EXEC" or info.is_pie
    visible_binds, visible_visibility = _VISIBLE_BINDS, _VISIBLE_VISIBILITY
    for sym in [sym for sym in info.dynsyms
                if sym.name and sym.bind in visible_binds and sym.visibility in visible_visibility]:
        if sym.shndx_defined:
            if sym.value or sym.type == "TLS":
                before = defined.get(sym.name)
                if before is None:
                    defined[sym.name] = sym
                else:
                    defined[sym.name] = (before + (sym,)) if type(before) is tuple else (before, sym)
        elif program and sym.value:
            # An executable's undefined symbol with a value is its
            # canonical PLT entry (a non-PIE program took the address).
            plt_entries.setdefault(sym.name, sym)
    value = (defined, plt_entries, info.dynamic_value("DT_VERSYM") is not None)
    # Two threads racing here compute the same value; either may stay.
    info.derived[_CANDIDATES] = value
    return value


_REFERENCES = "symbols: relocation references"  # this module's key in ElfInfo.derived


def _reference_versions(info: ElfInfo) -> dict[str, str | None]:
    """name -> the version its first relocation outside DT_JMPREL asks for:
    the lookups ld.so makes while it relocates the object (a GNU_UNIQUE
    symbol is data, never a PLT slot's)."""
    hit = info.derived.get(_REFERENCES)
    if hit is None:
        columns = info.relocation_columns
        hit = {}
        for name, version, table in zip(reversed(columns.symbols), reversed(columns.symbol_versions),
                                        reversed(columns.tables)):
            if name and table != "JMPREL":
                hit[name] = version  # walked backwards: the first one stays
        info.derived[_REFERENCES] = hit
    return hit


def match_definition(obj: LoadedObject, name: str, version: str | None,
                     include_tls: bool = False, plt: bool = False) -> DynSymbol | None:
    """The definition of name[@version] that ld.so would take from obj;
    ``plt`` for a JUMP_SLOT lookup, which skips canonical PLT entries."""
    info = obj.info
    defined, plt_entries, has_versym = _candidates(info)
    defs = defined.get(name, ())
    if type(defs) is not tuple:
        defs = (defs,)
    if not include_tls and defs:
        defs = tuple(s for s in defs if s.type != "TLS")
    if not plt:
        entry = plt_entries.get(name)
        if entry is not None:
            defs = defs + (entry,)
    if not defs:
        return None
    if not has_versym:
        return defs[0]
    if version is not None:
        exact = next((s for s in defs if s.version == version), None)
        if exact is not None:
            return exact
        # check_match: a symbol of version index 0/1 (no version of its
        # own) satisfies any versioned reference.
        return next((s for s in defs if s.version is None and not s.version_hidden), None)
    return next((s for s in defs if s.version is None), None) or \
        next((s for s in defs if not s.version_hidden), None)


def object_key(obj: LoadedObject) -> tuple[str, int]:
    """What tells two loaded objects apart (two namespaces may load the
    same file under the same name)."""
    return obj.path, obj.base


def _key(obj: LoadedObject) -> tuple[str, int]:
    return obj.path, obj.base


def _names(obj: LoadedObject) -> set[str]:
    names = {obj.path, obj.name}
    if obj.info.soname:
        names.add(obj.info.soname)
    return names


def _is_program(obj: LoadedObject) -> bool:
    return obj.info.type == "ET_EXEC" or obj.info.is_pie


def _is_loader(obj: LoadedObject, interp: str | None) -> bool:
    """obj is the program's ld.so (PT_INTERP names it; its soname, else
    its file name, when no program is known)."""
    if interp:
        wanted = interp.rsplit("/", 1)[-1]
        return obj.path == interp or obj.name == wanted or obj.info.soname == wanted
    soname = obj.info.soname or ""
    return soname.startswith(("ld-linux", "ld64.so", "ld-musl", "ld.so"))


def _main_program(objects: Sequence[LoadedObject]) -> LoadedObject | None:
    programs = [o for o in objects if _is_program(o)]
    return next((o for o in programs if o.info.interp is not None), programs[0] if programs else None)


def _by_name(objects: Sequence[LoadedObject]) -> dict[str, LoadedObject]:
    """A DT_NEEDED name -> the object it names: its soname, file name or path."""
    by_name: dict[str, LoadedObject] = {}
    for obj in objects:
        for name in _names(obj):
            by_name.setdefault(name, obj)
    return by_name


def _named(by_name: dict[str, LoadedObject], needed: str) -> LoadedObject | None:
    return by_name.get(needed) or by_name.get(needed.rsplit("/", 1)[-1])


def needed_closure(start: Sequence[LoadedObject], objects: Sequence[LoadedObject]) -> list[LoadedObject]:
    """start, then the objects their DT_NEEDED entries name, breadth-first,
    each once (_dl_map_object_deps)."""
    by_name = _by_name(objects)
    order: list[LoadedObject] = []
    seen: set[int] = set()
    for obj in start:
        if id(obj) not in seen:
            seen.add(id(obj))
            order.append(obj)
    index = 0
    while index < len(order):
        for needed in order[index].info.needed:
            found = _named(by_name, needed)
            if found is not None and id(found) not in seen:
                seen.add(id(found))
                order.append(found)
        index += 1
    return order


def global_scope(objects: Sequence[LoadedObject]) -> tuple[LoadedObject, ...]:
    """Without a link_map: the main program and its DT_NEEDED closure; with
    no main program (a static or a bare DYN start), every object in the
    given order."""
    main = _main_program(objects)
    if main is None:
        return tuple(objects)
    return tuple(needed_closure([main], objects))


class SymbolTable:
    """Built once per set of loaded objects (per stop, or per mmap event).
    ``scope`` is the global scope in search order; by default it is derived
    from the files (global_scope). ``scopes`` gives the search list of
    objects outside it, per (path, base): the link_map knows them (a
    dlmopen namespace searches its own objects only). ``listed``: what
    the link_map lists."""

    def __init__(self, objects: Sequence[LoadedObject], scope: Sequence[LoadedObject] | None = None,
                 scopes: Mapping[tuple[str, int], tuple[LoadedObject, ...]] | None = None,
                 listed: frozenset[tuple[str, int]] | None = None) -> None:
        self.objects: tuple[LoadedObject, ...] = tuple(objects)
        # The objects ld.so's link_map lists, by object_key (None: no
        # link_map read): one mapped but not listed is not ld.so's yet.
        self.listed = listed
        self.scope: tuple[LoadedObject, ...] = tuple(scope) if scope is not None else global_scope(self.objects)
        # Objects are told apart by (path, base): callers build fresh
        # LoadedObjects for the same mapping.
        self._in_scope = frozenset(_key(o) for o in self.scope)
        self._local_scopes: dict[tuple[str, int], tuple[LoadedObject, ...]] = dict(scopes or {})
        self.program: LoadedObject | None = _main_program(self.objects)
        self._scope_index: dict[int, tuple[list, dict[str, int]]] = {}
        # The same objects as the loader orders them, once read from the
        # link_map (analysis/link_map.py symbols_in_loader_order): kept with
        # this table, as (r_debug, list tails, table).
        self.loader_order: tuple | None = None
        self._names_index: dict[str, LoadedObject] | None = None
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
        self._uniques: dict[tuple, tuple[LoadedObject, DynSymbol] | None] = {}

    def scope_for(self, requester: LoadedObject | None) -> tuple[LoadedObject, ...]:
        """The objects a lookup from requester searches, in order: the
        global scope, then (for an object outside it, e.g. dlopen'ed
        RTLD_LOCAL) its own dependencies."""
        if requester is None or _key(requester) in self._in_scope:
            return self.scope
        local = self._local_scopes.get(_key(requester))
        if local is None:
            own = next((o for o in self.objects if _key(o) == _key(requester)), requester)
            extra = [o for o in needed_closure([own], self.objects) if _key(o) not in self._in_scope]
            local = self._local_scopes[_key(requester)] = self.scope + tuple(extra)
        return local

    def missing_needed(self, obj: LoadedObject) -> tuple[str, ...]:
        """obj's DT_NEEDED names no mapped object answers to (yet)."""
        if self._names_index is None:
            self._names_index = _by_name(self.objects)
        return tuple(n for n in obj.info.needed if _named(self._names_index, n) is None)

    def in_global_scope(self, obj: LoadedObject) -> bool:
        return _key(obj) in self._in_scope

    def lookup(self, name: str, version: str | None = None, *, include_tls: bool = False,
               skip: LoadedObject | None = None, requester: LoadedObject | None = None,
               plt: bool = False) -> tuple[LoadedObject, DynSymbol] | None:
        """(defining object, symbol) in scope order. ``skip`` leaves one
        object out, as ld.so does when finding the source of a COPY
        relocation; ``plt`` is a JUMP_SLOT's lookup."""
        scope = self.scope_for(requester)
        skipped = _key(skip) if skip is not None else None
        key = (name, version, include_tls, skipped, id(scope), plt)
        if key in self._lookups:
            return self._lookups[key]
        found = self._first_definition(name, version, include_tls, skipped, scope, plt)
        if found is not None and found[1].bind == _UNIQUE:
            found = self._registered_unique(name, scope) or found
        self._lookups[key] = found
        return found

    def _first_definition(self, name: str, version: str | None, include_tls: bool,
                          skipped: tuple[str, int] | None, scope: tuple[LoadedObject, ...],
                          plt: bool) -> tuple[LoadedObject, DynSymbol] | None:
        found = None
        indexed, first_definers = self._indexed(scope)
        # Most objects in scope do not define the name at all: start at
        # the first that has it (as a definition or a canonical PLT entry).
        start = first_definers.get(name, len(indexed))
        for position in range(start, len(indexed)):
            obj, defined, plt_entries = indexed[position]
            if name not in defined and (plt or name not in plt_entries):
                continue
            if skipped is not None and _key(obj) == skipped:
                continue
            sym = match_definition(obj, name, version, include_tls, plt)
            if sym is not None:
                found = (obj, sym)
                break
        return found

    def _registered_unique(self, name: str, scope: tuple[LoadedObject, ...],
                           ) -> tuple[LoadedObject, DynSymbol] | None:
        """The definition ld.so registered for the GNU_UNIQUE name in the
        namespace of scope: what the first lookup in relocation order (the
        scope's objects last-loaded first, rtld.c) that found a unique
        definition found. None when no object relocates a reference to it."""
        key = (name, id(scope))
        if key in self._uniques:
            return self._uniques[key]
        indexed, _ = self._indexed(scope)
        registered = None
        if sum(1 for _, defined, _ in indexed if name in defined) > 1:
            for obj in reversed(scope):
                version = _reference_versions(obj.info).get(name, _NO_REFERENCE)
                if version is _NO_REFERENCE:
                    continue
                found = self._first_definition(name, version, False, None, scope, False)
                if found is not None and found[1].bind == _UNIQUE:
                    registered = found
                    break
        # With one definer, every lookup that finds a unique one finds it.
        self._uniques[key] = registered
        return registered

    def _indexed(self, scope: tuple[LoadedObject, ...]) -> tuple[list, dict[str, int]]:
        """Each object of scope with its candidates, and name -> the
        position of the first that defines it or has a canonical PLT entry
        of it (a lookup walked all 59 of gdb's scope for each of 15,000
        names; the map is made in C, last object first)."""
        hit = self._scope_index.get(id(scope))
        if hit is None:
            indexed = [(o, *_candidates(o.info)[:2]) for o in scope]
            first_definers: dict[str, int] = {}
            for position in range(len(indexed) - 1, -1, -1):
                _, defined, plt_entries = indexed[position]
                first_definers.update(dict.fromkeys(plt_entries, position))
                first_definers.update(dict.fromkeys(defined, position))
            hit = self._scope_index[id(scope)] = (indexed, first_definers)
        return hit

    def resolve(self, name: str, version: str | None = None) -> int | None:
        """Runtime address of the first global/weak non-TLS definition."""
        found = self.lookup(name, version)
        if found is None:
            return None
        obj, sym = found
        return obj.runtime(sym.value)

    def locate(self, name: str) -> int | None:
        """Runtime address for a user's ``sym:NAME`` or ``b NAME``: what the
        dynamic linker would bind first, else the first of
        static_definitions (static functions, ld.so's internals such as
        ``_dl_start``). ``puts@plt``: a PLT entry (plt_locations), the
        program's where it has one (gdb's first location), else the first;
        None without one (no symbol table is searched for such a name)."""
        if name.endswith("@plt"):  # a PLT entry's name: never a symbol's
            entries = self.plt_locations(name)
            if not entries:
                return None
            program = self.program
            own = None if program is None else program.info.plt_entry_named(name)
            return program.runtime(own) if own is not None else entries[0]
        found = self.resolve(name)
        if found is not None:
            return found
        candidates = self.static_definitions(name)
        return candidates[0][1] if candidates else None

    def plt_locations(self, name: str) -> list[int]:
        """Runtime addresses of the PLT entries named ``name`` (``puts@plt``,
        ElfInfo.plt_entry_named), one per object that has one, in address
        order: the locations gdb's ``break puts@plt`` sets (``info
        breakpoints`` lists them so). [] for a name not ending in @plt: no
        object's PLT is looked at then."""
        if not name.endswith("@plt"):
            return []
        found = set()
        for obj in self.objects:
            entry = obj.info.plt_entry_named(name)
            if entry is not None:
                found.add(obj.runtime(entry))
        return sorted(found)

    def static_definitions(self, name: str) -> list[tuple[LoadedObject, int, str]]:
        """(object, runtime address, bind) of each object's .symtab (or
        debug file's) definition of name, in the order sym:NAME takes them:
        a GLOBAL/WEAK one first, then ld.so's own (libc's debug file has a
        local ``_dl_start`` of its own, and a loader engineer asking for
        ``_dl_start`` means ld.so's), then the rest in address order."""
        found = []
        for obj in self.objects:
            symbol = obj.info.symbol_named(name)
            if symbol is not None and symbol.value:
                found.append((obj, obj.runtime(symbol.value), symbol.bind))
        interp = self.program.info.interp if self.program is not None else None
        found.sort(key=lambda c: (c[2] == "LOCAL", not _is_loader(c[0], interp)))
        return found

    def object_at(self, addr: int) -> LoadedObject | None:
        index = bisect.bisect_right(self._starts, addr) - 1
        # Walk back over ranges that start before addr (objects interleave
        # only through page rounding).
        for i in range(index, max(index - 8, -1), -1):
            start, end, obj_index = self._ranges[i]
            if start <= addr < end:
                return self.objects[obj_index]
        return None

    def _run_at(self, addr: int) -> tuple[int, int]:
        """[start, end) around addr where object_at answers as for addr
        without walking back: inside the range that starts last at or
        before addr, up to the next range's start ((0, 0) otherwise)."""
        index = bisect.bisect_right(self._starts, addr) - 1
        if index < 0:
            return 0, 0
        start, end, _ = self._ranges[index]
        if not start <= addr < end:
            return 0, 0
        if index + 1 < len(self._starts):
            end = min(end, self._starts[index + 1])
        return start, end

    def symbolize(self, addr: int) -> str | None:
        """"name+0x12" (in a PLT entry "puts@plt+0x6", as gdb and objdump
        name it), else "libc.so.6+0x1234" (offset from the object's first
        mapped page), else None outside every object."""
        obj = self.object_at(addr)
        if obj is None:
            return None
        return _symbolized(obj, obj.link(addr))

    def lazy_stub(self, addr: int, slot_object: str, symbol: str) -> str | None:
        """``symbol@plt+0x6``, pwndbg's name for the lazy-binding PLT stub a
        JUMP_SLOT of ``slot_object`` holds until its first call: in the
        entry of the object's own .plt that pushes the slot's index, where
        objdump labels it. The name symbolize gives there (the same entry,
        ElfInfo.plt_entry, and label, plt_label), taken from the slot's own
        relocation rather than by decoding the entry: a GOT view names
        thousands of lazy slots (gdb's 5,763), and the linker wrote each
        slot's lazy value to be its own entry's stub. Not with IBT's second
        PLT: `symbol@plt` is then the .plt.sec entry callers call, and the
        stub in .plt has no name; nor on aarch64, whose lazy slots all hold
        PLT0. None when addr is not in such an entry of that object's .plt."""
        obj = self.object_at(addr)
        if obj is None or obj.name != slot_object or obj.info.section_named(".plt.sec") is not None:
            return None
        link = obj.link(addr)
        entry = obj.info.plt_entry(link)
        if entry is None or entry[2] != ".plt":
            return None
        return _symbol_text(obj, link, (plt_label(symbol), link - entry[0]))

    def symbolize_many(self, addresses: Iterable[int]) -> dict[int, str | None]:
        """symbolize() of each address: each object is looked up once per
        run of addresses inside it (a GOT view names 15,000 addresses, mostly
        one PLT stub after the next), and each object names its addresses
        together (ElfInfo.symbolize_many)."""
        names: dict[int, str | None] = {}
        links_of: dict[int, tuple[LoadedObject, dict[int, int]]] = {}  # id(obj) -> (obj, {link: addr})
        obj = None
        start = end = 0  # where every address is obj's
        for addr in sorted(addresses):
            if not start <= addr < end:
                obj = self.object_at(addr)
                start, end = self._run_at(addr)
            if obj is None:
                names[addr] = None
            else:
                links_of.setdefault(id(obj), (obj, {}))[1][obj.link(addr)] = addr
        for obj, links in links_of.values():
            for link, found in obj.info.symbolize_many(links, plt=True).items():
                names[links[link]] = _symbol_text(obj, link, found)
        return names


def _symbolized(obj: LoadedObject, link: int) -> str:
    return _symbol_text(obj, link, obj.info.symbolize(link, plt=True))


def _symbol_text(obj: LoadedObject, link: int, found: tuple[str, int] | None) -> str:
    if found is not None:
        name, offset = found
        return f"{name}+{offset:#x}" if offset else name
    return f"{obj.name}+{link - obj.info.min_vaddr:#x}"
