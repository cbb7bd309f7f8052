"""ReplaySession: the Session interface (loaderdbg/session.py) over a
recording, with no process and no ptrace.

State at the current position comes from the recording: registers from the
chunk holding it (keyframe registers XOR per-step deltas), memory from the
newest image at or before a keyframe plus the writes since, maps, threads
and the kernel's auxv as recorded. ``ReplayState`` (record/replay_state.py),
the engine's StopState over the recording, hands all of it to
``build_snapshot``, so a replayed snapshot is decoded by exactly the code a
live one is.

Moving: every write carries the bytes it replaced, so stepping backwards is
as cheap as forwards. ``goto`` starts from the nearest keyframe (before or
after the target) when that is closer than the current position.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Sequence

from loaderdbg.analysis.backtrace import MAX_FRAMES, Frame, backtrace_of
from loaderdbg.analysis.source_lines import SourceFile, line_at, source_file
from loaderdbg.decode.disasm import disassemble_one
from loaderdbg.decode.dwarf_lines import SourceLine
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import MapEntry, parse_maps
from loaderdbg.decode.siginfo import decode_siginfo
from loaderdbg.errors import UsageError
from loaderdbg.printable import printable
from loaderdbg.record import index
from loaderdbg.record.exact_milestones import exact_milestones
from loaderdbg.record.format import (
    PAGE_REF_SIZE, PAGE_SIZE, WRITE_FIXUP, WRITE_PAGE, ChunkWrites, Recording, Write, memory_checksum,
    open_recording,
)
from loaderdbg.record.replay_state import ReplayState
from loaderdbg.record.writer import page_hash
from loaderdbg.session import Capability, Event, StopReason
from loaderdbg.snapshot import Divergence, Snapshot, build_snapshot
from loaderdbg import targets as reasons
from loaderdbg.targets import MILESTONE_OF_TARGET, ReasonKind, Target, parse_target



# A move that applies more writes than this is not logged (ReplayMemory.writes_since).
WRITE_LOG_MOVE = 64
WRITE_LOG_SIZE = 512


class _Stored(bytes):
    """A page known by its content hash, loaded when first read."""


class ReplayMemory:
    """Tracee memory at one position of a recording, materialized page by
    page on demand. Pages not yet touched since ``base`` (a keyframe) are
    read from that keyframe's image; pages a mapping replaced are kept as
    their hash until read."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.base = 0
        self.pos = 0
        self.pages: dict[int, bytearray | _Stored | None] = {}
        # Bumped whenever content may change (writes applied, a reset):
        # equal generations mean equal memory.
        self.generation = 0
        # What the last few small moves wrote, as (generation, start, end):
        # a single step writes a word or two, and a snapshot that read
        # nothing there is still good (writes_since). A move that writes
        # more, or a reset, is not logged: before it, nothing is known.
        self._writes: list[tuple[int, int, int]] = []
        self._writes_known_from = 0
        self._reads: list[tuple[int, int]] | None = None  # see track_reads

    def writes_since(self, generation: int) -> list[tuple[int, int]] | None:
        """The (start, end) ranges written after generation, or None when
        that is not known (a reset or a large move since)."""
        if generation < self._writes_known_from:
            return None
        return [(start, end) for written, start, end in self._writes if written > generation]

    def track_reads(self, reads: list[tuple[int, int]] | None) -> None:
        """Collect (start, end) of every read into reads from now on
        (None: stop)."""
        self._reads = reads

    def _log_writes(self, cw: ChunkWrites, lo: int, hi: int) -> None:
        if hi - lo > WRITE_LOG_MOVE:
            self._writes.clear()
            self._writes_known_from = self.generation
            return
        if len(self._writes) > WRITE_LOG_SIZE:
            # Keep the newer half: a snapshot asks about the last few moves.
            dropped = self._writes[:WRITE_LOG_SIZE // 2]
            del self._writes[:WRITE_LOG_SIZE // 2]
            self._writes_known_from = dropped[-1][0]
        generation = self.generation
        for i in range(lo, hi):
            addr = cw.addrs[i]
            if cw.kinds[i] == WRITE_PAGE:
                start = addr & ~(PAGE_SIZE - 1)
                self._writes.append((generation, start, start + PAGE_SIZE))
            else:
                self._writes.append((generation, addr, addr + cw.sizes[i]))

    def page(self, number: int) -> bytearray | None:
        try:
            content = self.pages[number]
        except KeyError:
            content = self.rec.image_hash(number, self.base)
            if content is None:
                self.pages[number] = None
                return None
        else:
            if content.__class__ is not _Stored:
                return content
        content = bytearray(self.rec.page_bytes(bytes(content)))
        self.pages[number] = content
        return content

    def read(self, addr: int, size: int) -> bytes | None:
        if size <= 0 or addr < 0 or addr + size > 1 << 64:
            return b"" if size == 0 else None
        if self._reads is not None:
            self._reads.append((addr, addr + size))
        out = bytearray()
        end = addr + size
        while addr < end:
            page = self.page(addr >> 12)
            if page is None:
                return None
            offset = addr & (PAGE_SIZE - 1)
            take = min(PAGE_SIZE - offset, end - addr)
            out += page[offset:offset + take]
            addr += take
        return bytes(out)

    def read_prefix(self, addr: int, size: int) -> bytes:
        if self._reads is not None:
            self._reads.append((addr, addr + size))
        out = bytearray()
        while len(out) < size:
            page = self.page((addr + len(out)) >> 12)
            if page is None:
                break
            offset = (addr + len(out)) & (PAGE_SIZE - 1)
            out += page[offset:offset + min(PAGE_SIZE - offset, size - len(out))]
        return bytes(out)

    # -- moving --------------------------------------------------------------
    def _put(self, addr: int, data: bytes) -> None:
        end = addr + len(data)
        position = 0
        while addr < end:
            page = self.page(addr >> 12)
            offset = addr & (PAGE_SIZE - 1)
            take = min(PAGE_SIZE - offset, end - addr)
            if page is not None:
                page[offset:offset + take] = data[position:position + take]
            addr += take
            position += take

    def _apply_range(self, cw: ChunkWrites, lo: int, hi: int, forward: bool) -> None:
        """Apply writes lo..hi-1 of a chunk (forward: new bytes in order;
        backward: old bytes, newest first). Walks the columns directly; a
        seek across a keyframe's steps runs this for every write, so the
        page a write lands on is looked up again only when it changes (most
        runs of writes stay on one stack page)."""
        if hi <= lo:
            return
        self.generation += 1
        self._log_writes(cw, lo, hi)
        pages = self.pages
        page_of = self.page
        addrs, sizes, kinds, offsets, data = cw.addrs, cw.sizes, cw.kinds, cw.offsets, cw.data
        columns = zip(addrs[lo:hi], sizes[lo:hi], kinds[lo:hi], offsets[lo:hi])
        if not forward:
            columns = reversed(list(columns))
        ref_at = 0 if forward else PAGE_REF_SIZE
        old_bytes = 0 if forward else 1  # a write's old bytes follow its new ones
        mask = PAGE_SIZE - 1
        current, page = -1, None
        for addr, size, kind, offset in columns:
            if kind == WRITE_PAGE:
                ref = data[offset + ref_at:offset + ref_at + PAGE_REF_SIZE]
                pages[addr >> 12] = _Stored(ref[1:]) if ref[0] else None
                current = -1
                continue
            if old_bytes:
                offset += size
            within = addr & mask
            if within + size <= PAGE_SIZE:
                number = addr >> 12
                if number != current:
                    page = pages.get(number)
                    if page.__class__ is not bytearray:
                        page = page_of(number)
                    current = number
                if page is not None:
                    page[within:within + size] = data[offset:offset + size]
            else:
                self._put(addr, data[offset:offset + size])
                current = -1

    def _forward(self, start: int, stop: int) -> None:
        rec = self.rec
        for chunk in range(rec.chunk_of(start), rec.chunk_of(max(stop - 1, start)) + 1):
            if rec.chunk_info(chunk).nwrites == 0:
                continue
            cw = rec.chunk_writes(chunk)
            lo, hi = cw.range(start, stop)
            self._apply_range(cw, lo, hi, True)

    def _backward(self, start: int, stop: int) -> None:
        """Undo transitions [stop, start) (start > stop), newest first."""
        rec = self.rec
        for chunk in range(rec.chunk_of(max(start - 1, 0)), rec.chunk_of(stop) - 1, -1):
            if rec.chunk_info(chunk).nwrites == 0:
                continue
            cw = rec.chunk_writes(chunk)
            lo, hi = cw.range(stop, start)
            self._apply_range(cw, lo, hi, False)

    def reset(self, keyframe: int) -> None:
        self.base = keyframe
        self.pos = keyframe
        self.pages = {}
        self.generation += 1
        self._writes.clear()
        self._writes_known_from = self.generation

    def seek_by_writes(self, target: int) -> None:
        """Move to ``target`` by applying the writes in between, from
        wherever memory is (no keyframe image taken on the way)."""
        if target > self.pos:
            self._forward(self.pos, target)
        elif target < self.pos:
            self._backward(self.pos, target)
        self.pos = target

    def seek(self, target: int) -> None:
        if target == self.pos:
            return
        keyframes = self.rec.keyframes
        i = bisect.bisect_right(keyframes, target) - 1
        below = keyframes[max(i, 0)]
        above = keyframes[i + 1] if i + 1 < len(keyframes) else None
        here = abs(target - self.pos)
        options = [(here, "here"), (target - below, "below")]
        if above is not None:
            options.append((above - target, "above"))
        _, choice = min(options)
        if choice == "below":
            self.reset(below)
        elif choice == "above":
            self.reset(above)
        if target > self.pos:
            self._forward(self.pos, target)
        elif target < self.pos:
            self._backward(self.pos, target)
        self.pos = target




@dataclass(frozen=True)
class VerifyReport:
    keyframes_checked: int
    divergences: tuple[Divergence, ...]

    @property
    def ok(self) -> bool:
        return not self.divergences

    def describe(self) -> str:
        if self.ok:
            return f"replay matches the recording at all {self.keyframes_checked} keyframes"
        first = self.divergences[0]
        where = "" if first.address is None else f", address {first.address:#x}"
        lines = [f"DIVERGENCE: {len(self.divergences)} problem(s); first at step {first.step}{where}"]
        lines += [f"  {d.message}" for d in self.divergences[:20]]
        return "\n".join(lines)


def check_keyframe(rec: Recording, keyframe: int, *, forward: bool = True,
                   backward: bool = True) -> Divergence | None:
    """Check the replay of the steps between the keyframe before
    ``keyframe`` and it, as ReplayMemory replays them: forward (each
    write's new bytes) from the earlier keyframe's image must give every
    page it touched as recorded at ``keyframe``, and backward (each write's
    old bytes) from ``keyframe``'s image must give them as recorded at the
    earlier one. Only the pages the writes touch are read, so this costs
    about what a seek across those steps does."""
    where = bisect.bisect_left(rec.keyframes, keyframe)
    if where == 0 or where >= len(rec.keyframes) or rec.keyframes[where] != keyframe:
        return None
    start = rec.keyframes[where - 1]
    memory = ReplayMemory(rec)
    if forward:
        memory.reset(start)
        memory.seek_by_writes(keyframe)
        page, mine, theirs = _first_page_differing(rec, memory, keyframe)
        if page is not None:
            return _divergence_forward(rec, start, keyframe, page, mine, theirs)
    if backward:
        memory.reset(keyframe)
        memory.seek_by_writes(start)
        page, mine, theirs = _first_page_differing(rec, memory, start)
        if page is not None:
            return _divergence_backward(rec, start, keyframe, page, mine, theirs)
    return None


def _first_page_differing(rec: Recording, memory: "ReplayMemory", keyframe: int):
    """(page, replayed bytes or None, recorded bytes or None) of the lowest
    page the replay touched whose content differs from the recording's
    image at ``keyframe``; (None, None, None) if all agree."""
    for page in sorted(memory.pages):
        content = memory.pages[page]
        recorded = rec.image_hash(page, keyframe)
        if content.__class__ is _Stored:
            if bytes(content) == recorded:
                continue
            content = memory.page(page)
        elif content is not None and recorded is not None and page_hash(content) == recorded:
            continue
        if content is None and recorded is None:
            continue
        return page, content, None if recorded is None else rec.page_bytes(recorded)
    return None, None, None


def _first_byte(page: int, mine, theirs) -> int:
    if mine is None or theirs is None:
        return page << 12
    return (page << 12) + next((i for i in range(PAGE_SIZE) if mine[i] != theirs[i]), 0)


def _shown_byte(content, addr: int) -> str:
    return "unmapped" if content is None else f"{content[addr & (PAGE_SIZE - 1)]:#04x}"


def _divergence_forward(rec: Recording, start: int, keyframe: int, page: int, mine, theirs) -> Divergence:
    addr = _first_byte(page, mine, theirs)
    write = index.last_write(rec, addr, 1, keyframe)
    if write is not None and write.step >= start:
        # The step after that write is the first position showing it.
        step, cause = write.step + 1, f"the write of step {write.step}"
    else:
        step, cause = keyframe, f"the steps {start}..{keyframe}"
    return Divergence(step, addr, f"replay diverges from the recording at step {step}: {cause} leaves "
                                  f"{addr:#x} = {_shown_byte(mine, addr)}; the process had "
                                  f"{_shown_byte(theirs, addr)} at step {keyframe}")


def _divergence_backward(rec: Recording, start: int, keyframe: int, page: int, mine, theirs) -> Divergence:
    addr = _first_byte(page, mine, theirs)
    writes = index.writes_between(rec, addr, 1, start, keyframe)
    if writes:
        # Stepping back past that write restores bytes the process never had.
        step, cause = writes[0].step, f"undoing the write of step {writes[0].step}"
    else:
        step, cause = start, f"undoing the steps {start}..{keyframe}"
    return Divergence(step, addr, f"replay diverges from the recording at step {step}: {cause} leaves "
                                  f"{addr:#x} = {_shown_byte(mine, addr)}; the process had "
                                  f"{_shown_byte(theirs, addr)} at step {start}")


def verify_recording(rec: Recording, progress=None) -> VerifyReport:
    """Replay every write from the step-0 image and check the recorder's
    checksum of all writable memory at every keyframe, and each keyframe's
    steps backwards (check_keyframe). Also reports what the recorder itself
    found changed without a recorded write. ``progress(done, total)`` is
    called after each keyframe."""
    memory: dict[int, bytearray] = {}
    for page, digest in rec.image_pages(0).items():
        if digest is not None:
            memory[page] = bytearray(rec.page_bytes(digest))
    divergences: list[Divergence] = []
    previous = 0
    checked = 0
    for keyframe in rec.keyframes[1:]:
        for chunk in range(rec.chunk_of(previous), rec.chunk_of(max(keyframe - 1, previous)) + 1):
            for write in rec.chunk_writes(chunk).writes:
                if not previous <= write.step < keyframe:
                    continue
                if write.kind == WRITE_FIXUP:
                    divergences.append(Divergence(
                        write.step, write.addr,
                        f"recording: {write.size} bytes at {write.addr:#x} changed between steps "
                        f"{previous} and {keyframe} without a recorded write"))
                _apply_full(rec, memory, write)
        checked += 1
        maps = parse_maps(rec.maps_text(keyframe))
        checksum, sums, _ = rec.keyframe(keyframe)
        mine, my_sums = memory_checksum(_writable(memory, maps))
        if mine != checksum:
            # The keyframe's own steps name the write when they are the cause.
            divergences.append(check_keyframe(rec, keyframe, backward=False) or
                               _locate(rec, memory, keyframe, dict(sums), dict(my_sums)))
        backward = check_keyframe(rec, keyframe, forward=False)
        if backward is not None:
            divergences.append(backward)
        previous = keyframe
        if progress is not None:
            progress(checked, len(rec.keyframes) - 1)
    return VerifyReport(checked, tuple(sorted(divergences, key=lambda d: d.step)))


def _apply_full(rec: Recording, memory: dict[int, bytearray], write: Write) -> None:
    if write.kind == WRITE_PAGE:
        if write.new is None:
            memory.pop(write.addr >> 12, None)
        else:
            memory[write.addr >> 12] = bytearray(rec.page_bytes(write.new))
        return
    addr, end, position = write.addr, write.addr + write.size, 0
    while addr < end:
        page = memory.get(addr >> 12)
        offset = addr & (PAGE_SIZE - 1)
        take = min(PAGE_SIZE - offset, end - addr)
        if page is not None:
            page[offset:offset + take] = write.new[position:position + take]
        addr += take
        position += take


def _writable(memory: dict[int, bytearray], maps: Sequence[MapEntry]):
    seen = set()
    for entry in maps:
        if not entry.writable or entry.kind in ("vvar", "vsyscall"):
            continue
        for page in range(entry.start >> 12, entry.end >> 12):
            content = memory.get(page)
            if content is not None and page not in seen:
                seen.add(page)
                yield page, content


def _locate(rec: Recording, memory: dict[int, bytearray], keyframe: int, recorded: dict[int, int],
            replayed: dict[int, int]) -> Divergence:
    pages = sorted(set(recorded) | set(replayed))
    for page in pages:
        if recorded.get(page) == replayed.get(page):
            continue
        addr = page << 12
        digest = rec.image_hash(page, keyframe)
        mine = memory.get(page)
        if digest is None or mine is None or page not in recorded or page not in replayed:
            return Divergence(keyframe, addr, f"replay diverges at step {keyframe}: page {addr:#x} is "
                                              f"{'present' if page in replayed else 'missing'} in the replay, "
                                              f"{'present' if page in recorded else 'missing'} in the recording")
        theirs = rec.page_bytes(digest)
        first = next((i for i in range(PAGE_SIZE) if theirs[i] != mine[i]), 0)
        return Divergence(keyframe, addr + first,
                          f"replay diverges at step {keyframe}: byte {addr + first:#x} replays as "
                          f"{mine[first]:#04x}, the process had {theirs[first]:#04x}")
    return Divergence(keyframe, None, f"replay diverges at step {keyframe}: checksum differs")


# --------------------------------------------------------------------------


INITIAL_REASON = reasons.launched()


class ReplaySession:
    """The Session interface over a `.ldbg` recording."""

    capabilities = frozenset({Capability.REVERSE, Capability.HISTORY, Capability.BREAKPOINTS,
                              Capability.INTERRUPT, Capability.TIMELINE})
    position_exact = True
    alive = False

    # Where `directory`-style source lookups also look (--source-dir).
    source_directories: tuple[str, ...] = ()

    def __init__(self, path: str) -> None:
        self.recording = open_recording(path)
        self.path = path
        meta = self.recording.meta
        self.program: str = meta["program"]
        self.pid: int | None = meta.get("pid") if isinstance(meta.get("pid"), int) else None
        self.last_step = self.recording.last_step
        self._lock = threading.RLock()
        self._memory = ReplayMemory(self.recording)
        self._all_events = self.recording.events()
        self._breakpoints: set[int] = set()
        self._pos = 0
        self._regs = self.recording.regs_at(0)
        self._selected: int | None = None  # select_thread's choice; None: the stepping thread
        if self.recording.threaded:
            self.capabilities = self.capabilities | {Capability.THREADS}
        self._reason = INITIAL_REASON
        self._source = ReplayState(self, self._memory)
        self._history = None  # the data-flow tracer, made on the first question
        end = meta.get("end")
        self.end_reason = _reason_from_json(end) if isinstance(end, dict) else \
            reasons.recording_end(None, self.last_step, "the recorder stopped early")
        self._all_events = exact_milestones(self.recording, self._all_events, self._source.initial_stack(),
                                            self._self_relocation_slots())
        # Keyframes whose steps a move has checked (check_keyframe), and
        # the earliest divergence found so far.
        self._checked_keyframes: set[int] = set()
        self._divergence: Divergence | None = None

    def _self_relocation_slots(self) -> tuple[int, ...]:
        """The RELATIVE slots of the object the kernel entered, when it
        relocates itself (no PT_INTERP) and a late-noticed
        self-relocation-done milestone needs its exact step (at step 0)."""
        if not any(e.name == "self-relocation-done" and not e.exact for e in self._all_events):
            return ()
        entered = self._source.object_at(self._source.entry_pc)
        if entered is None or entered.info.interp is not None:
            return ()
        return tuple(entered.runtime(r.offset) for r in entered.info.relocations
                     if r.type_name.endswith("_RELATIVE"))

    # -- Session state ---------------------------------------------------------
    @property
    def position(self) -> int:
        return self._pos

    @property
    def stop_reason(self) -> StopReason:
        return self._reason

    def snapshot(self) -> Snapshot:
        with self._lock:
            return build_snapshot(self._source)

    def read_memory(self, addr: int, size: int) -> bytes | None:
        with self._lock:
            return self._memory.read(addr, size)

    def registers_raw(self) -> bytes:
        return self._regs

    # -- threads (a recording of several: record/format.py's schedule) -------------
    @property
    def stepping_thread(self) -> int | None:
        """The thread that executes the step at this position (the
        recording's schedule): its registers are the position's."""
        return self.recording.thread_at(self._pos)

    @property
    def current_thread(self) -> int | None:
        """The thread whose registers, stack and disassembly are shown: the
        one select_thread chose while it exists, else the stepping one."""
        return self._selected if self._selected is not None else self.stepping_thread

    def thread_registers(self) -> dict[int, bytes]:
        """Every thread alive at this position and its registers, by tid
        (one thread: the position's registers, under the leader's tid)."""
        return self.recording.thread_registers(self._pos)

    def select_thread(self, tid: int) -> None:
        """gdb's `thread N` (Threads): thread ``tid``'s registers as of this
        position are shown from now on (UsageError: no such thread here)."""
        with self._lock:
            alive = self.recording.thread_registers(self._pos)
            if tid not in alive:
                raise UsageError(f"no thread {tid} at step {self._pos} (threads: "
                                 f"{', '.join(map(str, alive))})")
            self._selected = tid
            self._regs = alive[tid]

    @property
    def arch(self):
        """The recorded program's architecture tables (loaderdbg/arch)."""
        return self._source.arch

    def register(self, name: str) -> int:
        offset = self.arch.register_offset(name)
        return int.from_bytes(self._regs[offset:offset + self.arch.word_size], "little")

    @property
    def pc(self) -> int:
        return self.register(self.arch.pc_register)

    def maps(self) -> Sequence:
        with self._lock:
            return self._source.maps()

    def objects(self) -> Sequence:
        with self._lock:
            return self._source.objects()

    def threads(self) -> Sequence:
        with self._lock:
            return self._source.threads()

    def events(self) -> Sequence[Event]:
        """Every event of the recording (the whole timeline, in step order);
        a snapshot's events stop at its position."""
        return self._all_events

    def symbolize(self, addr: int) -> str | None:
        with self._lock:
            return self._source.symbols().symbolize(addr)

    def resolve(self, name: str) -> int | None:
        with self._lock:
            return self._source.symbols().locate(name)

    def source_line(self, addr: int) -> SourceLine | None:
        with self._lock:
            return line_at(self._source.symbols(), addr)

    def source_file(self, line: SourceLine) -> SourceFile | None:
        """line's source file, looked for as gdb does, in
        ``source_directories`` too (files on this machine, not the
        target's: no tracer needed)."""
        return source_file(line, self.source_directories)

    def backtrace(self, limit: int = MAX_FRAMES) -> tuple[Frame, ...]:
        with self._lock:
            return backtrace_of(self._source, limit)

    def disassemble(self, addr: int, count: int = 16):
        with self._lock:
            return self._source.disassemble(addr, count)

    def breakpoints(self) -> frozenset[int]:
        return frozenset(self._breakpoints)

    def add_breakpoint(self, addr: int) -> bool:
        self._breakpoints.add(addr)
        return True

    def remove_breakpoint(self, addr: int) -> None:
        self._breakpoints.discard(addr)

    def interrupt(self) -> None:
        return None

    def close(self) -> None:
        self.recording.close()

    def __enter__(self) -> "ReplaySession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- History: who last wrote this ------------------------------------------
    def last_memory_write(self, addr: int, size: int):
        """The last step before this one that wrote [addr, addr+size), or None
        (record/dataflow.py's MemoryWrite)."""
        with self._lock:
            return self._tracer().last_memory_write(addr, size, self._pos)

    def next_memory_change(self, addr: int, size: int):
        """The first step from this one on that changed a byte of
        [addr, addr+size), or None (record/dataflow.py's MemoryWrite)."""
        with self._lock:
            return self._tracer().next_memory_change(addr, size, self._pos)

    def last_register_write(self, register: str):
        """The last step before this one that wrote the register, or None
        (record/dataflow.py's RegisterWrite); ValueError for no register."""
        with self._lock:
            return self._tracer().last_register_write(register, self._pos, self.current_thread)

    def _tracer(self):
        if self._history is None:
            from loaderdbg.record.dataflow import Tracer  # it builds on this module
            self._history = Tracer(self)
        return self._history

    def verify(self, progress=None) -> VerifyReport:
        """Check the whole recording (verify_recording); ``progress(done,
        total)`` after each keyframe. What it finds is the session's
        divergence from then on."""
        with self._lock:
            report = verify_recording(self.recording, progress)
            self._checked_keyframes.update(self.recording.keyframes[1:])
            if report.divergences:
                self._note_divergence(report.divergences[0])
            return report

    # -- checking what is replayed ----------------------------------------------
    @property
    def divergence(self) -> Divergence | None:
        """The first position where the replay was found not to match the
        recording (by the keyframes the moves so far crossed), or None."""
        return self._divergence

    @property
    def verified(self) -> bool | None:
        """False once a divergence is found; True when every keyframe
        checked so far matched; None before any was checked."""
        if self._divergence is not None:
            return False
        return True if self._checked_keyframes else None

    def _note_divergence(self, found: Divergence) -> None:
        if self._divergence is None or found.step < self._divergence.step:
            self._divergence = found

    def _check_crossed(self, start: int, end: int) -> None:
        """Check each keyframe a move from start to end crosses or lands
        on (not the one it leaves), once per session."""
        keyframes = self.recording.keyframes
        low, high = min(start, end), max(start, end)
        first = bisect.bisect_left(keyframes, max(low, 1))
        for keyframe in keyframes[first:bisect.bisect_right(keyframes, high)]:
            if keyframe == start or keyframe in self._checked_keyframes:
                continue
            found = check_keyframe(self.recording, keyframe)
            self._checked_keyframes.add(keyframe)
            if found is not None:
                self._note_divergence(found)

    # -- motion ------------------------------------------------------------------
    def _move(self, position: int, reason: StopReason | None = None) -> StopReason:
        position = max(0, min(position, self.last_step))
        self._check_crossed(self._pos, position)
        self._memory.seek(position)
        self._pos = position
        self._regs = self.recording.regs_at(position)
        if self._selected is not None:
            # The chosen thread stays current while it exists (then: the stepping one).
            regs = self.recording.thread_registers(position).get(self._selected)
            if regs is None:
                self._selected = None
            else:
                self._regs = regs
        if reason is None:
            if position == self.last_step and position > 0:
                reason = self.end_reason
            elif position == 0:
                reason = INITIAL_REASON
            else:
                reason = reasons.stepped(position)
        if self.recording.threaded and reason.thread is None and reason.kind not in (ReasonKind.EXITED,
                                                                                    ReasonKind.KILLED):
            # As live: with more than one thread a stop names the one it is
            # (here: the one that steps from it, whose registers it shows).
            if len(self.recording.thread_registers(position)) > 1:
                reason = reasons.in_thread(reason, self.recording.thread_at(position))
        self._reason = reason
        return reason

    def goto(self, step: int) -> StopReason:
        with self._lock:
            if not 0 <= step <= self.last_step:
                raise UsageError(f"step {step} is outside the recording (0..{self.last_step})")
            return self._move(step)

    def step(self, n: int = 1) -> StopReason:
        with self._lock:
            if self._pos >= self.last_step:
                self._reason = self.end_reason
                return self._reason
            return self._move(self._pos + max(n, 0))

    def step_back(self, n: int = 1) -> StopReason:
        with self._lock:
            if self._pos == 0:
                self._reason = reasons.recording_start()
                return self._reason
            return self._move(self._pos - max(n, 0))

    def step_over(self) -> StopReason:
        with self._lock:
            pc = self.pc
            code = self._memory.read_prefix(pc, 15)
            insn = disassemble_one(code, pc, self._source.arch) if code else None
            if insn is None or not insn.is_call:
                return self.step()
            after = pc + insn.size
            sp = self.register("rsp")
            probe = self._pos
            while True:
                found = index.find_pc(self.recording, {after}, after=probe)
                if found is None:
                    return self._move(self.last_step)
                if self._register_at(found, self.arch.sp_register) >= sp:
                    return self._move(found, reasons.stepped(found))
                probe = found

    def cont(self, until: str | None = None) -> StopReason:
        with self._lock:
            target = parse_target(until) if until else None
            return self._run(target, forward=True)

    def reverse_cont(self, until: str | None = None) -> StopReason:
        with self._lock:
            target = parse_target(until) if until else None
            return self._run(target, forward=False)

    # -- finding stop targets ------------------------------------------------------
    def _run(self, target: Target | None, forward: bool) -> StopReason:
        here = self._pos
        if target is not None and target.kind == "ldso-entry":
            static = self._statically_linked()
            if static is not None:
                return self._move(here, reasons.statically_linked(target, static))
        if forward and target is not None and target.kind in MILESTONE_OF_TARGET and any(
                e.step == here and e.exact and e.kind == "milestone" and e.name == MILESTONE_OF_TARGET[target.kind]
                for e in self._all_events):
            return self._move(here, reasons.already_at(target))
        candidates: list[tuple[int, StopReason]] = []
        if self._breakpoints:
            found = index.find_pc(self.recording, self._breakpoints,
                                  **({"after": here} if forward else {"before": here}))
            if found is not None:
                pc = self._register_at(found, self.arch.pc_register)
                where = self._source.symbols().symbolize(pc)
                candidates.append((found, reasons.breakpoint_hit(target, pc, where)))
        if target is not None:
            found = self._find_target(target, forward)
            end = self.end_reason
            if found is None and forward and here < self.last_step and end.reached and end.target == str(target):
                # The recording ends where the recorder reached this very
                # target: a syscall's entry, say, whose call never ran, so
                # no syscall row names it.
                found = self.last_step, end
            if found is not None:
                candidates.append(found)
        if not candidates:
            if target is None or (target.kind == "exit" and forward):
                if forward:
                    return self._move(self.last_step)
                return self._move(0, reasons.recording_start())
            end = self.end_reason
            if forward and end.kind in (ReasonKind.EXITED, ReasonKind.KILLED, ReasonKind.SIGNAL):
                # The process ended before the target, so a live run would
                # have stopped there too, saying so (exit 1, not a usage error).
                return self._move(self.last_step, reasons.as_target_outcome(end, target))
            direction = "after" if forward else "before"
            raise UsageError(f"{target} does not occur {direction} step {here} in this recording")
        candidates.sort(key=lambda c: c[0] if forward else -c[0])
        position, reason = candidates[0]
        return self._move(position, reason)

    def _statically_linked(self) -> str | None:
        """The name of the program when no ld.so ran in it, as live says
        (process/startup.py's first stop): the kernel started it at its
        own AT_ENTRY and the recorder never saw an ld.so."""
        meta = self.recording.meta
        at_entry = meta.get("at_entry")
        if meta.get("ldso") is not None or not isinstance(at_entry, dict) or at_entry.get("step") != 0 \
                or at_entry.get("value") != meta["entry_pc"]:
            return None
        entered = self._source.object_at(meta["entry_pc"])
        return None if entered is None else entered.name

    def _pick(self, positions: Sequence[int], forward: bool) -> int | None:
        here = self._pos
        if forward:
            return next((p for p in sorted(positions) if p > here), None)
        return next((p for p in sorted(positions, reverse=True) if p < here), None)

    def _find_target(self, target: Target, forward: bool) -> tuple[int, StopReason] | None:
        kind = target.kind
        rec = self.recording
        label = str(target)

        def reached(position: int) -> tuple[int, StopReason]:
            return position, reasons.reached_at(target, self._register_at(position, self.arch.pc_register))

        if kind == "first":
            return None if forward or self._pos == 0 else (0, reasons.at_first(target))
        if kind == "step":
            if target.value > self.last_step:
                return (self.last_step, reasons.recording_end(target, self.last_step)) if forward else None
            if (forward and target.value > self._pos) or (not forward and target.value < self._pos):
                return target.value, reasons.reached_step(target, target.value)
            return None
        if kind == "exit":
            if not forward or self._pos >= self.last_step:
                return None
            end = self.end_reason
            if end.kind == ReasonKind.EXITED:
                # The last step is the exit event, as a live `exit` stop.
                return self.last_step, reasons.about_to_exit(target, end.exit_code)
            if end.kind in (ReasonKind.KILLED, ReasonKind.SIGNAL):
                return self.last_step, reasons.as_target_outcome(end, target)
            return self.last_step, reasons.recording_end(target, self.last_step,
                                                         f"recorded until {end.target or 'it stopped'}")
        if kind in MILESTONE_OF_TARGET:
            name = MILESTONE_OF_TARGET[kind]
            steps = [e.step for e in self._all_events if e.kind == "milestone" and e.name == name and e.exact]
            found = self._pick(steps, forward)
            if found is not None:
                return reached(found)
            if kind == "main" and not steps:
                return self._find_addresses(target, self._symbol_addresses("main"), forward)
            return None
        if kind == "signal":
            steps = [s["step"] for s in rec.signals()]
            found = self._pick(steps, forward)
            if found is None:
                return None
            signal = next(s for s in rec.signals() if s["step"] == found)
            name = _signal_name(signal["signo"])
            if not any(e.step == found and e.kind == "milestone" and e.name == "crash" for e in self._all_events):
                # A fault the program handles is part of its run, as live
                # says (process/startup.py): no crash milestone noted it.
                return found, reasons.signal_arrived(target, name)
            pc = self._register_at(found, self.arch.pc_register)
            return found, reasons.signal_stop(target, signal["signo"], name, pc,
                                              self._fault_address(signal["siginfo"]))
        if kind == "syscall":
            calls = [c for c in rec.syscalls() if target.name in (None, c["name"])]
            found = self._pick([c["step"] for c in calls], forward)
            if found is None:
                return None
            call = next(c for c in calls if c["step"] == found)
            return found, reasons.syscall_entry(target, _call_without_result(call["text"]))
        if kind == "addr":
            return self._find_addresses(target, {target.value}, forward)
        if kind == "sym":
            return self._find_addresses(target, self._symbol_addresses(target.name), forward)
        return None

    def _register_at(self, step: int, name: str) -> int:
        """A register at any step, without moving there."""
        rec = self.recording
        return rec.chunk_regs(rec.chunk_of(step)).word(step, self.arch.register_indexes[name])

    def _fault_address(self, siginfo: bytes | None) -> int | None:
        if not siginfo:
            return None
        try:
            return decode_siginfo(siginfo, self._source.arch).addr
        except DecodeError:
            return None

    def _find_addresses(self, target: Target, addresses: set[int], forward: bool):
        if not addresses:
            return None
        found = index.find_pc(self.recording, addresses, **({"after": self._pos} if forward else
                                                             {"before": self._pos}))
        if found is None:
            return None
        return found, reasons.reached_at(target, self._register_at(found, self.arch.pc_register))

    def _symbol_addresses(self, name: str) -> set[int]:
        """Where ``name`` resolves in every memory map the recording had."""
        addresses = set()
        saved = self._pos
        for step, _text in self.recording.maps_rows:
            self._pos = step
            try:
                addresses.update(self._source.symbols().plt_locations(name))  # puts@plt: each object's
                addr = self._source.symbols().resolve(name)
                if addr is None:  # a local symbol (.symtab), like execsolib_handoff
                    for obj in self._source.objects():
                        symbol = obj.info.symbol_named(name)
                        if symbol is not None and symbol.shndx_defined and symbol.value:
                            addr = obj.base + symbol.value
                            break
            except DecodeError:
                addr = None
            if addr is not None:
                addresses.add(addr)
        self._pos = saved
        return addresses


def _call_without_result(text: str) -> str:
    """A recorded syscall's strace line up to its result: at the entry stop
    nothing has run yet."""
    return text.rsplit(" = ", 1)[0]


def _signal_name(number: int) -> str:
    import signal as _signal
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _reason_from_json(data: dict) -> StopReason:
    def text(key):
        value = data.get(key)
        return printable(value) if isinstance(value, str) else None  # shown: no control characters

    def number(key):
        value = data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    try:
        kind = ReasonKind(text("kind"))
    except ValueError:
        kind = ReasonKind.END
    return StopReason(kind,
                      text("description") or "end of the recording", text("target"),
                      bool(data.get("reached", False)), text("signal"), number("fault_address"),
                      number("exit_code"))
