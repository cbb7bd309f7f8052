"""Relocation progress: for each relocation of a loaded object, has the
loader applied it yet, and what does it bind to?

We never watch the loader work; we compare the slot's current contents with
values we can compute ourselves: what the file put there (``link_value``,
what the slot holds before the loader touches it), what the loader will
write (``expected``) and, for a JUMP_SLOT, the lazy value (the PLT stub
plus the bias). When these coincide (a RELATIVE relocation at base 0, a
weak undefined symbol bound to 0, a non-PIE program's lazy PLT slots) the
slot alone cannot tell, and we ask what ld.so has visibly done instead:

- it applies one object's relocations in table order (RELR, REL, RELA,
  JMPREL), so a relocation before one that is visibly applied or lazy has
  been processed;
- before an object's relocations, glibc's elf_machine_runtime_setup fills
  GOT[1] (the link_map) and GOT[2] (_dl_runtime_resolve) when it binds
  lazily, so a JUMP_SLOT still holding its PLT stub goes to the resolver;
- glibc sets r_debug.r_state to RT_CONSISTENT in dl_main only after it has
  relocated every object it loaded at startup (and, before that, RT_ADD
  while loading them);
- glibc sets an object's private link_map l_relocated once it has processed
  all its relocations (read where ld.so's DWARF says it is), and relocates
  an object's dependencies before it and the program after every other
  startup object: an object whose dependency (or, for the program, any
  startup object) is not marked yet has not been started.

A state we still cannot tell is "unknown", with the reason.

Each relocation type has a recipe, kept in a table keyed by type name like
pyelftools' relocation.py; adding an architecture is adding rows.
"""

from __future__ import annotations

import dataclasses
import operator
import sys
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from itertools import accumulate, chain, compress, repeat
from operator import itemgetter
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from loaderdbg.analysis.link_map import (LoaderProgress, loader_progress, read_link_map, symbols_in_loader_order,
                                         with_private_fields)
from loaderdbg.analysis.relocation_cache import RelocationCache
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable, needed_closure, object_key
from loaderdbg.decode.elf import PAGE_SIZE, DynSymbol, Relocation, RelocationColumns, Segment
from loaderdbg.decode.frozen_init import dict_init
from loaderdbg.decode.linkmap import image_extent
from loaderdbg.decode.memory import MemoryReader

MASK64 = 0xFFFFFFFFFFFFFFFF
# Slot words are little-endian (ARCH_WORD's architectures): a native word
# view of a segment reads them only on a little-endian host.
_WORDS_BULK = sys.byteorder == "little"

PENDING, LAZY, APPLIED, UNKNOWN = "pending", "lazy", "applied", "unknown"


@dataclass(frozen=True)
class Binding:
    """What a symbol reference resolves to: the defining object (None when
    nothing defines it and the reference is weak: it binds to 0), the
    symbol and the version of the definition taken."""

    object: str | None
    symbol: str
    version: str | None


@lru_cache(maxsize=1 << 16)
def _binding(obj: str | None, symbol: str, version: str | None) -> Binding:
    """One instance per binding: many objects bind to the same definitions."""
    return Binding(obj, symbol, version)


@dict_init
@dataclass(frozen=True)
class RelocationState:
    object: str
    address: int  # runtime address of the slot
    type_name: str
    symbol: str | None
    addend: int | None
    state: str  # pending | lazy | applied | unknown
    current: int | None  # slot contents now (first word for COPY)
    expected: int | None  # what the loader writes, when we can know it
    link_value: int | None  # slot contents in the file (0 in .bss)
    table: str = ""
    binding: Binding | None = None  # for a relocation that names a symbol
    # Why the state is unknown; or, when the slot holds something else than
    # the state's value (a variable the program wrote after ld.so relocated
    # it), what shows the state. None otherwise.
    reason: str | None = None


@dataclass(frozen=True)
class RelocationTotals:
    object: str
    total: int
    applied: int
    pending: int
    lazy: int
    unknown: int


# RelocationState's fields in order: the columns of an ObjectRelocations.
RELOCATION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RelocationState))
# The columns told apart first when two tables are compared: those a stop
# changes.
_COMPARED_FIELDS = ("state", "current", "expected", "binding", "reason", "address", "type_name", "symbol",
                    "addend", "link_value", "table")


class ObjectRelocations(SequenceABC):
    """One object's relocation states, kept as columns (issue 19): a
    sequence of RelocationState (len, iteration, indexing and slicing,
    equality with another ObjectRelocations, or with a tuple or list of
    RelocationState holding the same rows) that makes a RelocationState
    only for a row someone reads, once (reading it again gives the same
    instance), while what reads every row (the JSON writer, totals, the
    GOT view, a TUI measuring its columns) reads the columns themselves.

    Public:

    - ``object``: the object's path, every row's ``object``;
    - ``column(field)``: the values of one RelocationState field for every
      row, a tuple (item i is row i's): ``field`` is one of
      RELOCATION_FIELDS ("object", "address", "type_name", "symbol",
      "addend", "state", "current", "expected", "link_value", "table",
      "binding", "reason"). Each column is made on first use, in bulk, and
      kept; it never changes (a later stop makes another
      ObjectRelocations, or hands back this very one while none of the
      object's slots changed).
    """

    __slots__ = ("object", "_count", "_columns", "_makers", "_rows", "_totals")

    def __init__(self, object: str, count: int,
                 columns: Mapping[str, Sequence | Callable[[], Sequence]]) -> None:
        """``columns``: per field of RelocationState but ``object``, its
        values (a sequence of ``count``) or a function making them when
        first asked for."""
        missing = set(RELOCATION_FIELDS[1:]) - columns.keys()
        if missing:
            raise ValueError(f"ObjectRelocations: no column for {', '.join(sorted(missing))}")
        self.object = object
        self._count = count
        self._columns: dict[str, tuple] = {}
        self._makers: dict[str, Callable[[], Sequence]] = {}
        for name in RELOCATION_FIELDS[1:]:
            values = columns[name]
            if callable(values):
                self._makers[name] = values
            else:
                self._set(name, values)
        self._rows: list | None = None  # the rows made so far (None where not)
        self._totals: RelocationTotals | None = None

    @classmethod
    def of_rows(cls, object: str, rows: Iterable[RelocationState]) -> "ObjectRelocations":
        """The table of rows already made (all of object ``object``); they
        are the rows it hands out."""
        rows = list(rows)
        table = cls(object, len(rows), {name: tuple(map(operator.attrgetter(name), rows))
                                        for name in RELOCATION_FIELDS[1:]})
        table._rows = rows
        return table

    def _set(self, name: str, values: Sequence) -> tuple:
        values = values if type(values) is tuple else tuple(values)
        if len(values) != self._count:
            raise ValueError(f"ObjectRelocations: column {name} has {len(values)} values, not {self._count}")
        self._columns[name] = values
        return values

    def column(self, field: str) -> tuple:
        """Every row's ``field`` (a RelocationState field name), in row order."""
        values = self._columns.get(field)
        if values is not None:
            return values
        if field == "object":
            return self._set(field, (self.object,) * self._count)
        maker = self._makers.get(field)
        if maker is None:
            raise KeyError(f"no relocation column {field!r} (one of {', '.join(RELOCATION_FIELDS)})")
        return self._set(field, maker())

    def __len__(self) -> int:
        return self._count

    def totals(self, name: str) -> RelocationTotals:
        """relocation_totals of these rows under the object name ``name``,
        counted once (a step that writes no slot hands back this table, and
        counting gdb's states each time was a walk over 150,000)."""
        totals = self._totals
        if totals is None or totals.object != name:
            totals = self._totals = relocation_totals(self, name)
        return totals

    def _row(self, index: int) -> RelocationState:
        column = self.column
        return RelocationState(self.object, *[column(name)[index] for name in RELOCATION_FIELDS[1:]])

    def _all_rows(self) -> list:
        rows = self._rows
        if rows is None:
            column = self.column
            rows = self._rows = list(map(RelocationState, repeat(self.object, self._count),
                                         *[column(name) for name in RELOCATION_FIELDS[1:]]))
        elif None in rows:
            for index in compress(range(self._count), map(operator.is_, rows, repeat(None))):
                rows[index] = self._row(index)
        return rows

    def __getitem__(self, index):
        if isinstance(index, slice):
            wanted = range(*index.indices(self._count))
            if len(wanted) == self._count and wanted.step == 1:
                return tuple(self._all_rows())
            return tuple([self[i] for i in wanted])
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("relocation index out of range")
        rows = self._rows
        if rows is None:
            rows = self._rows = [None] * self._count
        row = rows[index]
        if row is None:
            row = rows[index] = self._row(index)
        return row

    def __iter__(self) -> Iterator[RelocationState]:
        return iter(self._all_rows())

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if isinstance(other, ObjectRelocations):
            return (self._count == other._count and self.object == other.object
                    and all(self.column(name) == other.column(name) for name in _COMPARED_FIELDS))
        if isinstance(other, (tuple, list, RelocationTable)):
            return len(other) == self._count and all(map(operator.eq, self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))  # as the tuple of its rows, which it equals

    def __repr__(self) -> str:
        return f"ObjectRelocations({self.object!r}, {self._count} relocations)"

    def changed_rows(self, previous: "ObjectRelocations") -> list[int] | None:
        """The indices of the rows that differ from ``previous``'s (a stop
        before, say), ascending; None when the two are not the same
        object's relocations (another count or path)."""
        if previous is self:
            return []
        if previous._count != self._count or previous.object != self.object:
            return None
        changed: set[int] = set()
        every = range(self._count)
        for name in _COMPARED_FIELDS:
            mine, theirs = self.column(name), previous.column(name)
            if mine is not theirs and mine != theirs:
                changed.update(compress(every, map(operator.ne, mine, theirs)))
        return sorted(changed)

    def _differing_rows(self, previous: "ObjectRelocations", indices: Iterable[int]) -> list[int]:
        """Those of indices whose rows differ from previous's (the same
        object's relocations)."""
        fields = [(self.column(name), previous.column(name)) for name in _COMPARED_FIELDS]
        return sorted(index for index in indices if any(mine[index] != theirs[index] for mine, theirs in fields))

    def _keep_rows_of(self, previous: "ObjectRelocations", changed: Iterable[int]) -> None:
        """Hand out previous's rows made so far, but at ``changed``: equal
        rows stay the same instances from one stop to the next."""
        if previous._rows is None or previous._count != self._count:
            return
        rows = list(previous._rows)
        for index in changed:
            rows[index] = None
        self._rows = rows


