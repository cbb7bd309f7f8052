"""Relocation progress: for each relocation of a loaded object, has the
loader applied it yet?

We never watch the loader work; we compare the slot's current contents with
two values we can compute ourselves: what the file put there (``link_value``,
what the slot holds before the loader touches it) and what the loader will
write (``expected``). A slot that holds neither, or a case where the two
coincide (a RELATIVE relocation at base 0), is honestly "unknown".

Each relocation type has a recipe, kept in a table keyed by type name like
pyelftools' relocation.py; adding an architecture is adding rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import PAGE_SIZE, DynSymbol, Relocation, Segment
from loaderdbg.decode.memory import MemoryReader

MASK64 = 0xFFFFFFFFFFFFFFFF

PENDING, LAZY, APPLIED, UNKNOWN = "pending", "lazy", "applied", "unknown"


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


@dataclass(frozen=True)
class RelocationTotals:
    object: str
    total: int
    applied: int
    pending: int
    lazy: int
    unknown: int


# ---------------------------------------------------------------------------
# What a recipe sees
# ---------------------------------------------------------------------------


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

    @property
    def base(self) -> int:
        return self.obj.base

    def implicit_addend(self) -> int | None:
        """RELA carries A; REL and RELR keep it in the slot."""
        return self.reloc.addend if self.reloc.addend is not None else self.link_value

    def own_symbol(self) -> DynSymbol | None:
        index = self.reloc.symbol_index
        syms = self.obj.info.dynsyms
        return syms[index] if 0 < index < len(syms) else None

    def symbol_definition(self, include_tls: bool = False) -> tuple[LoadedObject, DynSymbol] | None:
        own = self.own_symbol()
        if own is None:
            return None
        # A local symbol, or -Bsymbolic, binds inside the object itself.
        if own.bind == "LOCAL" and own.shndx_defined:
            return self.obj, own
        if self.symbolic and own.shndx_defined:
            return self.obj, own
        return self.symbols.lookup(own.name, self.reloc.symbol_version, include_tls=include_tls)

    @property
    def symbolic(self) -> bool:
        info = self.obj.info
        return "DF_SYMBOLIC" in info.flags or info.dynamic_value("DT_SYMBOLIC") is not None

    def symbol_value(self) -> tuple[int | None, DynSymbol | None]:
        """S: the runtime address the symbol resolves to (0 for an undefined
        weak), with the definition (None when there is none)."""
        if self.reloc.symbol_index == 0:
            # STN_UNDEF resolves to the object itself (glibc: l_addr + 0).
            return self.base, None
        found = self.symbol_definition()
        if found is None:
            own = self.own_symbol()
            return (0, None) if own is not None and own.bind == "WEAK" else (None, None)
        obj, sym = found
        return obj.runtime(sym.value), sym


@dataclass(frozen=True)
class _Verdict:
    state: str
    expected: int | None
    current: int | None = None  # overrides the slot word (COPY)
    # "pending" only because the slot still holds its file value, which the
    # loader may legitimately write again: an ifunc resolver can return 0
    # (glibc's x86 cpu-features/cacheinfo resolvers run setup code and do).
    may_be_applied: bool = False


def _judge(current: int | None, pending: int | None, applied: int | None,
           lazy: int | None = None) -> str:
    if current is None:
        return UNKNOWN
    candidates = {PENDING: pending, APPLIED: applied, LAZY: lazy}
    matches = [state for state, value in candidates.items() if value is not None and value == current]
    # One match is an answer; none, or two states that look the same, is not.
    return matches[0] if len(matches) == 1 else UNKNOWN


# ---------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------


def _relative(s: _Slot) -> _Verdict:
    addend = s.implicit_addend()
    expected = None if addend is None else (s.base + addend) & MASK64
    return _Verdict(_judge(s.current, s.link_value, expected), expected)


def _glob_dat(s: _Slot) -> _Verdict:
    value, sym = s.symbol_value()
    if sym is not None and sym.type == "GNU_IFUNC":
        return _ifunc_symbol(s)
    return _Verdict(_judge(s.current, s.link_value, value), value)


def _jump_slot(s: _Slot) -> _Verdict:
    value, sym = s.symbol_value()
    # Lazy binding: ld.so only adds the bias, so the slot points back at the
    # PLT stub that calls _dl_runtime_resolve.
    lazy = None if s.link_value is None else (s.base + s.link_value) & MASK64
    if sym is not None and sym.type == "GNU_IFUNC":
        if s.current is not None and s.current == lazy and lazy != s.link_value:
            return _Verdict(LAZY, None)
        return _ifunc_symbol(s)
    return _Verdict(_judge(s.current, s.link_value, value, lazy), value)


def _absolute(s: _Slot) -> _Verdict:
    value, _ = s.symbol_value()
    addend = s.implicit_addend()
    expected = None if value is None or addend is None else (value + addend) & MASK64
    return _Verdict(_judge(s.current, s.link_value, expected), expected)


def _ifunc_symbol(s: _Slot) -> _Verdict:
    """Bound to a GNU_IFUNC: the loader stores what the resolver returns,
    which we cannot compute; it lands inside the defining object."""
    if s.current is None:
        return _Verdict(UNKNOWN, None)
    if s.current == s.link_value:
        return _Verdict(PENDING, None, may_be_applied=True)
    found = s.symbol_definition()
    if found is not None and s.symbols.object_at(s.current) is found[0]:
        return _Verdict(APPLIED, None)
    return _Verdict(UNKNOWN, None)


def _irelative(s: _Slot) -> _Verdict:
    addend = s.implicit_addend()
    resolver = None if addend is None else (s.base + addend) & MASK64
    if s.current is None or s.link_value is None:
        return _Verdict(UNKNOWN, None)
    if s.current == s.link_value:
        return _Verdict(PENDING, None, may_be_applied=True)
    if s.current != resolver:
        # Whatever implementation the resolver chose.
        return _Verdict(APPLIED, s.current)
    return _Verdict(UNKNOWN, None)


def _tls_nonzero(s: _Slot) -> _Verdict:
    """DTPMOD64 (a module id >= 1) and TLSDESC (a resolver pointer): the
    produced value is never 0, so a slot still 0 is pending."""
    if s.current is None or s.link_value is None:
        return _Verdict(UNKNOWN, None)
    if s.current != s.link_value:
        return _Verdict(APPLIED, None)
    return _Verdict(PENDING if s.link_value == 0 else UNKNOWN, None)


def _tpoff_x86_64(s: _Slot) -> _Verdict:
    """Variant II TLS: the static TLS block lies below the thread pointer, so
    the offset written is negative; a non-negative link value cannot be it."""
    if s.current is None or s.link_value is None:
        return _Verdict(UNKNOWN, None)
    if s.current != s.link_value:
        return _Verdict(APPLIED, None)
    return _Verdict(PENDING if s.link_value < 1 << 63 else UNKNOWN, None)


def _tprel_aarch64(s: _Slot) -> _Verdict:
    """Variant I TLS: offsets start past the 16-byte TCB, so never 0."""
    return _tls_nonzero(s)


def _dtpoff(s: _Slot) -> _Verdict:
    """Offset of the symbol inside its module's TLS block: S + A, with S the
    symbol's st_value (not its address)."""
    addend = s.implicit_addend() or 0
    if s.reloc.symbol_index == 0:
        expected: int | None = addend & MASK64
    else:
        found = s.symbol_definition(include_tls=True)
        expected = None if found is None else (found[1].value + addend) & MASK64
    return _Verdict(_judge(s.current, s.link_value, expected), expected)


