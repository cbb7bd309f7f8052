"""AddressSpace.object_at finds an object without discovering them all
(analysis/objects.py object_containing): the same object discover_objects
gives, at every address, on real layouts and on the edge cases of its rules,
parsing only the files that decide it."""

from __future__ import annotations

from pathlib import Path

import pytest

from loaderdbg.analysis.address_space import AddressSpace
from loaderdbg.analysis.objects import ElfCache, discover_objects, object_containing
from loaderdbg.decode.maps import MapEntry, parse_maps

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "build" / "fixtures" / "execsolib" / "glibc-O2" / "libexecsolib.so"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LDSO = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
PAGE = 4096


def reading_cache(read: list[str] | None = None) -> ElfCache:
    def read_file(entry: MapEntry) -> bytes | None:
        if read is not None:
            read.append(entry.path)
        try:
            return Path(entry.path).read_bytes()
        except OSError:
            return None
    return ElfCache(read_file, find_debug=None)


def probes(maps) -> list[int]:
    """Every mapping's first and last byte, and the bytes just outside each."""
    out = {0, 2**64 - 1}
    for entry in maps:
        out.update((entry.start, entry.end - 1, entry.start - 1, entry.end))
    return sorted(a for a in out if a >= 0)


def grouped_in_one_pass(maps, cache: ElfCache) -> list[tuple[int, list[int]]]:
    """The module's rule stated as one pass over the maps, apart from the
    walk discover_objects and object_containing share: (base, the starts
    of its mappings) of each object. An object starts where a file's bytes
    at the mapping's offset are an ELF image that parses; a file's later
    mapping within the object's PT_LOADs (page-rounded) belongs to the
    object that file started last; an anonymous mapping right after the
    last mapping of the object started last, within its PT_LOADs, is its bss."""
    def within(obj, entry) -> bool:
        return any((obj["base"] + s.vaddr) & ~(PAGE - 1) <= entry.start
                   < (obj["base"] + s.vaddr + s.memsz + PAGE - 1) & ~(PAGE - 1)
                   for s in obj["info"].segments if s.type == "LOAD")

    found: list[dict] = []
    last_of_file: dict[tuple, dict] = {}
    for entry in maps:
        if entry.inode != 0 and entry.path.startswith("/"):
            data = cache.file_bytes(entry)
            info = cache.elf_at(entry, entry.offset) if data and data[entry.offset:entry.offset + 4] == b"\x7fELF" \
                else None
            if info is not None:
                first_load = min((s.vaddr for s in info.segments if s.type == "LOAD"), default=0)
                obj = {"info": info, "base": entry.start - (first_load & ~(PAGE - 1)), "maps": [entry]}
                found.append(obj)
                last_of_file[(entry.dev, entry.inode)] = obj
                continue
            obj = last_of_file.get((entry.dev, entry.inode))
            if obj is not None and within(obj, entry):
                obj["maps"].append(entry)
        elif entry.inode == 0 and not entry.path and found and found[-1]["maps"][-1].end == entry.start \
                and within(found[-1], entry):
            found[-1]["maps"].append(entry)
    return [(obj["base"], [m.start for m in obj["maps"]]) for obj in found]


def assert_same_everywhere(maps) -> None:
    everything = discover_objects(maps, reading_cache())
    assert [(o.base, [m.start for m in o.maps]) for o in everything] == grouped_in_one_pass(maps, reading_cache())
    cache = reading_cache()  # one session's: files read and parsed once
    for addr in probes(maps):
        expected = next((o for o in everything if o.contains(addr)), None)
        assert object_containing(maps, cache, addr) == expected, hex(addr)
        space = AddressSpace(maps, cache)
        found = space.object_at(addr)
        assert found == expected, hex(addr)
        # The list made afterwards holds the very object found first.
        assert found is None or any(o is found for o in space.objects())


def line(start: int, end: int, perms: str, offset: int, path: str = "", inode: int | None = None) -> str:
    if inode is None:
        inode = 0 if not path or path.startswith("[") else abs(hash(path)) % 10**7 + 1
    return f"{start:x}-{end:x} {perms} {offset:08x} {'fe:00' if inode else '00:00'} {inode} {path}".rstrip()


def test_this_process_maps():
    """The interpreter running the tests: its libraries, their bss, heap,
    stack, vdso, whatever the test run has mapped."""
    maps = parse_maps(Path("/proc/self/maps").read_text())
    assert len(discover_objects(maps, reading_cache())) > 3
    assert_same_everywhere(maps)