class RelocationTable(SequenceABC):
    """A snapshot's relocations (Snapshot.relocations): every object's, in
    the snapshot's object order, as one sequence of RelocationState (len,
    iteration, indexing and slicing, equality with another table or with a
    tuple or list of the same rows) over per-object columns.

    Public:

    - ``per_object``: a tuple of ObjectRelocations, one per object of the
      snapshot, in ``Snapshot.objects`` order (an object without
      relocations has an empty one); row i of the table is row i - start
      of the part it falls in, parts following each other;
    - ``column(field)``: one RelocationState field for every row of the
      table, a tuple (the parts' columns one after the other), made once;
    - ``locate(index)``: (part number in per_object, row in that part);
    - ``changed_rows(previous)``: the indices of the rows that differ from
      another table's (None when they are not the same objects').
    """

    __slots__ = ("per_object", "_starts", "_count", "_columns")

    def __init__(self, per_object: Iterable[ObjectRelocations] = ()) -> None:
        self.per_object: tuple[ObjectRelocations, ...] = tuple(per_object)
        lengths = [len(part) for part in self.per_object]
        self._starts = [0, *accumulate(lengths)][:-1] if lengths else []
        self._count = sum(lengths)
        self._columns: dict[str, tuple] = {}

    def column(self, field: str) -> tuple:
        """Every row's ``field`` (a RelocationState field name), in row order."""
        values = self._columns.get(field)
        if values is None:
            values = self._columns[field] = tuple(chain.from_iterable(
                [part.column(field) for part in self.per_object]))
        return values

    def locate(self, index: int) -> tuple[int, int]:
        """(part number, index in that part) of row ``index`` (>= 0)."""
        if not 0 <= index < self._count:
            raise IndexError("relocation index out of range")
        part = bisect_right(self._starts, index) - 1
        return part, index - self._starts[part]

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if isinstance(index, slice):
            wanted = range(*index.indices(self._count))
            if wanted.step == 1:
                if not wanted:
                    return ()
                first, last = self.locate(wanted[0]), self.locate(wanted[-1])
                if first[0] == last[0]:
                    return self.per_object[first[0]][first[1]:last[1] + 1]
            return tuple([self[i] for i in wanted])
        if index < 0:
            index += self._count
        part, row = self.locate(index)
        return self.per_object[part][row]

    def __iter__(self) -> Iterator[RelocationState]:
        return chain.from_iterable(self.per_object)

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if isinstance(other, RelocationTable):
            if self._count != other._count:
                return False
            if self._starts == other._starts and len(self.per_object) == len(other.per_object):
                return all(map(operator.eq, self.per_object, other.per_object))
            return all(map(operator.eq, self, other))
        if isinstance(other, (tuple, list, ObjectRelocations)):
            return len(other) == self._count and all(map(operator.eq, self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))  # as the tuple of its rows, which it equals

    def __repr__(self) -> str:
        return f"RelocationTable({len(self.per_object)} objects, {self._count} relocations)"

    def changed_rows(self, previous: "RelocationTable") -> list[int] | None:
        """The indices of the rows that differ from ``previous``'s,
        ascending (the parts that are the same instance cost nothing);
        None when the tables are not of the same objects with the same
        numbers of relocations."""
        if previous is self:
            return []
        if (len(previous.per_object) != len(self.per_object) or previous._starts != self._starts
                or previous._count != self._count):
            return None
        changed: list[int] = []
        for start, mine, theirs in zip(self._starts, self.per_object, previous.per_object):
            if mine is theirs:
                continue
            rows = mine.changed_rows(theirs)
            if rows is None:
                return None
            changed.extend(start + row for row in rows)
        return changed


# ---------------------------------------------------------------------------
# What a recipe sees
# ---------------------------------------------------------------------------


_UNASKED = object()


@dataclass
class _Slot:
    obj: LoadedObject
    reloc: Relocation
    symbols: SymbolTable
    memory: MemoryReader
    word: int
    current: int | None
    link_value: int | None
    link_bytes: Callable[[int, int], bytes | None]  # (vaddr, size) -> file image bytes
    slot_bytes: Callable[[int, int], bytes | None]  # (address, size) -> memory bytes
    # symbol_value's answers for this object at this stop, by (symbol
    # index, plt): a C++ library's vtables name the same symbols hundreds
    # of times.
    symbol_values: dict | None = None
    # own_symbol's answer once asked (a recipe asks two or three times).
    own: DynSymbol | None | object = _UNASKED

    @property
    def base(self) -> int:
        return self.obj.base

    def implicit_addend(self) -> int | None:
        """RELA carries A; REL and RELR keep it in the slot."""
        return self.reloc.addend if self.reloc.addend is not None else self.link_value

    def own_symbol(self) -> DynSymbol | None:
        own = self.own
        if own is _UNASKED:
            index = self.reloc.symbol_index
            syms = self.obj.info.dynsyms
            own = self.own = syms[index] if 0 < index < len(syms) else None
        return own

    def symbol_definition(self, include_tls: bool = False, plt: bool = False,
                          ) -> tuple[LoadedObject, DynSymbol] | None:
        own = self.own_symbol()
        if own is None:
            return None
        # A local symbol, -Bsymbolic, or a protected definition binds inside
        # the object itself (dl-lookup.c: a protected symbol's lookup comes
        # back to the referencing object).
        if own.shndx_defined and (own.bind == "LOCAL" or self.symbolic or own.visibility == "PROTECTED"):
            return self.obj, own
        return self.symbols.lookup(own.name, self.reloc.symbol_version, include_tls=include_tls,
                                   requester=self.obj, plt=plt)

    @property
    def symbolic(self) -> bool:
        info = self.obj.info
        return "DF_SYMBOLIC" in info.flags or info.dynamic_value("DT_SYMBOLIC") is not None

    def binding(self, found: tuple[LoadedObject, DynSymbol] | None) -> Binding | None:
        own = self.own_symbol()
        if own is None:
            return None
        if found is None:
            return _binding(None, own.name, self.reloc.symbol_version) if own.bind == "WEAK" else None
        return _binding(found[0].path, found[1].name, found[1].version)

    def symbol_value(self, plt: bool = False) -> tuple[int | None, DynSymbol | None, Binding | None]:
        """S: the runtime address the symbol resolves to (0 for an undefined
        weak), with the definition (None when there is none) and the
        binding."""
        if self.reloc.symbol_index == 0:
            # STN_UNDEF resolves to the object itself (glibc: l_addr + 0).
            return self.base, None, None
        memo = self.symbol_values
        key = (self.reloc.symbol_index, plt)
        if memo is not None and key in memo:
            return memo[key]
        found = self.symbol_definition(plt=plt)
        binding = self.binding(found)
        if found is None:
            answer = (0 if binding is not None else None), None, binding
        else:
            obj, sym = found
            answer = obj.runtime(sym.value), sym, binding
        if memo is not None:
            memo[key] = answer
        return answer

    @property
    def is_interp(self) -> bool:
        """This object is the program's PT_INTERP (ld.so itself)."""
        program = self.symbols.program
        interp = program.info.interp if program is not None else None
        return interp is not None and self.obj.name == interp.rsplit("/", 1)[-1]

    def self_bound(self, verdict: "_Verdict") -> "_Verdict":
        """ld.so's own symbol slots: its bootstrap self-relocation binds them
        to its own definitions; once the libraries are loaded it relocates
        itself again in the global scope (libc's _dl_catch_exception and
        friends come first). Between the two the slot holds its own."""
        if verdict.state != UNKNOWN or verdict.needs is not None:
            return verdict  # (most of them: asked first)
        own = self.own_symbol()
        if own is None or not own.shndx_defined or self.current != self.obj.runtime(own.value) or not self.is_interp:
            return verdict
        return replace(verdict, state=APPLIED, shows_processing=True,
                       reason=f"bound to ld.so's own {own.name} by its bootstrap self-relocation; "
                              f"it binds the slot again once the program's libraries are loaded")

    def unresolved(self) -> str:
        own = self.own_symbol()
        name = own.name if own is not None else "?"
        version = f"@{self.reloc.symbol_version}" if self.reloc.symbol_version else ""
        return f"no object in {self.obj.name}'s scope defines {name}{version}"


# What would settle a verdict the slot's value alone cannot.
NEEDS_PROCESSED = "processed"    # value is the same before and after: has ld.so been past it?
NEEDS_REWRITTEN = "rewritten"    # a variable holding neither value: applied, then assigned, if ld.so was past it
NEEDS_UNPROCESSED = "unprocessed"  # nothing to compare with (no source yet): pending if ld.so has not been here
NEEDS_PLT_SETUP = "plt-setup"    # a JUMP_SLOT at base 0 holding its stub: lazy once GOT[1..2] are set


