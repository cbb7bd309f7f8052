"""The ELF auxiliary vector: (type, value) word pairs ending in AT_NULL.

The same bytes come from two places: /proc/PID/auxv (the kernel's copy, as
exec set it up) and the live vector above envp on the initial stack, which a
loader may rewrite in place. Both are parsed here; diff_auxv says what moved.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Sequence

from loaderdbg.arch import ArchTables
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.memory import MemoryReader, read_cstring
from loaderdbg.decode.syscalls import c_string_literal

AT_NULL = 0
# The kernel writes about 25 pairs (AT_VECTOR_SIZE_BASE is 22 + arch extras);
# anything past this is not an auxv.
MAX_AUXV_PAIRS = 256
AT_RANDOM_SIZE = 16
# AT_PLATFORM and AT_EXECFN are short; AT_EXECFN is at most PATH_MAX.
MAX_AUXV_STRING = 4096


@dataclass(frozen=True)
class AuxvEntry:
    """One auxiliary-vector pair (LD_SHOW_AUXV's names), its value decoded."""

    type: int
    name: str
    value: int
    decoded: str
    # Where the pair sits in tracee memory, when parsed from the stack.
    address: int | None = None


def auxv_type_name(auxv_type: int, arch: ArchTables) -> str:
    known = arch.auxv_types.get(auxv_type)
    return known.name if known else f"AT_??? ({auxv_type})"


def _decimal(value: int, arch: ArchTables, memory: MemoryReader | None) -> str:
    return str(value)


def _hex(value: int, arch: ArchTables, memory: MemoryReader | None) -> str:
    return f"{value:#x}"


def _string(value: int, arch: ArchTables, memory: MemoryReader | None) -> str:
    text = read_cstring(memory, value, MAX_AUXV_STRING) if memory is not None and value else None
    return f"{value:#x}" if text is None else f"{value:#x} {c_string_literal(text)}"


def _random(value: int, arch: ArchTables, memory: MemoryReader | None) -> str:
    data = memory.read(value, AT_RANDOM_SIZE) if memory is not None and value else None
    return f"{value:#x} [{data.hex()}]" if data and len(data) == AT_RANDOM_SIZE else f"{value:#x}"


def _bits(table_attribute: str) -> Callable[[int, ArchTables, MemoryReader | None], str]:
    def describe(value: int, arch: ArchTables, memory: MemoryReader | None) -> str:
        names = getattr(arch, table_attribute)
        set_bits = [bit for bit in range(arch.word_size * 8) if value >> bit & 1]
        words = [names.get(bit, f"bit{bit}") for bit in set_bits]
        return " ".join([f"{value:#x}", *words])
    return describe


# AuxvType.kind -> renderer(value, arch, memory).
DESCRIBERS = {
    "int": _decimal,
    "size": _decimal,
    "uid": _decimal,
    "bool": _decimal,
    "addr": _hex,
    "hex": _hex,
    "flags": _hex,
    "str": _string,
    "random": _random,
    "hwcap": _bits("hwcap_bits"),
    "hwcap2": _bits("hwcap2_bits"),
}


def describe_auxv_value(auxv_type: int, value: int, arch: ArchTables,
                        memory: MemoryReader | None = None) -> str:
    """Human text for one value: "4096", "0x7ffff7fc1000",
    '0x7fffffffefea "/usr/bin/true"', "0x178bfbff fpu vme ...". Pointed-to
    data (strings, AT_RANDOM bytes) is shown only when memory can supply it."""
    known = arch.auxv_types.get(auxv_type)
    describer = DESCRIBERS.get(known.kind, _hex) if known else _hex
    return describer(value, arch, memory)


def parse_auxv(raw: bytes, arch: ArchTables, memory: MemoryReader | None = None,
               base_address: int | None = None) -> tuple[AuxvEntry, ...]:
    """Pairs up to and including AT_NULL; bytes after it are ignored.
    base_address (where raw was read from) fills AuxvEntry.address.
    Raises DecodeError if no AT_NULL comes within MAX_AUXV_PAIRS pairs."""
    pair_size = 2 * arch.word_size
    pair_format = arch.word_format[0] + 2 * arch.word_format[1]
    entries = []
    for index in range(min(len(raw) // pair_size, MAX_AUXV_PAIRS)):
        auxv_type, value = struct.unpack_from(pair_format, raw, index * pair_size)
        entries.append(AuxvEntry(
            type=auxv_type,
            name=auxv_type_name(auxv_type, arch),
            value=value,
            decoded=describe_auxv_value(auxv_type, value, arch, memory),
            address=None if base_address is None else base_address + index * pair_size,
        ))
        if auxv_type == AT_NULL:
            return tuple(entries)
    raise DecodeError(f"auxv not terminated by AT_NULL within {len(entries)} pairs")


def diff_auxv(kernel: Sequence[AuxvEntry], current: Sequence[AuxvEntry]) -> frozenset[int]:
    """AT types whose values differ between two vectors, or that only one has
    (e.g. a loader that rewrote AT_PHDR/AT_ENTRY/AT_BASE in place)."""
    def values_by_type(entries: Sequence[AuxvEntry]) -> dict[int, tuple[int, ...]]:
        grouped: dict[int, tuple[int, ...]] = {}
        for entry in entries:
            grouped[entry.type] = grouped.get(entry.type, ()) + (entry.value,)
        return grouped

    before, after = values_by_type(kernel), values_by_type(current)
    return frozenset(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
