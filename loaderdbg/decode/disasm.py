"""Disassembly with capstone, kept as frozen Instructions that remember their
operands, so effective addresses can be worked out later from any Registers
(live, or replayed) without disassembling again.

memory_operands() is what the recorder will build on to answer "which memory
does this instruction write": explicit operands come with capstone's access
flags; stack accesses capstone does not list (push, call, pop, ret) come from
the arch's implicit_stack_accesses table, marked implicit=True. Still to add
there: leave/enter, the xsave family, and `rep` string ops, whose explicit
operand covers one element (which is right per single-step, since each
iteration traps, but not for a whole instruction).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from loaderdbg.arch import ArchTables
from loaderdbg.decode.registers import Registers

if TYPE_CHECKING:
    import capstone


@functools.cache
def _capstone_names() -> tuple[dict, dict, dict]:
    """capstone's access, group and operand-type ids -> our names. capstone
    is imported by the first disassembly, not with this module: a command
    that never disassembles (`inspect --json`) does not pay 20-30 ms for it."""
    import capstone

    access = {0: None, capstone.CS_AC_READ: "read", capstone.CS_AC_WRITE: "write",
              capstone.CS_AC_READ | capstone.CS_AC_WRITE: "readwrite"}
    groups = {capstone.CS_GRP_JUMP: "jump", capstone.CS_GRP_CALL: "call",
              capstone.CS_GRP_RET: "ret", capstone.CS_GRP_INT: "int",
              capstone.CS_GRP_IRET: "iret", capstone.CS_GRP_BRANCH_RELATIVE: "relative"}
    # Operand types are the same small integers in every capstone arch module
    # (REG 1, IMM 2, MEM 3).
    kinds = {capstone.CS_OP_REG: "reg", capstone.CS_OP_IMM: "imm", capstone.CS_OP_MEM: "mem"}
    return access, groups, kinds

BAD_MNEMONIC = "(bad)"
# Longest x86 instruction; enough bytes to decode any one instruction.
MAX_INSTRUCTION_SIZE = 15


@dataclass(frozen=True)
class Operand:
    """One capstone operand, with names instead of capstone ids."""

    kind: str                    # reg, imm, mem (or "other")
    size: int                    # bytes; 0 when capstone does not say
    access: str | None           # read, write, readwrite, or None
    reg: str | None = None
    imm: int | None = None
    base: str | None = None
    index: str | None = None
    scale: int = 1
    disp: int = 0
    segment: str | None = None
    shift: int = 0               # arm64 index shift (lsl #n)


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction, with what the engine asks of it."""

    address: int
    size: int
    mnemonic: str
    op_str: str
    raw: bytes
    symbol: str | None = None
    groups: frozenset[str] = frozenset()
    operands: tuple[Operand, ...] = ()
    branch_target: int | None = None
    target_symbol: str | None = None
    is_syscall: bool = False

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()

    @property
    def is_call(self) -> bool:
        return "call" in self.groups

    @property
    def is_jump(self) -> bool:
        # arm64 `bl` is in both groups; it is a call.
        return "jump" in self.groups and "call" not in self.groups

    @property
    def is_ret(self) -> bool:
        return "ret" in self.groups

    @property
    def is_bad(self) -> bool:
        return self.mnemonic == BAD_MNEMONIC

    @property
    def next_address(self) -> int:
        return self.address + self.size


@dataclass(frozen=True)
class MemOperand:
    """A memory access of one instruction. address is None when a register
    it depends on is unknown."""

    address: int | None
    size: int
    access: str                  # read, write, readwrite (or address: lea)
    text: str                    # e.g. "[rip + 0x2f0e]" or "[rsp - 8]"
    implicit: bool = False

    @property
    def reads(self) -> bool:
        return "read" in self.access

    @property
    def writes(self) -> bool:
        return "write" in self.access


_local = threading.local()


def _capstone(arch: ArchTables) -> capstone.Cs:
    """One Cs per arch and thread: a capstone handle must not be shared
    between threads, and making one per call is slow."""
    handles = _local.__dict__.setdefault("handles", {})
    handle = handles.get(arch.name)
    if handle is None:
        import capstone

        handle = capstone.Cs(arch.capstone_arch, arch.capstone_mode)
        handle.detail = True
        # Undecodable bytes come back as id-0 pseudo-instructions (one byte on
        # x86, one word on arm64) instead of ending the listing.
        handle.skipdata = True
        handle.skipdata_setup = (BAD_MNEMONIC, None, None)
        handles[arch.name] = handle
    return handle


