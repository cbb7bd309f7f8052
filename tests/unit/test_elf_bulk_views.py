"""ElfInfo's views read without a second pyelftools pass answer as the
pyelftools walks they replace: allocated sections from the section header
table decoded in bulk (no ELFFile), version names from the parse's own
dynamic view (no second parse). Over real system files and fixtures."""

from __future__ import annotations

import glob
import io
import os

from elftools.elf.elffile import ELFFile

from loaderdbg.decode.elf import _version_names_of, parse_elf

FILES = [p for p in ("/usr/bin/gdb", "/usr/bin/python3", "/bin/true", "/lib/x86_64-linux-gnu/libc.so.6",
                     "/lib64/ld-linux-x86-64.so.2", "/usr/bin/perl",
                     *sorted(glob.glob("build/fixtures/zoo/*")))
         if os.path.isfile(p)]


def _sections_by_pyelftools(data: bytes) -> tuple:
    out = []
    for section in ELFFile(io.BytesIO(data)).iter_sections():
        header = section.header
        if not header["sh_flags"] & 0x2 or not header["sh_addr"] or not header["sh_size"]:
            continue
        if header["sh_flags"] & 0x400 and header["sh_type"] == "SHT_NOBITS":
            continue
        out.append((header["sh_addr"], header["sh_addr"] + header["sh_size"], section.name))
    return tuple(sorted(out))


def test_sections_as_pyelftools_walks_them():
    assert len(FILES) >= 5
    for path in FILES:
        data = open(path, "rb").read()
        info = parse_elf(data, path)
        assert info.sections_in_range(0, 1 << 64) == tuple(n for _, _, n in _sections_by_pyelftools(data)), path
        assert info.section_name_for_vaddr(info.entry) in (".text", None), path


def test_a_section_table_past_the_end_names_nothing():
    data = open("/bin/true", "rb").read()
    info = parse_elf(data, "/bin/true")
    assert info.section_name_for_vaddr(info.entry) == ".text"
    # Cut the file where the section header table starts: pyelftools'
    # reading (the fallback) finds no sections, and nothing raises.
    table = int.from_bytes(data[40:48], "little")
    cut = parse_elf(data[:table], "/bin/true")
    assert cut.section_name_for_vaddr(cut.entry) is None


def test_version_names_from_the_parse_equal_a_second_parse():
    versioned = 0
    for path in FILES:
        data = open(path, "rb").read()
        names = parse_elf(data, path).version_names
        assert names == _version_names_of(data, path), path
        versioned += bool(names and (names.needs or names.definitions))
    assert versioned >= 3


def test_address_index_from_symtab_rows_equals_the_one_from_symbols():
    from loaderdbg.debug_files import find_debug_file
    from loaderdbg.decode.elf import DebugFile, _index_entries

    checked = 0
    for path in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2", *FILES):
        data = open(path, "rb").read()
        info = parse_elf(data, path)
        debug = find_debug_file(path, info)
        with_debug = info.with_debug_file(debug) if debug is not None else info
        # Rows first (no DynSymbols made), then the same file with its
        # .symtab decoded first: the same index, the same names.
        rows_first = parse_elf(data, path)
        rows_first = rows_first.with_debug_file(DebugFile(debug.path, debug.data)) if debug is not None else rows_first
        symbols_first = parse_elf(data, path)
        symbols_first = symbols_first.with_debug_file(debug) if debug is not None else symbols_first
        assert symbols_first._symtab is not None
        assert rows_first._address_index == symbols_first._address_index, path
        if debug is not None:
            count, entries = DebugFile(debug.path, debug.data).index_entries()
            assert count == len(debug.symbols) and sorted(entries) == sorted(_index_entries(debug.symbols, 0))
            checked += 1
        for vaddr in range(with_debug.entry, with_debug.entry + 4096, 16):
            assert rows_first.symbolize(vaddr) == symbols_first.symbolize(vaddr), (path, vaddr)
    assert checked >= 1  # libc6-dbg's libc and ld.so


def test_symbol_byte_names_from_the_enums_are_pyelftools_parses():
    import struct

    from elftools.elf.structs import ELFStructs

    from loaderdbg.decode.elf import _dynsymbol, _symbol_byte_names

    for elfclass in (32, 64):
        for little_endian in (True, False):
            structs = ELFStructs(little_endian=little_endian, elfclass=elfclass)
            structs.create_basic_structs()
            structs.create_advanced_structs()
            order = "<" if little_endian else ">"
            parsed = []
            for byte in range(256):
                raw = (struct.pack(order + "IBBHQQ", 0, byte, byte, 0, 0, 0) if elfclass == 64 else
                       struct.pack(order + "IIIBBH", 0, 0, 0, byte, byte, 0))
                symbol = _dynsymbol(structs.Elf_Sym.parse(raw), "", None, False)
                parsed.append((symbol.type, symbol.bind, symbol.visibility))
            assert _symbol_byte_names(elfclass, little_endian) == parsed, (elfclass, little_endian)


def _versions_by_pyelftools(dynamic):
    from loaderdbg.decode.elf import (_VER_FLG_BASE, GNUVerDefSection, GNUVerNeedSection, VersionDefinition,
                                      VersionNames, VersionNeed)

    definitions = tuple(
        VersionDefinition(verdef["vd_ndx"], aux[0].name, bool(verdef["vd_flags"] & _VER_FLG_BASE),
                          tuple(a.name for a in aux[1:]))
        for verdef, aux in dynamic._version_table(GNUVerDefSection, "DT_VERDEF", "DT_VERDEFNUM", "vd") if aux)
    needs = tuple(VersionNeed(verneed.name, tuple(a.name for a in aux))
                  for verneed, aux in dynamic._version_table(GNUVerNeedSection, "DT_VERNEED", "DT_VERNEEDNUM", "vn"))
    return VersionNames(needs, definitions)


def test_version_tables_unpacked_with_struct_are_pyelftools_reading():
    import pytest

    for path in FILES:
        info = parse_elf(open(path, "rb").read(), path)
        dynamic = info._tables.dynamic
        if dynamic is not None:
            assert dynamic.version_lists() == _versions_by_pyelftools(dynamic), path
    # A verneed entry claiming no auxiliary entries: both readers refuse
    # it; an auxiliary entry whose name lies outside DT_STRTAB likewise;
    # a next past the end of the file that is never followed (the last
    # entry's): both read the same.
    from loaderdbg.decode.elf import _Dynamic, _Parser

    data = open("/lib/x86_64-linux-gnu/libc.so.6", "rb").read()
    info = parse_elf(data, "libc")
    segment = next(s for s in info.segments if s.type == "DYNAMIC")
    verneed = info._tables.dynamic.table_offset("DT_VERNEED")
    vernaux = verneed + int.from_bytes(data[verneed + 8:verneed + 12], "little")
    for at, value, refused in ((verneed + 2, b"\0\0", True),               # vn_cnt
                               (vernaux + 8, b"\xff\xff\xff\x7f", True),   # vna_name
                               (verneed + 12, b"\xff\xff\xff\x7f", False)):  # vn_next
        broken = bytearray(data)
        broken[at:at + len(value)] = value
        dynamic = _Dynamic(_Parser(bytes(broken), "libc"), segment)
        if refused:
            with pytest.raises(Exception):
                _versions_by_pyelftools(dynamic)
            with pytest.raises(Exception):
                dynamic.version_lists()
        else:
            assert dynamic.version_lists() == _versions_by_pyelftools(dynamic)
