"""walk_r_debug on hand-built memory: glibc's r_debug_extended with two
namespaces, musl's single list, and the ways memory goes wrong mid-startup
(cycles, dangling pointers) — every walk must end, with what it found."""

from __future__ import annotations

import struct

import pytest

from loaderdbg.decode.linkmap import find_r_debug_via_dt_debug, walk_r_debug
from loaderdbg.decode.memory import MemoryImage

BASE = 0x10000
SIZE = 0x4000


class Builder:
    def __init__(self) -> None:
        self.buf = bytearray(SIZE)
        self.strings = 0x3000

    def u64(self, addr: int, value: int) -> None:
        struct.pack_into("<Q", self.buf, addr - BASE, value)

    def u32(self, addr: int, value: int) -> None:
        struct.pack_into("<I", self.buf, addr - BASE, value)

    def string(self, text: str) -> int:
        addr = BASE + self.strings
        raw = text.encode() + b"\0"
        self.buf[self.strings:self.strings + len(raw)] = raw
        self.strings += len(raw)
        return addr

    def r_debug(self, addr: int, version: int, r_map: int, state: int = 0, nxt: int = 0) -> None:
        self.u32(addr, version)
        self.u64(addr + 8, r_map)
        self.u64(addr + 16, 0x7FFFF7FD0000)  # r_brk
        self.u32(addr + 24, state)
        self.u64(addr + 32, 0x7FFFF7FC3000)  # r_ldbase
        if version >= 2:
            self.u64(addr + 40, nxt)

    def link_map(self, addr: int, name: str | None, l_addr: int, l_ld: int, nxt: int, prev: int) -> None:
        self.u64(addr, l_addr)
        self.u64(addr + 8, self.string(name) if name is not None else 0)
        self.u64(addr + 16, l_ld)
        self.u64(addr + 24, nxt)
        self.u64(addr + 32, prev)

    def image(self) -> MemoryImage:
        return MemoryImage.of((BASE, bytes(self.buf)))


R1, R2 = BASE + 0x100, BASE + 0x200
M = [BASE + 0x1000 + i * 0x100 for i in range(8)]


def two_namespaces() -> Builder:
    b = Builder()
    b.r_debug(R1, 2, M[0], state=0, nxt=R2)
    b.link_map(M[0], "", 0x555555554000, 0x555555557DC8, M[1], 0)
    b.link_map(M[1], "linux-vdso.so.1", 0x7FFFF7FC1000, 0x7FFFF7FC13E0, M[2], M[0])
    b.link_map(M[2], "/lib/x86_64-linux-gnu/libc.so.6", 0x7FFFF7D80000, 0x7FFFF7F9BB60, M[3], M[1])
    b.link_map(M[3], "/lib64/ld-linux-x86-64.so.2", 0x7FFFF7FC3000, 0x7FFFF7FFCE80, 0, M[2])
    b.r_debug(R2, 2, M[4], state=1, nxt=0)
    b.link_map(M[4], "/proc/self/fd/3", 0x7FFFF7B00000, 0x7FFFF7B03E00, M[5], 0)
    b.link_map(M[5], "/memfd:payload (deleted)", 0x7FFFF7A00000, 0x7FFFF7A03E00, 0, M[4])
    return b


def test_two_namespaces() -> None:
    debugs, entries = walk_r_debug(two_namespaces().image(), R1)
    assert [d.address for d in debugs] == [R1, R2]
    assert debugs[0].version == 2 and debugs[0].r_state == "RT_CONSISTENT" and debugs[0].next == R2
    assert debugs[1].r_state == "RT_ADD" and debugs[1].next == 0
    assert debugs[0].r_map == M[0] and debugs[0].ldbase == 0x7FFFF7FC3000
    assert [(e.namespace, e.kind) for e in entries] == [
        (0, "main"), (0, "vdso"), (0, "library"), (0, "ldso"), (1, "memfd"), (1, "memfd")]
    assert entries[2].name == "/lib/x86_64-linux-gnu/libc.so.6"
    assert entries[2].l_addr == 0x7FFFF7D80000 and entries[2].l_ld == 0x7FFFF7F9BB60
    assert entries[2].address == M[2]


