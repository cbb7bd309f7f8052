"""/proc/PID/maps parsing: golden lines, kinds, and this process's real maps
(including a memfd it maps itself)."""

import mmap
import os

import pytest

from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import MapEntry, find_mapping, parse_maps

GOLDEN = """\
555555554000-555555556000 r--p 00000000 fe:00 260131                     /usr/bin/true
555555556000-55555555a000 r-xp 00002000 fe:00 260131                     /usr/bin/true
55555555e000-55555557f000 rw-p 00000000 00:00 0                          [heap]
7ffff7dd2000-7ffff7dd5000 rw-p 00000000 00:00 0 
7ffff7fb0000-7ffff7fb2000 r-xp 00000000 00:01 1043                       /memfd:execsolib (deleted)
7ffff7fb2000-7ffff7fb3000 r--p 00000000 00:01 1044                       /memfd:with space (deleted)
7ffff7fb3000-7ffff7fb4000 r--p 00001000 fe:00 77                         /tmp/old lib.so (deleted)
7ffff7fb4000-7ffff7fb5000 rw-p 00000000 00:00 0                          [anon:glibc: malloc]
7ffff7fb5000-7ffff7fb6000 rw-s 00000000 00:0f 12                         anon_inode:[io_uring]
7ffff7fbd000-7ffff7fc1000 r--p 00000000 00:00 0                          [vvar]
7ffff7fc1000-7ffff7fc3000 r--p 00000000 00:00 0                          [vvar_vclock]
7ffff7fc3000-7ffff7fc5000 r-xp 00000000 00:00 0                          [vdso]
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""


def test_golden_fields():
    maps = parse_maps(GOLDEN)
    assert len(maps) == 14
    first = maps[0]
    assert first == MapEntry(0x555555554000, 0x555555556000, "r--p", 0, "fe:00", 260131, "/usr/bin/true")
    assert first.size == 0x2000 and first.readable and not first.writable and not first.executable
    assert first.is_private and not first.is_deleted
    assert maps[1].offset == 0x2000 and maps[1].executable
    assert maps[8].perms == "rw-s" and not maps[8].is_private
    assert maps[3].path == ""
    assert maps[-1].start == 0xFFFFFFFFFF600000


def test_kinds():
    kinds = [(entry.kind, entry.memfd_name) for entry in parse_maps(GOLDEN)]
    assert kinds == [
        ("file", None), ("file", None), ("heap", None), ("anon", None),
        ("memfd", "execsolib"), ("memfd", "with space"), ("deleted", None),
        ("anon", None), ("special", None), ("vvar", None), ("vvar", None),
        ("vdso", None), ("stack", None), ("vsyscall", None),
    ]
    assert parse_maps(GOLDEN)[6].path == "/tmp/old lib.so (deleted)"
    assert parse_maps(GOLDEN)[4].is_deleted


def test_format_line_round_trips_golden():
    for line, entry in zip(GOLDEN.splitlines(), parse_maps(GOLDEN)):
        assert entry.format_line() == line


def test_find_mapping():
    maps = parse_maps(GOLDEN)
    assert find_mapping(maps, 0x555555554000) is maps[0]
    assert find_mapping(maps, 0x555555555FFF) is maps[0]
    assert find_mapping(maps, 0x555555556000) is maps[1]
    assert find_mapping(maps, 0x55555555A000) is None   # gap before the heap
    assert find_mapping(maps, 0) is None
    assert find_mapping(maps, 0xFFFFFFFFFF600123) is maps[-1]
    assert find_mapping(maps, 1 << 64) is None
    assert find_mapping((), 0x1000) is None


@pytest.mark.parametrize("text,line", [
    ("555555554000-555555556000 r--p 00000000 fe:00 1 /x\nnot a maps line\n", 2),
    ("\n\n555555554000-555555556000 rwzp 00000000 fe:00 1 /x\n", 3),
    ("1000-2000 r--p 0 fe:00\n", 1),
    ("2000-1000 r--p 00000000 fe:00 0\n", 1),
    ("1000-2000 r--p 00000000 fe00 0\n", 1),
    ("x1000-2000 r--p 00000000 fe:00 0\n", 1),
])
def test_bad_lines_name_their_line(text, line):
    with pytest.raises(DecodeError, match=f"line {line}:"):
        parse_maps(text)


def test_empty():
    assert parse_maps("") == ()
    assert parse_maps("\n") == ()


def test_own_maps_with_a_memfd():
    fd = os.memfd_create("loaderdbg-test")
    try:
        os.ftruncate(fd, 4096)
        with mmap.mmap(fd, 4096, prot=mmap.PROT_READ):
            with open("/proc/self/maps") as f:
                text = f.read()
            maps = parse_maps(text)
            assert [entry.format_line() for entry in maps] == text.splitlines()
            memfds = [entry for entry in maps if entry.memfd_name == "loaderdbg-test"]
            assert len(memfds) == 1 and memfds[0].kind == "memfd" and memfds[0].size == 4096
            assert not memfds[0].is_private
    finally:
        os.close(fd)
    assert [entry.start for entry in maps] == sorted(entry.start for entry in maps)
    kinds = {entry.kind for entry in maps}
    assert {"file", "stack", "vdso"} <= kinds
    python = find_mapping(maps, id(maps))  # a heap object's address
    assert python is not None and python.readable and python.writable
