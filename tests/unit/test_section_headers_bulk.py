"""The section headers decoded in bulk (decode/elf.py) name the sections as
pyelftools does and find the same .gnu_debuglink; dwarf_info opens the
same DWARF as pyelftools' get_dwarf_info without walking the sections per
DWARF section. Over real system files, stripped and with debug links."""

from __future__ import annotations

import glob
import io
import os

from elftools.elf.elffile import ELFFile

from loaderdbg.decode.dwarf_lines import dwarf_info
from loaderdbg.decode.elf import _section_headers, parse_debuglink, parse_elf

FILES = [p for p in ("/usr/bin/gdb", "/usr/bin/python3", "/bin/true", "/lib/x86_64-linux-gnu/libc.so.6",
                     "/lib64/ld-linux-x86-64.so.2", *sorted(glob.glob("/usr/lib/debug/.build-id/*/*.debug"))[:3])
         if os.path.isfile(p)]


def test_names_and_debuglink_as_pyelftools():
    assert len(FILES) >= 3
    linked = 0
    for path in FILES:
        data = open(path, "rb").read()
        elffile = ELFFile(io.BytesIO(data))
        rows = _section_headers(elffile, data)
        assert [r.name for r in rows] == [s.name for s in elffile.iter_sections()], path
        section = elffile.get_section_by_name(".gnu_debuglink")
        expected = (None if section is None or section["sh_type"] == "SHT_NOBITS"
                    else parse_debuglink(section.data(), elffile.little_endian))
        assert parse_elf(data, path).debuglink == expected, path
        linked += expected is not None
    assert linked  # Debian's binaries carry debug links


def test_dwarf_info_reads_the_same_units():
    debug_files = [p for p in FILES if p.endswith(".debug")]
    for path in debug_files:
        data = open(path, "rb").read()
        ours = [cu.cu_offset for cu in dwarf_info(ELFFile(io.BytesIO(data))).iter_CUs()]
        theirs = [cu.cu_offset for cu in ELFFile(io.BytesIO(data)).get_dwarf_info().iter_CUs()]
        assert ours == theirs, path


def test_symtab_and_build_id_as_through_every_section():
    from loaderdbg.decode.elf import _section_build_id, _symtab_symbols

    for path in FILES:
        data = open(path, "rb").read()
        with open(path, "rb") as stream:  # not in memory: pyelftools' iter_sections
            walked = ELFFile(stream)
            expected = (_symtab_symbols(walked), _section_build_id(walked))
        in_memory = ELFFile(io.BytesIO(data))
        assert (_symtab_symbols(in_memory), _section_build_id(in_memory)) == expected, path


def test_gnu_hash_symbol_count_as_pyelftools():
    from elftools.elf.hash import GNUHashTable

    from loaderdbg.decode.elf import _gnu_hash_symbol_count

    checked = 0
    for path in FILES + sorted(glob.glob("/usr/lib/x86_64-linux-gnu/lib*.so.*"))[:40]:
        data = open(path, "rb").read()
        elffile = ELFFile(io.BytesIO(data))
        section = elffile.get_section_by_name(".gnu.hash")
        if section is None or section["sh_type"] == "SHT_NOBITS":  # a debug file's
            continue
        table = GNUHashTable(elffile, section["sh_offset"], None)
        expected = (table.get_number_of_symbols(), max(table.params["buckets"]), table.params["symoffset"])
        assert _gnu_hash_symbol_count(data, section["sh_offset"], elffile) == expected, path
        checked += 1
    assert checked >= 10