# One per relocation per stop, never changed once made (replace() makes
# another): a slotted class builds four times faster than a frozen one.
@dataclass(slots=True)
class _Verdict:
    state: str
    expected: int | None
    current: int | None = None  # overrides the slot word (COPY)
    # "pending" only because the slot still holds its file value, which the
    # loader may legitimately write again: an ifunc resolver can return 0
    # (glibc's x86 cpu-features/cacheinfo resolvers run setup code and do).
    may_be_applied: bool = False
    binding: Binding | None = None
    reason: str | None = None
    needs: str | None = None
    # The slot now holds what only ld.so's processing of this relocation
    # writes (not its file value): ld.so has been here.
    shows_processing: bool = False
    # The slot still holds its file value and ld.so would change it: ld.so
    # has not been here (nor, by table order, anywhere after it).
    shows_unprocessed: bool = False


def _hex(value: int | None) -> str:
    return "?" if value is None else f"{value:#x}"


def _judge(current: int | None, pending: int | None, applied: int | None,
           lazy: int | None = None, binding: Binding | None = None, why_no_expected: str | None = None,
           variable: bool = False) -> _Verdict:
    """``variable``: the slot is an initialised pointer variable (RELATIVE,
    ABS64) the program itself may assign after ld.so relocated it; a GOT
    slot is the loader's alone."""
    if current is None:
        return _Verdict(UNKNOWN, applied, binding=binding, needs=NEEDS_UNPROCESSED,
                        reason="the slot is not readable")
    # The common answers first: this runs once per relocation.
    is_pending, is_applied, is_lazy = current == pending, current == applied, current == lazy
    if is_applied and not is_pending and not is_lazy:
        return _Verdict(APPLIED, applied, binding=binding, shows_processing=True)
    if is_pending and not is_applied and not is_lazy:
        return _Verdict(PENDING, applied, binding=binding, shows_unprocessed=applied is not None)
    if is_lazy and not is_pending and not is_applied:
        return _Verdict(LAZY, applied, binding=binding, shows_processing=True)
    candidates = {PENDING: pending, APPLIED: applied, LAZY: lazy}
    matches = {state for state, value in candidates.items() if value is not None and value == current}
    if len(matches) == 1:
        state = next(iter(matches))
        return _Verdict(state, applied, binding=binding, shows_processing=state != PENDING,
                        shows_unprocessed=state == PENDING and applied is not None)
    if matches == {PENDING, LAZY}:
        return _Verdict(PENDING, applied, binding=binding, needs=NEEDS_PLT_SETUP)
    if PENDING in matches:
        # ld.so writes the value the file already holds.
        return _Verdict(UNKNOWN, applied, binding=binding, needs=NEEDS_PROCESSED)
    if matches:
        return _Verdict(UNKNOWN, applied, binding=binding,
                        reason=f"holds {current:#x}, which is both the bound value and the lazy PLT stub")
    if applied is None:
        reason = f"holds {current:#x}, not the file value {_hex(pending)}"
        if why_no_expected:
            reason += f"; the relocated value is unknown: {why_no_expected}"
        return _Verdict(UNKNOWN, None, binding=binding, reason=reason)
    # Neither before nor after: a variable the program wrote since, or not ours to tell.
    return _Verdict(UNKNOWN, applied, binding=binding, needs=NEEDS_REWRITTEN if variable else None,
                    reason=f"holds {current:#x}, neither the file value {_hex(pending)} "
                           f"nor the relocated value {applied:#x}")


# ---------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------


def _relative(s: _Slot) -> _Verdict:
    return _relative_verdict(s.current, s.link_value, s.reloc.addend, s.base)


def _relative_verdict(current: int | None, link_value: int | None, addend: int | None, base: int) -> _Verdict:
    """B + A, A from the slot when the table has none (REL, RELR)."""
    if addend is None:
        addend = link_value
    expected = None if addend is None else (base + addend) & MASK64
    return _judge(current, link_value, expected, variable=True)


# The two answers of most RELATIVE slots, shared rather than made per slot
# (relocation_states judges a table's RELATIVE slots in bulk): applied,
# the slot holding the relocated value (its expected value is the slot's);
# pending, the slot holding its file value (expected: the plan's
# relative_expected).
_HELD_RELATIVE = _Verdict(APPLIED, None, shows_processing=True)
_PENDING_RELATIVE = _Verdict(PENDING, None, shows_unprocessed=True)


def _glob_dat(s: _Slot) -> _Verdict:
    value, sym, binding = s.symbol_value()
    if sym is not None and sym.type == "GNU_IFUNC":
        return _ifunc_symbol(s)
    return s.self_bound(_judge(s.current, s.link_value, value, binding=binding,
                               why_no_expected=None if value is not None else s.unresolved()))


def _jump_slot(s: _Slot) -> _Verdict:
    value, sym, binding = s.symbol_value(plt=True)
    # Lazy binding: ld.so only adds the bias, so the slot points back at the
    # PLT stub that calls _dl_runtime_resolve.
    lazy = None if s.link_value is None else (s.base + s.link_value) & MASK64
    if sym is not None and sym.type == "GNU_IFUNC":
        if s.current is not None and s.current == lazy and lazy != s.link_value:
            return _Verdict(LAZY, None, binding=binding, shows_processing=True)
        if s.current is not None and s.current == lazy:
            return _Verdict(PENDING, None, binding=binding, needs=NEEDS_PLT_SETUP)
        return _ifunc_symbol(s, plt=True)
    return s.self_bound(_judge(s.current, s.link_value, value, lazy, binding=binding,
                               why_no_expected=None if value is not None else s.unresolved()))


def _absolute(s: _Slot) -> _Verdict:
    value, _, binding = s.symbol_value()
    addend = s.implicit_addend()
    expected = None if value is None or addend is None else (value + addend) & MASK64
    return _judge(s.current, s.link_value, expected, binding=binding,
                  why_no_expected=None if value is not None else s.unresolved(), variable=True)


def _ifunc_symbol(s: _Slot, plt: bool = False) -> _Verdict:
    """Bound to a GNU_IFUNC: the loader stores what the resolver returns,
    which we cannot compute; it lands inside the defining object, or in the
    vDSO (glibc's time and gettimeofday resolvers return the vDSO's)."""
    found = s.symbol_definition(plt=plt)
    binding = s.binding(found)
    if s.current is None:
        return _Verdict(UNKNOWN, None, binding=binding, needs=NEEDS_UNPROCESSED,
                        reason="the slot is not readable")
    if s.current == s.link_value:
        return _Verdict(PENDING, None, may_be_applied=True, binding=binding)
    if found is None:
        return _Verdict(UNKNOWN, None, binding=binding, reason=s.unresolved())
    landed = s.symbols.object_at(s.current)
    if landed is not None and (landed.path, landed.base) == (found[0].path, found[0].base):
        return _Verdict(APPLIED, None, binding=binding, shows_processing=True)
    if landed is None:
        if _in_unnamed_image(s.memory, s.current):
            return _Verdict(APPLIED, None, binding=binding, shows_processing=True)
        return _Verdict(UNKNOWN, None, binding=binding,
                        reason=f"holds {s.current:#x}, outside every loaded file and the vDSO; the "
                               f"{found[1].name} resolver in {found[0].name} returns an address in one of them")
    return _Verdict(UNKNOWN, None, binding=binding,
                    reason=f"holds {s.current:#x}, in {landed.name}, but {found[1].name} is an ifunc "
                           f"of {found[0].name}")


_VDSO_PAGES = 8  # the x86-64 and aarch64 vDSO images are 2 pages


def _in_unnamed_image(memory: MemoryReader, address: int) -> bool:
    """address lies in an ELF image no file backs: the vDSO (the only one
    the kernel maps), whose header sits a page or two below its code."""
    page = address & ~(PAGE_SIZE - 1)
    for back in range(_VDSO_PAGES):
        extent = image_extent(memory, page - back * PAGE_SIZE)
        if extent is not None:
            return extent[0] <= address < extent[1]
    return False


def _irelative(s: _Slot) -> _Verdict:
    addend = s.implicit_addend()
    resolver = None if addend is None else (s.base + addend) & MASK64
    if s.current is None or s.link_value is None:
        return _Verdict(UNKNOWN, None, needs=NEEDS_UNPROCESSED,
                        reason="the slot is not readable")
    if s.current == s.link_value:
        return _Verdict(PENDING, None, may_be_applied=True)
    if s.current != resolver:
        # Whatever implementation the resolver chose.
        return _Verdict(APPLIED, s.current, shows_processing=True)
    return _Verdict(UNKNOWN, None, reason=f"holds the resolver's own address {resolver:#x}")


def _tls_binding(s: _Slot) -> Binding | None:
    """The TLS symbol a module-id or offset relocation names, if any."""
    return None if s.reloc.symbol_index == 0 else s.binding(s.symbol_definition(include_tls=True))


def _tls_nonzero(s: _Slot) -> _Verdict:
    """DTPMOD64 (a module id >= 1) and TLSDESC (a resolver pointer): the
    produced value is never 0, so a slot still 0 is pending."""
    binding = _tls_binding(s)
    if s.current is None or s.link_value is None:
        return _Verdict(UNKNOWN, None, binding=binding, needs=NEEDS_UNPROCESSED,
                        reason="the slot is not readable")
    if s.current != s.link_value:
        return _Verdict(APPLIED, None, binding=binding, shows_processing=True)
    if s.link_value == 0:
        return _Verdict(PENDING, None, binding=binding, shows_unprocessed=True)
    return _Verdict(UNKNOWN, None, binding=binding, reason=f"holds its non-zero file value {s.link_value:#x}")


