"""x86-64 Linux: the tables every decoder looks up.

Sources: arch/x86/include/asm/user_64.h (user_regs_struct),
arch/x86/include/uapi/asm/hwcap2.h, the Intel SDM (EFLAGS, CPUID.1:EDX,
which is what the kernel puts in AT_HWCAP), arch/x86/include/uapi/asm/prctl.h.
Syscall names come from python-ptrace.
"""

from __future__ import annotations

from loaderdbg.arch import LINUX_AUXV_TYPES, LINUX_UNIFIED_SYSCALLS_AFTER_5_8, make_arch
from loaderdbg.arch.ptrace_tables import table

_PTRACE_SYSCALL_NAMES = table("linux.x86_64").SYSCALL_NAMES

USER_REGS_FIELDS = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
    "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
    "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)

# gdb's i386_eflags type, in bit order. Bit 1 is always set and unnamed.
EFLAGS_BITS = {
    0: "CF", 2: "PF", 4: "AF", 6: "ZF", 7: "SF", 8: "TF", 9: "IF", 10: "DF",
    11: "OF", 14: "NT", 16: "RF", 17: "VM", 18: "AC", 19: "VIF", 20: "VIP", 21: "ID",
}
# IOPL is a 2-bit privilege level, not a flag; always 0 in user mode unless
# iopl(2) raised it.
EFLAGS_FIELDS = {"IOPL": (12, 2)}

# Numbers 512..547 in python-ptrace's table are the x32 ABI's (they only mean
# something with __X32_SYSCALL_BIT set); a 64-bit process calling them gets
# ENOSYS, so naming them would mislead.
_X32_ONLY = range(512, 548)
SYSCALL_NAMES = {
    **{number: name for number, name in _PTRACE_SYSCALL_NAMES.items() if number not in _X32_ONLY},
    335: "uretprobe",  # x86-64 only, Linux 6.11
    **LINUX_UNIFIED_SYSCALLS_AFTER_5_8,
}

# CPUID(1).EDX, names as in /proc/cpuinfo. Bits 10 and 20 are reserved.
HWCAP_BITS = {
    0: "fpu", 1: "vme", 2: "de", 3: "pse", 4: "tsc", 5: "msr", 6: "pae", 7: "mce",
    8: "cx8", 9: "apic", 11: "sep", 12: "mtrr", 13: "pge", 14: "mca", 15: "cmov",
    16: "pat", 17: "pse36", 18: "pn", 19: "clflush", 21: "dts", 22: "acpi",
    23: "mmx", 24: "fxsr", 25: "sse", 26: "sse2", 27: "ss", 28: "ht", 29: "tm",
    30: "ia64", 31: "pbe",
}
HWCAP2_BITS = {0: "ring3mwait", 1: "fsgsbase"}

