"""Where did a value come from? Data flow over a recording.

- ``last_memory_write(replay, addr, size, before)``: the newest transition
  before step ``before`` that wrote any byte of [addr, addr+size): an
  instruction's store, a syscall's output, a page (re)mapped by the kernel.
- ``next_memory_change(replay, addr, size, start)``: the oldest transition
  at or after ``start`` that changed a byte of [addr, addr+size) (a forward
  watch).
- ``last_register_write(replay, register, before)``: the newest transition
  before ``before`` whose instruction wrote the register, whether or not the
  value changed (``xor edx, edx`` on a zero rdx still counts). In a
  recording of several threads, registers are a thread's own: only the
  steps of the thread asked about (by default the one stepping at
  ``before``) count.

Each answer names the thread that executed the step (``thread``: the
recording's schedule; the leader's tid in a one-thread recording).

Both go through the recording's indexes (loaderdbg/record/index.py): only
chunks that wrote the page, or the register, are decoded. The instruction
of a step is decoded from memory *as it was at that step*, using a private
cursor so the session's own position never moves.
"""

from __future__ import annotations

from dataclasses import dataclass

from loaderdbg.decode.disasm import Instruction, disassemble_one
from loaderdbg.decode.registers import Registers, decode_registers
from loaderdbg.record import index
from loaderdbg.record import capture, capture_aarch64
from loaderdbg.record.format import WRITE_KIND_NAMES, WRITE_PAGE, Write
from loaderdbg.record.replay import ReplayMemory, ReplaySession

# Give up looking for a same-value register write further back than this
# many steps before the last value change (the change itself is exact).
SAME_VALUE_SCAN_LIMIT = 200_000


@dataclass(frozen=True)
class StepInstruction:
    step: int
    pc: int
    instruction: Instruction | None
    symbol: str | None

    @property
    def text(self) -> str:
        return self.instruction.text if self.instruction is not None else "(unknown instruction)"

    def where(self) -> str:
        return f"{self.pc:#x} <{self.symbol}>" if self.symbol else f"{self.pc:#x}"


@dataclass(frozen=True)
class MemoryWrite:
    step: int  # the transition that wrote: "step N" executed the instruction at position N
    addr: int
    size: int
    kind: str  # instruction | kernel | page | unexplained
    new: bytes | None
    old: bytes | None
    by: StepInstruction
    syscall: str | None = None  # for kernel writes: the syscall (strace notation)
    thread: int | None = None  # the thread that executed the step (its tid)

    def value(self, addr: int, size: int) -> int | None:
        """The little-endian value this write left at [addr, addr+size), if it covered it."""
        if self.new is None or self.kind == "page" or addr < self.addr or addr + size > self.addr + self.size:
            return None
        offset = addr - self.addr
        return int.from_bytes(self.new[offset:offset + size], "little")


@dataclass(frozen=True)
class RegisterWrite:
    step: int
    register: str
    old: int
    new: int
    by: StepInstruction
    thread: int | None = None  # the thread that executed the step (its tid)

    @property
    def changed(self) -> bool:
        return self.old != self.new


