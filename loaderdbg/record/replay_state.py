"""The replayed stop state: the one StopState over a recording.

A replay session's state at its position is the engine's StopState
(loaderdbg/stop_state.py) over a RecordedTarget, so maps, objects, symbols,
the kernel's stack and auxv, memory and relocation states are read and
decoded by the very code a live stop uses. What only a recording knows is
added here: what the recorder learned of ld.so and AT_ENTRY (and from which
step on), the recorded threads, events and syscalls up to the position,
whether the replay was checked against the recording, and what changed
between two positions (so a snapshot can reuse what it derived).
"""

from __future__ import annotations

import bisect
import contextlib
from typing import TYPE_CHECKING, Sequence

from loaderdbg.analysis.address_space import AddressSpace
from loaderdbg.analysis.objects import MappedObject
from loaderdbg.arch import get_arch
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import parse_maps
from loaderdbg.decode.procstatus import parse_task_status
from loaderdbg.decode.registers import decode_registers
from loaderdbg.decode.syscalls import decode_syscall
from loaderdbg.errors import UsageError
from loaderdbg.stop_state import KernelImage, StopState
from loaderdbg.record.recorded_target import RecordedTarget
from loaderdbg.session import Event, StopReason
from loaderdbg.snapshot import Divergence, SyscallCall, ThreadState
from loaderdbg.targets import ReasonKind

if TYPE_CHECKING:
    from loaderdbg.record.replay import ReplayMemory, ReplaySession


