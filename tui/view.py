"""StopView: everything the screen shows about one stop, built once per stop
off the event loop (in a thread worker), then handed to the widgets.

build_view does all the session calls (snapshot, disassembly, memory
operand values, symbols); the widgets only lay the result out.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from loaderdbg.decode.disasm import Instruction, memory_operands
from loaderdbg.decode.registers import changed_registers
from loaderdbg.printable import printable
from loaderdbg.session import Capability, Event
from loaderdbg.snapshot import Snapshot

from loaderdbg_tui.describe import (
    Marker, Stage, StopWords, current_stage, describe_stop, milestone_before_end, split_symbol,
    timeline_markers,
)

LISTING_SIZE = 40         # instructions disassembled per stop (enough for a 50-row terminal)
CONTEXT_BEFORE = 6        # instructions kept above pc when the listing scrolls
NEAR_END = 10             # scroll when pc gets this close to the listing's end
MAX_PROLOGUE = 0x60       # start at the function's symbol when pc is this close to it
STACK_WORDS = 12          # words shown around the current sp
STACK_SLACK = 3           # of them above sp (lower addresses) when the window moves
OPERAND_BYTES = 16
LISTING_CACHE = 64        # disassembled windows remembered per session
INSTRUCTION_CACHE = 16384  # and their instructions, for windows that slide


@dataclass(frozen=True)
class OperandValue:
    """One memory operand of the instruction at pc, resolved."""

    text: str              # as written, e.g. "[rsp - 8]"
    address: int | None
    size: int
    access: str            # read, write, readwrite, address
    data: bytes | None     # what is there now (None: unreadable or not read)
    symbol: str | None     # for an address operand or a code pointer


@dataclass(frozen=True)
class StopView:
    generation: int
    snapshot: Snapshot
    position: int
    position_exact: bool
    alive: bool
    capabilities: frozenset[str]
    breakpoints: frozenset[int]
    listing: tuple[Instruction, ...]
    operands: tuple[OperandValue, ...]
    changed: frozenset[str]
    register_notes: Mapping[str, str]
    stack_words: tuple[tuple[int, int], ...]
    stage: Stage | None
    markers: tuple[Marker, ...]
    words: StopWords
    program: str = ""
    pid: int | None = None
    source: str | None = None  # "file.c:123" of pc, from DWARF line info (a separate debug file too)

    @property
    def stop(self):
        return self.snapshot.stop

    @property
    def registers(self):
        return self.snapshot.registers

    @property
    def pc(self) -> int | None:
        regs = self.snapshot.registers
        return regs.pc if regs is not None else None

    @property
    def crashed(self) -> bool:
        return self.words.severity == "error"

    def with_breakpoints(self, breakpoints: frozenset[int]) -> "StopView":
        return replace(self, breakpoints=breakpoints)


def session_alive(session) -> bool:
    """Whether the session has state to show and can move: one that can go
    to any step always can (a recording's `alive` is False: no process)."""
    if Capability.REVERSE in session.capabilities:
        return True
    return bool(session.alive)


def build_view(session, previous: StopView | None, generation: int) -> StopView:
    """Ask the session for everything about the current stop. Runs in a
    worker thread: the session blocks while its tracer thread works."""
    snapshot: Snapshot = session.snapshot()
    # The ELF tab draws the ifunc choices on the UI thread: made here, once
    # per relocation table (a few IRELATIVE rows). The GOT is left for the
    # `got` command to make, in its worker, when asked.
    snapshot.ifuncs
    regs = snapshot.registers
    alive = session_alive(session)
    breakpoints = (frozenset(session.breakpoints()) if Capability.BREAKPOINTS in session.capabilities
                   else frozenset())
    listing: tuple[Instruction, ...] = ()
    operands: tuple[OperandValue, ...] = ()
    stack_words: tuple[tuple[int, int], ...] = ()
    source = None
    if regs is not None and alive:
        listing = _listing(_CachedCode(session, snapshot), regs.pc, previous.listing if previous else ())
        operands = _operands(session, listing, regs, snapshot)
        source = _source_text(session, session.source_line(regs.pc))
        stack_words = _stack_words(session, regs, snapshot, previous.stack_words if previous else ())
    changed: frozenset[str] = frozenset()
    if previous is not None and previous.registers is not None and regs is not None:
        changed = frozenset(changed_registers(previous.registers, regs))
    position = snapshot.step if snapshot.step_exact else -1
    stage = current_stage(snapshot.events, regs.pc if regs is not None else None, position,
                          snapshot.step_exact)
    return StopView(
        generation=generation,
        snapshot=snapshot,
        position=position,
        position_exact=snapshot.step_exact,
        alive=alive,
        capabilities=frozenset(session.capabilities),
        breakpoints=breakpoints,
        listing=listing,
        operands=operands,
        changed=changed,
        register_notes=register_notes(snapshot, session),
        stack_words=stack_words,
        stage=stage,
        markers=timeline_markers(snapshot.events, stage, _recorded_events(session), position),
        words=describe_stop(snapshot.stop, stage, regs, milestone_before_end(snapshot.events)),
        program=printable(snapshot.program),  # shown: from a recording it is data
        pid=snapshot.pid,
        source=source,
    )


def _source_text(session, line) -> str | None:
    """gdb's spelling of where pc is in the source, file:line, then the
    line itself when its file is found (last: a narrow title cuts it, never
    the line number)."""
    if line is None:
        return None
    where = f"{printable(line.file.rsplit('/', 1)[-1])}:{line.line}"
    found = session.source_file(line)
    text = None if found is None else found.line(line.line)
    return f"{where}  {shown_source(text.strip())}" if text and text.strip() else where


def shown_source(text: str) -> str:
    """A source line made safe for the terminal: tabs as spaces, every
    other control character escaped."""
    return printable(text.expandtabs(4))


def _recorded_events(session) -> Sequence[Event] | None:
    """A recording knows its whole timeline, milestones ahead included."""
    if Capability.TIMELINE not in session.capabilities:
        return None
    return session.events()


def code_unchanged(session, instructions: Sequence[Instruction]) -> bool:
    """Whether memory still holds the bytes these consecutive instructions
    were decoded from (one read)."""
    start = instructions[0].address
    end = instructions[-1].next_address
    return session.read_memory(start, end - start) == b"".join(insn.raw for insn in instructions)


class _CachedCode:
    """session.disassemble, remembered per session: stepping through calls
    and returns comes back to the same few windows of code, and
    disassembling one (40 instructions, each symbolised) costs milliseconds.
    A window is reused only if its code bytes are unchanged (one read) and
    the same objects are loaded (symbols come from them)."""

    _caches: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
    # (address, objects) -> Instruction, from every window kept above.
    _instructions: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, session, snapshot: Snapshot) -> None:
        self.session = session
        self.objects = tuple((o.name, o.path, o.base) for o in snapshot.objects)
        with self._lock:
            try:
                cache = self._caches.get(session)
                if cache is None:
                    cache = self._caches[session] = OrderedDict()
            except TypeError:  # not weakly referenceable: no cache
                cache = None
        self.cache = cache

    def read_memory(self, addr: int, size: int) -> bytes | None:
        return self.session.read_memory(addr, size)

    def symbolize(self, addr: int) -> str | None:
        return self.session.symbolize(addr)

    def disassemble(self, addr: int, count: int) -> tuple[Instruction, ...]:
        cache = self.cache
        key = (addr, count, self.objects)
        if cache is not None:
            with self._lock:
                hit = cache.get(key)
                if hit is not None:
                    cache.move_to_end(key)
            if hit is not None and code_unchanged(self.session, hit):
                return hit
        listing = self._from_instructions(addr, count) if cache is not None else None
        if listing is None:
            listing = tuple(self.session.disassemble(addr, count))
        # Only full windows: a short one ended at unreadable memory, which
        # may be mapped by the next stop.
        if cache is not None and len(listing) == count:
            with self._lock:
                cache[key] = listing
                while len(cache) > LISTING_CACHE:
                    cache.popitem(last=False)
                known = self._instructions.setdefault(self.session, {})
                if len(known) > INSTRUCTION_CACHE:
                    known.clear()
                for insn in listing:
                    known[(insn.address, self.objects)] = insn
        return listing

    def _from_instructions(self, addr: int, count: int) -> tuple[Instruction, ...] | None:
        """A window that slid (pc went past the end of the last one, or
        came back into a function from elsewhere) starts at an address
        seen before: its instructions are taken from earlier windows while
        their bytes are unchanged, and only the rest is disassembled."""
        prefix: list[Instruction] = []
        address = addr
        with self._lock:
            known = self._instructions.setdefault(self.session, {})
            while len(prefix) < count:
                insn = known.get((address, self.objects))
                if insn is None:
                    break
                prefix.append(insn)
                address = insn.next_address
        if not prefix:
            return None
        if not code_unchanged(self.session, prefix):
            return None
        if len(prefix) == count:
            return tuple(prefix)
        return tuple(prefix) + tuple(self.session.disassemble(address, count - len(prefix)))