def _tpoff_x86_64(s: _Slot) -> _Verdict:
    """Variant II TLS: the static TLS block lies below the thread pointer, so
    the offset written is negative; a non-negative link value cannot be it."""
    binding = _tls_binding(s)
    if s.current is None or s.link_value is None:
        return _Verdict(UNKNOWN, None, binding=binding, needs=NEEDS_UNPROCESSED,
                        reason="the slot is not readable")
    if s.current != s.link_value:
        return _Verdict(APPLIED, None, binding=binding, shows_processing=True)
    if s.link_value < 1 << 63:
        return _Verdict(PENDING, None, binding=binding, shows_unprocessed=True)
    return _Verdict(UNKNOWN, None, binding=binding, reason=f"holds its negative file value {s.link_value:#x}")


def _tprel_aarch64(s: _Slot) -> _Verdict:
    """Variant I TLS: offsets start past the 16-byte TCB, so never 0."""
    return _tls_nonzero(s)


def _dtpoff(s: _Slot) -> _Verdict:
    """Offset of the symbol inside its module's TLS block: S + A, with S the
    symbol's st_value (not its address)."""
    addend = s.implicit_addend() or 0
    binding = None
    if s.reloc.symbol_index == 0:
        expected: int | None = addend & MASK64
    else:
        found = s.symbol_definition(include_tls=True)
        binding = s.binding(found)
        expected = None if found is None else (found[1].value + addend) & MASK64
    return _judge(s.current, s.link_value, expected, binding=binding,
                  why_no_expected=None if expected is not None else s.unresolved())


_MAX_COPY = 1 << 20


def _copy(s: _Slot) -> _Verdict:
    """The executable's copy of a library variable: compare its bytes with
    the source definition in the next object that defines it."""
    own = s.own_symbol()
    # Copies are variables (a few bytes to a few KiB); a huge size is a
    # damaged symbol, not something to read.
    if own is None or own.size == 0 or own.size > _MAX_COPY:
        return _Verdict(UNKNOWN, None, reason="the copied symbol has no usable size")
    found = s.symbols.lookup(own.name, s.reloc.symbol_version, skip=s.obj, requester=s.obj)
    binding = s.binding(found)
    address = s.obj.runtime(s.reloc.offset)
    now = s.slot_bytes(address, own.size)
    before = s.link_bytes(s.reloc.offset, own.size)
    source = None if found is None else s.memory.read(found[0].runtime(found[1].value), own.size)
    first = (lambda b: None if b is None else int.from_bytes(b[:8].ljust(8, b"\0"), "little"))
    if now is None or source is None or before is None:
        if found is None and now is not None and now == before:
            # The defining library is not mapped yet, or nothing defines it.
            return _Verdict(UNKNOWN, None, first(now), binding=binding, needs=NEEDS_UNPROCESSED,
                            reason=s.unresolved())
        reason = s.unresolved() if found is None else "the copy or its source is not readable"
        return _Verdict(UNKNOWN, first(source), first(now), binding=binding, reason=reason)
    if source == before:
        # The library's variable holds what the copy held in the file (0s,
        # mostly): copying changes nothing visible.
        if now == before:
            return _Verdict(UNKNOWN, first(source), first(now), binding=binding, needs=NEEDS_PROCESSED)
        # The copy changed and its source did not: the program wrote its
        # copy (libc's startup sets the program's copy of environ).
        return _Verdict(UNKNOWN, first(source), first(now), binding=binding, needs=NEEDS_REWRITTEN,
                        reason=f"the {own.size}-byte copy differs from both its file bytes and its source "
                               f"in {found[0].name}, which still holds the file's bytes")
    if now == source:
        return _Verdict(APPLIED, first(source), first(now), binding=binding, shows_processing=True)
    if now == before:
        return _Verdict(PENDING, first(source), first(now), binding=binding, shows_unprocessed=True)
    # Both changed since: the program wrote one of them after the copy.
    return _Verdict(UNKNOWN, first(source), first(now), binding=binding, needs=NEEDS_REWRITTEN,
                    reason=f"the {own.size}-byte copy matches neither its file bytes nor its source "
                           f"in {found[0].name}")


def _none(_s: _Slot) -> _Verdict:
    return _Verdict(UNKNOWN, None, reason="a NONE relocation: the loader writes nothing")


def _no_recipe(s: _Slot) -> _Verdict:
    return _Verdict(UNKNOWN, None, reason=f"no recipe for {s.reloc.type_name}")


# Recipe per relocation type name. Word-sized slots everywhere here.
RECIPES: dict[str, Callable[[_Slot], _Verdict]] = {
    "R_X86_64_NONE": _none,
    "R_X86_64_RELATIVE": _relative,
    "R_X86_64_RELATIVE64": _relative,
    "R_X86_64_GLOB_DAT": _glob_dat,
    "R_X86_64_JUMP_SLOT": _jump_slot,
    "R_X86_64_64": _absolute,
    "R_X86_64_IRELATIVE": _irelative,
    "R_X86_64_TPOFF64": _tpoff_x86_64,
    "R_X86_64_DTPMOD64": _tls_nonzero,
    "R_X86_64_DTPOFF64": _dtpoff,
    "R_X86_64_TLSDESC": _tls_nonzero,
    "R_X86_64_COPY": _copy,
    "R_AARCH64_NONE": _none,
    "R_AARCH64_RELATIVE": _relative,
    "R_AARCH64_GLOB_DAT": _glob_dat,
    "R_AARCH64_JUMP_SLOT": _jump_slot,
    "R_AARCH64_ABS64": _absolute,
    "R_AARCH64_IRELATIVE": _irelative,
    "R_AARCH64_TLS_TPREL64": _tprel_aarch64,
    "R_AARCH64_TLS_TPREL": _tprel_aarch64,
    "R_AARCH64_TLS_DTPMOD64": _tls_nonzero,
    "R_AARCH64_TLS_DTPMOD": _tls_nonzero,
    "R_AARCH64_TLS_DTPREL64": _dtpoff,
    "R_AARCH64_TLS_DTPREL": _dtpoff,
    "R_AARCH64_TLSDESC": _tls_nonzero,
    "R_AARCH64_COPY": _copy,
}

_RELATIVE_TYPES = frozenset(name for name, recipe in RECIPES.items() if recipe is _relative)

# Slot word size and byte order per architecture.
ARCH_WORD: dict[str, int] = {"x86_64": 8, "aarch64": 8}


# ---------------------------------------------------------------------------
# Memory and file images, read once per segment
# ---------------------------------------------------------------------------


class _SegmentImages:
    """Bytes of a set of PT_LOAD segments, fetched with one read each (a
    page at a time only when the whole segment is not readable)."""

    def __init__(self, fetch: Callable[[int, int], bytes | None], segments: Iterable[tuple[int, int]]) -> None:
        self._fetch = fetch
        self.blocks: list[tuple[int, int, bytes | None]] = []
        for start, end in segments:
            self.blocks.append((start, end, fetch(start, end - start)))
        self._pages: dict[int, bytes | None] = {}

    def read(self, addr: int, size: int) -> bytes | None:
        for start, end, data in self.blocks:
            if start <= addr and addr + size <= end:
                if data is not None:
                    return data[addr - start:addr - start + size]
                return self._by_pages(addr, size)
        return self._fetch(addr, size)

    def _by_pages(self, addr: int, size: int) -> bytes | None:
        out = bytearray()
        page = addr & ~(PAGE_SIZE - 1)
        while page < addr + size:
            if page not in self._pages:
                self._pages[page] = self._fetch(page, PAGE_SIZE)
            chunk = self._pages[page]
            if chunk is None:
                return None
            out += chunk
            page += PAGE_SIZE
        offset = addr & (PAGE_SIZE - 1)
        return bytes(out[offset:offset + size])


def _file_image(segments: tuple[Segment, ...], file_bytes: bytes) -> Callable[[int, int], bytes | None]:
    """(link vaddr, size) -> bytes the loader maps there: file contents up to
    p_filesz, zeros (.bss) up to p_memsz."""

    def read(vaddr: int, size: int) -> bytes | None:
        for seg in segments:
            if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.memsz:
                rel = vaddr - seg.vaddr
                in_file = max(0, min(size, seg.filesz - rel))
                data = file_bytes[seg.offset + rel:seg.offset + rel + in_file] if in_file else b""
                if len(data) != in_file:
                    return None
                return data + bytes(size - in_file)
        return None

    return read


