"""A Snapshot: everything loaderdbg decodes at one stop, live or replayed.

``build_snapshot`` only needs a ``StateSource``: registers, memory, maps,
the kernel's auxv, the initial stack pointer, file bytes for mapped objects
and the events so far. A live process and a recording both provide those,
and everything else is decoded here, the same way for both.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import operator
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from loaderdbg.analysis.loader_detail import (GotSlot, IfuncChoice, ObjectDetail, got_view,
                                              ifunc_choices, object_detail)
from loaderdbg.analysis.handoff import NOT_CHECKED, HandoffReport, check_handoff
from loaderdbg.analysis.link_map import read_link_map, with_private_fields
from loaderdbg.analysis.objects import ElfCache, MapAnnotation, MappedObject, annotate_maps
from loaderdbg.analysis.relocations import ObjectRelocations, RelocationTable, RelocationTotals
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.auxv import AuxvEntry, diff_auxv
from loaderdbg.decode.elf import VersionNames
from loaderdbg.decode.linkmap import LinkMapEntry, RDebug
from loaderdbg.decode.maps import MapEntry
from loaderdbg.decode.registers import Registers, decode_registers
from loaderdbg.decode.stack import InitialStack
from loaderdbg.session import Event, StopReason

FORMAT = "loaderdbg.snapshot/1"


@dataclass(frozen=True)
class ThreadState:
    tid: int
    name: str
    state: str
    fs_base: int | None
    sigmask: tuple[str, ...]
    sigpend: tuple[str, ...]
    shdpnd: tuple[str, ...]
    stop: str
    # Whether this is the current thread (registers, stack and a step are
    # its), said when the process has more than one thread (JSON
    # `threads[].current`); None otherwise.
    current: bool | None = None
    pc: int | None = None  # a traced thread's pc (None: not traced, or not read)
    # Its registers (ptrace GETREGS), read when the process has more than
    # one thread and this one is stopped by us (JSON `threads[].registers`).
    registers: Registers | None = None


@dataclass(frozen=True)
class Divergence:
    """Where a replay stops matching its recording: the first position
    (step) that shows a wrong value, the byte, and what differs."""

    step: int
    address: int | None
    message: str

    @property
    def headline(self) -> str:
        """The line said first wherever a replay's state is shown."""
        return f"DIVERGENCE: {self.message}; from there on this replay is not what the process did"


@dataclass(frozen=True)
class SyscallCall:
    """One syscall the program made: ``step`` is the position after it (as
    its event's), ``args`` the raw argument registers, ``result`` signed
    (None: it never returned). Fields the source could not see are None."""

    step: int
    number: int | None
    name: str
    args: tuple[int, ...] | None
    result: int | None
    errno_name: str | None


@dataclass(frozen=True)
class ObjectSummary:
    name: str
    path: str
    base: int
    elf_offset: int
    totals: RelocationTotals
    is_ldso: bool
    detail: ObjectDetail
    # DT_VERNEED/DT_VERDEF by name (None: the tables do not read).
    versions: VersionNames | None = None


@dataclass(frozen=True)
class Snapshot:
    program: str
    step: int
    step_exact: bool
    stop: StopReason
    pid: int | None
    arch: str
    registers: Registers | None
    stack: InitialStack | None
    auxv_kernel: tuple[AuxvEntry, ...]
    auxv_changed: frozenset[int]
    maps: tuple[MapAnnotation, ...]
    objects: tuple[ObjectSummary, ...]
    # Every object's relocations, in objects' order: a sequence of
    # RelocationState kept as per-object columns (RelocationTable.per_object).
    relocations: RelocationTable
    link_map: tuple[LinkMapEntry, ...]
    threads: tuple[ThreadState, ...]
    handoff: HandoffReport
    events: tuple[Event, ...]
    # The GOT and ifunc views, made when first read (see RelocationViews).
    relocation_views: "RelocationViews | None" = None
    r_debug: tuple[RDebug, ...] = ()  # one per namespace, in r_next order
    # A replay's check of its recording (None: nothing checked yet, or live).
    verified: bool | None = None
    divergence: Divergence | None = None
    syscalls: tuple[SyscallCall, ...] = ()

    @property
    def got(self) -> tuple[GotSlot, ...]:
        """gdb-style `got`: each JUMP_SLOT/GLOB_DAT slot, where it points."""
        return self.relocation_views.got if self.relocation_views is not None else ()

    @property
    def ifuncs(self) -> tuple[IfuncChoice, ...]:
        """Each IRELATIVE relocation: its resolver and what it chose."""
        return self.relocation_views.ifuncs if self.relocation_views is not None else ()