_MAX_COPY = 1 << 20


def _copy(s: _Slot) -> _Verdict:
    """The executable's copy of a library variable: compare its bytes with
    the source definition in the next object that defines it."""
    own = s.own_symbol()
    # Copies are variables (a few bytes to a few KiB); a huge size is a
    # damaged symbol, not something to read.
    if own is None or own.size == 0 or own.size > _MAX_COPY:
        return _Verdict(UNKNOWN, None)
    found = s.symbols.lookup(own.name, s.reloc.symbol_version, skip=s.obj)
    address = s.obj.runtime(s.reloc.offset)
    now = s.slot_bytes(address, own.size)
    before = s.link_bytes(s.reloc.offset, own.size)
    source = None if found is None else s.memory.read(found[0].runtime(found[1].value), own.size)
    first = (lambda b: None if b is None else int.from_bytes(b[:8].ljust(8, b"\0"), "little"))
    if now is None or source is None or before is None:
        return _Verdict(UNKNOWN, first(source), first(now))
    state = UNKNOWN
    if source != before:
        state = APPLIED if now == source else PENDING if now == before else UNKNOWN
    return _Verdict(state, first(source), first(now))


def _none(_s: _Slot) -> _Verdict:
    return _Verdict(UNKNOWN, None)


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
                      arch: str = "x86_64") -> tuple[RelocationState, ...]:
    word = ARCH_WORD.get(arch)
    if word is None:
        raise ValueError(f"no relocation recipes for architecture {arch!r}")
    plan = _plan(obj, file_bytes, arch, word)
    image = _SegmentImages(memory.read, plan.segments)
    blocks = tuple(data for _, _, data in image.blocks)
    with _CACHE_LOCK:
        cached = _CACHE.get(plan.key)
    if (cached is None or cached.plan is not plan or not _same_symbols(cached.symbols, symbols)
            or any(data is None for data in blocks)):
        cached = None
    # A stop while ld.so relocates changes a few words of a segment; every
    # other slot keeps its verdict (a function of the slot word, the
    # symbols and the base), so only slots in changed chunks are judged again.
    if cached is None:
        redo = range(len(plan.relocs))
        raw: list[_Verdict | None] = [None] * len(plan.relocs)
        currents: list[int | None] = [None] * len(plan.relocs)
        previous_states: tuple[RelocationState, ...] | None = None
        previous_final: list[_Verdict] | None = None
    else:
        redo = sorted(plan.volatile | _changed_slots(plan, cached.blocks, blocks))
        if not redo:
            return cached.states
        raw, currents = list(cached.raw), list(cached.currents)
        previous_states, previous_final = cached.states, cached.final
    for index in redo:
        reloc = plan.relocs[index]
        address = obj.runtime(reloc.offset)
        data = image.read(address, word) if plan.fits else None
        current = None if data is None else int.from_bytes(data, "little")
        slot = _Slot(obj=obj, reloc=reloc, symbols=symbols, memory=memory, word=word, current=current,
                     link_value=plan.link_values[index], link_bytes=plan.link_bytes, slot_bytes=image.read)
        currents[index] = current
        raw[index] = RECIPES.get(reloc.type_name, _none)(slot)
    final = list(raw)
    _settle_by_order(final, currents)
    if previous_states is None:
        states = tuple(_state(obj, plan.relocs[i], final[i], currents[i], plan.link_values[i])
                       for i in range(len(final)))
    else:
        out = list(previous_states)
        redone = set(redo)
        changed = False
        for i, verdict in enumerate(final):
            if i in redone or verdict != previous_final[i]:
                state = _state(obj, plan.relocs[i], verdict, currents[i], plan.link_values[i])
                if state != out[i]:
                    out[i] = state
                    changed = True
        # Data sharing a chunk with slots was written, not a slot: hand back
        # the very same tuple, so what is derived from it stays cached.
        states = tuple(out) if changed else previous_states
    if all(data is not None for data in blocks):
        with _CACHE_LOCK:
            _CACHE[plan.key] = _Cached(plan, symbols, blocks, tuple(raw), tuple(currents), final, states)
            while len(_CACHE) > _CACHE_OBJECTS:
                del _CACHE[next(iter(_CACHE))]
    return states


