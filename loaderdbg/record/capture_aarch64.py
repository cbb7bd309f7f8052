"""Write capture for aarch64: which bytes one A64 instruction writes.

The x86 capture (record/capture.py) turns each instruction into a ``Plan``
once per address; this is the same for A64, from capstone's arm64 decoding.
A plan's write rules are computed from the arm64 ``user_pt_regs`` bytes
*before* the step (x0–x30, sp, pc, pstate: one word each):

    rule = (base_off, index_off, extend, shift, disp, size, align)
    address = (base + (extend(index) << shift) + disp) & align

``extend`` is what an index register goes through: INDEX_X (the whole
register, lsl/uxtx/sxtx), INDEX_UXTW or INDEX_SXTW (its low 32 bits, zero-
or sign-extended). A pre-indexed store writes at base+disp (capstone gives
the disp), a post-indexed one at base (capstone gives disp 0), which is the
address the registers before the step name in both cases.

Stores: STR/STUR/STTR/STLR/STLUR (b/h/w/x and the SIMD b/h/s/d/q
registers), the pairs STP/STNP (q pairs are 32 bytes), the exclusives
STXR/STLXR/STXP/STLXP, ST1–ST4 (whole registers or one lane each), and the
LSE atomics, which write whether they return the old value or not: CAS*,
CASP*, SWP*, LD<op>* and their ST<op> aliases. ``dc zva`` zeroes one
DCZID_EL0 block (``zva_block``; 512 bytes under qemu 7.2) at the address
rounded down to it.

Two kinds of step are not one instruction's stores: ``svc`` (SYSCALL: the
kernel's writes are found by record/capture.syscall_writes or a diff, as on
x86), and a load-exclusive (ATOMIC_SEQUENCE): the whole ldaxr … stlxr
sequence it starts is one step (decode/aarch64_sequences.py says where it ends; a
stepped one would fail its store-exclusive for ever), so when the step ends
anywhere but the next instruction, the stores inside it are found by
comparing writable memory. Instructions we cannot address
(ST64B, the MTE tag stores, dc gva/gzva) are COMPLEX.

Nothing here does I/O: ``plan(code, address)`` and ``store_ranges(plan,
regs)`` are pure functions (tests/unit/test_capture_aarch64.py).
"""

from __future__ import annotations

import capstone
from capstone import arm64 as cs_arm64

from loaderdbg.arch.aarch64 import USER_REGS_FIELDS
from loaderdbg.decode.aarch64_sequences import SEQUENCE_LOADS
from loaderdbg.record.capture import COMPLEX, INT3, PLAIN, SYSCALL, WRITES, Plan, syscall_writes

__all__ = ["ATOMIC_SEQUENCE", "COMPLEX", "INT3", "PLAIN", "SYSCALL", "WRITES", "Aarch64Decoder", "Plan",
           "ZVA_BLOCK", "zva_block", "full_register", "register_bit", "rule_address", "store_ranges", "HANDOFF_ZEROED",
           "VALUE_MOVES", "VALUE_STORES", "guest_syscall_writes"]

MASK64 = (1 << 64) - 1
MASK32 = 0xFFFF_FFFF
# A load-exclusive: the step may be a whole atomic sequence (see the docstring).
ATOMIC_SEQUENCE = COMPLEX + 1
# `dc zva` zeroes one block of 4 << DCZID_EL0.BS bytes: 512 under qemu 7.2's
# default cpu (max), 64 on many cores. Until the program reads DCZID_EL0
# (glibc's memset does before its first `dc zva`), a plan assumes the
# architecture's largest block, 2048 bytes: bytes a smaller block leaves
# alone are then captured unchanged, never missed.
ZVA_BLOCK = 2048


def zva_block(dczid: int) -> int:
    """The `dc zva` block size a DCZID_EL0 value says (BS: log2 of words)."""
    return 4 << (dczid & 0xF)

INDEX_X, INDEX_UXTW, INDEX_SXTW = range(3)

REG_INDEX = {name: i for i, name in enumerate(USER_REGS_FIELDS)}
REG_OFFSET = {name: 8 * i for i, name in enumerate(USER_REGS_FIELDS)}
PC_BIT = 1 << REG_INDEX["pc"]
ALL_REGISTERS = (1 << len(USER_REGS_FIELDS)) - 1