class RelocationViews:
    """A relocation table's GOT and ifunc views, each made the first time it
    is read. Both follow from the table (which holds each slot's value at
    the stop) and the objects' files alone, so reading them later gives
    what reading them at the stop would have; a stop whose GOT nobody
    reads (a step with another tab up, a text report) does not name every
    GOT slot (gdb's 17,000, a fifth of its snapshot). Each is made once,
    on whichever thread reads it first."""

    __slots__ = ("_relocations", "_objects", "_lock", "_symbols", "_got", "_ifuncs")

    def __init__(self, relocations: RelocationTable, objects: Sequence[MappedObject]) -> None:
        self._relocations = relocations
        self._objects = tuple(objects)
        self._lock = threading.Lock()
        self._symbols: SymbolTable | None = None
        self._got: tuple[GotSlot, ...] | None = None
        self._ifuncs: tuple[IfuncChoice, ...] | None = None

    def _made(self, slot: str, make: Callable[[SymbolTable], tuple]) -> tuple:
        value = getattr(self, slot)
        if value is None:
            with self._lock:
                value = getattr(self, slot)
                if value is None:
                    with collector_paused():
                        if self._symbols is None:
                            self._symbols = SymbolTable([LoadedObject(o.name, o.base, o.info)
                                                         for o in self._objects])
                        value = make(self._symbols)
                    setattr(self, slot, value)
        return value

    @property
    def got(self) -> tuple[GotSlot, ...]:
        return self._made("_got", lambda symbols: got_view(self._relocations, symbols))

    @property
    def ifuncs(self) -> tuple[IfuncChoice, ...]:
        return self._made("_ifuncs", lambda symbols: ifunc_choices(self._relocations, symbols, self._objects))

    # Equal by what they show, as the tuples they stand for were.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RelocationViews):
            return NotImplemented
        return self is other or (self.got, self.ifuncs) == (other.got, other.ifuncs)

    def __hash__(self) -> int:
        return hash((self.got, self.ifuncs))


class StateSource(Protocol):
    program: str
    step_count: int
    step_exact: bool
    stop_reason: StopReason
    elf_cache: ElfCache
    arch: object

    @property
    def pid(self) -> int | None: ...

    def registers_raw(self) -> bytes | None: ...

    def read_memory(self, addr: int, size: int) -> bytes | None: ...

    def maps(self) -> tuple[MapEntry, ...]: ...

    def objects(self) -> tuple[MappedObject, ...]: ...

    def kernel_auxv(self) -> tuple[AuxvEntry, ...]: ...

    def initial_stack(self) -> InitialStack | None: ...

    def relocation_states(self, obj: MappedObject) -> ObjectRelocations: ...

    def threads(self) -> tuple[ThreadState, ...]: ...

    def ldso_object(self) -> MappedObject | None: ...

    def program_object(self) -> MappedObject | None: ...

    @property
    def events(self) -> Sequence[Event]: ...

    def syscall_calls(self) -> tuple[SyscallCall, ...]:
        """The syscalls made so far, with their raw arguments."""

    def verification(self) -> tuple[bool | None, "Divergence | None"]:
        """(verified, first Divergence) so far; (None, None) where nothing
        is checked (a live process is what it is)."""

    # What changed between two stops, for a source that can tell (a
    # recording): ``memory_state()`` returns a key equal at two stops only
    # if memory and mappings are the same at both (None: cannot tell, and
    # the next three are not used); ``writes_since(key)`` the (start, end)
    # ranges written since the stop with that key (None: cannot tell);
    # ``reads_tracked()`` a context manager collecting the (start, end) of
    # each memory read in its block. ``snapshot_memo`` (None at first) is
    # where build_snapshot keeps what it derived from this source (a
    # SnapshotMemo), for any source.
    snapshot_memo: "SnapshotMemo | None"

    def memory_state(self) -> tuple | None: ...

    def writes_since(self, state: tuple) -> list[tuple[int, int]] | None: ...

    def reads_tracked(self): ...


class _Reader:
    def __init__(self, source: StateSource) -> None:
        self._source = source

    def read(self, addr: int, size: int) -> bytes | None:
        return self._source.read_memory(addr, size)


@dataclass(frozen=True)
class _MemoryViews:
    """What a snapshot derives from memory and mappings alone."""

    maps: tuple[MapEntry, ...]
    objects: tuple[MappedObject, ...]
    ldso: MappedObject | None
    stack: InitialStack | None
    kernel_auxv: tuple[AuxvEntry, ...]
    auxv_changed: frozenset[int]
    annotations: tuple[MapAnnotation, ...]
    summaries: tuple[ObjectSummary, ...]
    relocations: RelocationTable
    relocation_views: RelocationViews
    link_map: tuple[LinkMapEntry, ...]
    r_debug: tuple[RDebug, ...] = ()


