"""Per-architecture tables, as data.

Every decoder takes an ``ArchTables`` and looks things up in it instead of
branching on the architecture, so supporting another CPU means writing one
more module like ``x86_64.py`` (pyelftools keeps its enums the same way).

What lives here is shared by every Linux architecture: the AT_* numbering
(include/uapi/linux/auxvec.h plus the arch headers, which agree numerically)
and the syscall numbers added since the tables python-ptrace ships (Linux 5.8),
which the kernel has allocated from one unified range since 5.1.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class AuxvType:
    """One AT_* tag: its name and how to render its value.

    kind is one of: int, addr, hex, str (value points to a C string),
    random (value points to 16 bytes), hwcap, hwcap2, uid, flags, bool, size.
    """

    name: str
    kind: str


AUXV_KINDS = frozenset(
    {"int", "addr", "hex", "str", "random", "hwcap", "hwcap2", "uid", "flags", "bool", "size"}
)


def _auxv(*rows: tuple[int, str, str]) -> Mapping[int, AuxvType]:
    return MappingProxyType({number: AuxvType(name, kind) for number, name, kind in rows})


# Every AT_* value Linux defines, on any architecture. The numbers never
# collide between architectures, so one table serves all of them; an entry a
# given CPU never emits (AT_SYSINFO on x86_64, the PowerPC cache sizes) simply
# never appears in its vectors.
LINUX_AUXV_TYPES: Mapping[int, AuxvType] = _auxv(
    (0, "AT_NULL", "int"),
    (1, "AT_IGNORE", "int"),
    (2, "AT_EXECFD", "int"),
    (3, "AT_PHDR", "addr"),
    (4, "AT_PHENT", "size"),
    (5, "AT_PHNUM", "int"),
    (6, "AT_PAGESZ", "size"),
    (7, "AT_BASE", "addr"),
    (8, "AT_FLAGS", "flags"),
    (9, "AT_ENTRY", "addr"),
    (10, "AT_NOTELF", "bool"),
    (11, "AT_UID", "uid"),
    (12, "AT_EUID", "uid"),
    (13, "AT_GID", "uid"),
    (14, "AT_EGID", "uid"),
    (15, "AT_PLATFORM", "str"),
    (16, "AT_HWCAP", "hwcap"),
    (17, "AT_CLKTCK", "int"),
    (18, "AT_FPUCW", "hex"),
    (19, "AT_DCACHEBSIZE", "size"),
    (20, "AT_ICACHEBSIZE", "size"),
    (21, "AT_UCACHEBSIZE", "size"),
    (22, "AT_IGNOREPPC", "int"),
    (23, "AT_SECURE", "bool"),
    (24, "AT_BASE_PLATFORM", "str"),
    (25, "AT_RANDOM", "random"),
    (26, "AT_HWCAP2", "hwcap2"),
    (27, "AT_RSEQ_FEATURE_SIZE", "size"),
    (28, "AT_RSEQ_ALIGN", "size"),
    # HWCAP3/4 have no named bits on x86_64 or arm64 yet: show them raw.
    (29, "AT_HWCAP3", "hex"),
    (30, "AT_HWCAP4", "hex"),
    (31, "AT_EXECFN", "str"),
    (32, "AT_SYSINFO", "addr"),
    (33, "AT_SYSINFO_EHDR", "addr"),
    (34, "AT_L1I_CACHESHAPE", "hex"),
    (35, "AT_L1D_CACHESHAPE", "hex"),
    (36, "AT_L2_CACHESHAPE", "hex"),
    (37, "AT_L3_CACHESHAPE", "hex"),
    (40, "AT_L1I_CACHESIZE", "size"),
    (41, "AT_L1I_CACHEGEOMETRY", "hex"),
    (42, "AT_L1D_CACHESIZE", "size"),
    (43, "AT_L1D_CACHEGEOMETRY", "hex"),
    (44, "AT_L2_CACHESIZE", "size"),
    (45, "AT_L2_CACHEGEOMETRY", "hex"),
    (46, "AT_L3_CACHESIZE", "size"),
    (47, "AT_L3_CACHEGEOMETRY", "hex"),
    (51, "AT_MINSIGSTKSZ", "size"),
)

# Syscalls numbered 441 and up were allocated once for every architecture
# (the unified table since Linux 5.1); python-ptrace's tables stop at 5.8.
LINUX_UNIFIED_SYSCALLS_AFTER_5_8: Mapping[int, str] = MappingProxyType({
    440: "process_madvise",
    441: "epoll_pwait2",
    442: "mount_setattr",
    443: "quotactl_fd",
    444: "landlock_create_ruleset",
    445: "landlock_add_rule",
    446: "landlock_restrict_self",
    447: "memfd_secret",
    448: "process_mrelease",
    449: "futex_waitv",
    450: "set_mempolicy_home_node",
    451: "cachestat",
    452: "fchmodat2",
    453: "map_shadow_stack",
    454: "futex_wake",
    455: "futex_wait",
    456: "futex_requeue",
    457: "statmount",
    458: "listmount",
    459: "lsm_get_self_attr",
    460: "lsm_set_self_attr",
    461: "lsm_list_modules",
    462: "mseal",
    463: "setxattrat",
    464: "getxattrat",
    465: "listxattrat",
    466: "removexattrat",
    467: "open_tree_attr",
    468: "file_getattr",
    469: "file_setattr",
})

# One row of a syscall signature: (argument name, kind). Kinds are rendered
# by loaderdbg.decode.syscalls.
SyscallSignature = tuple[tuple[str, str], ...]


def _frozen(mapping: Mapping) -> Mapping:
    """A read-only copy, nested mappings included (value_tables)."""
    return MappingProxyType({
        key: _frozen(value) if isinstance(value, dict) else value
        for key, value in mapping.items()
    })


# eq=False: tables are singletons compared by identity, which also makes them
# hashable, so they can key caches (functools.cache on (code, arch)).
@dataclass(frozen=True, eq=False)
class ArchTables:
    """What the engine knows of one architecture: registers, syscalls, auxv, ABI."""

    name: str
    word_size: int
    endianness: str
    elf_machine: int
    # AUDIT_ARCH_* as reported by PTRACE_GET_SYSCALL_INFO.
    audit_arch: int
    # NT_PRSTATUS / user_regs_struct (user_pt_regs on arm64): one word each, in order.
    user_regs_fields: tuple[str, ...]
    pc_register: str
    sp_register: str
    flag_register: str
    # Single-bit flags of flag_register: bit number -> name, in gdb's order.
    flag_bits: Mapping[int, str]
    # Multi-bit fields of flag_register: name -> (shift, width). gdb hides
    # them; format_flags shows a field only when it is not zero (IOPL=3).
    flag_fields: Mapping[str, tuple[int, int]]
    syscall_names: Mapping[int, str]
    syscall_numbers: Mapping[str, int]
    syscall_arg_registers: tuple[str, ...]
    syscall_return_register: str
    syscall_number_register: str
    # Instruction texts (capstone's "mnemonic op_str") that enter the kernel.
    syscall_instructions: frozenset[str]
    auxv_types: Mapping[int, AuxvType]
    hwcap_bits: Mapping[int, str]
    hwcap2_bits: Mapping[int, str]
    # capstone's CS_ARCH_* names (the first one the installed capstone knows)
    # and CS_MODE_* name: capstone is imported by what disassembles, not by
    # every user of these tables (see capstone_arch).
    capstone_arch_names: tuple[str, ...]
    capstone_mode_name: str
    # Registers capstone may name in an address that are views of a full
    # register: name -> (full register, mask). Also zero registers (xzr).
    register_views: Mapping[str, tuple[str | None, int]] = field(default_factory=dict)
    # Whether a pc-relative address counts from the next instruction (x86
    # rip) or from the instruction itself (arm64).
    pc_relative_to_next: bool = True
    # Segment override -> register holding that segment's base (x86 fs/gs).
    segment_bases: Mapping[str, str] = field(default_factory=dict)
    # Mnemonics whose memory operand is only an address (lea, nop, prefetch):
    # capstone still marks it "read", but no memory is touched.
    address_only_mnemonics: frozenset[str] = frozenset()
    # Stack accesses capstone does not list as operands:
    # mnemonic -> (offset from sp before the instruction, size, access).
    implicit_stack_accesses: Mapping[str, tuple[int, int, str]] = field(default_factory=dict)
    # Syscall signatures that differ from the generic Linux ones
    # (argument order of clone, x86-only syscalls like arch_prctl).
    syscall_signatures: Mapping[str, SyscallSignature] = field(default_factory=dict)
    # Extra or different flag bits per argument kind: kind -> ((mask, name), ...).
    flag_tables: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)
    # Value tables per argument kind that only this arch has: kind -> {value: name}.
    value_tables: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    # The register holding the syscall number while pc is still at the
    # syscall instruction, when it differs from syscall_number_register (x86:
    # rax; orig_rax holds it only at the kernel's syscall stops).
    syscall_number_before_register: str = ""
    # Unwinding (analysis/backtrace.py): the psABI's DWARF register numbers
    # -> register names, the CFI column that holds a caller's pc (x86: 16, a
    # column of its own that a call pushes; arm64: x30, the link register),
    # the frame pointer and the registers a callee keeps for its caller.
    dwarf_registers: Mapping[int, str] = field(default_factory=dict)
    return_address_register: int = -1
    frame_pointer_register: str = ""
    callee_saved_registers: frozenset[str] = frozenset()
    # The bits of a return address that are the address; 0: all of them.
    return_address_bits: int = 0

    @property
    def syscall_number_before(self) -> str:
        return self.syscall_number_before_register or self.syscall_number_register

    @property
    def capstone_arch(self) -> int:
        import capstone  # 20-30 ms: only a disassembly pays it, not `inspect --json`

        return next(getattr(capstone, name) for name in self.capstone_arch_names if hasattr(capstone, name))

    @property
    def capstone_mode(self) -> int:
        import capstone

        return getattr(capstone, self.capstone_mode_name)

    @property
    def word_format(self) -> str:
        """struct format of one unsigned word ("<Q")."""
        order = "<" if self.endianness == "little" else ">"
        return order + {4: "I", 8: "Q"}[self.word_size]

    @property
    def word_mask(self) -> int:
        return (1 << (8 * self.word_size)) - 1

    @property
    def user_regs_size(self) -> int:
        return len(self.user_regs_fields) * self.word_size

    @functools.cached_property
    def register_indexes(self) -> Mapping[str, int]:
        """Register name -> its word's index in user_regs_fields."""
        return _frozen({name: index for index, name in enumerate(self.user_regs_fields)})

    def register_offset(self, name: str) -> int:
        """Byte offset of a register in the raw register block (NT_PRSTATUS)."""
        return self.register_indexes[name] * self.word_size


def make_arch(**fields) -> ArchTables:
    """Build an ArchTables, freezing every mapping and deriving the inverse
    syscall table, so arch modules can be written as plain dict literals."""
    frozen = {
        key: _frozen(value) if isinstance(value, dict) else value
        for key, value in fields.items()
    }
    names = frozen["syscall_names"]
    frozen.setdefault("syscall_numbers", _frozen({name: number for number, name in names.items()}))
    return ArchTables(**frozen)


# Module per arch; each defines TABLES.
_ARCH_MODULES = {
    "x86_64": "loaderdbg.arch.x86_64",
    "aarch64": "loaderdbg.arch.aarch64",
}
_ARCH_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64"}


@functools.cache
def get_arch(name: str) -> ArchTables:
    """Tables for "x86_64" or "aarch64" (also "amd64", "arm64")."""
    canonical = _ARCH_ALIASES.get(name, name)
    try:
        module_name = _ARCH_MODULES[canonical]
    except KeyError:
        raise ValueError(f"unsupported architecture {name!r}; known: {sorted(_ARCH_MODULES)}") from None
    return importlib.import_module(module_name).TABLES


def known_arches() -> tuple[str, ...]:
    return tuple(_ARCH_MODULES)


X86_64 = get_arch("x86_64")
