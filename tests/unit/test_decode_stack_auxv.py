"""The initial stack and the auxiliary vector: hand-built golden bytes, this
test process's own /proc/self/auxv and stack, and differential checks against
glibc's LD_SHOW_AUXV and gdb's `info auxv`."""

import os
import re
import shutil
import struct
import subprocess

import pytest

from loaderdbg.arch import X86_64, get_arch
from loaderdbg.decode.auxv import (
    AuxvEntry,
    auxv_type_name,
    describe_auxv_value,
    diff_auxv,
    parse_auxv,
)
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.memory import MemoryImage
from loaderdbg.decode.stack import decode_initial_stack, looks_like_initial_stack

AT = {entry.name: number for number, entry in X86_64.auxv_types.items()}

STACK_BASE = 0x7FFFFFFDE000
SP = STACK_BASE + 0x100
RANDOM_BYTES = bytes(range(0xA0, 0xB0))


def build_stack(argv=(b"prog", b"arg one"), envp=(b"HOME=/root", b"BAD=\xff\xfe"),
                argc=None, argv_terminator=0, auxv_extra=(), terminate_auxv=True):
    """A stack as exec builds it: vectors at SP, strings and AT_RANDOM above.
    Returns (memory, addresses of the strings by content)."""
    strings_at = STACK_BASE + 0x800
    blob = bytearray(0x1000)
    where = {}

    def place(data: bytes) -> int:
        nonlocal strings_at
        address = strings_at
        offset = address - STACK_BASE
        blob[offset:offset + len(data)] = data
        strings_at += len(data)
        where[data] = address
        return address

    argv_pointers = [place(s + b"\0") for s in argv]
    envp_pointers = [place(s + b"\0") for s in envp]
    random_at = place(RANDOM_BYTES)
    execfn_at = place(b"/usr/bin/prog\0")
    platform_at = place(b"x86_64\0")
    auxv = [
        (AT["AT_SYSINFO_EHDR"], 0x7FFFF7FC1000), (AT["AT_MINSIGSTKSZ"], 3376),
        (AT["AT_HWCAP"], 0x178BFBFF), (AT["AT_PAGESZ"], 4096), (AT["AT_CLKTCK"], 100),
        (AT["AT_PHDR"], 0x555555554040), (AT["AT_PHENT"], 56), (AT["AT_PHNUM"], 13),
        (AT["AT_BASE"], 0x7FFFF7FC3000), (AT["AT_FLAGS"], 0), (AT["AT_ENTRY"], 0x5555555563D0),
        (AT["AT_UID"], 1000), (AT["AT_SECURE"], 0), (AT["AT_RANDOM"], random_at),
        (AT["AT_HWCAP2"], 0x2), (AT["AT_EXECFN"], execfn_at), (AT["AT_PLATFORM"], platform_at),
        *auxv_extra,
    ]
    if terminate_auxv:
        auxv.append((0, 0))
    words = [len(argv) if argc is None else argc, *argv_pointers, argv_terminator,
             *envp_pointers, 0, *(word for pair in auxv for word in pair)]
    vector = struct.pack(f"<{len(words)}Q", *words)
    blob[SP - STACK_BASE:SP - STACK_BASE + len(vector)] = vector
    # Stack ends right after the vectors when auxv is unterminated, so the
    # decoder runs into unreadable memory.
    if not terminate_auxv:
        blob = blob[:SP - STACK_BASE + len(vector)]
        where = {}
    return MemoryImage.of((STACK_BASE, bytes(blob))), where


def test_decode_golden_stack():
    memory, where = build_stack()
    stack = decode_initial_stack(memory, SP, X86_64)
    assert stack.sp == SP and stack.argc == 2
    assert stack.argv_address == SP + 8
    assert stack.envp_address == SP + 8 * 4
    assert stack.auxv_address == SP + 8 * 7
    assert stack.end == stack.auxv_address + 18 * 16
    assert [s.text for s in stack.argv] == ["prog", "arg one"]
    assert [s.pointer_address for s in stack.argv] == [SP + 8, SP + 16]
    assert stack.argv[0].pointer == where[b"prog\0"]
    assert [s.text for s in stack.envp] == ["HOME=/root", "BAD=\\xff\\xfe"]
    assert stack.envp[1].raw == b"BAD=\xff\xfe"
    by_name = {entry.name: entry for entry in stack.auxv}
    assert stack.auxv[-1].name == "AT_NULL"
    assert by_name["AT_PAGESZ"].decoded == "4096"
    assert by_name["AT_ENTRY"].decoded == "0x5555555563d0"
    assert by_name["AT_EXECFN"].decoded == f'{where[b"/usr/bin/prog" + bytes(1)]:#x} "/usr/bin/prog"'
    assert by_name["AT_PLATFORM"].decoded.endswith('"x86_64"')
    assert by_name["AT_RANDOM"].decoded == f"{where[RANDOM_BYTES]:#x} [{RANDOM_BYTES.hex()}]"
    assert by_name["AT_HWCAP"].decoded.startswith("0x178bfbff fpu vme de pse tsc msr pae mce cx8 apic sep")
    assert by_name["AT_HWCAP2"].decoded == "0x2 fsgsbase"
    assert by_name["AT_SECURE"].decoded == "0" and by_name["AT_UID"].decoded == "1000"
    assert by_name["AT_PHDR"].address == stack.auxv_address + 5 * 16
    assert looks_like_initial_stack(memory, SP, X86_64)


