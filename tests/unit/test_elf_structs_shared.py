"""parse_elf with pyelftools' struct definitions shared between files of one
layout (decode/elf_structs.py) decodes each file exactly as with its own:
the same ElfInfo, dynamic symbols, relocations and version names for
executables, libraries, static programs and aarch64 files met in any order,
and the same refusal of a damaged file."""

from __future__ import annotations

from pathlib import Path

import pytest

from loaderdbg.decode import elf_structs
from loaderdbg.decode.elf import parse_elf
from loaderdbg.decode.errors import DecodeError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "build" / "fixtures"
FILES = [Path(p) for p in ("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                           "/bin/true", "/usr/bin/python3")] + [
    FIXTURES / "zoo" / name for name in ("hello-static", "hello-static-pie", "hello-musl", "aarch64-hello",
                                         "libzoo-ns.so")] + [
    FIXTURES / "execsolib" / "glibc-O2" / "libexecsolib.so"]


def decoded(path: Path) -> tuple:
    info = parse_elf(path.read_bytes(), str(path))
    return (info, info.dynsyms, info.relocations, info.version_names if hasattr(info, "version_names") else None)


def test_shared_definitions_decode_as_fresh_ones():
    files = [p for p in FILES if p.is_file()]
    if len(files) < 6:
        pytest.skip("fixtures not built (make fixtures)")
    fresh = {}
    for path in files:
        elf_structs.forget_layouts()  # this file makes its own definitions
        fresh[path] = decoded(path)
    elf_structs.forget_layouts()
    for path in reversed(files):  # each one after the others made theirs
        assert decoded(path) == fresh[path], path
    assert elf_structs.layouts_made() >= 4  # x86-64 ET_DYN and ET_EXEC, aarch64…: one set per layout


def test_a_damaged_file_is_refused_alike():
    data = bytearray(Path("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").read_bytes())
    data[0x20:0x28] = (len(data) + 64).to_bytes(8, "little")  # e_phoff past the end
    messages = []
    for _ in range(2):
        elf_structs.forget_layouts()
        with pytest.raises(DecodeError) as first:
            parse_elf(bytes(data), "damaged")
        with pytest.raises(DecodeError) as again:
            parse_elf(bytes(data), "damaged")  # with the definitions kept from the first try
        messages += [str(first.value), str(again.value)]
    assert len(set(messages)) == 1 and "program headers" in messages[0]