# The hand-off to a program's entry (the arm64 ELF ABI, as glibc's and musl's
# _start read it): x0 holds the function to register with atexit (ld.so's
# _dl_fini), 0 when there is none, so hand-off code that jumps straight to
# an entry zeroes x0. explain.py names it when a jump target kept in x0 dies.
HANDOFF_ZEROED = {"x0": ("the atexit pointer the program's _start reads, which the hand-off sets to 0",
                         "Keep the target in a register the hand-off leaves alone (x16/x17, the "
                         "intra-procedure-call registers, are made for it) and `br` through that")}

# For explain's root-cause walk (explain.py): instructions that copy a value
# into a register (mov from a register; a load from memory), and stores
# of one register's value -> the operand that holds it.
VALUE_MOVES = frozenset({"mov", "ldr", "ldur"})
VALUE_STORES = {"str": 0, "stur": 0}


def _register_views() -> dict[str, tuple[str | None, int]]:
    """Every name capstone gives a general register -> (user_pt_regs field,
    value mask); the zero registers -> (None, 0)."""
    views: dict[str, tuple[str | None, int]] = {}
    for n in range(31):
        views[f"x{n}"] = (f"x{n}", MASK64)
        views[f"w{n}"] = (f"x{n}", MASK32)
    views.update({"fp": ("x29", MASK64), "lr": ("x30", MASK64), "sp": ("sp", MASK64), "wsp": ("sp", MASK32),
                  "xzr": (None, 0), "wzr": (None, 0), "pc": ("pc", MASK64)})
    return views


REGISTER_VIEWS = _register_views()


def full_register(name: str) -> str | None:
    """The user_pt_regs field a capstone register name is a view of (w3 -> x3, fp -> x29)."""
    view = REGISTER_VIEWS.get(name)
    return view[0] if view else None


def register_bit(name: str) -> int:
    """Bit of a register (any view of it) in a regs-written mask, or 0."""
    field = full_register(name)
    return 1 << REG_INDEX[field] if field else 0


# Bytes of one register as a stored value, by the first letter of its name.
_REGISTER_BYTES = {"x": 8, "w": 4, "q": 16, "d": 8, "s": 4, "h": 2, "b": 1}
# Whole-register arrangements: bytes stored per listed vector register.
_VAS_BYTES = {cs_arm64.ARM64_VAS_16B: 16, cs_arm64.ARM64_VAS_8H: 16, cs_arm64.ARM64_VAS_4S: 16,
              cs_arm64.ARM64_VAS_2D: 16, cs_arm64.ARM64_VAS_1Q: 16, cs_arm64.ARM64_VAS_8B: 8,
              cs_arm64.ARM64_VAS_4H: 8, cs_arm64.ARM64_VAS_2S: 8, cs_arm64.ARM64_VAS_1D: 8}
# One lane (`st1 {v0.s}[1]`): its element's bytes.
_LANE_BYTES = {cs_arm64.ARM64_VAS_1B: 1, cs_arm64.ARM64_VAS_1H: 2, cs_arm64.ARM64_VAS_1S: 4,
               cs_arm64.ARM64_VAS_1D: 8}
_EXTENDS = {cs_arm64.ARM64_EXT_UXTW: INDEX_UXTW, cs_arm64.ARM64_EXT_SXTW: INDEX_SXTW}

# Plain stores: mnemonic -> bytes per data register (None: the register's width).
_STORES = {
    **{m: None for m in ("str", "stur", "sttr", "stlr", "stlur", "stllr", "stp", "stnp")},
    **{m + "b": 1 for m in ("str", "stur", "sttr", "stlr", "stlur", "stllr")},
    **{m + "h": 2 for m in ("str", "stur", "sttr", "stlr", "stlur", "stllr")},
}
# Store-exclusives: the first register operand is the status (0 stored, 1 failed).
_EXCLUSIVE_STORES = {"stxr": None, "stlxr": None, "stxp": None, "stlxp": None,
                     "stxrb": 1, "stlxrb": 1, "stxrh": 2, "stlxrh": 2}