def test_argc_zero():
    memory, _ = build_stack(argv=())
    stack = decode_initial_stack(memory, SP, X86_64)
    assert stack.argc == 0 and stack.argv == () and len(stack.envp) == 2
    assert looks_like_initial_stack(memory, SP, X86_64)


def test_unreadable_string_gives_none():
    memory, _ = build_stack()
    stack = decode_initial_stack(memory, SP, X86_64)
    # Re-point argv[1] at an unmapped address.
    blob = bytearray(memory.regions[0][1])
    struct.pack_into("<Q", blob, SP + 16 - STACK_BASE, 0xDEAD0000)
    broken = decode_initial_stack(MemoryImage.of((STACK_BASE, bytes(blob))), SP, X86_64)
    assert broken.argv[1].text is None and broken.argv[1].pointer == 0xDEAD0000
    assert broken.argv[0] == stack.argv[0]


def test_argv_not_null_terminated():
    memory, _ = build_stack(argv_terminator=0x1234)
    with pytest.raises(DecodeError, match="argv"):
        decode_initial_stack(memory, SP, X86_64)
    assert not looks_like_initial_stack(memory, SP, X86_64)


def test_implausible_argc():
    memory, _ = build_stack(argc=(1 << 20) + 1)
    with pytest.raises(DecodeError, match="argc"):
        decode_initial_stack(memory, SP, X86_64)
    assert not looks_like_initial_stack(memory, SP, X86_64)


def test_unreadable_sp():
    memory, _ = build_stack()
    with pytest.raises(DecodeError, match="unreadable"):
        decode_initial_stack(memory, 0x1000, X86_64)
    assert not looks_like_initial_stack(memory, 0x1000, X86_64)


def test_unterminated_auxv():
    memory, _ = build_stack(terminate_auxv=False)
    with pytest.raises(DecodeError, match="AT_NULL"):
        decode_initial_stack(memory, SP, X86_64)
    assert not looks_like_initial_stack(memory, SP, X86_64)


def test_not_a_stack_elsewhere():
    memory, _ = build_stack()
    for sp in (SP + 8, SP + 16, SP + 4, STACK_BASE, STACK_BASE + 0x800):
        assert not looks_like_initial_stack(memory, sp, X86_64), hex(sp)


# ------------------------------------------------------------------ parse_auxv

def pack_pairs(*pairs) -> bytes:
    return b"".join(struct.pack("<QQ", t, v) for t, v in pairs)


def test_parse_auxv_without_memory_shows_addresses():
    raw = pack_pairs((AT["AT_EXECFN"], 0x7FFFFFFFEFEA), (AT["AT_RANDOM"], 0x7FFFFFFFE9E9),
                     (99, 5), (0, 0)) + b"trailing garbage"
    entries = parse_auxv(raw, X86_64)
    assert [e.name for e in entries] == ["AT_EXECFN", "AT_RANDOM", "AT_??? (99)", "AT_NULL"]
    assert [e.decoded for e in entries] == ["0x7fffffffefea", "0x7fffffffe9e9", "0x5", "0"]
    assert all(e.address is None for e in entries)


def test_parse_auxv_base_address():
    entries = parse_auxv(pack_pairs((6, 4096), (0, 0)), X86_64, base_address=0x1000)
    assert [e.address for e in entries] == [0x1000, 0x1010]


@pytest.mark.parametrize("raw", [b"", pack_pairs((6, 4096)), pack_pairs((6, 4096)) + b"\0" * 15])
def test_parse_auxv_unterminated(raw):
    with pytest.raises(DecodeError):
        parse_auxv(raw, X86_64)


def test_describe_unknown_hwcap_bits():
    assert describe_auxv_value(AT["AT_HWCAP"], (1 << 10) | 1, X86_64) == "0x401 fpu bit10"
    assert describe_auxv_value(AT["AT_HWCAP2"], 0, X86_64) == "0x0"
    assert describe_auxv_value(AT["AT_HWCAP"], 0b11, get_arch("aarch64")) == "0x3 fp asimd"
    assert auxv_type_name(51, X86_64) == "AT_MINSIGSTKSZ"


