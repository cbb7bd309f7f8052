"""FakeReplaySession: a TEST DOUBLE, for unit-testing UI logic that needs a
session with reverse execution (Capability.REVERSE, TIMELINE) before the real
ReplaySession (issue 5) lands. Eight instructions of hand-written code at a
fixed address; every step is known, so goto/step_back/reverse_cont are
trivial. Never use it in integration tests: it decodes nothing real.
"""

from __future__ import annotations

from loaderdbg.analysis.handoff import NOT_CHECKED
from loaderdbg.arch import get_arch
from loaderdbg.decode.disasm import disassemble
from loaderdbg.decode.registers import Registers
from loaderdbg.session import Capability, Event, StopReason
from loaderdbg.snapshot import Snapshot

BASE = 0x401000
# nop; mov eax, 1; nop; add rax, 2; nop; jmp $+2; nop; nop; nop; ret
CODE = bytes.fromhex("90 b801000000 90 4883c002 90 eb00 90 90 90 c3".replace(" ", ""))
MILESTONE_STEPS = {"kernel-entry": 0, "ldso-entry": 3, "at-entry": 6}
LAST_STEP = 8


class FakeReplaySession:
    """Test double of a ReplaySession (see module docstring)."""

    capabilities = frozenset({Capability.REVERSE, Capability.TIMELINE})
    program = "/fake/program"
    pid = None
    alive = True

    def __init__(self) -> None:
        self.arch = get_arch("x86_64")
        self.instructions = disassemble(CODE, BASE, self.arch)
        self.position = 0
        self.position_exact = True
        self.stop_reason = StopReason("launch", "start of the recording", target="first")
        self.calls: list[tuple] = []

    # -- state ---------------------------------------------------------------
    def _registers(self) -> Registers:
        pc = self.instructions[min(self.position, len(self.instructions) - 1)].address
        values = {name: 0 for name in self.arch.user_regs_fields}
        values.update(rip=pc, rsp=0x7FFF_FFFF_E000, rax=self.position * 3, eflags=0x202)
        return Registers(values, "x86_64")

    def _events(self) -> tuple[Event, ...]:
        out = []
        for name, step in MILESTONE_STEPS.items():
            if step <= self.position:
                address = self.instructions[step].address
                out.append(Event(step, "milestone", name, f"fake {name}", address, True))
        return tuple(out)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.program, self.position, True, self.stop_reason, None, "x86_64",
                        self._registers(), None, (), frozenset(), (), (), (), (), (), NOT_CHECKED,
                        self._events())

    def read_memory(self, addr: int, size: int) -> bytes | None:
        offset = addr - BASE
        if 0 <= offset and offset + size <= len(CODE):
            return CODE[offset:offset + size]
        return None

    def disassemble(self, addr: int, count: int = 16):
        code = self.read_memory(addr, max(0, BASE + len(CODE) - addr)) or b""
        return tuple(disassemble(code, addr, self.arch, count=count, symbolize=self.symbolize))

    def symbolize(self, addr: int) -> str | None:
        if BASE <= addr < BASE + len(CODE):
            return "fake_start" if addr == BASE else f"fake_start+{addr - BASE:#x}"
        return None

    def resolve(self, name: str) -> int | None:
        return None  # no symbols in eight hand-written instructions

    def source_line(self, addr: int):
        return None  # nor any line information

    def breakpoints(self) -> frozenset[int]:
        return frozenset()

    def events(self):
        return self._events()

    # -- motion ----------------------------------------------------------------
    def _move(self, step: int, description: str) -> StopReason:
        self.position = max(0, min(LAST_STEP, step))
        self.stop_reason = StopReason("step", description.format(self.position))
        return self.stop_reason

    def step(self, n: int = 1) -> StopReason:
        self.calls.append(("step", n))
        return self._move(self.position + n, "step {}")

    def step_over(self) -> StopReason:
        self.calls.append(("step_over",))
        return self._move(self.position + 1, "step {}")

    def step_back(self, n: int = 1) -> StopReason:
        self.calls.append(("step_back", n))
        return self._move(self.position - n, "stepped back to {}")

    def goto(self, step: int) -> StopReason:
        self.calls.append(("goto", step))
        return self._move(step, "at step {}")

    def cont(self, until: str | None = None) -> StopReason:
        self.calls.append(("cont", until))
        wanted = {"ldso-entry": "ldso-entry", "entry": "at-entry"}.get(until or "")
        return self._move(MILESTONE_STEPS[wanted] if wanted else LAST_STEP, f"reached {until} at step {{}}")

    def reverse_cont(self, until: str | None = None) -> StopReason:
        self.calls.append(("reverse_cont", until))
        earlier = [s for s in MILESTONE_STEPS.values() if s < self.position]
        return self._move(max(earlier, default=0), "reverse continue to {}")

    def close(self) -> None:
        pass