_VECTOR_STORES = frozenset({"st1", "st2", "st3", "st4"})
# LSE atomics, by the operation's stem; a suffix of a/l/al (ordering) and
# b/h (size) may follow. Which register operands get the old value:
# CAS: the first (Rs; CASP: the first pair), SWP and LD<op>: the second (Rt).
_LD_OPS = ("add", "clr", "eor", "set", "smax", "smin", "umax", "umin")
_ATOMIC_STEMS = {"cas": "first", "casp": "first-pair", "swp": "second",
                 **{"ld" + op: "second" for op in _LD_OPS}, **{"st" + op: "none" for op in _LD_OPS}}
_ORDERINGS = ("", "a", "l", "al")
_ATOMICS = {}
for _stem, _returns in _ATOMIC_STEMS.items():
    for _order in _ORDERINGS:
        if _stem.startswith("st") and _order not in ("", "l"):
            continue  # ST<op> has release ordering at most
        for _suffix, _size in (("", None), ("b", 1), ("h", 2)):
            if _stem == "casp" and _suffix:
                continue
            _ATOMICS[_stem + _order + _suffix] = (_returns, _size)
# Stores we cannot size or address from general registers.
_COMPLEX_MNEMONICS = frozenset({"st64b", "st64bv", "st64bv0", "stg", "stzg", "st2g", "stz2g", "stgp",
                                "stgm", "stzgm"})


# Syscall outputs whose layout differs from x86-64's (capture.SYSCALL_OUTPUTS):
# arm64's struct stat is 128 bytes (x86-64: 144), its struct epoll_event 16
# (x86-64 packs it in 12). name -> (pointer argument, bytes, per returned item).
_AARCH64_OUTPUTS = {"fstat": (1, 128, False), "newfstatat": (2, 128, False),
                    "epoll_pwait": (1, 16, True), "epoll_pwait2": (1, 16, True)}
# Syscalls that write guest memory under qemu-user and not under a kernel:
# qemu's brk zeroes the bytes it adds up to the end of the last page.
_QEMU_WRITERS = frozenset({"brk"})


def guest_syscall_writes(name: str, args: tuple[int, ...], result: int,
                         read_memory) -> list[tuple[int, int]] | None:
    """capture.syscall_writes for an aarch64 guest of qemu-user: [(address,
    size)] the syscall wrote, None when all writable memory must be compared."""
    if name in _QEMU_WRITERS:
        return None
    layout = _AARCH64_OUTPUTS.get(name)
    if layout is None:
        return syscall_writes(name, args, result, read_memory)
    if result < 0:
        return []
    argument, size, per_item = layout
    if per_item:
        return [(args[argument], size * result)] if result else []
    return [(args[argument], size)]


def _unaddressable(text: str) -> Plan:
    return Plan(COMPLEX, (), ALL_REGISTERS, False, 4, text)