def test_musl_single_list_and_ldso_hint() -> None:
    b = Builder()
    b.r_debug(R1, 1, M[0], nxt=0)
    b.u64(R1 + 40, R2)  # garbage after a version-1 r_debug must be ignored
    b.link_map(M[0], "./hello-musl", 0x555555554000, 0x555555557E00, M[1], 0)
    b.link_map(M[1], "/lib/ld-musl-x86_64.so.1", 0x7FFFF7F40000, 0x7FFFF7FF0000, M[2], M[0])
    b.link_map(M[2], "/opt/custom/loader.so", 0x7FFFF7E00000, 0x7FFFF7E10000, 0, M[1])
    debugs, entries = walk_r_debug(b.image(), R1, ldso_path="/opt/custom/loader.so")
    assert len(debugs) == 1 and debugs[0].next == 0
    assert [e.kind for e in entries] == ["main", "ldso", "ldso"]


def test_cycle_terminates() -> None:
    b = two_namespaces()
    b.link_map(M[3], "/lib64/ld-linux-x86-64.so.2", 0x7FFFF7FC3000, 0, M[1], M[2])  # back to vdso
    b.r_debug(R2, 2, M[4], nxt=R1)  # namespaces loop too
    debugs, entries = walk_r_debug(b.image(), R1)
    assert len(debugs) == 2
    assert [e.address for e in entries] == [M[0], M[1], M[2], M[3], M[4], M[5]]


def test_bad_pointer_returns_partial() -> None:
    b = two_namespaces()
    b.link_map(M[2], "/lib/x86_64-linux-gnu/libc.so.6", 0x7FFFF7D80000, 0, 0xDEAD0000, M[1])
    b.r_debug(R2, 2, M[4], nxt=0xBAD00000)
    debugs, entries = walk_r_debug(b.image(), R1)
    assert [e.address for e in entries if e.namespace == 0] == [M[0], M[1], M[2]]
    assert [d.address for d in debugs] == [R1, R2]


def test_unreadable_name_and_r_debug() -> None:
    b = Builder()
    b.r_debug(R1, 2, M[0])
    b.u64(M[0] + 8, 0xDEAD0000)  # l_name dangling
    debugs, entries = walk_r_debug(b.image(), R1)
    assert entries[0].name == "" and entries[0].kind == "main"
    assert walk_r_debug(b.image(), 0xBAD0000) == ((), ())
    assert walk_r_debug(b.image(), 0) == ((), ())


def test_not_yet_initialised() -> None:
    """Before ld.so fills it in, r_debug is zeroes: one RDebug, no entries."""
    b = Builder()
    debugs, entries = walk_r_debug(b.image(), R1)
    assert len(debugs) == 1 and debugs[0].version == 0 and entries == ()


def test_limits() -> None:
    b = Builder()
    b.r_debug(R1, 2, M[0])
    for i in range(7):
        b.link_map(M[i], f"/lib/lib{i}.so", i, i, M[i + 1], 0)
    b.link_map(M[7], "/lib/last.so", 7, 7, 0, 0)
    _, entries = walk_r_debug(b.image(), R1, max_entries=3)
    assert len(entries) == 3
    debugs, _ = walk_r_debug(two_namespaces().image(), R1, max_namespaces=1)
    assert len(debugs) == 1


def test_dt_debug() -> None:
    b = Builder()
    dyn = BASE + 0x2000
    tags = [(1, 0x10), (0x15, R1), (0x6FFFFFFB, 0x8000000), (0, 0)]
    for i, (tag, value) in enumerate(tags):
        b.u64(dyn + i * 16, tag)
        b.u64(dyn + i * 16 + 8, value)
    image = b.image()
    assert find_r_debug_via_dt_debug(image, dyn) == R1
    b.u64(dyn + 16 + 8, 0)  # DT_DEBUG still 0: ld.so has not run
    assert find_r_debug_via_dt_debug(b.image(), dyn) is None
    b.u64(dyn + 16, 0)  # no DT_DEBUG at all
    assert find_r_debug_via_dt_debug(b.image(), dyn) is None
    assert find_r_debug_via_dt_debug(image, 0xBAD0000) is None


def test_dt_debug_near_end_of_mapping() -> None:
    """The dynamic array ends a few bytes before the mapping does: the block
    read fails and single-entry reads must still find DT_DEBUG."""
    b = Builder()
    dyn = BASE + SIZE - 3 * 16
    for i, (tag, value) in enumerate([(1, 0x10), (0x15, R1), (0, 0)]):
        b.u64(dyn + i * 16, tag)
        b.u64(dyn + i * 16 + 8, value)
    assert find_r_debug_via_dt_debug(b.image(), dyn) == R1


@pytest.mark.parametrize("arch", ["aarch64"])
def test_other_lp64_arch_same_layout(arch: str) -> None:
    debugs, entries = walk_r_debug(two_namespaces().image(), R1, arch=arch)
    assert len(entries) == 6 and len(debugs) == 2
