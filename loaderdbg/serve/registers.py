"""Registers as gdb numbers them, and the target description we send
(qXfer:features:read:target.xml), per architecture.

x86-64 follows gdb's own amd64-linux description (features/i386/
64bit-core.xml, 64bit-sse.xml, 64bit-linux.xml, 64bit-segments.xml): gdb
validates a description against its i386 core feature, which must name the
x87 registers too, so they are described even though a recording holds only
the general registers (user_regs_struct). Registers we do not have are sent
as "unavailable" (x bytes), which gdb shows as <unavailable>.

aarch64 follows features/aarch64-core.xml (x0-x30, sp, pc, cpsr: the
NT_PRSTATUS block, pstate as cpsr); the FP/SIMD feature is optional for gdb
and left out, as qemu's and our targets hold no vector registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class GdbRegister:
    number: int
    name: str
    bits: int
    type: str
    group: str | None = None
    source: str | None = None  # the user_regs_struct field it comes from (None: we do not have it)

    @property
    def size(self) -> int:
        return self.bits // 8


def _core() -> list[GdbRegister]:
    out = []
    general = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
               "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
    for name in general:
        kind = "data_ptr" if name in ("rbp", "rsp") else "int64"
        out.append(GdbRegister(len(out), name, 64, kind, source=name))
    out.append(GdbRegister(len(out), "rip", 64, "code_ptr", source="rip"))
    out.append(GdbRegister(len(out), "eflags", 32, "i386_eflags", source="eflags"))
    for name in ("cs", "ss", "ds", "es", "fs", "gs"):
        out.append(GdbRegister(len(out), name, 32, "int32", source=name))
    for i in range(8):
        out.append(GdbRegister(len(out), f"st{i}", 80, "i387_ext"))
    for name in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"):
        out.append(GdbRegister(len(out), name, 32, "int", group="float"))
    return out


CORE = tuple(_core())
SSE = tuple(GdbRegister(len(CORE) + i, f"xmm{i}", 128, "vec128") for i in range(16)) + (
    GdbRegister(len(CORE) + 16, "mxcsr", 32, "i386_mxcsr", group="vector"),)
LINUX = (GdbRegister(len(CORE) + len(SSE), "orig_rax", 64, "int", source="orig_rax"),)
SEGMENTS = (GdbRegister(LINUX[0].number + 1, "fs_base", 64, "int", source="fs_base"),
            GdbRegister(LINUX[0].number + 2, "gs_base", 64, "int", source="gs_base"))

_EFLAGS_FIELDS = (("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9),
                  ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19),
                  ("VIP", 20), ("ID", 21))
_MXCSR_FIELDS = (("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5), ("DAZ", 6), ("IM", 7),
                 ("DM", 8), ("ZM", 9), ("OM", 10), ("UM", 11), ("PM", 12), ("FZ", 15))


def _reg_xml(reg: GdbRegister) -> str:
    group = f' group="{reg.group}"' if reg.group else ""
    return f'    <reg name="{reg.name}" bitsize="{reg.bits}" type="{reg.type}" regnum="{reg.number}"{group}/>\n'


def _flags_xml(name: str, size: int, fields) -> str:
    body = "".join(f'      <field name="{field}" start="{bit}" end="{bit}"/>\n' for field, bit in fields)
    return f'    <flags id="{name}" size="{size}">\n{body}    </flags>\n'


def _x86_64_xml() -> str:
    vectors = (
        '    <vector id="v8bf16" type="bfloat16" count="8"/>\n'
        '    <vector id="v4f" type="ieee_single" count="4"/>\n'
        '    <vector id="v2d" type="ieee_double" count="2"/>\n'
        '    <vector id="v16i8" type="int8" count="16"/>\n'
        '    <vector id="v8i16" type="int16" count="8"/>\n'
        '    <vector id="v4i32" type="int32" count="4"/>\n'
        '    <vector id="v2i64" type="int64" count="2"/>\n'
        '    <union id="vec128">\n'
        '      <field name="v8_bfloat16" type="v8bf16"/>\n'
        '      <field name="v4_float" type="v4f"/>\n'
        '      <field name="v2_double" type="v2d"/>\n'
        '      <field name="v16_int8" type="v16i8"/>\n'
        '      <field name="v8_int16" type="v8i16"/>\n'
        '      <field name="v4_int32" type="v4i32"/>\n'
        '      <field name="v2_int64" type="v2i64"/>\n'
        '      <field name="uint128" type="uint128"/>\n'
        '    </union>\n')
    return _target_xml("i386:x86-64", (
        ("org.gnu.gdb.i386.core", _flags_xml("i386_eflags", 4, _EFLAGS_FIELDS), CORE),
        ("org.gnu.gdb.i386.sse", vectors + _flags_xml("i386_mxcsr", 4, _MXCSR_FIELDS), SSE),
        ("org.gnu.gdb.i386.linux", "", LINUX),
        ("org.gnu.gdb.i386.segments", "", SEGMENTS)))


def _target_xml(architecture: str, features) -> str:
    """gdb's target description: each feature (name, its type definitions,
    its registers) in order."""
    body = "".join(f'  <feature name="{name}">\n' + types + "".join(_reg_xml(r) for r in registers)
                   + '  </feature>\n' for name, types, registers in features)
    return ('<?xml version="1.0"?>\n'
            '<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
            '<target version="1.0">\n'
            f'  <architecture>{architecture}</architecture>\n'
            '  <osabi>GNU/Linux</osabi>\n'
            + body + '</target>\n')


_CPSR_FIELDS = (("SP", 0), ("EL0", 2), ("nRW", 4), ("F", 6), ("I", 7), ("A", 8), ("D", 9), ("BTYPE0", 10),
                ("BTYPE1", 11), ("SSBS", 12), ("IL", 20), ("SS", 21), ("PAN", 22), ("UAO", 23), ("DIT", 24),
                ("TCO", 25), ("V", 28), ("C", 29), ("Z", 30), ("N", 31))


def _aarch64_core() -> tuple[GdbRegister, ...]:
    out = [GdbRegister(i, f"x{i}", 64, "int", source=f"x{i}") for i in range(31)]
    out.append(GdbRegister(31, "sp", 64, "data_ptr", source="sp"))
    out.append(GdbRegister(32, "pc", 64, "code_ptr", source="pc"))
    out.append(GdbRegister(33, "cpsr", 32, "cpsr_flags", source="pstate"))
    return tuple(out)


AARCH64_CORE = _aarch64_core()


def _aarch64_xml() -> str:
    return _target_xml("aarch64", (("org.gnu.gdb.aarch64.core", _flags_xml("cpsr_flags", 4, _CPSR_FIELDS),
                                    AARCH64_CORE),))


class RegisterSet:
    """One architecture's registers as gdb numbers them: the description,
    the g packet's order, and the three gdb asks for first at a stop."""

    def __init__(self, registers: tuple[GdbRegister, ...], xml: str, *, pc: str, sp: str, fp: str) -> None:
        self.registers = registers
        self.by_number = {r.number: r for r in registers}
        self.by_name = {r.name: r for r in registers}
        self.target_xml = xml.encode()
        self.pc_source = self.by_name[pc].source  # the decoded registers' name for it
        self.expedited = tuple(self.by_name[name].number for name in (fp, sp, pc))

    def encode_all(self, values: Mapping[str, int] | None) -> bytes:
        return b"".join(encode_register(r, values) for r in self.registers)


def encode_register(reg: GdbRegister, values: Mapping[str, int] | None) -> bytes:
    """One register as gdb's g/p packets carry it: little-endian hex, or
    'x' for each byte we do not have."""
    if reg.source is None or values is None or reg.source not in values:
        return b"xx" * reg.size
    value = values[reg.source] & ((1 << reg.bits) - 1)
    return value.to_bytes(reg.size, "little").hex().encode()


X86_64 = RegisterSet(CORE + SSE + LINUX + SEGMENTS, _x86_64_xml(), pc="rip", sp="rsp", fp="rbp")
AARCH64 = RegisterSet(AARCH64_CORE, _aarch64_xml(), pc="pc", sp="sp", fp="x29")
_BY_ARCH = {"x86_64": X86_64, "aarch64": AARCH64}


def register_set(arch_name: str) -> RegisterSet:
    """The set for a loaderdbg arch name (ArchTables.name)."""
    return _BY_ARCH[arch_name]
