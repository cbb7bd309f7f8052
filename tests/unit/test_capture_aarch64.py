"""Write capture for aarch64 (record/capture_aarch64.py): which bytes an A64
instruction writes, from its encoding (assembled by aarch64-linux-gnu-as
-march=armv8.4-a, the bytes kept here) and the registers before the step."""

from __future__ import annotations

import pytest
from a64_oracle import load_store_exclusive

from loaderdbg.decode.aarch64_sequences import atomic_sequence_exits
from loaderdbg.arch import get_arch
from loaderdbg.record.capture_aarch64 import (
    ATOMIC_SEQUENCE, COMPLEX, INT3, PLAIN, SYSCALL, WRITES, Aarch64Decoder, full_register, register_bit,
    store_ranges, zva_block,
)

AARCH64 = get_arch("aarch64")
PC = 0x400000


def regs(**values: int) -> bytes:
    """user_pt_regs with x<n> = 0x10000 * (n + 1) unless given."""
    raw = bytearray(AARCH64.user_regs_size)
    for n in range(31):
        raw[8 * n:8 * n + 8] = (0x10000 * (n + 1)).to_bytes(8, "little")
    raw[8 * 31:8 * 32] = (0x7000).to_bytes(8, "little")  # sp
    raw[8 * 32:8 * 33] = PC.to_bytes(8, "little")
    for name, value in values.items():
        offset = AARCH64.register_offset(name)
        raw[offset:offset + 8] = (value & (1 << 64) - 1).to_bytes(8, "little")
    return bytes(raw)


DECODER = Aarch64Decoder()
X = {n: 0x10000 * (n + 1) for n in range(31)}
SP = 0x7000

# (encoding, text capstone prints, registers changed from regs(), the writes)
STORES = [
    ("410400f9", "str x1, [x2, #8]", {}, [(X[2] + 8, 8)]),
    ("417823b8", "str w1, [x2, x3, lsl #2]", {}, [(X[2] + (X[3] << 2), 4)]),
    ("41d823f8", "str x1, [x2, w3, sxtw #3]", {"x3": 0xFFFF_FFFF_FFFF_FFF0}, [(X[2] - 16 * 8, 8)]),
    ("41d823f8", "str x1, [x2, w3, sxtw #3]", {"x3": 0x1_0000_0010}, [(X[2] + 16 * 8, 8)]),
    ("414823f8", "str x1, [x2, w3, uxtw]", {"x3": 0xAB_FFFF_FFF0}, [(X[2] + 0xFFFF_FFF0, 8)]),
    ("406823f8", "str x0, [x2, x3]", {}, [(X[2] + X[3], 8)]),
    ("41140038", "strb w1, [x2], #1", {}, [(X[2], 1)]),  # post-index: at the base before
    ("41ec1f78", "strh w1, [x2, #-2]!", {}, [(X[2] - 2, 2)]),  # pre-index: at base + disp
    ("a1831ff8", "stur x1, [x29, #-8]", {}, [(X[29] - 8, 8)]),
    ("fd7bbfa9", "stp x29, x30, [sp, #-0x10]!", {}, [(SP - 16, 16)]),
    ("e10b81a8", "stp x1, x2, [sp], #0x10", {}, [(SP, 16)]),
    ("000401ad", "stp q0, q1, [x0, #0x20]", {}, [(X[0] + 32, 32)]),
    ("0000803d", "str q0, [x0]", {}, [(X[0], 16)]),
    ("000400fd", "str d0, [x0, #8]", {}, [(X[0] + 8, 8)]),
    ("000000bd", "str s0, [x0]", {}, [(X[0], 4)]),
    ("0000007d", "str h0, [x0]", {}, [(X[0], 2)]),
    ("0000003d", "str b0, [x0]", {}, [(X[0], 1)]),
    ("00a09f4c", "st1 {v0.16b, v1.16b}, [x0], #32", {}, [(X[0], 32)]),
    ("007c824c", "st1 {v0.2d}, [x0], x2", {}, [(X[0], 16)]),
    ("0090000d", "st1 {v0.s}[1], [x0]", {}, [(X[0], 4)]),
    ("0008004c", "st4 {v0.4s, v1.4s, v2.4s, v3.4s}, [x0]", {}, [(X[0], 64)]),
    ("2080000c", "st2 {v0.8b, v1.8b}, [x1]", {}, [(X[1], 16)]),
    ("417c03c8", "stxr w3, x1, [x2]", {}, [(X[2], 8)]),
    ("41fc0388", "stlxr w3, w1, [x2]", {}, [(X[2], 4)]),
    ("41fc9fc8", "stlr x1, [x2]", {}, [(X[2], 8)]),
    ("41fc9f08", "stlrb w1, [x2]", {}, [(X[2], 1)]),
    ("810823c8", "stxp w3, x1, x2, [x4]", {}, [(X[4], 16)]),
    ("627ca1c8", "cas x1, x2, [x3]", {}, [(X[3], 8)]),
    ("62fce108", "casalb w1, w2, [x3]", {}, [(X[3], 1)]),
    ("827c2048", "casp x0, x1, x2, x3, [x4]", {}, [(X[4], 16)]),
    ("6280e1b8", "swpal w1, w2, [x3]", {}, [(X[3], 4)]),
    ("620021f8", "ldadd x1, x2, [x3]", {}, [(X[3], 8)]),
    ("6200e178", "ldaddalh w1, w2, [x3]", {}, [(X[3], 2)]),
    ("7f0021b8", "stadd w1, [x3]", {}, [(X[3], 4)]),
    ("1f1021f8", "stclr x1, [x0]", {}, [(X[0], 8)]),
    ("20740bd5", "dc zva, x0", {"x0": 0x12345}, [(0x12000, 2048)]),  # the largest block until DCZID is read
    ("010801a8", "stnp x1, x2, [x0, #0x10]", {}, [(X[0] + 16, 16)]),
    ("418800f8", "sttr x1, [x2, #8]", {}, [(X[2] + 8, 8)]),
    ("418c00f8", "str x1, [x2, #8]!", {}, [(X[2] + 8, 8)]),
    ("ff0b00f9", "str xzr, [sp, #0x10]", {}, [(SP + 16, 8)]),
    ("1f7c00a9", "stp xzr, xzr, [x0]", {}, [(X[0], 16)]),
    ("1f682138", "strb wzr, [x0, x1]", {}, [(X[0] + X[1], 1)]),
    ("41c01f99", "stlur w1, [x2, #-4]", {}, [(X[2] - 4, 4)]),
]


