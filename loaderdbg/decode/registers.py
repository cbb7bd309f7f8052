"""General-purpose registers: user_regs_struct bytes <-> a frozen name map."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterator, Mapping

from loaderdbg.arch import ArchTables, get_arch
from loaderdbg.decode.errors import DecodeError


@dataclass(frozen=True)
class Registers:
    """Register name -> unsigned value, in the arch's user_regs order.

    ``values`` is read-only; equality and hashing go by content, so two
    snapshots with the same registers compare equal.
    """

    values: Mapping[str, int]
    arch: str = "x86_64"

    def __post_init__(self) -> None:
        if not isinstance(self.values, MappingProxyType):
            object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Registers):
            return NotImplemented
        return self.arch == other.arch and dict(self.values) == dict(other.values)

    def __hash__(self) -> int:
        return hash((self.arch, tuple(self.values.items())))

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def get(self, name: str, default: int | None = None) -> int | None:
        return self.values.get(name, default)

    def items(self):
        return self.values.items()

    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def tables(self) -> ArchTables:
        return get_arch(self.arch)

    @property
    def pc(self) -> int:
        return self.values[self.tables.pc_register]

    @property
    def sp(self) -> int:
        return self.values[self.tables.sp_register]

    @property
    def flags(self) -> tuple[str, ...]:
        """Names of the set single-bit flags, e.g. ("PF", "ZF", "IF")."""
        tables = self.tables
        return flag_names(self.values.get(tables.flag_register, 0), tables)

    def replace(self, **changes: int) -> "Registers":
        """A copy with some registers changed (for "set register" commands)."""
        unknown = set(changes) - set(self.values)
        if unknown:
            raise KeyError(f"no such register: {', '.join(sorted(unknown))}")
        return Registers({**self.values, **changes}, self.arch)


def decode_registers(raw: bytes, arch: ArchTables) -> Registers:
    """NT_PRSTATUS / user_regs_struct bytes (216 on x86_64) -> Registers."""
    expected = arch.user_regs_size
    if len(raw) != expected:
        raise DecodeError(f"{arch.name} registers are {expected} bytes, got {len(raw)}")
    count = len(arch.user_regs_fields)
    words = struct.unpack(arch.word_format[0] + arch.word_format[1] * count, raw)
    return Registers(dict(zip(arch.user_regs_fields, words)), arch.name)


def encode_registers(regs: Registers, arch: ArchTables) -> bytes:
    """Inverse of decode_registers, for SETREGSET. Every register must be
    present and fit in a word; nothing is silently truncated."""
    words = []
    for name in arch.user_regs_fields:
        if name not in regs.values:
            raise ValueError(f"register {name} missing")
        value = regs.values[name]
        if not 0 <= value <= arch.word_mask:
            raise ValueError(f"register {name} = {value:#x} does not fit in {arch.word_size} bytes")
        words.append(value)
    return struct.pack(arch.word_format[0] + arch.word_format[1] * len(words), *words)


def changed_registers(before: Registers, after: Registers) -> tuple[str, ...]:
    """Names whose value differs (or that exist on one side only), in the
    order of ``after`` then anything only ``before`` had."""
    names = list(after.values) + [name for name in before.values if name not in after.values]
    return tuple(name for name in names if before.values.get(name) != after.values.get(name))


def flag_names(value: int, arch: ArchTables) -> tuple[str, ...]:
    return tuple(name for bit, name in sorted(arch.flag_bits.items()) if value >> bit & 1)


def format_flags(value: int, arch: ArchTables) -> str:
    """gdb's rendering, "[ PF ZF IF ]". Multi-bit fields (IOPL) gdb leaves
    out; they are appended as NAME=value only when non-zero."""
    parts = list(flag_names(value, arch))
    for name, (shift, width) in arch.flag_fields.items():
        field_value = value >> shift & ((1 << width) - 1)
        if field_value:
            parts.append(f"{name}={field_value}")
    return "[ " + " ".join(parts) + (" ]" if parts else "]")
