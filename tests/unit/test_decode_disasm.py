"""Disassembly: known bytes, effective addresses, and objdump as the
reference on /bin/true's own code."""

import re
import shutil
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from loaderdbg.arch import X86_64, get_arch
from loaderdbg.decode.disasm import (
    Instruction,
    disassemble,
    disassemble_one,
    is_call_at,
    memory_operands,
    memory_writes,
    next_instruction_address,
)
from loaderdbg.decode.registers import Registers

BASE = 0x7FFFF7FB0000


def regs(**values) -> Registers:
    full = dict.fromkeys(X86_64.user_regs_fields, 0)
    full.update(values)
    return Registers(full)


def one(hex_bytes: str, address: int = BASE) -> Instruction:
    insn = disassemble_one(bytes.fromhex(hex_bytes), address, X86_64)
    assert insn is not None
    return insn


def test_rdxbug_handoff():
    """The crash of the rdxbug fixture: the jump target is zeroed first."""
    xor, jmp = disassemble(bytes.fromhex("31d2ffe2"), BASE, X86_64)
    assert (xor.text, xor.address, xor.size) == ("xor edx, edx", BASE, 2)
    assert (jmp.text, jmp.address, jmp.size) == ("jmp rdx", BASE + 2, 2)
    assert jmp.is_jump and not jmp.is_call and jmp.branch_target is None
    assert xor.raw == b"\x31\xd2" and not xor.is_jump
    assert memory_operands(jmp, regs()) == ()


def test_call_rel32_target_and_step_over():
    code = b"\xe8" + struct.pack("<i", 0x100)
    insn = is_call_at(code + b"\x90" * 10, BASE, X86_64)
    assert insn is not None and insn.is_call and not insn.is_jump
    assert insn.branch_target == BASE + 5 + 0x100
    assert next_instruction_address(insn) == insn.next_address == BASE + 5
    assert is_call_at(b"\x90", BASE, X86_64) is None
    assert is_call_at(b"", BASE, X86_64) is None
    # A call backwards.
    assert one("e8" + struct.pack("<i", -0x20).hex()).branch_target == BASE + 5 - 0x20


def test_rip_relative_load():
    insn = one("488b05" + struct.pack("<i", 0x2F0E).hex())
    assert insn.text == "mov rax, qword ptr [rip + 0x2f0e]"
    (operand,) = memory_operands(insn, regs(rip=BASE))
    assert operand.address == BASE + 7 + 0x2F0E
    assert (operand.size, operand.access, operand.reads, operand.writes) == (8, "read", True, False)
    assert memory_writes(insn, regs()) == ()


def test_rip_relative_store_is_a_write():
    insn = one("488905" + struct.pack("<i", -0x10).hex())
    (operand,) = memory_writes(insn, regs())
    assert operand.address == BASE + 7 - 0x10 and operand.size == 8 and operand.text == "[rip - 0x10]"


def test_base_index_scale_disp():
    insn = one("488b44c810")  # mov rax, [rax + rcx*8 + 0x10]
    (operand,) = memory_operands(insn, regs(rax=0x1000, rcx=3))
    assert operand.address == 0x1000 + 3 * 8 + 0x10
    assert operand.text == "[rax + rcx*8 + 0x10]"
    negative = one("488b45f8")  # mov rax, [rbp - 8]
    assert memory_operands(negative, regs(rbp=0x7FFC0000))[0].address == 0x7FFC0000 - 8


def test_address_size_override_masks_to_32_bits():
    insn = one("678b00")  # mov eax, dword ptr [eax]
    (operand,) = memory_operands(insn, regs(rax=0x1_2345_6789))
    assert operand.address == 0x2345_6789 and operand.size == 4


def test_fs_segment_adds_fs_base():
    insn = one("64488b042528000000")  # mov rax, qword ptr fs:[0x28]
    (operand,) = memory_operands(insn, regs(fs_base=0x7FFFF7D8A740))
    assert operand.address == 0x7FFFF7D8A740 + 0x28 and operand.text == "fs:[0x28]"


def test_unknown_register_gives_no_address():
    insn = one("488b00")  # mov rax, [rax]
    assert memory_operands(insn, Registers({"rsp": 0}))[0].address is None


def test_lea_and_nop_touch_no_memory():
    lea = one("488d05" + struct.pack("<i", 0x40).hex())
    nop = one("0f1f4000")
    assert memory_operands(lea, regs()) == () and memory_operands(nop, regs()) == ()
    (target,) = memory_operands(lea, regs(), include_address_only=True)
    assert target.address == BASE + 7 + 0x40 and target.access == "address" and not target.reads


