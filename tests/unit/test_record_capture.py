"""Write capture rules (loaderdbg/record/capture.py): which bytes an
instruction stores, computed from the registers before it runs, and what a
syscall's kernel side writes. Each case names the instruction bytes as an
assembler would print them; capstone 5's operand access flags are wrong for
several stores, which the rules must cover."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loaderdbg.arch.x86_64 import USER_REGS_FIELDS
from loaderdbg.record.capture import (
    COMPLEX, INT3, PLAIN, REG_INDEX, SYSCALL, WRITES, Decoder, full_register, rule_address, syscall_writes,
)
from loaderdbg.record.shadow import Shadow, diff_runs

PC = 0x401000
REGS = dict(rax=0x1000, rbx=0x2000, rcx=3, rdx=0x4000, rsi=0x5000, rdi=0x6000, rbp=0x7FFF_FFFF_E100,
            rsp=0x7FFF_FFFF_E000, r8=0x8000, fs_base=0x7FFF_F7D8_0740, rip=PC)
XSAVE = 2696


def raw_regs(**changes) -> bytes:
    values = {name: 0 for name in USER_REGS_FIELDS}
    values.update(REGS)
    values.update(changes)
    return struct.pack("<27Q", *(values[name] for name in USER_REGS_FIELDS))


def writes(hexcode: str, **changes):
    plan = Decoder(xsave_size=XSAVE).plan(bytes.fromhex(hexcode.replace(" ", "")), PC)
    regs = raw_regs(**changes)
    return plan, [(rule_address(rule, regs), rule[5]) for rule in plan.writes]


SP = REGS["rsp"]


@pytest.mark.parametrize("name,code,expected", [
    ("mov [rsp+8], rax", "48 89 44 24 08", [(SP + 8, 8)]),
    ("mov [rip+0x10], eax", "89 05 10 00 00 00", [(PC + 6 + 0x10, 4)]),
    ("mov fs:[0x28], rax", "64 48 89 04 25 28 00 00 00", [(REGS["fs_base"] + 0x28, 8)]),
    ("mov [rbx+rcx*8+16], rdx", "48 89 54 cb 10", [(0x2000 + 3 * 8 + 16, 8)]),
    ("mov [eax], ebx (addr32)", "67 89 18", [(0x1000, 4)]),
    ("push rax", "50", [(SP - 8, 8)]),
    ("push qword [rip+8]", "ff 35 08 00 00 00", [(SP - 8, 8)]),
    ("pushfq", "9c", [(SP - 8, 8)]),
    ("call rax", "ff d0", [(SP - 8, 8)]),
    ("call rel32", "e8 00 00 00 00", [(SP - 8, 8)]),
    ("pop qword [rsp+8]: addressed after rsp moves", "8f 44 24 08", [(SP + 16, 8)]),
    ("enter 0x10, 0", "c8 10 00 00", [(SP - 8, 8)]),
    ("enter 0x10, 2", "c8 10 00 02", [(SP - 24, 24)]),
    ("vmovdqu [rdi], ymm0 (capstone says read)", "c5 fe 7f 07", [(0x6000, 32)]),
    ("vmovdqu64 [rdi], zmm0", "62 f1 fe 48 7f 07", [(0x6000, 64)]),
    ("lock cmpxchg [rdi], rcx (capstone says read)", "f0 48 0f b1 0f", [(0x6000, 8)]),
    ("cmpxchg16b [rdi]", "48 0f c7 0f", [(0x6000, 16)]),
    ("xchg [rdi], rax", "48 87 07", [(0x6000, 8)]),
    ("stmxcsr [rsp] (capstone says read)", "0f ae 1c 24", [(SP, 4)]),
    ("movsd [rdi], xmm0", "f2 0f 11 07", [(0x6000, 8)]),
    ("fstp tbyte [rsp]", "db 3c 24", [(SP, 10)]),
    ("fnstenv [rsp]", "d9 34 24", [(SP, 28)]),
    ("fnsave [rsp] (capstone says 4 bytes)", "dd 34 24", [(SP, 108)]),
    ("fxsave [rsp]", "0f ae 04 24", [(SP, 512)]),
    ("xsavec [rsp+0x40]: the machine's XSAVE size", "0f c7 64 24 40", [(SP + 0x40, XSAVE)]),
    ("xsave64 [rsp+0x40]", "48 0f ae 64 24 40", [(SP + 0x40, XSAVE)]),
    ("movsq", "48 a5", [(0x6000, 8)]),
    ("maskmovdqu xmm0, xmm1: implicit [rdi]", "66 0f f7 c1", [(0x6000, 16)]),
    ("setz [rdi]", "0f 94 07", [(0x6000, 1)]),
    ("inc dword [rdi]", "ff 07", [(0x6000, 4)]),
])
def test_store_addresses(name, code, expected):
    plan, found = writes(code)
    assert plan.kind == WRITES, plan
    assert found == expected


@pytest.mark.parametrize("name,code", [
    ("mov rax, [rdi]", "48 8b 07"),
    ("cmp [rdi], rax", "48 39 07"),
    ("test [rdi], eax", "85 07"),
    ("lea rax, [rip+8]", "48 8d 05 08 00 00 00"),
    ("jmp [rip+8]", "ff 25 08 00 00 00"),
    ("leave", "c9"),
    ("ret", "c3"),
    ("pop rax", "58"),
    ("nop dword [rax]", "0f 1f 00"),
    ("prefetcht0 [rdi]", "0f 18 0f"),
    ("xrstor [rsp]", "0f ae 2c 24"),
    ("ldmxcsr [rsp]", "0f ae 14 24"),
    ("xor edx, edx", "31 d2"),
    ("jmp rdx", "ff e2"),
])
def test_no_store(name, code):
    plan, found = writes(code)
    assert plan.kind == PLAIN and found == []


def test_rep_string_ops_write_one_element_and_nothing_when_rcx_is_zero():
    plan, found = writes("f3 48 ab")  # rep stosq
    assert plan.rep and found == [(0x6000, 8)]
    plan, _ = writes("f3 a4")  # rep movsb
    assert plan.rep and plan.writes
    plan, _ = writes("48 ab")  # stosq without rep
    assert not plan.rep


@pytest.mark.parametrize("code,kind", [
    ("0f 05", SYSCALL), ("cc", INT3), ("cd 03", INT3), ("cd 80", COMPLEX),
    ("62 f2 7d 49 a0 0c 87", COMPLEX),  # vpscatterdd: addresses in a vector
    ("0f 01 fc", COMPLEX),  # clzero
    ("ff ff", COMPLEX),  # undecodable
])
def test_special_kinds(code, kind):
    plan, _ = writes(code)
    assert plan.kind == kind


def test_registers_written_include_partial_views():
    plan, _ = writes("31 d2")  # xor edx, edx writes rdx (zero-extended) and the flags
    assert plan.wmask & (1 << REG_INDEX["rdx"])
    assert plan.wmask & (1 << REG_INDEX["eflags"])
    assert not plan.wmask & (1 << REG_INDEX["rax"])
    plan, _ = writes("0f 05")
    assert all(plan.wmask & (1 << REG_INDEX[r]) for r in ("rax", "rcx", "r11"))
    assert full_register("dl") == "rdx" and full_register("r9d") == "r9" and full_register("xmm0") is None


# ---------------------------------------------------------------- syscalls

def no_memory(addr, size):
    return None


@pytest.mark.parametrize("name,args,result,expected", [
    ("read", (3, 0x5000, 4096), 832, [(0x5000, 832)]),
    ("read", (3, 0x5000, 4096), -11, []),  # EAGAIN: the kernel wrote nothing
    ("pread64", (3, 0x5000, 784, 64), 784, [(0x5000, 784)]),
    ("fstat", (3, 0x7000), 0, [(0x7000, 144)]),
    ("newfstatat", (3, 0x100, 0x7000, 0x1000), 0, [(0x7000, 144)]),
    ("uname", (0x7000,), 0, [(0x7000, 390)]),
    ("rt_sigaction", (2, 0, 0x7000, 8), 0, [(0x7000, 32)]),
    ("rt_sigaction", (2, 0x6000, 0, 8), 0, []),
    ("rt_sigprocmask", (0, 0x6000, 0x7000, 8), 0, [(0x7000, 8)]),
    ("prlimit64", (0, 3, 0, 0x7000), 0, [(0x7000, 16)]),
    ("getrandom", (0x7000, 8, 1), 8, [(0x7000, 8)]),
    ("arch_prctl", (0x1003, 0x7000), 0, [(0x7000, 8)]),
    ("arch_prctl", (0x1002, 0x7000), 0, []),
    ("ioctl", (1, 0x5401, 0x7000), 0, [(0x7000, 36)]),
    ("rseq", (0x7000, 32, 0, 0x53053053), 0, [(0x7000, 32)]),
    ("close", (3,), 0, []),
    ("mmap", (0, 4096, 3, 0x22, -1, 0), 0x7000, []),
    ("openat", (-100, 0x100, 0), 3, []),
    ("ppoll", (0x6000, 2, 0x7000, 0, 8), 1, [(0x6000, 16), (0x7000, 16)]),
    # Cut short by a signal (-ERESTARTNOHAND) or failed: still the time left.
    ("ppoll", (0x6000, 2, 0x7000, 0, 8), -514, [(0x7000, 16)]),
    ("ppoll", (0x6000, 2, 0x7000, 0, 8), -4, [(0x7000, 16)]),
    ("ppoll", (0x6000, 2, 0, 0, 8), -4, []),  # no timeout: nothing
])
def test_syscall_outputs(name, args, result, expected):
    assert syscall_writes(name, args + (0,) * (6 - len(args)), result, no_memory) == expected


def test_unknown_syscalls_are_diffed():
    args = (0,) * 6
    assert syscall_writes("recvmsg", args, 10, no_memory) is None
    assert syscall_writes("ioctl", (1, 0x1234, 0x7000, 0, 0, 0), 0, no_memory) is None
    assert syscall_writes("clone3", args, 123, no_memory) is None
    assert syscall_writes("madvise", (0x7000, 4096, 4, 0, 0, 0), 0, no_memory) is None  # MADV_DONTNEED zeroes


def test_readv_follows_the_iovec():
    iov = struct.pack("<QQQQ", 0x5000, 10, 0x6000, 100)

    def memory(addr, size):
        return iov[addr - 0x9000:addr - 0x9000 + size] if 0x9000 <= addr < 0x9000 + len(iov) else None

    assert syscall_writes("readv", (3, 0x9000, 2, 0, 0, 0), 50, memory) == [(0x5000, 10), (0x6000, 40)]


# ---------------------------------------------------------------- shadow

@given(st.binary(min_size=256, max_size=256), st.lists(st.tuples(st.integers(0, 255), st.binary(min_size=1, max_size=40))))
def test_diff_runs_rebuild_the_new_bytes(old, edits):
    new = bytearray(old)
    for offset, data in edits:
        new[offset:offset + len(data)] = data
        del new[256:]
    rebuilt = bytearray(old)
    for offset, length in diff_runs(old, bytes(new)):
        assert old[offset] != new[offset] and old[offset + length - 1] != new[offset + length - 1]
        rebuilt[offset:offset + length] = new[offset:offset + length]
    assert rebuilt == new


def test_shadow_reads_and_writes_across_pages():
    shadow = Shadow()
    shadow.set_page(1, bytes(4096))
    shadow.set_page(2, b"\x11" * 4096)
    shadow.write(0x1FFE, b"abcd")
    assert shadow.read(0x1FFC, 8) == b"\0\0abcd\x11\x11"
    assert shadow.covers(0x1000, 0x2000) and not shadow.covers(0x2FFF, 2)