def relocation_states(obj: LoadedObject, file_bytes: bytes, memory: MemoryReader, symbols: SymbolTable,
                      arch: str = "x86_64", cache: RelocationCache | None = None) -> ObjectRelocations:
    """The states of obj's relocations, in ElfInfo.relocations order, as
    columns (ObjectRelocations: a sequence of RelocationState made only
    for the rows read). ``cache``: the session's (ElfCache.relocations),
    which makes a stop after the first judge only the slots that changed
    (and hands back the very same table while none did); without one every
    slot is judged."""
    word = ARCH_WORD.get(arch)
    if word is None:
        raise ValueError(f"no relocation recipes for architecture {arch!r}")
    plan = _plan(obj, file_bytes, arch, word, cache)
    symbols = symbols_in_loader_order(symbols, memory)
    image = _SegmentImages(memory.read, plan.segments)
    blocks = tuple(data for _, _, data in image.blocks)
    cached = None
    if cache is not None:
        with cache.lock:
            cached = cache.answers.get(plan.key)
    if (cached is None or cached.plan is not plan or not _same_symbols(cached.symbols, symbols)
            or any(data is None for data in blocks)):
        cached = None
    plt_setup = _plt_setup(plan, image, word)
    progress = _Progress(symbols, memory, cache)
    # A stop while ld.so relocates changes a few words of a segment; every
    # other slot keeps its verdict (a function of the slot word, the
    # symbols and the base), so only slots in changed chunks are judged again.
    if cached is None:
        raw: list[_Verdict | None] = [None] * len(plan.columns)
        currents: list[int | None] = [None] * len(plan.columns)
        # Most RELATIVE slots in bulk (a big program's are three quarters
        # of its relocations); what they leave open, and the other slots,
        # one by one.
        redo = list(plan.others)
        for run in plan.relative_runs:
            block = blocks[run.where]
            start, end = plan.segments[run.where]
            if block is None or len(block) != end - start:  # the words' places are in the whole segment
                redo.extend(run.indices)
            else:
                _judge_relative_run(run, block, raw, currents, redo)
        previous_states: ObjectRelocations | None = None
        previous_final: list[_Verdict] | None = None
    else:
        redo = sorted(plan.volatile | _changed_slots(plan, cached.blocks, blocks))
        # What settled the slots the values alone could not may have moved
        # on without a slot changing (GOT[1..2], r_debug).
        if not redo and cached.plt_setup == plt_setup and (
                cached.progress is None or progress.value() == cached.progress) and (
                cached.marks is None or progress.marks() == cached.marks):
            return cached.states
        raw, currents = list(cached.raw), list(cached.currents)
        previous_states, previous_final = cached.states, cached.final
    columns, link_values, base = plan.columns, plan.link_values, obj.base
    segments_of, offsets_of, type_names = plan.where_segments, plan.spot_offsets, columns.type_names
    from_bytes, recipes = int.from_bytes, RECIPES
    symbol_values: dict = {}
    verdicts: dict = {}
    for index in redo:
        where = segments_of[index]
        if where is not None and blocks[where] is not None:
            # The slot lies in a segment read whole: the common case, without
            # a search (a third of a big program's snapshot was finding it).
            at = offsets_of[index]
            current = from_bytes(blocks[where][at:at + word], "little")
        else:
            data = image.read(obj.runtime(columns.offsets[index]), word) if plan.fits else None
            current = None if data is None else from_bytes(data, "little")
        currents[index] = current
        recipe = recipes.get(type_names[index], _no_recipe)
        if recipe is _relative:  # no _Slot to build
            # _relative_verdict's two common answers spelled out.
            link_value = link_values[index]
            addend = columns.addends[index]
            if addend is None:
                addend = link_value
            if addend is not None and current is not None and current != link_value:
                expected = (base + addend) & MASK64
                if current == expected:
                    raw[index] = _Verdict(APPLIED, expected, None, False, None, None, None, True)
                    continue
            raw[index] = _relative_verdict(current, link_value, columns.addends[index], base)
            continue
        # A verdict is a function of the type, the symbol, the addend and
        # the slot's file and current values (the symbols, memory and base
        # are the same for the whole call), but for a COPY (it compares
        # another object's bytes at its own address): slots alike share one
        # (a C++ library's vtables name the same symbols hundreds of times).
        shared = recipe is not _copy
        if shared:
            key = (type_names[index], columns.symbol_indexes[index], columns.addends[index], current,
                   link_values[index])
            verdict = verdicts.get(key)
            if verdict is not None:
                raw[index] = verdict
                continue
        slot = _Slot(obj, columns.relocation(index), symbols, memory, word, current, link_values[index],
                     plan.link_bytes, image.read, symbol_values)
        raw[index] = verdict = recipe(slot)
        if shared:
            verdicts[key] = verdict
    final = _settle(obj, symbols, raw, currents, plt_setup, progress)
    currents = tuple(currents)
    if previous_states is None:
        states = _judged_table(obj.path, plan, final, currents)
    else:
        # The rows that may differ: another verdict (an equal one may still
        # make the same row) or another word in the slot.
        every = range(len(final))
        maybe = set(compress(every, map(operator.is_not, final, previous_final)))
        maybe.update(compress(every, map(operator.ne, currents, cached.currents)))
        states = _judged_table(obj.path, plan, final, currents) if maybe else previous_states
        changed = states._differing_rows(previous_states, maybe) if maybe else ()
        if not changed:
            # Data sharing a chunk with slots was written, not a slot: hand
            # back the very same table, so what is derived from it stays cached.
            states = previous_states
        else:
            states._keep_rows_of(previous_states, changed)
    if cache is not None and all(data is not None for data in blocks):
        cache.remember(cache.answers, plan.key, _Cached(plan, symbols, blocks, tuple(raw), currents, final,
                                                        states, plt_setup, progress.used, progress.marks_used))
    return states


_STATE_OF = operator.attrgetter("state")
_BINDING_OF = operator.attrgetter("binding")
_REASON_OF = operator.attrgetter("reason")
_CURRENT_OF = operator.attrgetter("current")
_EXPECTED_OF = operator.attrgetter("expected")


def _judged_table(path: str, plan: "_Plan", final: list[_Verdict], currents: tuple[int | None, ...],
                  ) -> ObjectRelocations:
    """The states of final's verdicts as columns, each made (in C where it
    can) only when read: a big program's snapshot made a RelocationState
    per relocation (gdb's 150,000), and the cyclic collector walked them
    all again after it."""
    columns = plan.columns

    def current() -> Sequence[int | None]:
        # A verdict's own current (a COPY's first word) overrides the slot's.
        own = list(map(_CURRENT_OF, final))
        if own.count(None) == len(own):
            return currents
        return [slot if mine is None else mine for mine, slot in zip(own, currents)]

    def expected() -> Sequence[int | None]:
        # The shared RELATIVE verdicts carry no expected value: applied, it
        # is the slot's; pending, the plan's B + A.
        values = list(map(_EXPECTED_OF, final))
        every = range(len(final))
        for index in compress(every, map(operator.is_, final, repeat(_HELD_RELATIVE))):
            values[index] = currents[index]
        relative_expected = plan.relative_expected
        for index in compress(every, map(operator.is_, final, repeat(_PENDING_RELATIVE))):
            values[index] = relative_expected[index]
        return values

    return ObjectRelocations(path, len(final), {
        "address": lambda: plan.addresses,
        "type_name": columns.type_names,
        "symbol": columns.symbols,
        "addend": columns.addends,
        "state": lambda: tuple(map(_STATE_OF, final)),
        "current": current,
        "expected": expected,
        "link_value": plan.link_values,
        "table": columns.tables,
        "binding": lambda: tuple(map(_BINDING_OF, final)),
        "reason": lambda: tuple(map(_REASON_OF, final)),
    })


# ---------------------------------------------------------------------------
# What ld.so has visibly done, for the slots whose value cannot tell
# ---------------------------------------------------------------------------


class _Progress:
    """The loader's published state (r_debug, link_map), read at most once
    per call and only when a slot needs it; the session's last reading with
    the same symbol table (the objects of one snapshot share it) is where
    the next one starts."""

    def __init__(self, symbols: SymbolTable, memory: MemoryReader, cache: RelocationCache | None) -> None:
        self._symbols = symbols
        self._memory = memory
        self._cache = cache
        self._value: LoaderProgress | None = None
        self.used: LoaderProgress | None = None
        self._marks: _Marks | None = None
        self.marks_used: _Marks | None = None

    def value(self) -> LoaderProgress:
        if self._value is None:
            symbols, cache = self._symbols, self._cache
            last = cache.progress if cache is not None else None
            before = last[1] if last is not None and last[0] is symbols else None
            self._value = loader_progress(symbols.program, symbols.objects, self._memory, before)
            if cache is not None:
                cache.progress = (symbols, self._value)
        return self._value

    def use(self) -> LoaderProgress:
        self.used = self.value()
        return self.used

    def marks(self) -> "_Marks":
        """Each listed object's l_relocated, read once per call."""
        if self._marks is None:
            self._marks = _read_marks(self._symbols, self._memory)
        return self._marks

    def use_marks(self) -> "_Marks":
        self.marks_used = self.marks()
        return self.marks_used


@dataclass(frozen=True)
class _Marks:
    """glibc's l_relocated per listed object, and whether its lazy-binding
    setup is done (GOT[1] holds its link_map, which elf_machine_runtime_setup
    writes before any of its relocations; None without a PLT): (namespace,
    l_addr, is the namespace's first entry) -> (marked, set up). Empty while
    there is no list or ld.so's private layout is unknown (no DWARF, musl)."""

    objects: tuple[tuple[tuple[int, int, bool], tuple[bool, bool | None]], ...] = ()

    def _of(self, obj: LoadedObject, is_program: bool) -> tuple[bool, bool | None] | None:
        for (namespace, l_addr, first), marks in self.objects:
            if namespace == 0 and l_addr == obj.base and first == is_program:
                return marks
        return None

    def relocated(self, obj: LoadedObject, is_program: bool) -> bool | None:
        """obj's l_relocated in namespace 0, None when not known."""
        marks = self._of(obj, is_program)
        return None if marks is None else marks[0]

    def lazy_setup(self, obj: LoadedObject, is_program: bool) -> bool | None:
        marks = self._of(obj, is_program)
        return None if marks is None else marks[1]