def _state(obj: LoadedObject, reloc: Relocation, verdict: _Verdict, current: int | None,
           link_value: int | None) -> RelocationState:
    return RelocationState(
        object=obj.path,
        address=obj.runtime(reloc.offset),
        type_name=reloc.type_name,
        symbol=reloc.symbol,
        addend=reloc.addend,
        state=verdict.state,
        current=current if verdict.current is None else verdict.current,
        expected=verdict.expected,
        link_value=link_value,
        table=reloc.table,
    )


# ---------------------------------------------------------------------------
# Per-object cache: what does not change between stops, and the last answer
# ---------------------------------------------------------------------------

_CHUNK = 64            # bytes compared at once when looking for changed slots
_CACHE_OBJECTS = 64    # objects remembered (a few sessions' worth)
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class _Plan:
    """Everything about an object's relocations that memory cannot change."""

    key: tuple
    info: object
    file_bytes: bytes
    relocs: tuple[Relocation, ...]
    fits: bool
    segments: tuple[tuple[int, int], ...]            # runtime [start, end) read per stop
    link_values: tuple[int | None, ...]
    link_bytes: Callable[[int, int], bytes | None]
    chunks: dict[tuple[int, int], tuple[int, ...]]   # (segment, chunk) -> slot indices
    volatile: frozenset[int]                         # judged at every stop (COPY, slots outside)


@dataclass(frozen=True, eq=False)
class _Cached:
    plan: _Plan
    symbols: SymbolTable
    blocks: tuple[bytes | None, ...]
    raw: tuple[_Verdict | None, ...]
    currents: tuple[int | None, ...]
    final: list[_Verdict]
    states: tuple[RelocationState, ...]


_PLANS: dict[tuple, _Plan] = {}
_CACHE: dict[tuple, _Cached] = {}


