"""The per-arch tables: shapes, known values, and that both arches are
complete enough for every decoder."""

import dataclasses

import capstone
import pytest
from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES as PTRACE_X86_64_NAMES

from loaderdbg.arch import AUXV_KINDS, LINUX_AUXV_TYPES, X86_64, ArchTables, get_arch, known_arches


def test_x86_64_user_regs_layout_matches_user_regs_struct():
    assert X86_64.user_regs_fields == (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
        "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
        "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
    )
    assert X86_64.user_regs_size == 216
    # PTRACE_NOTES §6: PEEKUSER offsets 128 (rip) and 168 (fs_base).
    assert X86_64.user_regs_fields.index("rip") * 8 == 128
    assert X86_64.user_regs_fields.index("fs_base") * 8 == 168


def test_x86_64_scalars():
    assert (X86_64.pc_register, X86_64.sp_register, X86_64.flag_register) == ("rip", "rsp", "eflags")
    assert X86_64.word_size == 8 and X86_64.endianness == "little" and X86_64.word_format == "<Q"
    assert X86_64.syscall_arg_registers == ("rdi", "rsi", "rdx", "r10", "r8", "r9")
    assert X86_64.syscall_return_register == "rax"
    assert X86_64.syscall_number_register == "orig_rax"
    assert X86_64.capstone_arch == capstone.CS_ARCH_X86
    assert X86_64.capstone_mode == capstone.CS_MODE_64
    assert X86_64.audit_arch == 0xC000003E
    assert get_arch("x86_64") is X86_64 and get_arch("amd64") is X86_64


def test_eflags_bits_are_gdbs():
    assert dict(X86_64.flag_bits) == {
        0: "CF", 2: "PF", 4: "AF", 6: "ZF", 7: "SF", 8: "TF", 9: "IF", 10: "DF",
        11: "OF", 14: "NT", 16: "RF", 17: "VM", 18: "AC", 19: "VIF", 20: "VIP", 21: "ID",
    }
    assert dict(X86_64.flag_fields) == {"IOPL": (12, 2)}


def test_hwcap_bits():
    names = [X86_64.hwcap_bits[bit] for bit in sorted(X86_64.hwcap_bits)]
    assert names == ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat "
                     "pse36 pn clflush dts acpi mmx fxsr sse sse2 ss ht tm ia64 pbe").split()
    assert dict(X86_64.hwcap2_bits) == {0: "ring3mwait", 1: "fsgsbase"}


def test_syscall_tables_are_inverse_and_come_from_python_ptrace():
    for number, name in X86_64.syscall_names.items():
        assert X86_64.syscall_numbers[name] == number
    for number in (0, 9, 59, 231, 257, 334, 435):
        assert X86_64.syscall_names[number] == PTRACE_X86_64_NAMES[number]
    assert X86_64.syscall_numbers["memfd_create"] == 319
    assert X86_64.syscall_numbers["mseal"] == 462
    # x32-only numbers are not 64-bit syscalls.
    assert 512 not in X86_64.syscall_names


@pytest.mark.parametrize("number,name", [
    (0, "AT_NULL"), (3, "AT_PHDR"), (6, "AT_PAGESZ"), (15, "AT_PLATFORM"), (16, "AT_HWCAP"),
    (17, "AT_CLKTCK"), (23, "AT_SECURE"), (24, "AT_BASE_PLATFORM"), (25, "AT_RANDOM"),
    (26, "AT_HWCAP2"), (27, "AT_RSEQ_FEATURE_SIZE"), (28, "AT_RSEQ_ALIGN"), (29, "AT_HWCAP3"),
    (30, "AT_HWCAP4"), (31, "AT_EXECFN"), (33, "AT_SYSINFO_EHDR"),
    (41, "AT_L1I_CACHEGEOMETRY"), (51, "AT_MINSIGSTKSZ"),
])
def test_auxv_type_names(number, name):
    assert X86_64.auxv_types[number].name == name


def test_auxv_kinds_are_known():
    assert {t.kind for t in LINUX_AUXV_TYPES.values()} <= AUXV_KINDS
    kinds = {t.name: t.kind for t in LINUX_AUXV_TYPES.values()}
    assert kinds["AT_RANDOM"] == "random"
    assert kinds["AT_EXECFN"] == kinds["AT_PLATFORM"] == "str"
    assert kinds["AT_HWCAP"] == "hwcap" and kinds["AT_HWCAP2"] == "hwcap2"
    assert kinds["AT_ENTRY"] == "addr" and kinds["AT_UID"] == "uid" and kinds["AT_SECURE"] == "bool"


@pytest.mark.parametrize("name", known_arches())
def test_every_arch_is_complete(name):
    arch = get_arch(name)
    assert isinstance(arch, ArchTables) and arch.name == name
    assert arch.pc_register in arch.user_regs_fields
    assert arch.sp_register in arch.user_regs_fields
    assert arch.flag_register in arch.user_regs_fields
    assert len(arch.syscall_arg_registers) == 6
    for register in arch.syscall_arg_registers + (arch.syscall_return_register,):
        assert register in arch.user_regs_fields
    assert len(set(arch.user_regs_fields)) == len(arch.user_regs_fields)
    assert arch.syscall_numbers[arch.syscall_names[arch.syscall_numbers["exit_group"]]]
    for view, (full, _mask) in arch.register_views.items():
        assert full is None or full in arch.user_regs_fields
    capstone.Cs(arch.capstone_arch, arch.capstone_mode)


def test_aarch64_tables():
    arch = get_arch("arm64")
    assert arch.name == "aarch64"
    assert arch.user_regs_size == 34 * 8
    assert (arch.pc_register, arch.sp_register, arch.flag_register) == ("pc", "sp", "pstate")
    assert arch.syscall_names[222] == "mmap" and arch.syscall_numbers["exit_group"] == 94
    assert arch.hwcap_bits[1] == "asimd"
    assert arch.auxv_types is X86_64.auxv_types


def test_tables_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        X86_64.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        X86_64.flag_bits[1] = "RESERVED"  # type: ignore[index]
    with pytest.raises(TypeError):
        X86_64.value_tables["arch_prctl_code"][1] = "X"  # type: ignore[index]
    assert hash(X86_64) == hash(get_arch("x86_64"))


def test_unknown_arch():
    with pytest.raises(ValueError, match="unsupported"):
        get_arch("mips")