def test_diff_auxv():
    kernel = parse_auxv(pack_pairs((3, 0x1000), (5, 13), (9, 0x2000), (7, 0), (33, 0x7000), (0, 0)), X86_64)
    rewritten = parse_auxv(pack_pairs((3, 0x5000), (5, 13), (9, 0x6000), (7, 0x7FF0), (0, 0)), X86_64)
    assert diff_auxv(kernel, rewritten) == frozenset({3, 9, 7, 33})
    assert diff_auxv(kernel, kernel) == frozenset()
    assert diff_auxv([], []) == frozenset()
    assert isinstance(kernel[0], AuxvEntry)


# ------------------------------------------------------- this process, for real

class SelfMemory:
    """A MemoryReader over /proc/self/mem (fine in a test, never in a decoder)."""

    def __init__(self):
        self.fd = os.open("/proc/self/mem", os.O_RDONLY)

    def read(self, addr: int, size: int) -> bytes | None:
        if addr < 0 or size < 0 or addr + size >= 1 << 63:
            return None
        try:
            data = os.pread(self.fd, size, addr)
        except OSError:
            return None
        return data if len(data) == size else None

    def close(self):
        os.close(self.fd)


@pytest.fixture
def self_memory():
    memory = SelfMemory()
    yield memory
    memory.close()


def own_auxv(memory=None):
    with open("/proc/self/auxv", "rb") as f:
        return parse_auxv(f.read(), X86_64, memory)


def ld_show_auxv() -> dict[str, str]:
    out = subprocess.run(["/bin/true"], env={**os.environ, "LD_SHOW_AUXV": "1"},
                         capture_output=True, text=True, timeout=30).stdout
    shown = {}
    for line in out.splitlines():
        match = re.match(r"(AT_\?\?\? \(0x([0-9a-f]+)\)|AT_\w+):\s+(.*)$", line)
        assert match, line
        name = X86_64.auxv_types[int(match[2], 16)].name if match[2] else match[1]
        shown[name] = match[3].strip()
    return shown


def test_proc_self_auxv_against_ld_show_auxv(self_memory):
    mine = {entry.name: entry for entry in own_auxv(self_memory)}
    glibc = ld_show_auxv()
    assert set(glibc) == set(mine) - {"AT_NULL"}
    for name in ("AT_PAGESZ", "AT_CLKTCK", "AT_PHENT", "AT_UID", "AT_EUID", "AT_GID",
                 "AT_EGID", "AT_SECURE", "AT_MINSIGSTKSZ"):
        if name in glibc:
            assert mine[name].decoded == glibc[name], name
    assert mine["AT_PAGESZ"].value == os.sysconf("SC_PAGE_SIZE")
    # glibc prints AT_HWCAP as bare hex on x86-64.
    assert mine["AT_HWCAP"].value == int(glibc["AT_HWCAP"], 16)
    assert mine["AT_HWCAP2"].value == int(glibc["AT_HWCAP2"], 16)
    assert mine["AT_PLATFORM"].decoded.endswith(f'"{glibc["AT_PLATFORM"]}"')
    assert mine["AT_FLAGS"].decoded == glibc["AT_FLAGS"]


@pytest.mark.gdb
@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb not installed")
def test_auxv_names_against_gdb():
    result = subprocess.run(["gdb", "-nx", "-batch", "-ex", "starti", "-ex", "info auxv", "/bin/true"],
                            capture_output=True, text=True, timeout=60)
    rows = re.findall(r"^(\d+)\s+(\S+)\s", result.stdout, re.M)
    if not rows:
        pytest.skip(f"gdb could not run /bin/true here: {result.stderr.strip()[:200]}")
    for number, name in rows:
        if name != "???":
            assert auxv_type_name(int(number), X86_64) == name
    mine = {entry.type for entry in own_auxv()}
    assert {int(number) for number, _ in rows} == mine


def own_initial_sp() -> int:
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[25])  # field 28, startstack


def test_own_initial_stack(self_memory):
    sp = own_initial_sp()
    assert looks_like_initial_stack(self_memory, sp, X86_64)
    stack = decode_initial_stack(self_memory, sp, X86_64)
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read().split(b"\0")[:-1]
    with open("/proc/self/environ", "rb") as f:
        environ = f.read().split(b"\0")[:-1]
    assert [s.raw for s in stack.argv] == cmdline
    assert [s.raw for s in stack.envp] == environ
    assert [(e.type, e.value) for e in stack.auxv] == [(e.type, e.value) for e in own_auxv()]
    assert diff_auxv(own_auxv(), stack.auxv) == frozenset()
    assert stack.argv[0].pointer > sp