_DF_BIND_NOW, _DF_1_NOW = 0x8, 0x1


def _binds_lazily(obj: LoadedObject) -> bool:
    """obj has PLT slots and asks for no eager binding (glibc turns
    DT_BIND_NOW, DF_BIND_NOW and DF_1_NOW into lazy = 0)."""
    info = obj.info
    return (info.dynamic_value("DT_JMPREL") is not None and info.dynamic_value("DT_PLTGOT") is not None
            and info.dynamic_value("DT_BIND_NOW") is None
            and not (info.dynamic_value("DT_FLAGS") or 0) & _DF_BIND_NOW
            and not (info.dynamic_value("DT_FLAGS_1") or 0) & _DF_1_NOW)


def _read_marks(symbols: SymbolTable, memory: MemoryReader) -> _Marks:
    program = symbols.program
    interp = program.info.interp if program is not None else None
    if interp is None:
        return _Marks()
    interp_name = interp.rsplit("/", 1)[-1]
    ldso = next((o for o in symbols.objects if o.name == interp_name), None)
    view = with_private_fields(read_link_map(program, memory), ldso, memory)
    by_base = {o.base: o for o in symbols.objects if o is not program}
    heads = set()
    marks = []
    for entry in view.entries:
        first = entry.namespace not in heads
        heads.add(entry.namespace)
        if entry.kind == "vdso" or entry.private is None or entry.private.l_relocated is None:
            continue
        obj = program if first and entry.namespace == 0 else by_base.get(entry.l_addr)
        setup = None
        if obj is not None and obj.info.elf_class == 64 and obj.info.dynamic_value("DT_PLTGOT") is not None:
            raw = memory.read((obj.base + obj.info.dynamic_value("DT_PLTGOT") + 8) & MASK64, 8)
            if raw is not None:
                setup = int.from_bytes(raw, "little" if obj.info.little_endian else "big") == entry.address
        marks.append(((entry.namespace, entry.l_addr, first), (entry.private.l_relocated, setup)))
    return _Marks(tuple(marks))


def _plt_setup(plan: "_Plan", image: "_SegmentImages", word: int) -> bool | None:
    """True when GOT[1] and GOT[2] no longer hold their file values (glibc's
    lazy-binding setup wrote the link_map and the resolver there), False
    when both still do, None when there is no PLT GOT or it is unreadable."""
    if plan.pltgot is None or not plan.fits:
        return None
    words = []
    for i in (1, 2):
        vaddr = plan.pltgot + i * word
        now = image.read((plan.base + vaddr) & MASK64, word)
        before = plan.link_bytes(vaddr, word)
        if now is None or before is None:
            return None
        words.append(now != before)
    return all(words) if all(words) or not any(words) else None


_SHOWS_PROCESSING = operator.attrgetter("shows_processing")
_SHOWS_UNPROCESSED = operator.attrgetter("shows_unprocessed")
_NEEDS = operator.attrgetter("needs")
_MAY_BE_APPLIED = operator.attrgetter("may_be_applied")


def _settle(obj: LoadedObject, symbols: SymbolTable, raw: list, currents: list[int | None],
            plt_setup: bool | None, progress: _Progress) -> list[_Verdict]:
    """Decide the verdicts the slot values left open, from what ld.so has
    visibly done. glibc applies one object's relocations in table order
    (RELR, REL, RELA, then JMPREL: ELF_DYNAMIC_RELOCATE), the order of
    ElfInfo.relocations, so anything before a relocation that shows
    processing has been processed. (musl has no ifuncs nor lazy binding,
    so its different order never matters here.)"""
    final = list(raw)
    # Each flag read for every verdict in C (map over an attrgetter, the
    # positions picked by compress), no list made of them: a big program
    # has 150,000. The last one showing processing is looked for from the
    # end (at AT_ENTRY, the last relocation).
    count = len(raw)
    last = next(compress(range(count - 1, -1, -1), map(_SHOWS_PROCESSING, reversed(raw))), -1)
    first_unprocessed = next(compress(range(count), map(_SHOWS_UNPROCESSED, raw)), count)
    open_verdicts = sorted({*compress(range(count), map(operator.is_not, map(_NEEDS, raw), repeat(None))),
                            *compress(range(count), map(_MAY_BE_APPLIED, raw))})
    in_startup_scope = symbols.in_global_scope(obj)
    name = obj.name
    program = symbols.program
    interp = program.info.interp if program is not None else None
    # ld.so relocates itself before it publishes anything.
    interp_name = interp.rsplit("/", 1)[-1] if interp is not None else None
    is_interp = interp is not None and obj.name == interp_name

    is_program = program is not None and obj.base == program.base and obj.path == program.path

    def relocated(index: int) -> str | None:
        """Why ld.so has processed relocation index, or None if nothing shows it."""
        if index < last:
            return f"a later relocation of {name} shows ld.so has processed it"
        if in_startup_scope and progress.use().startup_relocated:
            return "ld.so finished relocating the startup objects (r_debug RT_CONSISTENT)"
        if not is_interp and progress.use_marks().relocated(obj, is_program):
            return f"ld.so marked {name} relocated (link_map l_relocated)"
        return None

    def not_started() -> bool:
        """ld.so has not begun on obj: its l_relocated is clear and so is
        that of an object glibc relocates before it (a dependency that does
        not depend on obj in turn; for the program, which dl_main relocates
        last, any other startup object); or, while it relocates the startup
        objects lazily (another one's GOT[1] holds its link_map), obj binds
        lazily and its GOT[1] does not hold its link_map yet."""
        if is_interp:
            return False
        marks = progress.use_marks()
        if marks.relocated(obj, is_program) is not False:
            return False
        if is_program:
            before = [o for o in symbols.scope if o is not obj and o.name != interp_name]
        else:
            before = [o for o in needed_closure([obj], symbols.objects)[1:]
                      if o.name != interp_name and obj not in needed_closure([o], symbols.objects)]
        if any(marks.relocated(o, False) is False for o in before):
            return True
        if (not in_startup_scope or program is None or marks.relocated(program, True) is not False
                or marks.lazy_setup(obj, is_program) is not False or not _binds_lazily(obj)):
            return False
        return any(marks.relocated(o, False) and marks.lazy_setup(o, False) for o in symbols.scope
                   if o is not program and o.name != interp_name)

    # ld.so relocates an object only once it has loaded everything it needs
    # and put the object in its list.
    missing = symbols.missing_needed(obj)
    unlisted = symbols.listed is not None and object_key(obj) not in symbols.listed

    def unprocessed(index: int) -> bool:
        """ld.so has not reached relocation index: an earlier one is still
        pending, a library the object needs is not mapped yet, ld.so has not
        listed the object (it is still mapping it, or the object is not
        ld.so's), or ld.so has not even filled the program's DT_DEBUG."""
        if first_unprocessed < index or missing or unlisted:
            return True
        if index >= last and in_startup_scope and not is_interp and progress.use().published is False:
            return True
        return index >= last and not_started()

    for i in open_verdicts:
        verdict = raw[i]
        if verdict.may_be_applied:
            if relocated(i):
                final[i] = replace(verdict, state=APPLIED, expected=currents[i], may_be_applied=False)
            continue
        needs = verdict.needs
        if needs is None:
            continue
        current = currents[i]
        if needs == NEEDS_PLT_SETUP:
            if plt_setup:
                final[i] = replace(verdict, state=LAZY, needs=None)
            elif plt_setup is None:
                final[i] = replace(verdict, state=UNKNOWN, needs=None,
                                   reason=f"holds its PLT stub {_hex(current)}, which at base 0 is also its "
                                          f"lazy value, and {name}'s GOT[1..2] are not readable")
            elif i < last:
                final[i] = replace(verdict, state=UNKNOWN, needs=None,
                                   reason=f"still holds its PLT stub {_hex(current)}, though ld.so bound later "
                                          f"slots of {name} without lazy binding (GOT[1..2] empty)")
            else:
                final[i] = replace(verdict, needs=None)
        elif needs == NEEDS_PROCESSED:
            why = relocated(i)
            if why or unprocessed(i):
                final[i] = replace(verdict, needs=None, state=APPLIED if why else PENDING)
            else:
                final[i] = replace(verdict, needs=None,
                                   reason=f"holds {_hex(current)} both before and after relocation, and "
                                          f"nothing shows yet whether ld.so has processed it")
        elif needs == NEEDS_REWRITTEN:
            why = relocated(i)
            if why:
                final[i] = replace(verdict, needs=None, state=APPLIED,
                                   reason=f"{verdict.reason}: rewritten after relocation ({why})")
            elif unprocessed(i):
                final[i] = replace(verdict, needs=None, state=PENDING, reason=None)
            else:
                final[i] = replace(verdict, needs=None)
        elif needs == NEEDS_UNPROCESSED:
            if unprocessed(i):
                final[i] = replace(verdict, needs=None, state=PENDING, reason=None)
            else:
                final[i] = replace(verdict, needs=None)
    return final


# ---------------------------------------------------------------------------
# Per-object cache: what does not change between stops, and the last answer
# ---------------------------------------------------------------------------

_CHUNK = 64            # bytes compared at once when looking for changed slots


