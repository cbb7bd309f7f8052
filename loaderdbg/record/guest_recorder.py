"""`loaderdbg record` of an aarch64 program: the recorder over qemu-user.

The x86 recorder (record/recorder.py) steps a ptrace'd process in a tight
loop. An aarch64 program runs under qemu-user, stepped through qemu's gdb
stub (process/qemu_target.py, a RawTarget): one ``s`` and one ``g`` per
step, ~0.35 ms, so the loop's cost is the stub's, not Python's. Everything
else is the Recorder's, unchanged: the shadow of memory, chunks of register
XOR deltas and write logs, keyframes with page checksums (and the check of
all writable memory against the shadow there), the files and maps tables,
the milestone tracker, the syscall rows. What differs:

- the register block is arm64's user_pt_regs (34 words; pc is word 32);
- stores come from record/capture_aarch64.py (an A64 plan per address);
- a ``svc`` step is a syscall step: x8 is the number, x0–x5 the arguments
  before it, x0 the result after it; what the syscall wrote (qemu does the
  kernel's work in the guest's memory) is found as on x86
  (capture.syscall_writes, or a diff of writable memory);
- an atomic sequence (load-exclusive … store-exclusive) is one step, run
  to its exits through stub breakpoints (a stepped one would fail its
  store-exclusive for ever); its stores are found by a diff of writable
  memory;
- memory and maps are the guest's: /proc/<qemu>/mem at the guest's own
  addresses (no guest base), maps from the stub target (qemu's own mappings
  left out); thread status from /proc/<qemu>/task for the stub's threads;
- signals come as the stub reports them (no siginfo); a pending one is
  delivered on the next step, as the run loop of a live session does.

The milestone tracker sees the guest through ``ObservedGuest``: breakpoints
it asks for are remembered, never given to the stub (the loop compares pc
after every step), and the registers it reads at a position are the ones
the loop fetched.
"""

from __future__ import annotations

import signal as _signal
import sys

from loaderdbg.decode.aarch64_sequences import atomic_sequence_exits
from loaderdbg.process import qemu_target
from loaderdbg.process.program import is_aarch64_program
from loaderdbg.process.qemu_target import QemuTarget
from loaderdbg.process.stops import Stop, StopKind
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.capture_aarch64 import (
    ALL_REGISTERS, ATOMIC_SEQUENCE, COMPLEX, SYSCALL, WRITES, Aarch64Decoder, full_register,
    guest_syscall_writes, store_ranges, zva_block,
)
from loaderdbg.record.format import WRITE_INSN, WRITE_KERNEL
from loaderdbg.record.recorder import (
    DEFAULT_CHUNK_STEPS, DEFAULT_KEYFRAME_CHUNKS, STATUS_FIELDS, Recorder, RecordingSummary,
)
from loaderdbg import targets as reasons
from loaderdbg.targets import parse_target

# How a program sets its thread pointer (glibc's and musl's TLS setup): no syscall.
SETS_TLS_BASE = "msr tpidr_el0,"
# How it asks the `dc zva` block size (glibc's memset, before zeroing with it).
READS_ZVA_BLOCK = ", dczid_el0"


def record_guest_program(spec: LaunchSpec, output: str, until: str = "exit", progress: bool | None = None, *,
                         chunk_steps: int = DEFAULT_CHUNK_STEPS, keyframe_chunks: int = DEFAULT_KEYFRAME_CHUNKS,
                         pin: bool = False, max_steps: int | None = None, level: int = 7, file_level: int = 19,
                         replace: bool = True) -> RecordingSummary:
    """record_program (record/recorder.py) for an aarch64 program: launched
    under qemu-user at its first instruction and recorded to ``until``.

    Unpinned by default: a pinned recorder shares its CPU with qemu (which
    inherits the pinning), and each step is a round trip between the two
    (8,000 steps of the musl demo: ~1,900 steps/s pinned, ~4,900 unpinned)."""
    if progress is None:
        progress = sys.stderr.isatty()
    recorder = GuestRecorder(spec, output, parse_target(until), progress=progress, chunk_steps=chunk_steps,
                             keyframe_chunks=keyframe_chunks, pin=pin, max_steps=max_steps, level=level,
                             file_level=file_level, replace=replace)
    return recorder.run()


def record_any_program(spec: LaunchSpec, output: str, until: str = "exit", progress: bool | None = None,
                       **options) -> RecordingSummary:
    """Record ``spec`` with the recorder its architecture needs."""
    if is_aarch64_program(spec.path):
        return record_guest_program(spec, output, until, progress, **options)
    from loaderdbg.record.recorder import record_program
    return record_program(spec, output, until, progress, **options)