class SnapshotMemo:
    """What build_snapshot derived from one source, kept by that source (its
    stop state owns its caches; two sessions in one process keep theirs
    apart). ``parts``: the memory-derived parts by the memory state they
    were read in (a recording's, see _remembered_views). The rest is what
    the last snapshot derived from the objects and their relocation
    tables, taken again at the next while those are the very same objects
    (relocation_states hands back the same table while an object's slots
    are unchanged, and a source the same maps and objects tuples until the
    mappings change): a step that writes no slot costs no GOT or ifunc
    walk. Each value is one tuple, replaced whole, so a snapshot built on
    another thread reads an old one or a new one, never half of each."""

    __slots__ = ("parts", "table", "views", "map_views")

    def __init__(self) -> None:
        self.parts: dict[str, tuple] = {}
        self.table: RelocationTable | None = None  # the last one made
        self.views: tuple | None = None  # (table, infos, names and bases, RelocationViews)
        self.map_views: tuple | None = None  # (maps, objects, (annotations, details))


def _memo_of(source: StateSource) -> SnapshotMemo:
    memo = source.snapshot_memo
    if memo is None:
        memo = source.snapshot_memo = SnapshotMemo()
    return memo


def _memory_views(source: StateSource, memory: "_Reader",
                  remember: Callable[[str, Callable[[], Any]], Any] | None = None) -> _MemoryViews:
    """The memory-derived half of a snapshot, in three parts that read
    different memory (the initial stack, the relocated slots, the
    link_map); remember(part, compute) may hand back a part computed
    before (see _remembered_views)."""
    def part(name: str, compute: Callable[[], Any]) -> Any:
        return remember(name, compute) if remember is not None else compute()

    memo = _memo_of(source)
    maps = source.maps()
    objects = source.objects()
    ldso = source.ldso_object()
    annotations, details = _map_views(memo, maps, objects)

    def stack_part():
        stack = source.initial_stack()
        kernel_auxv = tuple(source.kernel_auxv())
        changed = diff_auxv(kernel_auxv, stack.auxv) if stack is not None else frozenset()
        return stack, kernel_auxv, changed

    def relocations_part():
        summaries = []
        per_object = []
        for obj, detail in zip(objects, details):
            states = source.relocation_states(obj)
            per_object.append(states)
            summaries.append(ObjectSummary(obj.name, obj.path, obj.base, obj.elf_offset,
                                           states.totals(obj.name), obj is ldso, detail,
                                           obj.info.version_names))
        relocations = _table_of(memo, per_object)
        return tuple(summaries), relocations, _relocation_views(memo, relocations, objects)

    stack, kernel_auxv, changed = part("stack", stack_part)
    summaries, relocations, relocation_views = part("relocations", relocations_part)
    link_view = part("link_map", lambda: with_private_fields(read_link_map(source.program_object(), memory),
                                                             ldso, memory))
    return _MemoryViews(maps, objects, ldso, stack, kernel_auxv, changed, annotations,
                        summaries, relocations, relocation_views, link_view.entries, link_view.debugs)


def _remembered_views(source: StateSource, memory: "_Reader") -> _MemoryViews:
    """The memory-derived half of a snapshot. A source that can tell what
    changed since its last snapshot (a recording) gets each part again for
    free when nothing was written, or nothing that part read: most single
    steps write a stack slot or a register spill far from the initial
    stack, the GOT and the link_map, and a step that applies a relocation
    leaves the stack and link_map parts as they were."""
    key = source.memory_state()
    if key is None:
        return _memory_views(source, memory)
    memos = _memo_of(source).parts
    writes_since, reads_tracked = source.writes_since, source.reads_tracked

    def remember(part: str, compute: Callable[[], Any]) -> Any:
        memo = memos.get(part)
        if memo is not None:
            memo_key, value, read_starts, read_ends = memo
            if memo_key == key:
                return value
            written = writes_since(memo_key)
            if written is not None and not _any_overlap(written, read_starts, read_ends):
                memos[part] = (key, value, read_starts, read_ends)
                return value
        with reads_tracked() as reads:
            value = compute()
        memos[part] = (key, value, *_merged(reads))
        return value

    return _memory_views(source, memory, remember)