def test_implicit_stack_accesses():
    sp = 0x7FFFFFFFE000
    push = one("50")
    (write,) = memory_writes(push, regs(rsp=sp))
    assert (write.address, write.size, write.implicit, write.text) == (sp - 8, 8, True, "[rsp - 8]")
    call = one("ff1500000000")  # call [rip]: reads the pointer, writes the return address
    accesses = memory_operands(call, regs(rsp=sp))
    assert [(a.access, a.implicit) for a in accesses] == [("read", False), ("write", True)]
    assert accesses[1].address == sp - 8
    ret = one("c3")
    assert ret.is_ret and memory_operands(ret, regs(rsp=sp))[0].access == "read"
    assert memory_writes(ret, regs(rsp=sp)) == ()


def test_string_ops_write_at_rdi():
    stos = one("f3aa")  # rep stosb: one element per single-step
    (operand,) = memory_writes(stos, regs(rdi=0x5000))
    assert operand.address == 0x5000 and operand.size == 1
    movs = one("48a5")  # movsq
    accesses = memory_operands(movs, regs(rdi=0x5000, rsi=0x6000))
    assert [(a.address, a.access) for a in accesses] == [(0x5000, "write"), (0x6000, "read")]


def test_syscall_and_int3():
    syscall, int3 = disassemble(bytes.fromhex("0f05cc"), BASE, X86_64)
    assert syscall.is_syscall and not int3.is_syscall
    assert int3.text == "int3"


def test_symbols():
    names = {BASE: "execsolib_start", BASE + 12: "execsolib_start+12"}
    code = bytes.fromhex("e8" + struct.pack("<i", 12 - 5).hex())
    (insn,) = disassemble(code, BASE, X86_64, symbolize=names.get)
    assert insn.symbol == "execsolib_start"
    assert insn.target_symbol == "execsolib_start+12"


def test_bad_bytes_do_not_stop_the_listing():
    listing = disassemble(bytes.fromhex("06c3"), BASE, X86_64)  # 06 is invalid in 64-bit mode
    assert [(i.mnemonic, i.address) for i in listing] == [("(bad)", BASE), ("ret", BASE + 1)]
    assert listing[0].is_bad and not listing[1].is_bad
    assert disassemble_one(bytes.fromhex("06"), BASE, X86_64) is None


def test_count_and_empty():
    code = bytes.fromhex("90" * 10)
    assert len(disassemble(code, BASE, X86_64, count=3)) == 3
    assert disassemble(code, BASE, X86_64, count=0) == ()
    assert disassemble(b"", BASE, X86_64) == ()
    # A truncated instruction at the end is not invented.
    assert [i.text for i in disassemble(bytes.fromhex("90488b"), BASE, X86_64)][0] == "nop"


def test_instructions_are_frozen_values():
    a = one("c3")
    assert a == one("c3") and hash(a) == hash(one("c3"))


def test_aarch64():
    arch = get_arch("aarch64")
    code = bytes.fromhex("010000d4" "e00740f9" "00000094" "c0035fd6")
    svc, ldr, bl, ret = disassemble(code, 0x400000, arch)
    assert svc.is_syscall and svc.text == "svc #0"
    assert bl.is_call and bl.branch_target == 0x400008
    assert ret.is_ret
    arm_regs = Registers({name: 0 for name in arch.user_regs_fields} | {"sp": 0x7FFF0000}, "aarch64")
    (operand,) = memory_operands(ldr, arm_regs)
    assert operand.address == 0x7FFF0008 and operand.access == "read"


# --------------------------------------------------------- against objdump

def objdump_text(path: str) -> dict[int, str]:
    out = subprocess.run(["objdump", "-d", "-M", "intel", "--no-show-raw-insn", "-j", ".text", path],
                         capture_output=True, text=True, timeout=60).stdout
    return {int(address, 16): rest for address, rest in
            re.findall(r"^\s+([0-9a-f]+):\t(.*)$", out, re.M)}


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not installed")
def test_against_objdump_on_bin_true():
    with open("/bin/true", "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        code, address = text.data(), text["sh_addr"]
    reference = objdump_text("/bin/true")
    listing = disassemble(code, address, X86_64)
    assert [insn.address for insn in listing] == sorted(reference)
    zero = regs()
    checked_targets = checked_rip = 0
    for insn in listing:
        line = reference[insn.address]
        branch = re.match(r"(?:call|j\w+)\s+([0-9a-f]+) <", line)
        if branch:
            assert insn.branch_target == int(branch[1], 16), line
            checked_targets += 1
        rip = re.search(r"\[rip[+-]0x[0-9a-f]+\]\s+# ([0-9a-f]+)", line)
        if rip:
            addresses = {op.address for op in memory_operands(insn, zero, include_address_only=True)}
            assert int(rip[1], 16) in addresses, line
            checked_rip += 1
    assert checked_targets > 100 and checked_rip > 100
