"""For tests that force a signal into a chosen step: a `call` whose push
changes memory, so a step lost or replayed twice shows as a divergence."""

from __future__ import annotations

import capstone


def call_that_changes_the_stack(pid: int, regs: bytes) -> bool:
    """Whether the instruction at rip (``regs``: the stopped thread's
    user_regs_struct) is a `call` whose push changes the stack word below
    rsp (it is not already its return address)."""
    rip = int.from_bytes(regs[16 * 8:17 * 8], "little")  # user_regs_struct.rip
    rsp = int.from_bytes(regs[19 * 8:20 * 8], "little")
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(rip)
        code = mem.read(16)
        mem.seek(rsp - 8)
        below = int.from_bytes(mem.read(8), "little")
    insn = next(capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64).disasm(code, rip), None)
    return insn is not None and insn.mnemonic == "call" and below != rip + insn.size