@pytest.mark.parametrize("encoding, text, changed, writes", STORES, ids=[f"{s[1]}|{s[0]}" for s in STORES])
def test_store_bytes(encoding, text, changed, writes):
    plan = DECODER.plan(bytes.fromhex(encoding), PC)
    assert plan.text == text
    assert plan.kind == WRITES
    assert list(store_ranges(plan, regs(**changed))) == writes


@pytest.mark.parametrize("encoding, text, kind", [
    ("410040f9", "ldr x1, [x2]", PLAIN),
    ("000080d2", "mov x0, #0", PLAIN),
    ("00021fd6", "br x16", PLAIN),
    ("1f2003d5", "nop", PLAIN),
    ("010000d4", "svc #0", SYSCALL),
    ("000020d4", "brk #0", INT3),
    ("41fc5fc8", "ldaxr x1, [x2]", ATOMIC_SEQUENCE),  # qemu's target may run ldaxr..stlxr as one step
    ("20000000", "udf #0x20", PLAIN),
    ("e1003bd5", "mrs x1, dczid_el0", PLAIN),
])
def test_instructions_that_store_nothing_themselves(encoding, text, kind):
    plan = DECODER.plan(bytes.fromhex(encoding), PC)
    assert (plan.text, plan.kind, plan.writes) == (text, kind, ())


def test_undecodable_and_unaddressable_stores_compare_memory():
    assert DECODER.plan(b"\xff\xff\xff\xff", PC).kind == COMPLEX  # not an A64 encoding
    assert DECODER.plan(b"", PC).kind == COMPLEX


def test_registers_written():
    bit = {name: 1 << AARCH64.register_indexes[name] for name in AARCH64.user_regs_fields}
    assert DECODER.plan(bytes.fromhex("000080d2"), PC).wmask == bit["x0"] | bit["pc"]  # mov x0, #0
    assert DECODER.plan(bytes.fromhex("fd7bbfa9"), PC).wmask & bit["sp"]  # stp ... [sp, #-16]! moves sp
    assert DECODER.plan(bytes.fromhex("417c03c8"), PC).wmask & bit["x3"]  # stxr's status register
    assert DECODER.plan(bytes.fromhex("627ca1c8"), PC).wmask & bit["x1"]  # cas returns the old value in Rs
    assert DECODER.plan(bytes.fromhex("620021f8"), PC).wmask & bit["x2"]  # ldadd: in Rt
    assert DECODER.plan(bytes.fromhex("010000d4"), PC).wmask & bit["x0"]  # svc: the result


def test_register_views():
    assert [full_register(n) for n in ("w3", "x3", "fp", "lr", "sp", "wsp", "xzr")] == \
        ["x3", "x3", "x29", "x30", "sp", "sp", None]
    assert register_bit("w30") == register_bit("lr") == 1 << 30