# Address-size-override forms capstone may print as a base or index.
REGISTER_VIEWS = {
    **{f"e{r}": (f"r{r}", 0xFFFF_FFFF) for r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip")},
    **{f"r{n}d": (f"r{n}", 0xFFFF_FFFF) for n in range(8, 16)},
}

ADDRESS_ONLY_MNEMONICS = frozenset({
    "lea", "nop", "prefetch", "prefetchw", "prefetchwt1", "prefetcht0",
    "prefetcht1", "prefetcht2", "prefetchnta", "endbr64",
})

# (offset from rsp before the instruction, size, access). `leave`, `enter`
# and the xsave family need rules of their own and are not covered yet.
IMPLICIT_STACK_ACCESSES = {
    "push": (-8, 8, "write"),
    "pushfq": (-8, 8, "write"),
    "call": (-8, 8, "write"),
    "pop": (0, 8, "read"),
    "popfq": (0, 8, "read"),
    "ret": (0, 8, "read"),
}

ARCH_PRCTL_CODES = {
    0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS",
    0x1004: "ARCH_GET_GS", 0x1011: "ARCH_GET_CPUID", 0x1012: "ARCH_SET_CPUID",
    0x1021: "ARCH_GET_XCOMP_SUPP", 0x1022: "ARCH_GET_XCOMP_PERM",
    0x1023: "ARCH_REQ_XCOMP_PERM", 0x1024: "ARCH_GET_XCOMP_GUEST_PERM",
    0x1025: "ARCH_REQ_XCOMP_GUEST_PERM", 0x1026: "ARCH_XCOMP_TILECFG",
    0x2001: "ARCH_MAP_VDSO_X32", 0x2002: "ARCH_MAP_VDSO_32", 0x2003: "ARCH_MAP_VDSO_64",
    # glibc 2.28..2.38 probed CET with these pre-upstream codes.
    0x3001: "ARCH_CET_STATUS", 0x3002: "ARCH_CET_DISABLE", 0x3003: "ARCH_CET_LOCK",
    0x4001: "ARCH_GET_UNTAG_MASK", 0x4002: "ARCH_ENABLE_TAGGED_ADDR",
    0x4003: "ARCH_GET_MAX_TAG_BITS", 0x4004: "ARCH_FORCE_TAGGED_SVA",
    0x5001: "ARCH_SHSTK_ENABLE", 0x5002: "ARCH_SHSTK_DISABLE", 0x5003: "ARCH_SHSTK_LOCK",
    0x5004: "ARCH_SHSTK_UNLOCK", 0x5005: "ARCH_SHSTK_STATUS",
}

# include/uapi/asm-generic/fcntl.h, whose values x86-64 uses. Multi-bit
# flags come first (O_TMPFILE includes O_DIRECTORY's bit, O_SYNC O_DSYNC's);
# the access mode (O_RDONLY/O_WRONLY/O_RDWR) is a 2-bit field the decoder
# handles itself. Written out rather than taken from python-ptrace's
# posix_arg, which predates Linux 2.6.33 (where 0o10000 became O_DSYNC) and
# whose import pulls in python-ptrace's whole package (logging, datetime,
# ctypes): ~6 ms of every `loaderdbg inspect` (issue 19).
OPEN_FLAGS = (
    (0o20200000, "O_TMPFILE"), (0o4010000, "O_SYNC"),
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"), (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"), (0o100000, "O_LARGEFILE"), (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"), (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
)

# psABI figure 3.36; 16 is the return address, a column of no register.
DWARF_REGISTERS = {0: "rax", 1: "rdx", 2: "rcx", 3: "rbx", 4: "rsi", 5: "rdi", 6: "rbp", 7: "rsp",
                   **{n: f"r{n}" for n in range(8, 16)}}

TABLES = make_arch(
    name="x86_64",
    word_size=8,
    endianness="little",
    elf_machine=62,  # EM_X86_64
    audit_arch=0xC000003E,
    user_regs_fields=USER_REGS_FIELDS,
    pc_register="rip",
    sp_register="rsp",
    flag_register="eflags",
    flag_bits=EFLAGS_BITS,
    flag_fields=EFLAGS_FIELDS,
    syscall_names=SYSCALL_NAMES,
    syscall_arg_registers=("rdi", "rsi", "rdx", "r10", "r8", "r9"),
    syscall_return_register="rax",
    syscall_number_register="orig_rax",
    syscall_number_before_register="rax",
    # int 0x80 from a 64-bit process still enters the 32-bit syscall table.
    syscall_instructions=frozenset({"syscall", "sysenter", "int 0x80"}),
    auxv_types=LINUX_AUXV_TYPES,
    hwcap_bits=HWCAP_BITS,
    hwcap2_bits=HWCAP2_BITS,
    capstone_arch_names=("CS_ARCH_X86",),
    capstone_mode_name="CS_MODE_64",
    register_views=REGISTER_VIEWS,
    segment_bases={"fs": "fs_base", "gs": "gs_base"},
    address_only_mnemonics=ADDRESS_ONLY_MNEMONICS,
    implicit_stack_accesses=IMPLICIT_STACK_ACCESSES,
    syscall_signatures={
        "arch_prctl": (("code", "arch_prctl_code"), ("addr", "hex")),
    },
    flag_tables={
        "mmap_flags": ((0x40, "MAP_32BIT"),),
        "open_flags": OPEN_FLAGS,
    },
    value_tables={"arch_prctl_code": ARCH_PRCTL_CODES},
    dwarf_registers=DWARF_REGISTERS,
    return_address_register=16,
    frame_pointer_register="rbp",
    callee_saved_registers=frozenset({"rbx", "rbp", "r12", "r13", "r14", "r15"}),
)