@dataclass(frozen=True, eq=False)
class _Plan:
    """Everything about an object's relocations that memory cannot change."""

    key: tuple
    info: object
    file_bytes: bytes
    columns: RelocationColumns  # the object's relocations (ElfInfo.relocation_columns)
    fits: bool
    segments: tuple[tuple[int, int], ...]            # runtime [start, end) read per stop
    link_values: tuple[int | None, ...]
    link_bytes: Callable[[int, int], bytes | None]
    volatile: frozenset[int]                         # judged at every stop (COPY, slots outside)
    base: int = 0
    pltgot: int | None = None                        # DT_PLTGOT (link-time)
    # Per slot: the index in segments of the one that holds its whole
    # word (None: none does), and its offset there; where_segments is
    # None throughout when the recipes cannot read the slots (a 32-bit
    # object's), spot_segments is what chunks are made of either way.
    where_segments: Sequence[int | None] = ()
    spot_segments: Sequence[int | None] = ()
    spot_offsets: Sequence[int | None] = ()
    word: int = 8
    # RELATIVE slots judged in bulk, per read segment (_RelativeRun), and
    # the other slots; relative_expected: per slot, B + A for a RELATIVE
    # one whose A is known (None otherwise).
    relative_runs: tuple["_RelativeRun", ...] = ()
    others: tuple[int, ...] = ()
    relative_expected: tuple[int | None, ...] = ()

    @cached_property
    def addresses(self) -> tuple[int, ...]:
        """Each slot's runtime address."""
        offsets = self.columns.offsets
        if offsets and self.base + max(offsets) <= MASK64 and min(offsets) >= 0:
            return tuple(map(self.base.__add__, offsets))
        return tuple([(self.base + offset) & MASK64 for offset in offsets])

    @cached_property
    def chunks(self) -> dict[tuple[int, int], tuple[int, ...]]:
        """(segment, chunk) -> the slots in it that a stop judges again when
        its bytes change; made at the second stop, not the first (a
        one-shot snapshot never needs it)."""
        chunks: dict[tuple[int, int], list[int]] = {}
        volatile, word = self.volatile, self.word
        for index, (where, offset) in enumerate(zip(self.spot_segments, self.spot_offsets)):
            if where is None or index in volatile:
                continue
            first, last = offset // _CHUNK, (offset + word - 1) // _CHUNK
            chunks.setdefault((where, first), []).append(index)
            if last != first:
                chunks.setdefault((where, last), []).append(index)
        return {k: tuple(v) for k, v in chunks.items()}


@dataclass(frozen=True, eq=False)
class _RelativeRun:
    """The RELATIVE slots of one read segment, all word-aligned alike:
    their words are fetched from the segment's bytes by one itemgetter
    over a word view, and compared with the expected and file values as
    whole tuples (one comparison in C when every slot is applied)."""

    where: int  # index in _Plan.segments
    shift: int  # byte offset of the word view in the segment's bytes
    indices: tuple[int, ...]
    fetch: Callable  # word view -> tuple of the slots' words
    expected: tuple[int, ...]
    links: tuple[int, ...]
    # No slot's expected value is its file value, and the slots are
    # relocations [indices[0], indices[-1]] in a row.
    distinct: bool
    contiguous: bool


def _relative_runs(columns: RelocationColumns, segments_of: Sequence[int | None], offsets_of: Sequence[int | None],
                   link_values: Sequence[int | None], base: int, word: int, volatile: set[int],
                   ) -> tuple[tuple[_RelativeRun, ...], tuple[int, ...], tuple[int | None, ...]]:
    """Group the RELATIVE slots whose file value and place are known by
    read segment and word alignment (see _RelativeRun); the rest are
    judged one by one. In comprehensions, not one loop with branches:
    this runs once per plan over every relocation (gdb's 150,000)."""
    relative = _RELATIVE_TYPES
    type_names = columns.type_names
    count = len(type_names)
    # Linkers put the RELATIVE relocations in a row (RELR: all of them):
    # found by counting and one set over that slice, in C.
    present = [name for name in relative if name in type_names] if count else []
    if not present:
        return (), tuple(range(count)), (None,) * count
    first = min(type_names.index(name) for name in present)
    stop = first + sum(type_names.count(name) for name in present)
    if set(type_names[first:stop]) <= relative:
        chosen: Sequence[int] = range(first, stop)
        others = [*range(first), *range(stop, count)]
    else:
        chosen = [index for index, name in enumerate(type_names) if name in relative]
        others = [index for index, name in enumerate(type_names) if name not in relative]
        first, stop = chosen[0], chosen[-1] + 1
    if stop - first == len(chosen):  # in a row, as linkers sort them
        addends, links = columns.addends[first:stop], link_values[first:stop]
        segments, spots = segments_of[first:stop], offsets_of[first:stop]
    else:
        addends, links = [columns.addends[i] for i in chosen], [link_values[i] for i in chosen]
        segments, spots = [segments_of[i] for i in chosen], [offsets_of[i] for i in chosen]
    if None not in addends:
        expected = [(base + addend) & MASK64 for addend in addends]
    else:  # REL, RELR: A is the slot's file value
        expected = [None if addend is None and link is None else (base + (link if addend is None else addend)) & MASK64
                    for addend, link in zip(addends, links)]
    expected_of: list[int | None] = [None] * count
    if stop - first == len(chosen):
        expected_of[first:stop] = expected
    else:
        for index, value in zip(chosen, expected):
            expected_of[index] = value
    shifts = [None if spot is None else spot & 7 for spot in spots]
    positions: dict = {}  # (segment, shift) -> positions in chosen
    if word != 8:
        positions[None] = range(len(chosen))
    elif None not in links and None not in expected and None not in segments and volatile.isdisjoint(chosen):
        if len(set(segments)) == 1 and len(set(shifts)) == 1:  # one PT_LOAD, aligned alike: the rule
            positions[(segments[0], shifts[0])] = range(len(chosen))
        else:
            for position, key in enumerate(zip(segments, shifts)):
                positions.setdefault(key, []).append(position)
    else:
        for position, (index, segment, shift, link, value) in enumerate(zip(chosen, segments, shifts, links,
                                                                             expected)):
            key = None if segment is None or link is None or value is None or index in volatile else (segment, shift)
            positions.setdefault(key, []).append(position)
    runs = []
    for key, members in positions.items():
        indices = [chosen[position] for position in members] if len(members) != len(chosen) else list(chosen)
        if key is None or len(members) < 2:  # itemgetter of one index is not a tuple
            others.extend(indices)
            continue
        where, shift = key
        if len(members) == len(chosen):
            run_expected, run_links, run_spots = tuple(expected), tuple(links), spots
        else:
            run_expected = tuple([expected[position] for position in members])
            run_links = tuple([links[position] for position in members])
            run_spots = [spots[position] for position in members]
        runs.append(_RelativeRun(where, shift, tuple(indices), itemgetter(*[(spot - shift) >> 3 for spot in run_spots]),
                                 run_expected, run_links, not any(map(operator.eq, run_expected, run_links)),
                                 indices[-1] - indices[0] + 1 == len(indices)))
    return tuple(runs), tuple(sorted(others)), tuple(expected_of)


def _judge_relative_run(run: _RelativeRun, block: bytes, raw: list, currents: list, others: list[int]) -> None:
    """Judge a run's slots from its segment's bytes: applied or pending
    by their value alone, the rest (neither, or both) one by one."""
    size = (len(block) - run.shift) // 8 * 8
    now = run.fetch(memoryview(block)[run.shift:run.shift + size].cast("Q"))
    indices = run.indices
    if run.contiguous:
        first, last = indices[0], indices[-1] + 1
        currents[first:last] = now
        if run.distinct and now == run.expected:
            raw[first:last] = [_HELD_RELATIVE] * len(indices)
            return
        if run.distinct and now == run.links:
            raw[first:last] = [_PENDING_RELATIVE] * len(indices)
            return
    else:
        for index, current in zip(indices, now):
            currents[index] = current
    held, pending = _HELD_RELATIVE, _PENDING_RELATIVE
    for index, current, expected, link in zip(indices, now, run.expected, run.links):
        if current == expected:
            if current != link:
                raw[index] = held
                continue
        elif current == link:
            raw[index] = pending
            continue
        others.append(index)


@dataclass(frozen=True, eq=False)
class _Cached:
    plan: _Plan
    symbols: SymbolTable
    blocks: tuple[bytes | None, ...]
    raw: tuple[_Verdict | None, ...]
    currents: tuple[int | None, ...]
    final: list[_Verdict]
    states: ObjectRelocations
    plt_setup: bool | None = None
    progress: LoaderProgress | None = None  # what the verdicts were settled with, when they needed it
    marks: "_Marks | None" = None           # the l_relocated marks they were settled with, when they needed them


