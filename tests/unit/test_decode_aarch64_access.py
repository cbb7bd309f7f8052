"""decode/aarch64_access.py: which memory one A64 instruction reads and
writes, from its encoding (assembled by aarch64-linux-gnu-as
-march=armv8.3-a, the bytes kept here) and the registers before it."""

from __future__ import annotations

import pytest

from loaderdbg.arch import get_arch
from loaderdbg.decode.aarch64_access import Access, memory_accesses
from loaderdbg.decode.disasm import disassemble_one
from loaderdbg.decode.registers import Registers

AARCH64 = get_arch("aarch64")
PC = 0x400000
X = {n: 0x10000 * (n + 1) for n in range(31)}
SP = 0x7000


def registers(**changed: int) -> Registers:
    values = {f"x{n}": X[n] for n in range(31)} | {"sp": SP, "pc": PC, "pstate": 0} | changed
    return Registers({name: values[name] for name in AARCH64.user_regs_fields}, "aarch64")


R, W, RW = "r", "w", "rw"
# (encoding, text capstone prints, registers changed, [(address, size, kind)])
CASES = [
    ("e00700f9", "str x0, [sp, #8]", {}, [(SP + 8, 8, W)]),
    ("fd7bbfa9", "stp x29, x30, [sp, #-0x10]!", {}, [(SP - 16, 16, W)]),  # pre-index: at sp - 16
    ("fd7bc1a8", "ldp x29, x30, [sp], #0x10", {}, [(SP, 16, R)]),  # post-index: at sp
    ("a00b00f9", "str x0, [x29, #0x10]", {}, [(X[29] + 16, 8, W)]),  # capstone names x29 fp
    ("417863b8", "ldr w1, [x2, x3, lsl #2]", {}, [(X[2] + (X[3] << 2), 4, R)]),
    ("41d863f8", "ldr x1, [x2, w3, sxtw #3]", {"x3": 0xFFFF_FFFF}, [(X[2] - 8, 8, R)]),
    ("414863f8", "ldr x1, [x2, w3, uxtw]", {"x3": 0xAB_FFFF_FFF0}, [(X[2] + 0xFFFF_FFF0, 8, R)]),
    ("41004039", "ldrb w1, [x2]", {}, [(X[2], 1, R)]),
    ("41040079", "strh w1, [x2, #2]", {}, [(X[2] + 2, 2, W)]),
    ("410080b9", "ldrsw x1, [x2]", {}, [(X[2], 4, R)]),
    ("61084069", "ldpsw x1, x2, [x3]", {}, [(X[3], 8, R)]),
    ("41008039", "ldrsb x1, [x2]", {}, [(X[2], 1, R)]),
    ("00a0004c", "st1 {v0.16b, v1.16b}, [x0]", {}, [(X[0], 32, W)]),
    ("0078df4c", "ld1 {v0.4s}, [x0], #16", {}, [(X[0], 16, R)]),
    ("0070400c", "ld1 {v0.8b}, [x0]", {}, [(X[0], 8, R)]),
    ("00c8404d", "ld1r {v0.4s}, [x0]", {}, [(X[0], 4, R)]),  # one element, replicated
    ("0090000d", "st1 {v0.s}[1], [x0]", {}, [(X[0], 4, W)]),  # one lane
    ("0008004c", "st4 {v0.4s, v1.4s, v2.4s, v3.4s}, [x0]", {}, [(X[0], 64, W)]),
    ("2000803d", "str q0, [x1]", {}, [(X[1], 16, W)]),
    ("200401ad", "stp q0, q1, [x1, #0x20]", {}, [(X[1] + 32, 32, W)]),
    ("200040fd", "ldr d0, [x1]", {}, [(X[1], 8, R)]),
    ("20fc5fc8", "ldaxr x0, [x1]", {}, [(X[1], 8, R)]),
    ("207c02c8", "stxr w2, x0, [x1]", {}, [(X[1], 8, W)]),  # w2 is the status, not data
    ("20fc0208", "stlxrb w2, w0, [x1]", {}, [(X[1], 1, W)]),
    ("20fc9f88", "stlr w0, [x1]", {}, [(X[1], 4, W)]),
    ("40047fc8", "ldxp x0, x1, [x2]", {}, [(X[2], 16, R)]),
    ("408423c8", "stlxp w3, x0, x1, [x2]", {}, [(X[2], 16, W)]),
    ("20fcdfc8", "ldar x0, [x1]", {}, [(X[1], 8, R)]),
    ("410020f8", "ldadd x0, x1, [x2]", {}, [(X[2], 8, RW)]),
    ("4100e078", "ldaddalh w0, w1, [x2]", {}, [(X[2], 2, RW)]),
    ("5f0020b8", "stadd w0, [x2]", {}, [(X[2], 4, RW)]),
    ("417ca0c8", "cas x0, x1, [x2]", {}, [(X[2], 8, RW)]),
    ("827c2048", "casp x0, x1, x2, x3, [x4]", {}, [(X[4], 16, RW)]),
    ("41802038", "swpb w0, w1, [x2]", {}, [(X[2], 1, RW)]),
    ("20740bd5", "dc zva, x0", {"x0": 0x12345}, [(0x12200, 512, W)]),  # the caller's block: 512 here
    ("018c5ff8", "ldr x1, [x0, #-8]!", {}, [(X[0] - 8, 8, R)]),
    ("010800a8", "stnp x1, x2, [x0]", {}, [(X[0], 16, W)]),
    ("01d01fb8", "stur w1, [x0, #-3]", {}, [(X[0] - 3, 4, W)]),
    ("200420f8", "ldraa x0, [x1]", {}, [(X[1], 8, R)]),  # the last letter is the key, not a size
    ("3f000039", "strb wzr, [x1]", {}, [(X[1], 1, W)]),
    ("3f6822f8", "str xzr, [x1, x2]", {}, [(X[1] + X[2], 8, W)]),
    ("000080f9", "prfm pldl1keep, [x0]", {}, []),  # a hint: no access
    ("2000028b", "add x0, x1, x2", {}, []),
]


@pytest.mark.parametrize("encoding, text, changed, expected", CASES, ids=[case[1] for case in CASES])
def test_accesses(encoding, text, changed, expected):
    insn = disassemble_one(bytes.fromhex(encoding), PC, AARCH64)
    assert insn is not None and insn.text == text
    kinds = {R: (True, False), W: (False, True), RW: (True, True)}
    assert memory_accesses(insn, registers(**changed), zva_block=512) == tuple(
        Access(address, size, *kinds[kind]) for address, size, kind in expected)


def test_literal_load_reads_at_its_label():
    insn = disassemble_one(bytes.fromhex("20000058"), PC, AARCH64)  # ldr x0, <PC + 4>
    assert memory_accesses(insn, registers()) == (Access(PC + 4, 8, True, False),)


def test_overlaps():
    access = Access(0x1000, 8, False, True)
    assert access.overlaps(0x1007, 1) and access.overlaps(0xFF9, 8)
    assert not access.overlaps(0x1008, 4) and not access.overlaps(0xFF8, 8)
