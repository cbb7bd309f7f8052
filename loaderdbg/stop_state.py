"""The stop state: what a stopped program looks like, over a raw target.

It sits beside the snapshot, not in process/: a replay (record/replay_state.py)
is a stop state over a recording and never loads the ptrace layer.

Maps, the objects in them (ELF parsed once per file), symbols, memory as the
program sees it (our breakpoints hidden), the kernel's initial stack and
auxv, relocation states. A live run (`Inferior`) and the recorder read the
same state the same way; the startup observer (process/startup.py) reads it
as its ProcessView. Everything here is recomputed after a mapping change
(`invalidate`), never guessed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

from loaderdbg.analysis.address_space import AddressSpace
from loaderdbg.analysis.objects import ElfCache, MappedObject
from loaderdbg.analysis.symbols import SymbolTable
from loaderdbg.decode.auxv import parse_auxv
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import MapEntry, parse_maps
from loaderdbg.decode.stack import InitialStack, decode_initial_stack

PAGE = 4096


@dataclass(frozen=True)
class KernelImage:
    """What the kernel handed a program image at its exec: the stack
    pointer it left argc/argv/envp/auxv at, the first pc, and its auxv
    (/proc/PID/auxv). A process that execs again has a new one."""

    sp: int
    entry_pc: int
    auxv: bytes


class StopState:
    """Over ``target`` (a RawTarget, process/raw_target.py: the live Tracee, the recorder's
    observed-only Tracee, a qemu guest, a recording at a position). ``kernel_sp`` is where the kernel
    left argc/argv/envp/auxv; ``observer`` (a StartupObserver), once set,
    keeps its milestone breakpoints armed across mapping changes."""

    step_count = 0  # steps since the first instruction (a recording's: its position)

    def __init__(self, target, *, kernel_sp: int, step_exact: bool = True,
                 read_file: Callable[[MapEntry], bytes | None] | None = None) -> None:
        self.target = target
        self.arch = target.arch
        self.step_exact = step_exact
        self._image = KernelImage(kernel_sp, int.from_bytes(self._register(target.arch.pc_register), "little"),
                                  self._read_proc("auxv") or b"")
        # A mapped file's bytes: a live target's through /proc, a recording's as stored.
        self.elf_cache = ElfCache(read_file or self._read_mapped_file)
        self.user_breakpoints: set[int] = set()
        self.observer = None  # a StartupObserver, set by whoever drives the stops
        self.snapshot_memo = None  # build_snapshot's (a SnapshotMemo), made at the first
        self._maps: tuple[MapEntry, ...] | None = None
        self._space: AddressSpace | None = None  # objects and symbols of _maps
        self._memory = _ProgramMemory(self)

    def _register(self, name: str) -> bytes:
        offset = self.arch.register_offset(name)
        return self.target.registers_raw()[offset:offset + self.arch.word_size]

    # -- /proc of the process that holds the program's memory -----------------------
    def _read_proc(self, name: str) -> bytes | None:
        return self.target.read_proc(name)

    def _read_mapped_file(self, entry: MapEntry) -> bytes | None:
        # map_files works for deleted files and memfds, as long as it is mapped.
        for path in (f"/proc/{self.target.maps_pid}/map_files/{entry.start:x}-{entry.end:x}", entry.path):
            try:
                with open(path, "rb") as handle:
                    return handle.read()
            except OSError:
                continue
        return None

    # -- state -------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.target.pid

    @property
    def alive(self) -> bool:
        return self.target.alive

    def maps(self) -> tuple[MapEntry, ...]:
        if self._maps is None:
            if not self.alive:
                return ()
            try:
                self._maps = parse_maps(self.target.maps_text())
            except DecodeError:
                self._maps = ()
        return self._maps

    def maps_text(self) -> str:
        return self.target.maps_text()

    def address_space(self) -> AddressSpace:
        if self._space is None:
            self._space = AddressSpace(self.maps(), self.elf_cache)
        return self._space

    def objects(self) -> tuple[MappedObject, ...]:
        return self.address_space().objects()

    def object_at(self, addr: int) -> MappedObject | None:
        return self.address_space().object_at(addr)

    def symbols(self) -> SymbolTable:
        return self.address_space().symbols()

    def symbolize(self, addr: int) -> str | None:
        return self.symbols().symbolize(addr)

    def disassemble(self, addr: int, count: int):
        """``count`` instructions from addr as the program sees them (int3s hidden)."""
        from loaderdbg.decode.disasm import disassemble  # not at import: inspect never disassembles
        code = self.read_prefix(addr, count * 15) if self.alive else b""
        return disassemble(code, addr, self.arch, count=count, symbolize=self.symbolize)

    def invalidate(self) -> None:
        self._maps = None
        self._space = None

    def exec_landed(self) -> None:
        """The process runs a new image (at its exec stop): the kernel's
        stack pointer, auxv and entry pc are the new image's now."""
        self._image = KernelImage(int.from_bytes(self._register(self.arch.sp_register), "little"),
                                  int.from_bytes(self._register(self.arch.pc_register), "little"),
                                  self._read_proc("auxv") or b"")
        self.invalidate()

    def kernel_image(self) -> KernelImage:
        """The image the process runs now, as the kernel started it."""
        return self._image

    @property
    def kernel_sp(self) -> int:
        return self.kernel_image().sp

    @property
    def entry_pc(self) -> int:
        return self.kernel_image().entry_pc

    @property
    def kernel_auxv_raw(self) -> bytes:
        return self.kernel_image().auxv

    def kernel_auxv(self):
        try:
            return parse_auxv(self.kernel_auxv_raw, self.arch, self._memory if self.alive else None)
        except DecodeError:
            return ()

    def initial_stack(self) -> InitialStack | None:
        """argc/argv/envp/auxv where the kernel put them, as they are now."""
        if not self.alive:
            return None
        try:
            return decode_initial_stack(self._memory, self.kernel_sp, self.arch)
        except DecodeError:
            return None

    def read_memory(self, addr: int, size: int) -> bytes | None:
        return self.target.read_memory(addr, size)

    def read_prefix(self, addr: int, size: int) -> bytes:
        """As much of [addr, addr+size) as is readable from addr on (a
        string that ends near the end of a mapping)."""
        data = self.target.read_memory(addr, size)
        if data is not None:
            return data
        out = b""
        while size > 0:
            chunk = min(size, PAGE - addr % PAGE)
            piece = self.target.read_memory(addr, chunk)
            if piece is None:
                break
            out += piece
            addr += chunk
            size -= chunk
        return out

    def registers_raw(self) -> bytes | None:
        return self.target.registers_raw() if self.alive else None

    def relocation_states(self, obj: MappedObject):
        return self.address_space().relocation_states(obj, self._memory)

    # -- breakpoints across mapping changes ------------------------------------------
    def mappings_changed(self) -> None:
        """A mapping syscall or an exec: maps are stale, and a breakpoint
        set before its page was mapped can be written now."""
        self.invalidate()
        if not self.alive:
            return
        target = self.target
        target.revalidate_breakpoints()
        milestones = self.observer.milestone_addresses if self.observer is not None else ()
        for addr in (*self.user_breakpoints, *milestones):
            if addr not in target.breakpoints:
                target.insert_breakpoint(addr)

    def release_breakpoint(self, addr: int) -> None:
        """Ours is done at addr; a user's breakpoint there stays."""
        if addr not in self.user_breakpoints:
            self.target.remove_breakpoint(addr)

    # -- the rest of a StateSource (loaderdbg/snapshot.py) -----------------------
    def verification(self) -> tuple[None, None]:
        return None, None  # nothing recorded to check against

    def memory_state(self) -> None:
        return None  # /proc reads show the present only: every stop decodes afresh

    def writes_since(self, state: tuple) -> None:
        return None

    def reads_tracked(self):
        return contextlib.nullcontext([])


class _ProgramMemory:
    """The state's memory as a MemoryReader (``read``): our int3s hidden."""

    def __init__(self, state: StopState) -> None:
        self._state = state

    def read(self, addr: int, size: int) -> bytes | None:
        return self._state.read_memory(addr, size)