def _operand(insn: capstone.CsInsn, op) -> Operand:
    access_names, _, operand_kinds = _capstone_names()
    kind = operand_kinds.get(op.type, "other")
    size = getattr(op, "size", 0) or 0
    access = access_names.get(getattr(op, "access", 0) & 3)
    if kind == "reg":
        return Operand(kind, size, access, reg=insn.reg_name(op.reg))
    if kind == "imm":
        return Operand(kind, size, access, imm=op.imm)
    if kind == "mem":
        mem = op.mem
        segment = getattr(mem, "segment", 0)
        shift = getattr(getattr(op, "shift", None), "value", 0) or 0
        return Operand(
            kind, size, access,
            base=insn.reg_name(mem.base) if mem.base else None,
            index=insn.reg_name(mem.index) if mem.index else None,
            scale=getattr(mem, "scale", 1) or 1,
            disp=mem.disp,
            segment=insn.reg_name(segment) if segment else None,
            shift=shift,
        )
    return Operand(kind, size, access)


def _instruction(insn: capstone.CsInsn, arch: ArchTables,
                 symbolize: Callable[[int], str | None] | None) -> Instruction:
    if insn.id == 0:  # capstone's skipdata pseudo-instruction: no detail.
        return Instruction(insn.address, insn.size, BAD_MNEMONIC, insn.op_str, bytes(insn.bytes),
                           symbolize(insn.address) if symbolize else None)
    group_names = _capstone_names()[1]
    groups = frozenset(group_names[g] for g in insn.groups if g in group_names)
    operands = tuple(_operand(insn, op) for op in insn.operands)
    target = None
    if groups & {"jump", "call"}:
        immediates = [op.imm for op in operands if op.kind == "imm"]
        target = immediates[-1] & arch.word_mask if immediates else None
    text = f"{insn.mnemonic} {insn.op_str}".strip()
    return Instruction(
        address=insn.address,
        size=insn.size,
        mnemonic=insn.mnemonic,
        op_str=insn.op_str,
        raw=bytes(insn.bytes),
        symbol=symbolize(insn.address) if symbolize else None,
        groups=groups,
        operands=operands,
        branch_target=target,
        target_symbol=symbolize(target) if symbolize and target is not None else None,
        is_syscall=text in arch.syscall_instructions,
    )


def disassemble(code: bytes, address: int, arch: ArchTables, count: int | None = None,
                symbolize: Callable[[int], str | None] | None = None) -> tuple[Instruction, ...]:
    """Instructions in code, which starts at address. Undecodable bytes become
    "(bad)" instructions (as objdump shows them) and decoding goes on, so the
    listing covers the bytes up to a truncated last instruction. count limits
    the number returned.
    symbolize(address) names an address, e.g. "execsolib_start+12"."""
    if count is not None and count <= 0:
        return ()
    handle = _capstone(arch)
    code = bytes(code)
    instructions = handle.disasm(code, address & arch.word_mask, count or 0)
    return tuple(_instruction(insn, arch, symbolize) for insn in instructions)


def disassemble_one(code: bytes, address: int, arch: ArchTables,
                    symbolize: Callable[[int], str | None] | None = None) -> Instruction | None:
    """The instruction at the start of code, or None if it does not decode.
    Without symbolize the result is cached: the recorder asks about the same
    few thousand addresses over and over."""
    code = bytes(code[:MAX_INSTRUCTION_SIZE])
    if symbolize is None:
        return _cached_one(code, address, arch)
    found = disassemble(code, address, arch, 1, symbolize)
    return found[0] if found and not found[0].is_bad else None


@functools.lru_cache(maxsize=1 << 16)
def _cached_one(code: bytes, address: int, arch: ArchTables) -> Instruction | None:
    found = disassemble(code, address, arch, 1)
    return found[0] if found and not found[0].is_bad else None


def jump_slot(code: bytes, address: int, arch: ArchTables) -> int | None:
    """The memory word the code at address jumps through, as a PLT entry
    does: x86-64's `jmp qword ptr [rip + d]` (bnd, notrack or after an
    endbr64), aarch64's `adrp x16, PAGE` / `ldr x17, [x16, #off]` / `br x17`.
    None when the code reaches no such jump (a lazy stub's `push; jmp PLT0`,
    an IBT .plt entry)."""
    pages: dict[str, int] = {}   # register -> what an adrp put there
    loaded: dict[str, int] = {}  # register -> the address it was loaded from
    # Decoded one at a time up to the jump: a classic PLT entry starts
    # with it (each decoded instruction costs ~30 us with its operands).
    for decoded in _capstone(arch).disasm(bytes(code), address & arch.word_mask):
        insn = _instruction(decoded, arch, None)
        if insn.is_bad or insn.is_ret:
            return None
        mem = next((op for op in insn.operands if op.kind == "mem"), None)
        if insn.is_jump:
            if mem is not None and mem.base == arch.pc_register and mem.index is None:
                after = insn.next_address if arch.pc_relative_to_next else insn.address
                return (after + mem.disp) & arch.word_mask
            target = insn.operands[0] if len(insn.operands) == 1 else None
            return loaded.get(target.reg) if target is not None and target.kind == "reg" else None
        written = [op.reg for op in insn.operands if op.kind == "reg"]
        if insn.mnemonic == "adrp" and written:
            imm = next((op.imm for op in insn.operands if op.kind == "imm"), None)
            if imm is not None:
                pages[written[0]] = imm & arch.word_mask
        elif insn.mnemonic == "ldr" and mem is not None and mem.base in pages and mem.index is None \
                and len(written) == 1:
            loaded[written[0]] = (pages[mem.base] + mem.disp) & arch.word_mask
    return None