class ReplayState(StopState):
    """A StateSource (loaderdbg/snapshot.py) at the session's position."""

    def __init__(self, session: "ReplaySession", memory: "ReplayMemory") -> None:
        rec = session.recording
        target = RecordedTarget(rec, get_arch(rec.meta["arch"]), memory, session.registers_raw,
                                lambda: session.position, session.pid, _kernel_images(rec))
        super().__init__(target, kernel_sp=rec.meta["kernel_sp"], read_file=target.mapped_file)
        self._session = session
        self.memory = memory
        self.rec = rec
        self.program = session.program
        ldso = rec.meta.get("ldso")
        self._ldso = ldso if isinstance(ldso, dict) else None
        at_entry = rec.meta.get("at_entry")
        self._at_entry = at_entry if isinstance(at_entry, dict) else None
        self._spaces: dict[int, AddressSpace] = {}  # by maps version: a move back reuses them
        self._syscalls: list[SyscallCall] | None = None  # every recorded call, decoded once
        self._syscall_steps: list[int] = []

    def kernel_image(self) -> KernelImage:
        """As the recorder saw it: at position 0, then at each exec."""
        return self.target.kernel_image()

    # -- the position is the session's -------------------------------------------------
    @property
    def step_count(self) -> int:
        return self._session.position

    @property
    def stop_reason(self) -> StopReason:
        return self._session.stop_reason

    def read(self, addr: int, size: int) -> bytes | None:
        """A MemoryReader over the replayed memory (the decoders' interface)."""
        return self.memory.read(addr, size)

    def address_space(self) -> AddressSpace:
        version = self.target.maps_version()
        space = self._spaces.get(version)
        if space is None:
            try:
                maps = parse_maps(self.target.maps_text())
            except DecodeError:
                maps = ()
            space = self._spaces[version] = AddressSpace(maps, self.elf_cache)
        return space

    def maps(self):
        return self.address_space().maps

    def invalidate(self) -> None:
        return None  # maps follow the position: address_space() picks the version

    # -- what changed between two positions (snapshot reuse) ---------------------------
    def memory_state(self) -> tuple:
        """Equal at two positions only if memory and mappings are equal
        (and what the recording says of ld.so and AT_ENTRY, which the
        objects views depend on)."""
        return (self.memory.generation, self.target.maps_version(), self.ldso_info() is not None,
                self.at_entry())

    def writes_since(self, state: tuple) -> list[tuple[int, int]] | None:
        """What was written between memory_state() == state and now, as
        (start, end) ranges; None if the mappings changed or it is not known."""
        if state[1:] != self.memory_state()[1:]:
            return None
        return self.memory.writes_since(state[0])

    @contextlib.contextmanager
    def reads_tracked(self):
        """Collect the (start, end) of every memory read inside the block."""
        reads: list[tuple[int, int]] = []
        self.memory.track_reads(reads)
        try:
            yield reads
        finally:
            self.memory.track_reads(None)

    # -- what the recorder learned -----------------------------------------------------
    def ldso_info(self) -> dict | None:
        if self._ldso is not None and self.step_count >= self._ldso.get("step", 0):
            return self._ldso
        return None

    def at_entry(self) -> int | None:
        if self._at_entry is not None and self.step_count >= self._at_entry.get("step", 0):
            return self._at_entry.get("value")
        return None

    def ldso_object(self) -> MappedObject | None:
        ldso = self.ldso_info()
        base = None if ldso is None else ldso.get("base")
        return self.address_space().object_loaded_at(base) if isinstance(base, int) else None

    def program_object(self) -> MappedObject | None:
        return self.address_space().program_object(self.at_entry(), self.entry_pc)

    def threads(self) -> tuple[ThreadState, ...]:
        """The recorded threads at this position, as a live all-stop session
        shows them: the current one stands for the stop's reason, every
        other recorded thread is stopped (a thread the recording did not
        step, in a recording of one thread, ran untraced); with several
        threads each has its own registers and pc."""
        if self.stop_reason.kind in (ReasonKind.EXITED, ReasonKind.KILLED):
            return ()  # the process is gone, as a live session shows it
        by_thread = self._session.thread_registers()
        several = len(by_thread) > 1
        current = self._session.current_thread
        if current is None:
            current = self.pid
        out = []
        for thread in self.rec.threads_data(self.step_count):
            tid = thread.get("tid")
            text = thread.get("status")
            if not isinstance(tid, int) or not isinstance(text, str):
                continue
            try:
                status = parse_task_status(text)
            except DecodeError:
                continue
            raw = self.registers_raw() if tid == current else by_thread.get(tid)
            fs_base = None
            if raw is not None and "fs_base" in self.arch.register_indexes:
                offset = self.arch.register_offset("fs_base")
                fs_base = int.from_bytes(raw[offset:offset + self.arch.word_size], "little")
            elif isinstance(thread.get("tls_base"), int):
                fs_base = thread["tls_base"]  # aarch64's TPIDR_EL0 is no user_pt_regs word: the row keeps it
            if tid == current:
                stop = self.stop_reason.kind
            else:
                stop = "stopped" if tid in by_thread else "running (not traced)"
            registers = pc = None
            if several and raw is not None:
                registers = decode_registers(raw, self.arch)
                pc = registers.pc
            out.append(ThreadState(tid, status.name, status.state, fs_base, status.sig_blocked,
                                   status.sig_pending, status.shared_pending, stop,
                                   tid == current if several else None, pc, registers))
        return tuple(out)

    @property
    def events(self) -> Sequence[Event]:
        position = self.step_count
        reason = self.stop_reason
        if reason.kind == ReasonKind.EXITING or (reason.kind == ReasonKind.TARGET and reason.target == "exit"):
            # About to exit the process is still there, as live: its end
            # (the recorder notes it at the same step) is yet to come, and
            # so is a call made from this very position (an aarch64
            # recording, like live there, stops at exit_group's entry).
            calling = {row["name"] for row in self.rec.syscalls() if row["step"] == position}
            return tuple(e for e in self._session.events()
                         if e.step < position or (e.step == position and e.name != "exit"
                                                  and not (e.kind == "syscall" and e.name in calling)))
        return tuple(e for e in self._session.events() if e.step <= position)

    def verification(self) -> tuple[bool | None, Divergence | None]:
        return self._session.verified, self._session.divergence

    def syscall_calls(self) -> tuple[SyscallCall, ...]:
        """The recorded syscalls made up to this position, each at the
        position after it, as its event and a live session count it."""
        if self._syscalls is None:
            calls = []
            for row in self.rec.syscalls():
                result = row["result"]
                try:
                    errno_name = decode_syscall(row["number"], row["args"], result, self.arch).errno_name
                except DecodeError:
                    errno_name = None
                signed = None if result is None else result - (1 << 64) if result >= 1 << 63 else result
                calls.append(SyscallCall(row["step"] + 1, row["number"], row["name"], row["args"], signed,
                                         errno_name))
            self._syscalls = calls
            self._syscall_steps = [call.step for call in calls]
        return tuple(self._syscalls[:bisect.bisect_right(self._syscall_steps, self.step_count)])


def _kernel_images(rec) -> list[tuple[int, KernelImage]]:
    """(position, image) of each program image the recording runs: the
    first from meta's kernel_sp, entry_pc and kernel_auxv, then one per
    exec (meta ``execs``, absent in recordings made before it was kept)."""
    meta = rec.meta
    try:
        images = [(0, KernelImage(meta["kernel_sp"], meta["entry_pc"], bytes.fromhex(meta.get("kernel_auxv", ""))))]
        for image in meta.get("execs", ()):
            images.append((image["position"], KernelImage(image["kernel_sp"], image["entry_pc"],
                                                          bytes.fromhex(image["kernel_auxv"]))))
    except (TypeError, ValueError, KeyError):
        raise UsageError(f"{rec.path}: meta kernel_sp, entry_pc, kernel_auxv or execs does not read") from None
    return images