def _listing(session, pc: int, previous: tuple[Instruction, ...]) -> tuple[Instruction, ...]:
    """A window of instructions around pc that stays put while pc moves
    inside it (no jumping listing while stepping), starting at a known
    instruction boundary: the previous window, or the function's symbol."""
    starts = [insn.address for insn in previous]
    if pc in starts:
        index = starts.index(pc)
        if index < len(starts) - NEAR_END:
            # Same window: reuse it if the code bytes are unchanged (one read
            # instead of disassembling and symbolising 40 instructions).
            if code_unchanged(session, previous):
                return previous
            start = starts[0]
        else:
            start = starts[max(0, index - CONTEXT_BEFORE)]
        listing = tuple(session.disassemble(start, LISTING_SIZE))
        if any(insn.address == pc for insn in listing):
            return listing
    # The window starts at the function's symbol when pc is just past it
    # (the first instruction's symbol is pc's: ask for it alone, not for a
    # window at pc that would be thrown away).
    name, offset = split_symbol(session.symbolize(pc))
    if name and 0 < offset <= MAX_PROLOGUE:
        candidate = tuple(session.disassemble(pc - offset, LISTING_SIZE))
        addresses = [insn.address for insn in candidate]
        if pc in addresses:
            index = addresses.index(pc)
            if index >= LISTING_SIZE - NEAR_END:
                cut = index - CONTEXT_BEFORE
                return candidate[cut:] + tuple(session.disassemble(
                    candidate[-1].next_address, cut))
            return candidate
    return tuple(session.disassemble(pc, LISTING_SIZE))