def _plan(obj: LoadedObject, file_bytes: bytes, arch: str, word: int, cache: RelocationCache | None) -> _Plan:
    key = (obj.path, obj.base, arch)
    plan = None
    if cache is not None:
        with cache.lock:
            plan = cache.plans.get(key)
    # The same path and base may be another build of the file (a relaunch
    # after make). The bytes of an object embedded at an offset come as a
    # fresh slice each time: equal content is the same plan.
    if plan is not None and plan.info is obj.info and (plan.file_bytes is file_bytes
                                                       or plan.file_bytes == file_bytes):
        return plan
    info = obj.info
    loads = info.load_segments()
    link_bytes = _file_image(loads, file_bytes)
    columns = info.relocation_columns
    offsets = columns.offsets
    count = len(offsets)
    # The recipes are for 64-bit slots; a 32-bit object gets honest unknowns.
    fits = info.elf_class == word * 8
    ordered = sorted((s.vaddr, s.vaddr + s.memsz) for s in loads)
    reuse = all(end <= start for (_, end), (start, _) in zip(ordered, ordered[1:]))
    layout = None
    if fits and reuse and word == 8 and count >= 2 and _WORDS_BULK:
        layout = _one_segment_layout(obj, loads, offsets, file_bytes)
    if layout is not None:
        segments, link_values, spot_segments, spot_offsets = layout
        volatile: set[int] = set()
    else:
        segments, link_values, spot_segments, spot_offsets, volatile = _slot_layout(
            obj, loads, offsets, file_bytes, link_bytes, word, fits, reuse)
    # COPY compares with another object's memory: never reuse its verdict.
    copies = {name for name in set(columns.type_names) if name.endswith("_COPY")}
    if copies:
        volatile.update(index for index, name in enumerate(columns.type_names) if name in copies)
    where_segments = spot_segments if fits else (None,) * count
    runs, others, relative_expected = _relative_runs(
        columns, where_segments if _WORDS_BULK else (None,) * count, spot_offsets, link_values, obj.base, word,
        volatile)
    plan = _Plan(key, info, file_bytes, columns, fits, segments, tuple(link_values), link_bytes,
                 frozenset(volatile), obj.base, info.dynamic_value("DT_PLTGOT"),
                 where_segments, spot_segments, spot_offsets, word, runs, others, relative_expected)
    if cache is not None:
        cache.remember(cache.plans, key, plan)
    return plan


def _one_segment_layout(obj: LoadedObject, loads: tuple[Segment, ...], offsets: tuple[int, ...], file_bytes: bytes):
    """_slot_layout's answer, in bulk, when every slot lies in one PT_LOAD
    (the RW one, as a rule) and its file words are word-aligned alike
    (PT_LOADs not overlapping, 8-byte slots); None otherwise."""
    lo, hi = min(offsets), max(offsets) + 8
    seg = next((s for s in loads if s.vaddr <= lo and hi <= s.vaddr + s.memsz), None)
    if seg is None:
        return None
    start, end = obj.base + seg.vaddr, obj.base + seg.vaddr + seg.memsz
    if end > MASK64:  # wraps past 2**64
        return None
    count = len(offsets)
    file_end, delta = seg.vaddr + seg.filesz, seg.offset - seg.vaddr
    if lo < file_end < hi and any([offset < file_end < offset + 8 for offset in offsets]):
        return None  # a slot straddles the end of the file's bytes
    if hi <= file_end:
        in_file = None  # all of them
    elif lo >= file_end:
        in_file = []  # all in .bss
    else:
        in_file = [index for index, offset in enumerate(offsets) if offset + 8 <= file_end]
    if in_file is None or in_file:
        if seg.offset + seg.filesz > len(file_bytes):
            return None  # some word may lie past the end of the file
        positions = [offsets[i] + delta for i in in_file] if in_file is not None else [o + delta for o in offsets]
        shift = positions[0] & 7
        if any([(position - shift) & 7 for position in positions]):
            return None
        words = memoryview(file_bytes)[shift:shift + (len(file_bytes) - shift) // 8 * 8].cast("Q")
        if len(positions) == 1:
            values: tuple = (words[(positions[0] - shift) >> 3],)
        else:
            values = itemgetter(*[(position - shift) >> 3 for position in positions])(words)
        if in_file is None:
            link_values: list[int | None] | tuple = values
        else:
            link_values = [0] * count  # .bss
            for index, value in zip(in_file, values):
                link_values[index] = value
    else:
        link_values = (0,) * count
    return ((start, end),), link_values, (0,) * count, [offset - seg.vaddr for offset in offsets]


def _slot_layout(obj: LoadedObject, loads: tuple[Segment, ...], offsets: tuple[int, ...], file_bytes: bytes,
                 link_bytes: Callable[[int, int], bytes | None], word: int, fits: bool, reuse: bool):
    """(segments read per stop, each slot's file value, its segment index
    and offset there (None: in none of them), the slots in none), one slot
    at a time."""
    # Only segments that hold relocation slots are read (normally the RW one).
    # Slots come in runs within one segment: try the last one found first
    # (a search per slot was a third of a big program's snapshot); with
    # overlapping PT_LOADs (malformed) the first that holds it, as before.
    wanted = set()
    lo = hi = 0  # the last segment found, [vaddr, vaddr + memsz)
    for offset in offsets:
        if reuse and lo <= offset < hi:
            continue
        seg = next((s for s in loads if s.contains_vaddr(offset)), None)
        if seg is not None:
            wanted.add((obj.runtime(seg.vaddr), obj.runtime(seg.vaddr + seg.memsz)))
            lo, hi = seg.vaddr, seg.vaddr + seg.memsz
    segments = tuple(sorted(wanted))
    count = len(offsets)
    link_values: list[int | None] = [None] * count
    spot_segments: list[int | None] = [None] * count
    spot_offsets: list[int | None] = [None] * count
    volatile = set()
    where = None
    link_seg = None
    base, size = obj.base, len(file_bytes)
    from_bytes = int.from_bytes
    # A run of slots inside one segment (most of them) takes the short way:
    # its file image word and its place in the segment read at each stop
    # come from the segment found for the run's first slot. lo/hi bound
    # that run's link-time addresses, 0/0 when there is none.
    lo = hi = file_end = delta = start = run_where = 0
    for index, offset in enumerate(offsets):
        if lo <= offset and offset + word <= hi:
            if offset + word <= file_end:
                at = offset + delta
                link_values[index] = from_bytes(file_bytes[at:at + word], "little") if at + word <= size else None
            elif offset >= file_end:
                link_values[index] = 0  # .bss
            else:
                partial = link_bytes(offset, word)
                link_values[index] = None if partial is None else from_bytes(partial, "little")
            spot_segments[index], spot_offsets[index] = run_where, base + offset - start
            continue
        link = None
        if fits:
            # The file image's word (_file_image), from the last segment
            # that held one when PT_LOADs do not overlap.
            if link_seg is None or not reuse or not (
                    link_seg.vaddr <= offset and offset + word <= link_seg.vaddr + link_seg.memsz):
                link_seg = next((s for s in loads if s.vaddr <= offset and offset + word <= s.vaddr + s.memsz), None)
            if link_seg is None:
                link = None
            elif offset + word <= link_seg.vaddr + link_seg.filesz:
                at = link_seg.offset + offset - link_seg.vaddr
                link = from_bytes(file_bytes[at:at + word], "little") if at + word <= size else None
            elif offset >= link_seg.vaddr + link_seg.filesz:
                link = 0  # .bss
            else:
                partial = link_bytes(offset, word)
                link = None if partial is None else from_bytes(partial, "little")
        link_values[index] = link
        address = (base + offset) & MASK64
        if where is None or not reuse or not (segments[where][0] <= address and address + word <= segments[where][1]):
            where = next((i for i, (begin, end) in enumerate(segments) if begin <= address and address + word <= end),
                         None)
        if where is None:
            volatile.add(index)
            continue
        spot_segments[index], spot_offsets[index] = where, address - segments[where][0]
        # The short way for the slots after this one, when this slot's
        # segment is both the one its word was read from and the one read
        # at each stop (no wrap past 2**64).
        if (fits and reuse and link_seg is not None
                and segments[where] == (base + link_seg.vaddr, base + link_seg.vaddr + link_seg.memsz)):
            lo, hi = link_seg.vaddr, link_seg.vaddr + link_seg.memsz
            file_end, delta = link_seg.vaddr + link_seg.filesz, link_seg.offset - link_seg.vaddr
            start, run_where = segments[where][0], where
        else:
            lo = hi = 0
    return segments, link_values, spot_segments, spot_offsets, volatile


def _same_symbols(a: SymbolTable, b: SymbolTable) -> bool:
    if a is b:
        return True
    if len(a.objects) != len(b.objects) or len(a.scope) != len(b.scope) or a.listed != b.listed:
        return False
    return all(x.path == y.path and x.base == y.base and x.info is y.info
               for x, y in zip(a.objects + a.scope, b.objects + b.scope))


def _changed_slots(plan: _Plan, before: tuple[bytes | None, ...], now: tuple[bytes | None, ...]) -> set[int]:
    changed: set[int] = set()
    for where, (old, new) in enumerate(zip(before, now)):
        if old == new:
            continue
        if old is None or new is None or len(old) != len(new):
            return set(range(len(plan.columns)))
        for offset in range(0, len(new), _CHUNK):
            if old[offset:offset + _CHUNK] != new[offset:offset + _CHUNK]:
                changed.update(plan.chunks.get((where, offset // _CHUNK), ()))
    return changed


def relocation_totals(states: Iterable[RelocationState], object: str | None = None) -> RelocationTotals:
    if isinstance(states, (ObjectRelocations, RelocationTable)):
        # From the state column, without a RelocationState per row.
        counts = Counter(states.column("state"))
        if object is None and states:
            object = states.object if isinstance(states, ObjectRelocations) else states[0].object
        return _totals_of(counts, len(states), object)
    if not isinstance(states, (tuple, list)):
        states = list(states)
    # Counted in C: gdb's snapshot totals 150,000 states.
    counts = Counter(map(_STATE_OF, states))
    return _totals_of(counts, len(states), object if object is not None else (states[0].object if states else None))


def _totals_of(counts: Counter, total: int, name: str | None) -> RelocationTotals:
    strange = counts.keys() - _STATES
    if strange:
        raise KeyError(next(iter(strange)))
    return RelocationTotals(object=name or "", total=total, applied=counts[APPLIED],
                            pending=counts[PENDING], lazy=counts[LAZY], unknown=counts[UNKNOWN])


_STATES = frozenset({PENDING, LAZY, APPLIED, UNKNOWN})