def next_instruction_address(insn: Instruction) -> int:
    return insn.address + insn.size


def is_call_at(code: bytes, address: int, arch: ArchTables) -> Instruction | None:
    """The call instruction at address (for step-over: the return address is
    address + size), or None if the bytes there are not a call."""
    insn = disassemble_one(code, address, arch)
    return insn if insn is not None and insn.is_call else None


def _register_value(name: str | None, regs: Registers, insn: Instruction,
                    arch: ArchTables) -> int | None:
    """A register as an address component: the pc reads as the next
    instruction's address, 32-bit views are masked, zero registers are 0."""
    if name is None:
        return 0
    if name == arch.pc_register:
        return insn.address + insn.size if arch.pc_relative_to_next else insn.address
    if name in arch.register_views:
        full, mask = arch.register_views[name]
        if full is None:
            return 0
        value = _register_value(full, regs, insn, arch)
        return None if value is None else value & mask
    return regs.get(name)


def _effective_address(op: Operand, regs: Registers, insn: Instruction, arch: ArchTables) -> int | None:
    base = _register_value(op.base, regs, insn, arch)
    index = _register_value(op.index, regs, insn, arch)
    if base is None or index is None:
        return None
    address = base + (index * op.scale << op.shift) + op.disp
    if op.segment is not None:
        segment_base = regs.get(arch.segment_bases.get(op.segment, ""))
        if segment_base is None:
            return None
        address += segment_base
    return address & arch.word_mask


def _operand_text(op: Operand) -> str:
    parts = [name for name in (op.base,) if name]
    if op.index:
        parts.append(f"{op.index}*{op.scale}" if op.scale != 1 else op.index)
    text = " + ".join(parts)
    if op.disp or not text:
        sign = "-" if op.disp < 0 and text else ("+" if text else "")
        text = f"{text} {sign} {abs(op.disp):#x}" if text else f"{op.disp:#x}"
    prefix = f"{op.segment}:" if op.segment else ""
    return f"{prefix}[{text}]"


def memory_operands(insn: Instruction, regs: Registers, arch: ArchTables | None = None,
                    include_address_only: bool = False) -> tuple[MemOperand, ...]:
    """Every memory access of insn with its effective address under regs:
    [base + index*scale + disp] (rip-relative from the next instruction,
    fs:/gs: adding fs_base/gs_base), then implicit stack accesses (push/call
    write [sp-8], pop/ret read [sp]). Writes are the entries with .writes set.

    lea/nop/prefetch touch no memory and are left out, unless
    include_address_only asks for them (to annotate `lea rax, [rip + x]`
    with its target); they then come with access "address"."""
    arch = arch or regs.tables
    address_only = insn.mnemonic in arch.address_only_mnemonics
    accesses = []
    if include_address_only or not address_only:
        for op in insn.operands:
            if op.kind != "mem":
                continue
            accesses.append(MemOperand(
                address=_effective_address(op, regs, insn, arch),
                size=op.size,
                access="address" if address_only else (op.access or "read"),
                text=_operand_text(op),
            ))
    implicit = arch.implicit_stack_accesses.get(insn.mnemonic)
    if implicit is not None:
        offset, size, access = implicit
        sp = regs.get(arch.sp_register)
        sign = "-" if offset < 0 else "+"
        accesses.append(MemOperand(
            address=None if sp is None else (sp + offset) & arch.word_mask,
            size=size,
            access=access,
            text=f"[{arch.sp_register} {sign} {abs(offset)}]" if offset else f"[{arch.sp_register}]",
            implicit=True,
        ))
    return tuple(accesses)


def memory_writes(insn: Instruction, regs: Registers, arch: ArchTables | None = None) -> tuple[MemOperand, ...]:
    """The accesses of memory_operands that write (the recorder's question)."""
    return tuple(access for access in memory_operands(insn, regs, arch) if access.writes)