def likely_next_pcs(view: StopView) -> tuple[int, ...]:
    """Where pc may be after one more step: past the instruction at pc,
    and, for a branch, its target (the immediate, the register, or the word
    it reads: a ret's return address, a call through the GOT)."""
    regs = view.snapshot.registers
    insn = next((i for i in view.listing if i.address == view.pc), None)
    if insn is None or regs is None:
        return ()
    targets = [insn.next_address]
    if insn.is_call or insn.is_jump or insn.is_ret:
        if insn.branch_target is not None:
            targets.append(insn.branch_target)
        for operand in insn.operands:
            if operand.kind == "reg" and operand.reg is not None:
                value = regs.get(operand.reg)
                if value is not None:
                    targets.append(value)
        for value in view.operands:
            if value.access == "read" and value.data is not None and len(value.data) == 8:
                targets.append(int.from_bytes(value.data, "little"))
    return tuple(dict.fromkeys(t for t in targets if _in_code(view.snapshot, t)))


def prefetch_listings(session, view: StopView) -> tuple[tuple[int, tuple[Instruction, ...]], ...]:
    """Disassemble now the windows the next step may need (see
    likely_next_pcs), so that a step which leaves the listing finds its
    window cached: run when the screen is idle, between keys. Returns the
    (pc, listing) pairs that are new windows, for the screen to lay out
    ahead too. A window pc does not go to costs nothing but the time."""
    if not view.alive or view.snapshot.registers is None:
        return ()
    code = _CachedCode(session, view.snapshot)
    ahead = []
    for target in likely_next_pcs(view):
        listing = _listing(code, target, view.listing)
        if listing is not view.listing:
            ahead.append((target, listing))
    return tuple(ahead)