def _plan(obj: LoadedObject, file_bytes: bytes, arch: str, word: int) -> _Plan:
    key = (obj.path, obj.base, arch)
    with _CACHE_LOCK:
        plan = _PLANS.get(key)
    # The same path and base may be another build of the file (a relaunch
    # after make). The bytes of an object embedded at an offset come as a
    # fresh slice each time: equal content is the same plan.
    if plan is not None and plan.info is obj.info and (plan.file_bytes is file_bytes
                                                       or plan.file_bytes == file_bytes):
        return plan
    info = obj.info
    loads = info.load_segments()
    link_bytes = _file_image(loads, file_bytes)
    relocs = tuple(info.relocations)
    # Only segments that hold relocation slots are read (normally the RW one).
    wanted = set()
    for reloc in relocs:
        seg = next((s for s in loads if s.contains_vaddr(reloc.offset)), None)
        if seg is not None:
            wanted.add((obj.runtime(seg.vaddr), obj.runtime(seg.vaddr + seg.memsz)))
    segments = tuple(sorted(wanted))
    # The recipes are for 64-bit slots; a 32-bit object gets honest unknowns.
    fits = info.elf_class == word * 8
    link_values = []
    chunks: dict[tuple[int, int], list[int]] = {}
    volatile = set()
    for index, reloc in enumerate(relocs):
        link = link_bytes(reloc.offset, word) if fits else None
        link_values.append(None if link is None else int.from_bytes(link, "little"))
        address = obj.runtime(reloc.offset)
        where = next((i for i, (start, end) in enumerate(segments) if start <= address and address + word <= end),
                     None)
        # COPY compares with another object's memory: never reuse its verdict.
        if where is None or reloc.type_name.endswith("_COPY"):
            volatile.add(index)
            continue
        start = segments[where][0]
        for chunk in {(address - start) // _CHUNK, (address + word - 1 - start) // _CHUNK}:
            chunks.setdefault((where, chunk), []).append(index)
    plan = _Plan(key, info, file_bytes, relocs, fits, segments, tuple(link_values), link_bytes,
                 {k: tuple(v) for k, v in chunks.items()}, frozenset(volatile))
    with _CACHE_LOCK:
        _PLANS[key] = plan
        while len(_PLANS) > _CACHE_OBJECTS:
            del _PLANS[next(iter(_PLANS))]
    return plan


def _same_symbols(a: SymbolTable, b: SymbolTable) -> bool:
    if a is b:
        return True
    if len(a.objects) != len(b.objects):
        return False
    return all(x.path == y.path and x.base == y.base and x.info is y.info for x, y in zip(a.objects, b.objects))


def _changed_slots(plan: _Plan, before: tuple[bytes | None, ...], now: tuple[bytes | None, ...]) -> set[int]:
    changed: set[int] = set()
    for where, (old, new) in enumerate(zip(before, now)):
        if old == new:
            continue
        if old is None or new is None or len(old) != len(new):
            return set(range(len(plan.relocs)))
        for offset in range(0, len(new), _CHUNK):
            if old[offset:offset + _CHUNK] != new[offset:offset + _CHUNK]:
                changed.update(plan.chunks.get((where, offset // _CHUNK), ()))
    return changed


def _settle_by_order(verdicts: list[_Verdict], currents: list[int | None]) -> None:
    """glibc applies one object's relocations in table order (RELR, REL,
    RELA, then JMPREL: ELF_DYNAMIC_RELOCATE), which is the order of
    ElfInfo.relocations. So anything before an applied relocation has been
    processed: an ifunc slot still holding its file value there got that
    value from its resolver. (musl has no ifuncs, so its different order
    never matters here.)"""
    last_applied = max((i for i, v in enumerate(verdicts) if v.state == APPLIED), default=-1)
    for i in range(last_applied):
        verdict = verdicts[i]
        if verdict.state == PENDING and verdict.may_be_applied:
            verdicts[i] = _Verdict(APPLIED, currents[i])


def relocation_totals(states: Iterable[RelocationState], object: str | None = None) -> RelocationTotals:
    counts = {PENDING: 0, LAZY: 0, APPLIED: 0, UNKNOWN: 0}
    name = object
    total = 0
    for state in states:
        counts[state.state] += 1
        total += 1
        if name is None:
            name = state.object
    return RelocationTotals(object=name or "", total=total, applied=counts[APPLIED],
                            pending=counts[PENDING], lazy=counts[LAZY], unknown=counts[UNKNOWN])
