"""AArch64 Linux, decode-only: enough to read a recording or core made there.

Sources: arch/arm64/include/uapi/asm/ptrace.h (user_pt_regs),
arch/arm64/include/uapi/asm/hwcap.h, asm-generic/fcntl.h overridden by
arch/arm64/include/uapi/asm/fcntl.h. Syscall names come from python-ptrace.
"""

from __future__ import annotations

from loaderdbg.arch import LINUX_AUXV_TYPES, LINUX_UNIFIED_SYSCALLS_AFTER_5_8, make_arch
from loaderdbg.arch.ptrace_tables import table

_PTRACE_SYSCALL_NAMES = table("linux.aarch64").SYSCALL_NAMES

USER_REGS_FIELDS = tuple(f"x{n}" for n in range(31)) + ("sp", "pc", "pstate")

# gdb's aarch64 cpsr_flags, in bit order.
PSTATE_BITS = {
    0: "SP", 4: "nRW", 6: "F", 7: "I", 8: "A", 9: "D", 12: "SSBS", 20: "IL",
    21: "SS", 22: "PAN", 23: "UAO", 24: "DIT", 25: "TCO", 28: "V", 29: "C",
    30: "Z", 31: "N",
}
PSTATE_FIELDS = {"EL": (2, 2), "BTYPE": (10, 2)}

HWCAP_BITS = dict(enumerate((
    "fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32",
    "atomics", "fphp", "asimdhp", "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc",
    "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512", "sve", "asimdfhm",
    "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg",
)))
HWCAP2_BITS = dict(enumerate((
    "dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4",
    "flagm2", "frint", "svei8mm", "svef32mm", "svef64mm", "svebf16", "i8mm",
    "bf16", "dgh", "rng", "bti", "mte", "ecv", "afp", "rpres", "mte3", "sme",
    "smei16i64", "smef64f64", "smei8i32", "smef16f32", "smeb16f32", "smef32f32",
    "smefa64", "wfxt", "ebf16", "sveebf16", "cssc", "rprfm", "sve2p1", "sme2",
    "sme2p1", "smei16i32", "smebi32i32", "smeb16b16", "smef16f16", "mops",
    "hbc", "sveb16b16", "lrcpc3", "lse128",
)))

REGISTER_VIEWS = {
    **{f"w{n}": (f"x{n}", 0xFFFF_FFFF) for n in range(31)},
    "wsp": ("sp", 0xFFFF_FFFF),
    # Zero registers read as 0 in an address computation.
    "xzr": (None, 0),
    "wzr": (None, 0),
}

# These four bits are numbered differently from asm-generic on arm64.
OPEN_FLAGS = (
    (0o20040000, "O_TMPFILE"),
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"), (0o40000, "O_DIRECTORY"),
    (0o100000, "O_NOFOLLOW"), (0o200000, "O_DIRECT"), (0o400000, "O_LARGEFILE"),
    (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"),
)

# CONFIG_CLONE_BACKWARDS: tls comes before child_tid.
CLONE_SIGNATURE = (
    ("flags", "clone_flags"), ("stack", "ptr"), ("parent_tid", "ptr"),
    ("tls", "hex"), ("child_tid", "ptr"),
)

# DWARF for the Arm 64-bit Architecture (aadwarf64), table 2: x0-x30, then sp.
DWARF_REGISTERS = {**{n: f"x{n}" for n in range(31)}, 31: "sp"}

TABLES = make_arch(
    name="aarch64",
    word_size=8,
    endianness="little",
    elf_machine=183,  # EM_AARCH64
    audit_arch=0xC00000B7,
    user_regs_fields=USER_REGS_FIELDS,
    pc_register="pc",
    sp_register="sp",
    flag_register="pstate",
    flag_bits=PSTATE_BITS,
    flag_fields=PSTATE_FIELDS,
    syscall_names={**_PTRACE_SYSCALL_NAMES, **LINUX_UNIFIED_SYSCALLS_AFTER_5_8},
    syscall_arg_registers=("x0", "x1", "x2", "x3", "x4", "x5"),
    syscall_return_register="x0",
    syscall_number_register="x8",
    syscall_instructions=frozenset({"svc #0"}),
    auxv_types=LINUX_AUXV_TYPES,
    hwcap_bits=HWCAP_BITS,
    hwcap2_bits=HWCAP2_BITS,
    # capstone 6 renamed ARM64 to AARCH64.
    capstone_arch_names=("CS_ARCH_ARM64", "CS_ARCH_AARCH64"),
    capstone_mode_name="CS_MODE_ARM",
    register_views=REGISTER_VIEWS,
    pc_relative_to_next=False,
    syscall_signatures={"clone": CLONE_SIGNATURE},
    flag_tables={"open_flags": OPEN_FLAGS},
    dwarf_registers=DWARF_REGISTERS,
    # bl leaves the return address in x30 (LR); a frame record is [x29] =
    # the caller's x29, [x29 + 8] = its x30 (AAPCS64 6.2.3).
    return_address_register=30,
    frame_pointer_register="x29",
    callee_saved_registers=frozenset(f"x{n}" for n in range(19, 30)),
    # A user address fits in 48 bits (52 only above an mmap hint there);
    # the bits above a saved x30 are a PAC signature (-mbranch-protection,
    # which qemu's default cpu signs with) or a top-byte tag.
    return_address_bits=48,
)