def _operands(session, listing, regs, snapshot: Snapshot) -> tuple[OperandValue, ...]:
    insn = next((i for i in listing if i.address == regs.pc), None)
    if insn is None:
        return ()
    out = []
    for operand in memory_operands(insn, regs, include_address_only=True):
        data = None
        symbol = None
        if operand.address is not None:
            if operand.access == "address":
                symbol = session.symbolize(operand.address) if _in_code(snapshot, operand.address) else None
            else:
                size = operand.size or 8
                data = session.read_memory(operand.address, min(size, OPERAND_BYTES))
                if data is not None and size == 8 and len(data) == 8:
                    value = int.from_bytes(data, "little")
                    symbol = session.symbolize(value) if _in_code(snapshot, value) else None
        out.append(OperandValue(operand.text, operand.address, operand.size, operand.access, data, symbol))
    return tuple(out)


def _stack_words(session, regs, snapshot: Snapshot,
                 previous: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """A window of words around sp, when sp has moved off the initial block.
    Like the listing around pc, the window stays put while sp moves inside
    it (a push or a pop moves the sp mark and changes one word, instead of
    shifting every row), and moves to STACK_SLACK words above sp when sp
    leaves it."""
    stack = snapshot.stack
    sp = regs.sp
    if stack is not None and sp == stack.sp:
        return ()
    start = previous[0][0] if previous else None
    if start is None or not start <= sp < start + STACK_WORDS * 8 or (start - sp) % 8:
        start = sp - STACK_SLACK * 8
    data = session.read_memory(start, STACK_WORDS * 8)
    if not data:
        start, data = sp, session.read_memory(sp, STACK_WORDS * 8)  # nothing mapped above sp
        if not data:
            return ()
    return tuple((start + i, int.from_bytes(data[i:i + 8], "little"))
                 for i in range(0, len(data) - len(data) % 8, 8))


def _code_ranges(snapshot: Snapshot) -> list[tuple[int, int]]:
    return sorted((m.entry.start, m.entry.end) for m in snapshot.maps if "x" in m.entry.perms)


def _in_code(snapshot: Snapshot, value: int) -> bool:
    return any(start <= value < end for start, end in _code_ranges(snapshot))


def register_notes(snapshot: Snapshot, session) -> dict[str, str]:
    """What a register value points at: a symbol for code, the object and
    segment for data, [stack]/[heap] for those."""
    regs = snapshot.registers
    if regs is None:
        return {}
    maps = sorted(snapshot.maps, key=lambda m: m.entry.start)
    starts = [m.entry.start for m in maps]
    notes: dict[str, str] = {}
    for name, value in regs.items():
        if value < 0x1000:
            continue
        index = bisect.bisect_right(starts, value) - 1
        if index < 0 or value >= maps[index].entry.end:
            continue
        found = maps[index]
        if "x" in found.entry.perms and found.object is not None:
            symbol = session.symbolize(value)
            notes[name] = symbol or f"{found.object}+{value - found.entry.start:#x}"
        elif found.object is not None:
            notes[name] = f"{found.object} {found.segment or ''}".strip()
        elif found.entry.path:
            notes[name] = found.entry.path
    return notes