class ObservedGuest:
    """A QemuTarget as the milestone tracker sees it while the recorder
    steps: the Tracee's observe-only mode for a stub target."""

    launched = True

    def __init__(self, target: QemuTarget) -> None:
        self.target = target
        self.breakpoints: dict[int, int] = {}  # remembered only: the recorder compares pc
        self.pending_signal = 0  # what the observer wants delivered (the recorder takes it)
        self._adopted: bytes | None = None
        self._ended = False

    def __getattr__(self, name: str):
        return getattr(self.target, name)  # memory, maps, /proc, threads: the guest's

    @property
    def alive(self) -> bool:
        return self.target.alive and not self._ended

    @alive.setter
    def alive(self, value: bool) -> None:
        self._ended = not value

    def observe_only(self) -> None:
        """Always so (see the class docstring)."""

    def adopt_registers(self, raw: bytes | None) -> None:
        self._adopted = raw

    def registers_raw(self) -> bytes:
        return self._adopted if self._adopted is not None else self.target.registers_raw()

    regs_raw = registers_raw

    @property
    def pc(self) -> int:
        return self._word(self.target.arch.pc_register)

    @property
    def sp(self) -> int:
        return self._word(self.target.arch.sp_register)

    def _word(self, name: str) -> int:
        offset = self.target.arch.register_offset(name)
        return int.from_bytes(self.registers_raw()[offset:offset + 8], "little")

    def insert_breakpoint(self, addr: int) -> bool:
        self.breakpoints[addr] = 0
        return True

    def remove_breakpoint(self, addr: int) -> None:
        self.breakpoints.pop(addr, None)

    def revalidate_breakpoints(self) -> None:
        """Nothing written, nothing to revalidate."""

    def terminal_signal(self, sig: int) -> bool:
        """False: qemu runs in our process group; nothing is lent to it."""
        return False