class Tracer:
    """Data-flow questions over one ReplaySession, with its own memory cursor."""

    def __init__(self, replay: ReplaySession) -> None:
        self.replay = replay
        self.rec = replay.recording
        self.arch = replay.arch
        self._cursor = ReplayMemory(self.rec)
        # The recorded arch's write capture: its instruction plans (which
        # registers an instruction writes) and its register views (edx is rdx, w0 is x0).
        if self.arch.name == "aarch64":
            self._decoder = capture_aarch64.Aarch64Decoder()
            self.full_register = capture_aarch64.full_register
        else:
            self._decoder = capture.Decoder(self.rec.meta.get("xsave_size") or 4096)
            self.full_register = capture.full_register
        self._plans: dict[tuple[int, bytes], tuple] = {}
        self._syscalls: dict[int, str] | None = None

    # -- positions -----------------------------------------------------------
    def registers(self, position: int) -> Registers:
        return decode_registers(self.rec.regs_at(position), self.arch)

    def register(self, position: int, name: str) -> int:
        i = self.arch.user_regs_fields.index(name)
        return self.rec.chunk_regs(self.rec.chunk_of(position)).word(position, i)

    def code(self, position: int, pc: int) -> bytes:
        self._cursor.seek(position)
        return self._cursor.read_prefix(pc, 15)

    def read(self, position: int, addr: int, size: int) -> bytes | None:
        self._cursor.seek(position)
        return self._cursor.read(addr, size)

    def instruction(self, position: int) -> StepInstruction:
        """The instruction executed by transition ``position``."""
        pc = self.register(position, self.arch.pc_register)
        code = self.code(position, pc)
        insn = disassemble_one(code, pc, self.arch) if code else None
        return StepInstruction(position, pc, insn, self.replay.symbolize(pc))

    def _writes_register(self, position: int, name: str) -> bool:
        pc = self.register(position, self.arch.pc_register)
        code = self.code(position, pc)
        key = (pc, code)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._decoder.plan(code, pc)
            self._plans[key] = plan
        bit = 1 << self.arch.user_regs_fields.index(name)
        return bool(plan[2] & bit)

    def syscall_at(self, step: int) -> str | None:
        if self._syscalls is None:
            self._syscalls = {c["step"]: c["text"] for c in self.rec.syscalls()}
        return self._syscalls.get(step)

    # -- the questions ---------------------------------------------------------
    def last_memory_write(self, addr: int, size: int, before: int) -> MemoryWrite | None:
        write = index.last_write(self.rec, addr, size, before)
        if write is None:
            return None
        return self._describe_write(write)

    def next_memory_change(self, addr: int, size: int, start: int) -> MemoryWrite | None:
        """The first write by a step at or after ``start`` that changed a
        byte of [addr, addr+size): a store of the value already there is
        passed over, as gdb's watch passes it over."""
        for write in index.writes_from(self.rec, addr, size, start):
            if write.kind == WRITE_PAGE:
                changed = self.read(write.step, addr, size) != self.read(write.step + 1, addr, size)
            else:
                lo, hi = max(addr, write.addr) - write.addr, min(addr + size, write.end) - write.addr
                changed = write.new[lo:hi] != write.old[lo:hi]
            if changed:
                return self._describe_write(write)
        return None

    def _describe_write(self, write: Write) -> MemoryWrite:
        kind = WRITE_KIND_NAMES.get(write.kind, str(write.kind))
        return MemoryWrite(write.step, write.addr, write.size, kind,
                           None if write.kind == WRITE_PAGE else write.new,
                           None if write.kind == WRITE_PAGE else write.old,
                           self.instruction(write.step), self.syscall_at(write.step),
                           self.rec.thread_at(write.step))

    def last_register_write(self, register: str, before: int, thread: int | None = None) -> RegisterWrite | None:
        name = self.full_register(register) or register
        if name not in self.arch.user_regs_fields:
            raise ValueError(f"unknown register {register!r}")
        i = self.arch.user_regs_fields.index(name)
        if self.rec.threaded:
            return self._thread_register_write(name, i, before,
                                               self.rec.thread_at(before) if thread is None else thread)
        changed = index.last_register_change(self.rec, i, before)
        floor = changed if changed is not None else -1
        # A write that kept the value (xor on a zero register) is newer than the change.
        for chunk in index.chunks_with_register(self.rec, i, before):
            info = self.rec.chunk_info(chunk)
            if info.first_step + info.steps <= floor:
                break
            top = min(before - 1, info.first_step + info.steps - 1)
            bottom = max(info.first_step, floor + 1, before - SAME_VALUE_SCAN_LIMIT)
            for t in range(top, bottom - 1, -1):
                if self._writes_register(t, name):
                    return self._register_write(t, name)
            if bottom > info.first_step and bottom != floor + 1:
                break
        if changed is None:
            return None
        return self._register_write(changed, name)

    def _register_write(self, t: int, name: str) -> RegisterWrite:
        return RegisterWrite(t, name, self.register(t, name), self.register(t + 1, name), self.instruction(t),
                             self.rec.thread_at(t))

    def _thread_register_write(self, name: str, i: int, before: int, tid: int) -> RegisterWrite | None:
        """last_register_write over the steps of thread ``tid`` only: where
        the schedule switches, the next position's registers are another
        thread's, and the thread's own after its step are its waiting ones."""
        schedule = self.rec.schedule
        ends = [step for step, _ in schedule[1:]] + [self.rec.last_step]
        scanned = 0
        for (start, who), end in reversed(list(zip(schedule, ends))):
            if who != tid or start >= before:
                continue
            for t in range(min(end, before) - 1, start - 1, -1):
                old = self.register(t, name)
                if t + 1 < end:
                    new = self.register(t + 1, name)
                else:  # its last step of this turn: what it was left with
                    after = self.rec.thread_registers(t + 1).get(tid)
                    new = old if after is None else int.from_bytes(after[8 * i:8 * i + 8], "little")
                if new != old or self._writes_register(t, name):
                    return RegisterWrite(t, name, old, new, self.instruction(t), tid)
                scanned += 1
                if scanned > SAME_VALUE_SCAN_LIMIT:
                    return None
        return None


def last_memory_write(replay: ReplaySession, addr: int, size: int, before: int) -> MemoryWrite | None:
    """The newest write to any byte of [addr, addr+size) by a step before ``before``."""
    return Tracer(replay).last_memory_write(addr, size, before)


def last_register_write(replay: ReplaySession, register: str, before: int) -> RegisterWrite | None:
    """The newest step before ``before`` that wrote ``register`` (any view: edx is rdx)."""
    return Tracer(replay).last_register_write(register, before)