@pytest.mark.skipif(not DEMO.is_file(), reason="fixtures not built (make fixtures)")
def test_exec_solib_layout_at_entry():
    """The demo at AT_ENTRY: libc with its bss, ld.so, and the demo's file
    mapped twice, once as the .so and once as the program embedded at 0x6000."""
    demo = str(DEMO)
    text = "\n".join([
        line(0x7ffff7dc0000, 0x7ffff7dc2000, "rw-p", 0),
        line(0x7ffff7dc2000, 0x7ffff7de8000, "r--p", 0, LIBC),
        line(0x7ffff7de8000, 0x7ffff7f3e000, "r-xp", 0x26000, LIBC),
        line(0x7ffff7f3e000, 0x7ffff7f91000, "r--p", 0x17c000, LIBC),
        line(0x7ffff7f91000, 0x7ffff7f95000, "r--p", 0x1cf000, LIBC),
        line(0x7ffff7f95000, 0x7ffff7f97000, "rw-p", 0x1d3000, LIBC),
        line(0x7ffff7f97000, 0x7ffff7fa6000, "rw-p", 0),
        line(0x7ffff7faf000, 0x7ffff7fb0000, "r--p", 0, LDSO),
        line(0x7ffff7fb0000, 0x7ffff7fd6000, "r-xp", 0x1000, LDSO),
        line(0x7ffff7fd6000, 0x7ffff7fe0000, "r--p", 0x27000, LDSO),
        line(0x7ffff7fe0000, 0x7ffff7fe2000, "r--p", 0x31000, LDSO),
        line(0x7ffff7fe2000, 0x7ffff7fe4000, "rw-p", 0x33000, LDSO),
        line(0x7ffff7fe4000, 0x7ffff7fe5000, "r--p", 0x6000, demo),
        line(0x7ffff7fe5000, 0x7ffff7fe6000, "r-xp", 0x7000, demo),
        line(0x7ffff7fe6000, 0x7ffff7fe7000, "r--p", 0x8000, demo),
        line(0x7ffff7fe7000, 0x7ffff7fe8000, "r--p", 0x8000, demo),
        line(0x7ffff7fe8000, 0x7ffff7fe9000, "rw-p", 0x9000, demo),
        line(0x7ffff7fe9000, 0x7ffff7fed000, "r--p", 0, "[vvar]"),
        line(0x7ffff7fef000, 0x7ffff7ff1000, "r-xp", 0, "[vdso]"),
        line(0x7ffff7ff1000, 0x7ffff7ff3000, "r--p", 0, demo),
        line(0x7ffff7ff3000, 0x7ffff7ff6000, "r-xp", 0x2000, demo),
        line(0x7ffff7ff6000, 0x7ffff7ffd000, "r--p", 0x5000, demo),
        line(0x7ffff7ffd000, 0x7ffff7fff000, "rw-p", 0xb000, demo),
        line(0x7ffffffde000, 0x7ffffffff000, "rw-p", 0, "[stack]"),
    ])
    maps = parse_maps(text)
    names = [o.name for o in discover_objects(maps, reading_cache())]
    assert names == ["libc.so.6", "ld-linux-x86-64.so.2", "libexecsolib.so@0x6000", "libexecsolib.so"]
    assert_same_everywhere(maps)
    # Where the program and ld.so are: libc is neither read nor parsed.
    read: list[str] = []
    space = AddressSpace(maps, reading_cache(read))
    assert space.object_at(0x7ffff7fe5210).name == "libexecsolib.so@0x6000"
    assert space.object_at(0x7ffff7fb0000).name == "ld-linux-x86-64.so.2"
    assert LIBC not in read
    # The bss after libc is libc's, found from the anonymous mapping.
    assert space.object_at(0x7ffff7f97000).name == "libc.so.6"


def test_bss_with_other_files_between():
    """A bss joins the object that started last, right after that object's
    last mapping: another file's mapping in between decides, as discover_objects
    says, by whether it starts an object itself (an ELF) or not (a data file)."""
    base = 0x7f0000000000
    for between in (LDSO, "/etc/passwd"):
        text = "\n".join([
            line(base, base + 0x26000, "r--p", 0, LIBC),
            line(base + 0x26000, base + 0x17c000, "r-xp", 0x26000, LIBC),
            line(base + 0x17c000, base + 0x17d000, "r--p", 0, between),
            line(base + 0x1d3000, base + 0x1d5000, "rw-p", 0x1d3000, LIBC),
            line(base + 0x1d5000, base + 0x1e4000, "rw-p", 0),  # adjacent: a bss candidate
            line(base + 0x1e5000, base + 0x1e6000, "rw-p", 0),  # not adjacent to anything of libc's
        ])
        maps = parse_maps(text)
        assert_same_everywhere(maps)
        libc_bss = object_containing(maps, reading_cache(), base + 0x1d5000)
        assert (libc_bss is None) == (between == LDSO)


def test_what_starts_no_object():
    """A file mapped from an offset that is not an ELF header, a data file,
    an address in no mapping, [heap]: no object, as in the whole list."""
    base = 0x7f0000000000
    text = "\n".join([
        line(base, base + 0x1000, "r--p", 0x1000, LDSO),  # ld.so's second page first: no header there
        line(base + 0x1000, base + 0x2000, "r--p", 0, "/etc/passwd"),
        line(base + 0x2000, base + 0x3000, "rw-p", 0),
        line(base + 0x10000, base + 0x20000, "rw-p", 0, "[heap]"),
    ])
    maps = parse_maps(text)
    assert discover_objects(maps, reading_cache()) == ()
    assert_same_everywhere(maps)
    assert all(object_containing(maps, reading_cache(), a) is None for a in probes(maps))


def test_one_file_two_objects_interleaved():
    """One file mapped as two objects (the same library twice, as
    dlmopen maps it): each mapping belongs to the copy that started last."""
    base = 0x7f0000000000
    text = "\n".join([
        line(base, base + 0x1000, "r--p", 0, LDSO),
        line(base + 0x1000, base + 0x27000, "r-xp", 0x1000, LDSO),
        line(base + 0x100000, base + 0x101000, "r--p", 0, LDSO),
        line(base + 0x101000, base + 0x127000, "r-xp", 0x1000, LDSO),
        line(base + 0x127000, base + 0x131000, "r--p", 0x27000, LDSO),
        line(base + 0x131000, base + 0x135000, "rw-p", 0x31000, LDSO),
        line(base + 0x135000, base + 0x136000, "rw-p", 0),
    ])
    maps = parse_maps(text)
    objects = discover_objects(maps, reading_cache())
    assert [o.maps[0].start for o in objects] == [base, base + 0x100000]
    assert [len(o.maps) for o in objects] == [2, 4]  # the page after ld.so's data is beyond its bss
    assert_same_everywhere(maps)