class Aarch64Decoder:
    """A64 instruction bytes -> Plan (the x86 Decoder's interface)."""

    def __init__(self, zva_block: int = ZVA_BLOCK) -> None:
        self.zva_block = zva_block
        self._cs = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        self._cs.detail = True

    def plan(self, code: bytes, address: int) -> Plan:
        try:
            insn = next(self._cs.disasm(bytes(code[:4]), address, 1), None)
        except capstone.CsError:
            insn = None
        if insn is None:
            return Plan(COMPLEX, (), ALL_REGISTERS, False, 4, "(bad)")
        return self._plan(insn)

    def _plan(self, insn) -> Plan:
        mnemonic = insn.mnemonic
        text = f"{mnemonic} {insn.op_str}".strip()
        wmask = PC_BIT
        try:
            _, written = insn.regs_access()
        except capstone.CsError:
            written = ()
        for reg in written:
            wmask |= register_bit(insn.reg_name(reg))
        registers = [insn.reg_name(op.reg) for op in insn.operands if op.type == cs_arm64.ARM64_OP_REG]
        if mnemonic == "svc":
            return Plan(SYSCALL, (), wmask | 1 << REG_INDEX["x0"], False, 4, text)
        if mnemonic == "brk":
            return Plan(INT3, (), wmask, False, 4, text)
        if mnemonic in SEQUENCE_LOADS:
            return Plan(ATOMIC_SEQUENCE, (), ALL_REGISTERS, False, 4, text)
        if mnemonic in _COMPLEX_MNEMONICS:
            return _unaddressable(text)
        if mnemonic == "dc":
            operation = insn.op_str.split(",")[0].strip()
            if operation == "zva" and registers:
                base = full_register(registers[-1])
                if base is None:
                    return _unaddressable(text)
                rule = (REG_OFFSET[base], -1, INDEX_X, 0, 0, self.zva_block, MASK64 & ~(self.zva_block - 1))
                return Plan(WRITES, (rule,), wmask, False, 4, text)
            if operation in ("gva", "gzva"):
                return _unaddressable(text)
            return Plan(PLAIN, (), wmask, False, 4, text)
        memory = next((op for op in insn.operands if op.type == cs_arm64.ARM64_OP_MEM), None)
        if memory is None:
            return Plan(PLAIN, (), wmask, False, 4, text)
        size = None
        if mnemonic in _STORES:
            each = _STORES[mnemonic]
            size = sum(each or _register_bytes(name) for name in registers)
        elif mnemonic in _EXCLUSIVE_STORES:
            each = _EXCLUSIVE_STORES[mnemonic]
            size = sum(each or _register_bytes(name) for name in registers[1:])
        elif mnemonic in _VECTOR_STORES:
            size = _vector_bytes(insn)
        elif mnemonic in _ATOMICS:
            returns, each = _ATOMICS[mnemonic]
            width = each or _register_bytes(registers[0])
            size = 2 * width if returns == "first-pair" else width
            if returns == "first":
                wmask |= register_bit(registers[0])
            elif returns == "first-pair":
                wmask |= register_bit(registers[0]) | register_bit(registers[1])
            elif returns == "second" and len(registers) > 1:
                wmask |= register_bit(registers[1])
        elif mnemonic.startswith("st"):
            return _unaddressable(text)  # a store this table does not know: compare memory
        if size is None:
            return Plan(PLAIN, (), wmask, False, 4, text)
        if size <= 0:
            return _unaddressable(text)
        rule = _rule(insn, memory, size)
        if rule is None:
            return _unaddressable(text)
        return Plan(WRITES, (rule,), wmask, False, 4, text)


def _register_bytes(name: str) -> int:
    if name in ("xzr", "fp", "lr", "sp"):
        return 8
    if name in ("wzr", "wsp"):
        return 4
    return _REGISTER_BYTES.get(name[:1], 0)


def _vector_bytes(insn) -> int:
    total = 0
    for op in insn.operands:
        if op.type != cs_arm64.ARM64_OP_REG or not insn.reg_name(op.reg).startswith("v"):
            continue
        if op.vector_index >= 0:
            lane = _LANE_BYTES.get(op.vas)
            if lane is None:
                return 0
            total += lane
        else:
            whole = _VAS_BYTES.get(op.vas)
            if whole is None:
                return 0
            total += whole
    return total


def _rule(insn, op, size: int) -> tuple | None:
    mem = op.mem
    base = full_register(insn.reg_name(mem.base)) if mem.base else None
    if base is None:
        return None
    index_off, extend, shift = -1, INDEX_X, 0
    if mem.index:
        index = full_register(insn.reg_name(mem.index))
        if index is not None:  # xzr as an index adds 0
            index_off = REG_OFFSET[index]
            extend = _EXTENDS.get(op.ext, INDEX_X)
            if op.ext in (cs_arm64.ARM64_EXT_UXTB, cs_arm64.ARM64_EXT_UXTH, cs_arm64.ARM64_EXT_SXTB,
                          cs_arm64.ARM64_EXT_SXTH):
                return None  # not an A64 store addressing mode
            if op.shift.type == cs_arm64.ARM64_SFT_LSL:
                shift = op.shift.value
    return (REG_OFFSET[base], index_off, extend, shift, mem.disp, size, MASK64)


def rule_address(rule: tuple, regs: bytes) -> int:
    """The address a write rule names under the registers before the step."""
    base, index, extend, shift, disp, _size, align = rule
    ea = disp + int.from_bytes(regs[base:base + 8], "little")
    if index >= 0:
        value = int.from_bytes(regs[index:index + 8], "little")
        if extend == INDEX_UXTW:
            value &= MASK32
        elif extend == INDEX_SXTW:
            value &= MASK32
            value -= (value & 0x8000_0000) << 1
        ea += value << shift
    return ea & MASK64 & align


def store_ranges(plan: Plan, regs: bytes) -> tuple[tuple[int, int], ...]:
    """(address, size) of every byte range the plan's instruction writes,
    under the registers before its step."""
    return tuple((rule_address(rule, regs), rule[5]) for rule in plan[1])
