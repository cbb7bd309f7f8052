"""Random and mutated input to every decoder: the only exception allowed out
is DecodeError, and nothing may hang (pytest-timeout guards each test)."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loaderdbg.arch import X86_64, get_arch, known_arches
from loaderdbg.decode.auxv import describe_auxv_value, diff_auxv, parse_auxv
from loaderdbg.decode.disasm import disassemble, disassemble_one, is_call_at, memory_operands
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import find_mapping, parse_maps
from loaderdbg.decode.memory import MemoryImage
from loaderdbg.decode.registers import (
    Registers,
    changed_registers,
    decode_registers,
    encode_registers,
    format_flags,
)
from loaderdbg.decode.siginfo import decode_siginfo, describe_siginfo
from loaderdbg.decode.stack import decode_initial_stack, looks_like_initial_stack
from loaderdbg.decode.syscalls import decode_syscall, syscall_string_args

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(60)

ARCHES = st.sampled_from([get_arch(name) for name in known_arches()])
WORDS = st.integers(min_value=0, max_value=(1 << 64) - 1)
ANY_INT = st.one_of(WORDS, st.integers(min_value=-(1 << 63), max_value=-1))


def rejects_only_with_decode_error(decoder, *args, **kwargs):
    try:
        return decoder(*args, **kwargs)
    except DecodeError:
        return None


# ----------------------------------------------------------------- registers

@FUZZ
@given(arch=ARCHES, raw=st.binary(max_size=300))
def test_registers_random(arch, raw):
    regs = rejects_only_with_decode_error(decode_registers, raw, arch)
    if regs is not None:
        assert encode_registers(regs, arch) == raw
        format_flags(regs[arch.flag_register], arch)
        assert regs.flags == regs.flags
        changed_registers(regs, regs.replace(**{arch.pc_register: 0}))


@FUZZ
@given(arch=ARCHES, data=st.data())
def test_registers_exact_size_always_decode(arch, data):
    raw = data.draw(st.binary(min_size=arch.user_regs_size, max_size=arch.user_regs_size))
    assert encode_registers(decode_registers(raw, arch), arch) == raw


# ------------------------------------------------------------------- siginfo

@FUZZ
@given(arch=ARCHES, raw=st.binary(max_size=140))
def test_siginfo_random(arch, raw):
    si = rejects_only_with_decode_error(decode_siginfo, raw, arch)
    if si is not None:
        assert describe_siginfo(si).startswith(si.signame)


@FUZZ
@given(signo=st.integers(-(1 << 31), (1 << 31) - 1), code=st.integers(-(1 << 31), (1 << 31) - 1),
       errno=st.integers(-(1 << 31), (1 << 31) - 1), rest=st.binary(min_size=116, max_size=116))
def test_siginfo_any_header(signo, code, errno, rest):
    raw = struct.pack("<iii", signo, errno, code) + rest
    describe_siginfo(decode_siginfo(raw, X86_64))


# ---------------------------------------------------------------------- auxv

@st.composite
def memory_images(draw):
    base = draw(st.sampled_from([0, 0x1000, 0x7FFFFFFDE000, (1 << 64) - 0x1000]))
    return MemoryImage.of((base, draw(st.binary(max_size=2048))))


@FUZZ
@given(arch=ARCHES, raw=st.binary(max_size=600), memory=st.one_of(st.none(), memory_images()))
def test_auxv_random(arch, raw, memory):
    entries = rejects_only_with_decode_error(parse_auxv, raw, arch, memory)
    if entries is not None:
        assert entries[-1].type == 0
        diff_auxv(entries, entries[:1])


@FUZZ
@given(arch=ARCHES, pairs=st.lists(st.tuples(st.integers(0, 60), WORDS), max_size=30),
       memory=memory_images())
def test_auxv_plausible_types_with_memory(arch, pairs, memory):
    raw = b"".join(struct.pack("<QQ", t, v) for t, v in pairs) + bytes(16)
    entries = parse_auxv(raw, arch, memory)
    for entry in entries:
        assert entry.decoded == describe_auxv_value(entry.type, entry.value, arch, memory)
        entry.decoded.encode("utf-8")


# --------------------------------------------------------------------- stack

STACK_BASE = 0x7FFFFFFDE000


@st.composite
def mutated_stacks(draw):
    """A well-formed initial stack, then a few bytes overwritten."""
    argv = draw(st.lists(st.binary(max_size=20).map(lambda s: s.replace(b"\0", b"")), max_size=5))
    envp = draw(st.lists(st.binary(max_size=20).map(lambda s: s.replace(b"\0", b"")), max_size=5))
    blob = bytearray(0x1000)
    strings_at = 0x800
    pointers = []
    for text in argv + envp:
        blob[strings_at:strings_at + len(text) + 1] = text + b"\0"
        pointers.append(STACK_BASE + strings_at)
        strings_at += len(text) + 1
    auxv = [(6, 4096), (25, STACK_BASE + 0x800), (31, STACK_BASE + 0x800), (16, 0x178BFBFF), (0, 0)]
    words = [len(argv), *pointers[:len(argv)], 0, *pointers[len(argv):], 0,
             *(w for pair in auxv for w in pair)]
    vector = struct.pack(f"<{len(words)}Q", *words)
    blob[0x100:0x100 + len(vector)] = vector
    for _ in range(draw(st.integers(0, 6))):
        offset = draw(st.integers(0x100, 0x100 + len(vector) - 1))
        blob[offset] = draw(st.integers(0, 255))
    cut = draw(st.sampled_from([len(blob), 0x100 + len(vector), 0x100 + len(vector) // 2]))
    return MemoryImage.of((STACK_BASE, bytes(blob[:cut])))


@FUZZ
@given(memory=mutated_stacks(), arch=ARCHES)
def test_mutated_stack(memory, arch):
    sp = STACK_BASE + 0x100
    looks = looks_like_initial_stack(memory, sp, arch)
    stack = rejects_only_with_decode_error(decode_initial_stack, memory, sp, arch)
    if looks:
        assert stack is not None
    if stack is not None:
        assert stack.argc == len(stack.argv) and stack.end > stack.auxv_address


@FUZZ
@given(memory=memory_images(), offset=st.integers(-64, 2100), arch=ARCHES)
def test_random_stack(memory, offset, arch):
    base = memory.regions[0][0]
    sp = max(0, base + offset)
    looks_like_initial_stack(memory, sp, arch)
    rejects_only_with_decode_error(decode_initial_stack, memory, sp, arch)


# ---------------------------------------------------------------------- maps

GOOD_LINE = "7ffff7fb0000-7ffff7fb2000 r-xp 00000000 00:01 1043                       /memfd:execsolib (deleted)"


@FUZZ
@given(text=st.text(max_size=300))
def test_maps_random_text(text):
    maps = rejects_only_with_decode_error(parse_maps, text)
    if maps is not None:
        for entry in maps:
            assert entry.kind and entry.size >= 0
            assert find_mapping(sorted(maps, key=lambda e: e.start), entry.start) is not None or entry.size == 0


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(GOOD_LINE) - 1), st.characters()), max_size=4),
       address=WORDS)
def test_maps_mutated_line(edits, address):
    line = list(GOOD_LINE)
    for position, char in edits:
        line[position] = char
    maps = rejects_only_with_decode_error(parse_maps, "".join(line) + "\n" + GOOD_LINE)
    if maps is not None:
        find_mapping(maps[:1], address)
        for entry in maps:
            (entry.kind, entry.memfd_name, entry.is_deleted, entry.format_line())


# ------------------------------------------------------------------ syscalls

@FUZZ
@given(arch=ARCHES, number=st.one_of(st.integers(-5, 600), ANY_INT),
       args=st.lists(ANY_INT, max_size=7), result=st.one_of(st.none(), ANY_INT),
       strings=st.dictionaries(WORDS, st.binary(max_size=40), max_size=3))
def test_syscall_random(arch, number, args, result, strings):
    addresses = rejects_only_with_decode_error(syscall_string_args, number, args, arch)
    call = rejects_only_with_decode_error(decode_syscall, number, args, result, arch, strings)
    if call is not None:
        assert addresses is not None
        text = call.format()
        assert text.startswith(call.name + "(")
        text.encode("ascii")


@FUZZ
@given(name=st.sampled_from(sorted(X86_64.syscall_numbers)), args=st.lists(WORDS, min_size=6, max_size=6),
       result=st.one_of(st.none(), st.integers(-4095, 1 << 48)))
def test_every_known_syscall_decodes(name, args, result):
    number = X86_64.syscall_numbers[name]
    strings = {address: b"/x" for address in syscall_string_args(number, args, X86_64)}
    assert decode_syscall(number, args, result, X86_64, strings).name == name


# -------------------------------------------------------------------- disasm

@FUZZ
@given(arch=ARCHES, code=st.binary(max_size=64), address=WORDS,
       count=st.one_of(st.none(), st.integers(-1, 20)), register_values=st.lists(WORDS, min_size=40, max_size=40))
def test_disassemble_random(arch, code, address, count, register_values):
    listing = disassemble(code, address, arch, count, symbolize=lambda a: f"s+{a & 0xff}")
    assert sum(insn.size for insn in listing) <= len(code)
    regs = Registers(dict(zip(arch.user_regs_fields, register_values)), arch.name)
    for insn in listing:
        for operand in memory_operands(insn, regs, include_address_only=True):
            assert operand.address is None or 0 <= operand.address < 1 << 64
        (insn.text, insn.is_call, insn.is_jump, insn.is_ret, insn.is_syscall)
    disassemble_one(code, address, arch)
    is_call_at(code, address, arch)