def _merged(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """(starts, ends) of the disjoint, sorted union of ranges."""
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(ranges):
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def _any_overlap(written: list[tuple[int, int]], starts: list[int], ends: list[int]) -> bool:
    for start, end in written:
        i = bisect.bisect_right(ends, start)  # the first read range ending after start
        if i < len(starts) and starts[i] < end:
            return True
    return False


# A big program's first snapshot makes several hundred thousand objects
# that all live on (every object's symbols and relocations, their states):
# none is garbage, yet the cyclic collector walked them again and again as
# they were made, half of gdb's snapshot (issue 19). It is paused while a
# snapshot is built, from whichever thread, and back as it was after the
# last one ends (reference counting frees everything else meanwhile).
_COLLECTOR_LOCK = threading.Lock()
_COLLECTOR_PAUSE = {"depth": 0, "was_enabled": False}


@contextlib.contextmanager
def collector_paused():
    with _COLLECTOR_LOCK:
        if _COLLECTOR_PAUSE["depth"] == 0:
            _COLLECTOR_PAUSE["was_enabled"] = gc.isenabled()
            gc.disable()
        _COLLECTOR_PAUSE["depth"] += 1
    try:
        yield
    finally:
        with _COLLECTOR_LOCK:
            _COLLECTOR_PAUSE["depth"] -= 1
            if _COLLECTOR_PAUSE["depth"] == 0 and _COLLECTOR_PAUSE["was_enabled"]:
                _age_young_objects()
                gc.enable()


# Objects made while paused above which they are moved on (a big
# program's first snapshot makes hundreds of thousands; a replay step's,
# with its caches warm, a few hundred).
AGE_AFTER = 50_000


def _age_young_objects() -> None:
    """Move every object the collector tracks into its oldest generation,
    uncounted, when the snapshot made many: what a big snapshot made (the
    objects' symbols, the ELF caches) lives on, and the young collections
    due right after it would each walk all of it on its way there (gdb's
    snapshot: ~60 ms, then ~40 more). The next full collection looks at
    them, as it would have. Only when nothing is frozen (gc.freeze then
    gc.unfreeze is the move, and would thaw what someone else froze: the
    TUI freezes after its first stop)."""
    if gc.get_count()[0] >= AGE_AFTER and gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def build_snapshot(source: StateSource) -> Snapshot:
    with collector_paused():
        return _build_snapshot(source)


def _build_snapshot(source: StateSource) -> Snapshot:
    raw = source.registers_raw()
    registers = decode_registers(raw, source.arch) if raw is not None else None
    memory = _Reader(source)
    views = _remembered_views(source, memory)
    stack, ldso = views.stack, views.ldso

    verified, divergence = source.verification()

    handoff = NOT_CHECKED
    if registers is not None and ldso is not None and registers.pc == ldso.base + ldso.info.entry:
        handoff = check_handoff(registers, stack, memory, views.maps, views.objects, ldso)

    return Snapshot(
        program=source.program,
        step=source.step_count if source.step_exact else -1,
        step_exact=source.step_exact,
        stop=source.stop_reason,
        pid=source.pid,
        arch=source.arch.name,
        registers=registers,
        stack=stack,
        auxv_kernel=views.kernel_auxv,
        auxv_changed=views.auxv_changed,
        maps=views.annotations,
        objects=views.summaries,
        relocations=views.relocations,
        link_map=views.link_map,
        threads=tuple(source.threads()),
        handoff=handoff,
        events=tuple(source.events),
        relocation_views=views.relocation_views,
        r_debug=views.r_debug,
        verified=verified,
        divergence=divergence,
        syscalls=_syscalls(source),
    )


def _syscalls(source: StateSource) -> tuple[SyscallCall, ...]:
    return tuple(source.syscall_calls())


def _table_of(memo: SnapshotMemo, per_object: list[ObjectRelocations]) -> RelocationTable:
    """The snapshot's table of per_object: the last one made again while
    every object's relocations are the very same (a step that wrote no
    slot), so that a reader comparing tables compares identities."""
    last = memo.table
    if last is not None and len(last.per_object) == len(per_object) and all(
            map(operator.is_, last.per_object, per_object)):
        return last
    table = memo.table = RelocationTable(per_object)
    return table


def _relocation_views(memo: SnapshotMemo, relocations: RelocationTable,
                      objects: Sequence[MappedObject]) -> RelocationViews:
    """The views of the last snapshot again while its table and objects are
    the very same (made or not yet: at most once for both)."""
    infos = tuple(o.info for o in objects)
    places = tuple((o.name, o.base) for o in objects)
    hit = memo.views
    if hit is not None and hit[0] is relocations and hit[2] == places and len(hit[1]) == len(infos) and all(
            map(operator.is_, hit[1], infos)):
        return hit[3]
    views = RelocationViews(relocations, objects)
    memo.views = (relocations, infos, places, views)
    return views


def _map_views(memo: SnapshotMemo, maps, objects) -> tuple[tuple[MapAnnotation, ...], tuple[ObjectDetail, ...]]:
    hit = memo.map_views
    if hit is not None and hit[0] is maps and hit[1] is objects:
        return hit[2]
    views = (annotate_maps(maps, objects), tuple(object_detail(obj, maps) for obj in objects))
    memo.map_views = (maps, objects, views)
    return views
