"""Which memory an A64 instruction reads and writes, and where.

For watchpoints on an aarch64 guest (process/qemu_target.py single-steps
and asks this about each instruction before it runs). Capstone gives the
addressing (base, index, shift, displacement; pre-index folded into the
displacement, post-index as a separate immediate, so the access is at the
base) but not what is accessed: its arm64 access flags call most stores
"readwrite" and store-exclusives "read", and every operand size is 0. So the
kind comes from the mnemonic (ld… reads, st… writes, the LSE atomics, swp
and cas do both, prf… touch nothing) and the size from the data registers
(x 8, w 4, q 16, d 8, s 4, h 2, b 1; a …b/…h mnemonic says 1 or 2, …sw 4;
a pair is two of them; a vector list counts its registers and arrangement).

``dc zva`` zeroes one block whose size the CPU states in DCZID_EL0: the
caller says it. Instructions outside these rules (SVE, MTE tag stores) give
no access; a caller that must not miss a write compares values too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loaderdbg.decode.disasm import Instruction
from loaderdbg.decode.registers import Registers

MASK64 = (1 << 64) - 1
MASK32 = 0xFFFF_FFFF

# capstone's names for x29/x30 and the zero registers.
_ALIASES = {"fp": "x29", "lr": "x30"}
_ZERO = frozenset({"xzr", "wzr"})
_REGISTER_BYTES = {"x": 8, "w": 4, "q": 16, "d": 8, "s": 4, "h": 2, "b": 1}
_ATOMIC = re.compile(r"^(?:ld|st)(?:add|clr|eor|set|smax|smin|umax|umin)(?:a|al|l)?(?:b|h)?$"
                     r"|^swp(?:a|al|l)?(?:b|h)?$|^casp?(?:a|al|l)?(?:b|h)?$")
_STORE_EXCLUSIVE = re.compile(r"^stl?x[rp][bh]?$")  # its first register is the status
_VECTOR_LIST = re.compile(r"\{([^}]*)\}(\[\d+\])?")
_ARRANGEMENT = re.compile(r"v\d+\.(\d*)([bhsd])")
_ELEMENT_BYTES = {"b": 1, "h": 2, "s": 4, "d": 8}


@dataclass(frozen=True)
class Access:
    """[address, address+size) read and/or written by one instruction."""

    address: int
    size: int
    read: bool
    write: bool

    def overlaps(self, start: int, length: int) -> bool:
        return self.address < start + length and start < self.address + self.size


def _register(name: str, regs: Registers) -> int | None:
    if name in _ZERO:
        return 0
    if name.startswith("w") and name[1:].isdigit():
        value = regs.get("x" + name[1:])
        return None if value is None else value & MASK32
    if name == "wsp":
        value = regs.get("sp")
        return None if value is None else value & MASK32
    return regs.get(_ALIASES.get(name, name))


def _width(name: str) -> int:
    name = _ALIASES.get(name, name)
    if name in ("sp", "xzr"):
        return 8
    return _REGISTER_BYTES.get(name[:1], 8)


def _kind(mnemonic: str) -> tuple[bool, bool] | None:
    """(reads, writes), or None for an instruction that touches no memory."""
    if _ATOMIC.match(mnemonic):
        return True, True
    if mnemonic.startswith("prf"):
        return None
    if mnemonic.startswith("ld"):
        return True, False
    if mnemonic.startswith("st"):
        return False, True
    return None


def _vector_bytes(op_str: str, replicate: bool) -> int | None:
    """Bytes moved by ld1–ld4/st1–st4 (and ldNr): registers × 16 or 8 for a
    whole-register arrangement, registers × the element for one lane or a
    replicate."""
    listed = _VECTOR_LIST.search(op_str)
    if listed is None:
        return None
    registers = _ARRANGEMENT.findall(listed.group(1))
    if not registers:
        return None
    count, element = registers[0]
    element_bytes = _ELEMENT_BYTES[element]
    if replicate or listed.group(2) is not None or not count:
        return len(registers) * element_bytes
    return len(registers) * int(count) * element_bytes


def _size(insn: Instruction, data: list[str]) -> int:
    mnemonic = insn.mnemonic
    if mnemonic[:2] in ("ld", "st") and mnemonic[2:3].isdigit():
        vector = _vector_bytes(insn.op_str, replicate=mnemonic.endswith("r"))
        if vector is not None:
            return vector
    if _ATOMIC.match(mnemonic):
        each = 1 if mnemonic.endswith("b") else 2 if mnemonic.endswith("h") else _width(data[0])
        return 2 * each if mnemonic.startswith("casp") else each
    if mnemonic in ("ldraa", "ldrab"):  # pointer-authenticated loads: the last letter is the key
        each = 8
    elif mnemonic.endswith("sw"):  # ldrsw, ldursw, ldpsw
        each = 4
    elif mnemonic.endswith("b"):
        each = 1
    elif mnemonic.endswith("h"):
        each = 2
    else:
        each = _width(data[0]) if data else 8
    return each * max(1, len(data))


def memory_accesses(insn: Instruction, regs: Registers, zva_block: int = 64) -> tuple[Access, ...]:
    """The memory insn reads or writes when it runs with these registers
    (the ones before it). () for an instruction that touches none, or whose
    address depends on a register we do not have."""
    mnemonic = insn.mnemonic
    if mnemonic == "dc" and insn.op_str.startswith("zva"):
        address = _register(insn.operands[-1].reg or "", regs) if insn.operands else None
        if address is None:
            return ()
        return (Access(address & ~(zva_block - 1) & MASK64, zva_block, False, True),)
    kind = _kind(mnemonic)
    if kind is None:
        return ()
    memory = next((op for op in insn.operands if op.kind == "mem"), None)
    data = [op.reg for op in insn.operands if op.kind == "reg" and op.reg]
    if _STORE_EXCLUSIVE.match(mnemonic):
        data = data[1:]
    if memory is None:
        # A literal load (ldr x0, label): the address is the immediate.
        literal = next((op.imm for op in insn.operands if op.kind == "imm"), None)
        if literal is None or not mnemonic.startswith("ldr"):
            return ()
        return (Access(literal & MASK64, _size(insn, data), *kind),)
    if memory.base is None:
        return ()
    base = _register(memory.base, regs)
    index = 0
    if memory.index is not None:
        index = _register(memory.index, regs)
        if index is None:
            return ()
        if memory.index.startswith("w") and "sxtw" in insn.op_str and index & 0x8000_0000:
            index -= 1 << 32
        index <<= memory.shift
    if base is None:
        return ()
    address = (base + index + memory.disp) & MASK64
    return (Access(address, _size(insn, data), *kind),)