class GuestRecorder(Recorder):
    """The Recorder stepping an aarch64 guest through qemu's gdb stub."""

    arch_name = "aarch64"

    def __init__(self, spec: LaunchSpec, output: str, target, **options) -> None:
        super().__init__(spec, output, target, **options)
        self.qemu: QemuTarget | None = None
        x0 = self.arch.register_offset("x0")
        self._x0 = slice(x0, x0 + 8)
        x8 = self.arch.register_offset("x8")
        self._x8 = slice(x8, x8 + 8)

    # -- the Recorder's hooks ----------------------------------------------------
    def launch_target(self) -> ObservedGuest:
        self.qemu = qemu_target.launch(self.spec)
        return ObservedGuest(self.qemu)

    def make_decoder(self, xsave_size: int) -> Aarch64Decoder:
        return Aarch64Decoder()

    def kernel_writes(self, name: str, args: tuple[int, ...], result: int) -> list[tuple[int, int]] | None:
        return guest_syscall_writes(name, args, result, self.reader.read)

    def _fetch_regs(self) -> bytes:
        return self.qemu.registers_raw()

    def _read_maps(self) -> str:
        if self.qemu is None or not self.qemu.alive:
            return self.maps_text
        return self.qemu.maps_text()

    def _update_threads(self, position: int) -> None:
        """The guest's threads (the stub's list: qemu's own helper thread,
        which /proc/<qemu>/task shows too, is not one of them), the stepped
        one with its TLS base: TPIDR_EL0 is no user_pt_regs word, so a row
        carries it ("tls_base"), written again after each `msr tpidr_el0`."""
        if self.qemu is None or not self.qemu.alive:
            return
        threads = []
        for tid in sorted(self.qemu.threads()):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/status") as handle:
                    text = "".join(line for line in handle if line.split(":", 1)[0] in STATUS_FIELDS)
            except OSError:
                continue
            row = {"tid": tid, "status": text}
            if tid == self.pid:
                row["tls_base"] = self.qemu.tls_base()
            threads.append(row)
        if threads != self.threads_json:
            self.threads_json = threads
            self.writer.add_threads(position, threads)

    def _on_sigint(self, signum, frame) -> None:
        """Ctrl-C, SIGTERM, SIGHUP: the loop ends the recording at the last
        complete step (qemu, in our process group, may report the same
        Ctrl-C as a SIGINT stop; it is never delivered)."""
        if self.interrupted or self.finished:
            raise KeyboardInterrupt
        self.interrupted = True
        self.ending_signal = signum

    # -- the step loop -------------------------------------------------------------
    def _loop(self) -> None:
        qemu = self.qemu
        plans_get = self.plans.get
        pc_offset = self.pc_offset
        while True:
            if self.interrupted:
                self._end(reasons.recording_interrupted(self.target, self.pos))
            if self.pos - self.chunk.start >= self.chunk_steps:
                self._flush_chunk(keyframe=self.pos % self.keyframe_steps == 0)
                self.chunk = self._new_chunk(self.pos)
                self._progress_update()
            if self.pending_signal:
                self._guest_signal_step()
                continue
            prev = self.regs
            pc = int.from_bytes(prev[pc_offset:pc_offset + 8], "little")
            plan = plans_get(pc) or self._decode(pc)
            kind = plan[0]
            if kind == SYSCALL:
                self._guest_syscall_step(plan)
                continue
            stop = self._atomic_sequence(pc) if kind == ATOMIC_SEQUENCE else qemu.step()
            if stop is not qemu.plain_step:
                self._guest_stop(stop, plan)
                continue
            raw = qemu.registers_raw()
            t = self.pos
            if kind == WRITES:
                for addr, size in store_ranges(plan, prev):
                    self._record_write(t, addr, size, WRITE_INSN)
            elif kind == COMPLEX or (kind == ATOMIC_SEQUENCE
                                     and int.from_bytes(raw[pc_offset:pc_offset + 8], "little") != pc + 4):
                self._resync_maps(t)
                self._diff_writable(t, WRITE_INSN)
            self._commit(raw, plan[2])
            text = plan[5]
            if text.startswith(SETS_TLS_BASE):
                self._update_threads(self.pos)
            elif text.endswith(READS_ZVA_BLOCK):
                self._learn_zva_block(text, raw)
            self._after_special()

    def _learn_zva_block(self, text: str, raw: bytes) -> None:
        """`mrs xN, dczid_el0` ran: xN says how many bytes a `dc zva`
        zeroes here (the plans assumed the largest block until now)."""
        register = full_register(text.split()[1].rstrip(","))
        if register is None:
            return
        offset = self.arch.register_offset(register)
        block = zva_block(int.from_bytes(raw[offset:offset + 8], "little"))
        if block != self.decoder.zva_block:
            self.decoder.zva_block = block
            self.plans.clear()
            self.code_pages.clear()

    def _atomic_sequence(self, pc: int) -> Stop:
        """Step the load-exclusive at pc, with the sequence it starts, as
        one step: run to its exits (decode/aarch64_sequences.py, the rule
        the qemu target's steps follow too; the next instruction when it
        starts none) through stub breakpoints."""
        qemu = self.qemu
        exits = atomic_sequence_exits(lambda addr: self.reader.read(addr, 4), pc) or (pc + 4,)
        for addr in exits:
            qemu.insert_breakpoint(addr)
        try:
            stop = qemu.resume(syscalls=False)
        finally:
            if qemu.alive:
                for addr in exits:
                    qemu.remove_breakpoint(addr)
        if stop.kind is StopKind.BREAKPOINT and qemu.pc in exits:
            return qemu.plain_step
        return stop

    def _guest_syscall_step(self, plan) -> None:
        regs = self.regs
        number = int.from_bytes(regs[self._x8], "little")
        args = tuple(int.from_bytes(regs[self._x0.start + 8 * i:self._x0.start + 8 * i + 8], "little")
                     for i in range(6))
        t = self.pos
        name = self._syscall_entered(number, args)
        stop = self.qemu.step()
        if stop is not self.qemu.plain_step:
            return self._guest_stop(stop, plan, syscall=(number, name, args))
        raw = self.qemu.registers_raw()
        result = int.from_bytes(raw[self._x0], "little", signed=True)
        self._syscall_returned(t, plan, (number, name, args), raw, result)

    def _guest_signal_step(self) -> None:
        """Deliver the pending signal with the next step: a handler's frame
        (or the death of the program) follows."""
        sig, self.pending_signal = self.pending_signal, 0
        self.qemu.pending_signal = sig
        stop = self.qemu.step()
        if stop is not self.qemu.plain_step:
            return self._guest_stop(stop, None)
        raw = self.qemu.registers_raw()
        t = self.pos
        self._resync_maps(t)
        self._diff_writable(t, WRITE_KERNEL)
        self._commit(raw, ALL_REGISTERS)
        self._after_special()

    def _guest_stop(self, stop: Stop, plan, syscall: tuple | None = None) -> None:
        """A stop other than a plain step: the end, or a signal."""
        if stop.kind in (StopKind.EXITED, StopKind.KILLED):
            if syscall is not None:
                self._syscall_done(self.pos, syscall, None, None)
            self.tracker.tracee.alive = False
            self.tracker.stopped(self.pos, None, stop)
            self._flush_events()
            self._end(self._exit_reason(stop))
        if stop.signal == _signal.SIGINT and self.interrupted:
            self._end(reasons.recording_interrupted(self.target, self.pos))
        raw = self.qemu.registers_raw()
        if raw != self.regs:
            # The instruction (or the syscall) completed before the signal
            # was reported: its effects are the step's.
            t = self.pos
            self._resync_maps(t)
            self._diff_writable(t, WRITE_KERNEL if syscall else WRITE_INSN)
            self._commit(raw, plan[2] if plan else ALL_REGISTERS)
            if syscall is not None:
                self._syscall_done(t, syscall, raw, int.from_bytes(raw[self._x0], "little", signed=True))
        self._signal_stop(stop, raw)