def test_dc_zva_block_from_dczid():
    assert (zva_block(4), zva_block(7), zva_block(0x14)) == (64, 512, 64)  # bit 4 (DZP) is no size
    for dczid, expected in ((4, (0x12340, 64)), (7, (0x12200, 512))):
        plan = Aarch64Decoder(zva_block(dczid)).plan(bytes.fromhex("20740bd5"), PC)
        assert store_ranges(plan, regs(x0=0x12345)) == (expected,)


# The exclusive group and its neighbours: a plan is ATOMIC_SEQUENCE exactly
# where qemu's target may step a whole ldaxr..stlxr sequence as one step.
EXCLUSIVES = ["417c5fc8", "417c5f08", "417c5f48", "410c7fc8", "41fc5f88", "41fc5f08", "41fc5f48", "418c7f88",
              "41fcdfc8", "41fcdf08", "41fcdf48", "417cdfc8", "417cdf08", "417cdf48", "417c03c8", "41fc03c8",
              "41fc9fc8", "417c9fc8", "627ca1c8", "827c2048", "41c0bff8", "410040f9", "620021f8"]


@pytest.mark.parametrize("encoding", EXCLUSIVES)
def test_atomic_sequence_starts_agree_with_the_qemu_target(encoding):
    word = int.from_bytes(bytes.fromhex(encoding), "little")
    starts = load_store_exclusive(word) and bool(word & (1 << 22))
    assert (DECODER.plan(bytes.fromhex(encoding), PC).kind == ATOMIC_SEQUENCE) == starts


def _reader(base: int, code: str):
    data = bytes.fromhex(code)
    return lambda addr: data[addr - base:addr - base + 4] if 0 <= addr - base <= len(data) - 4 else None


# musl's pthread_mutex_lock (aarch64-hello-musl's libc.so): a_cas rotated so
# that its stlxr (+0x18) comes before the ldaxr (+0x20), a cbz back to it.
MUSL_LOCK = ("010040b93f0c40f22101005401100091030280520300001423fc0288c200003422fc5f88a2ffff34"
             "bf3b03d5010080d20800001400008052c0035fd61f2003d5")
# musl's next lock: a cbz back to an stlxr at -8, and, past an unconditional
# b, another ldaxr/b.eq/stlxr loop.
MUSL_LOCK2 = ("0300001461fe00884003003460fe5f88a0ffff34bf3b03d5400080520300001460fe0188a1000034"
              "61fe5f883f04007180ffff54bf3b03d5540080521f2003d5e00313aa2300805242008052010080d2"
              "82f9ff970300001474fe0288a2000034")
# glibc's shape: ldaxr; cmp; b.ne out; stlxr; cbnz back to the ldaxr.
GLIBC_CAS = "20fc5f881f00026b6100005424fc038883ffff35c0035fd6"


def test_atomic_sequence_exits_follow_the_branches():
    base = 0x550288c880
    # ldaxr at +0x20: after the stlxr (+0x1c), or the cbz's fall-through (+0x28), which reaches none.
    assert atomic_sequence_exits(_reader(base, MUSL_LOCK), base + 0x20) == (base + 0x1c, base + 0x28)
    base = 0x550288b288
    assert atomic_sequence_exits(_reader(base, MUSL_LOCK2), base + 0xc) == (base + 0x8, base + 0x24, base + 0x34)
    # gdb's rule gives the same two exits here: after the stlxr, the b.ne's target.
    assert atomic_sequence_exits(_reader(0x1000, GLIBC_CAS), 0x1000) == (0x1010, 0x1014)
    # A load-exclusive with no store after it (within reach) starts nothing.
    assert atomic_sequence_exits(_reader(0x1000, "41fcdfc8" + "1f2003d5" * 20), 0x1000) == ()


def test_guest_syscall_writes_use_arm64_layouts():
    from loaderdbg.record.capture_aarch64 import guest_syscall_writes

    def never(addr, size):
        raise AssertionError("no memory read needed")

    assert guest_syscall_writes("newfstatat", (3, 0x1000, 0x2000, 0), 0, never) == [(0x2000, 128)]
    assert guest_syscall_writes("fstat", (3, 0x2000), 0, never) == [(0x2000, 128)]
    assert guest_syscall_writes("fstat", (3, 0x2000), -9, never) == []
    assert guest_syscall_writes("epoll_pwait", (3, 0x3000, 8, -1, 0, 8), 2, never) == [(0x3000, 32)]
    assert guest_syscall_writes("epoll_pwait", (3, 0x3000, 8, -1, 0, 8), 0, never) == []
    assert guest_syscall_writes("brk", (0x5000, 0, 0, 0, 0, 0), 0x5000, never) is None  # qemu zeroes
    assert guest_syscall_writes("read", (0, 0x4000, 100), 10, never) == [(0x4000, 10)]  # as on x86
