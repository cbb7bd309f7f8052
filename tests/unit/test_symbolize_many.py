"""SymbolTable.symbolize_many names each address as symbolize does: over
real objects mapped back to back (page-rounded ranges that touch), every
few bytes of each and around every boundary, and addresses in no object."""

from __future__ import annotations

from pathlib import Path

from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import PAGE_SIZE, parse_elf

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LDSO = "/lib64/ld-linux-x86-64.so.2"
ZOO = Path(__file__).resolve().parents[2] / "build" / "fixtures" / "zoo"


def test_symbolize_many_is_symbolize():
    objects = []
    base = 0x7FFFF7A00000
    for path in (LIBC, LDSO, str(ZOO / "ifunc-tls")):
        info = parse_elf(Path(path).read_bytes(), path)
        objects.append(LoadedObject(path, base, info))
        top = max(seg.vaddr + seg.memsz for seg in info.load_segments())
        base += (top + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)  # the next object starts on the page after
    table = SymbolTable(objects)
    addresses = set()
    for obj in objects:
        for seg in obj.info.load_segments():
            start, end = obj.base + seg.vaddr, obj.base + seg.vaddr + seg.memsz
            addresses.update(range(start - 64, end + 64, 24))
    addresses.update((0, 1, 0x1000, base + 0x10000, (1 << 64) - 8))
    names = table.symbolize_many(addresses)
    assert names.keys() == addresses
    assert names == {addr: table.symbolize(addr) for addr in addresses}
    assert sum(name is None for name in names.values()) >= 5
    assert len({name for name in names.values() if name}) > 1000


def test_lookup_starting_at_the_first_definer_is_the_walk_of_the_whole_scope():
    from loaderdbg.analysis.symbols import match_definition

    paths = [str(ZOO / "ifunc-tls"), "/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libm.so.6",
             LIBC, LDSO, "/lib/x86_64-linux-gnu/libgcc_s.so.1"]
    objects = [LoadedObject(path, 0x10000000 * (i + 1), parse_elf(Path(path).read_bytes(), path))
               for i, path in enumerate(paths)]
    table = SymbolTable(objects, scope=objects)
    references = {(sym.name, sym.version) for obj in objects for sym in obj.info.dynsyms if sym.name}
    references |= {("no_such_symbol", None), ("memcpy", "GLIBC_2.2.5"), ("memcpy", None), ("malloc", "NOPE_1")}
    found = 0
    for name, version in sorted(references, key=str):
        for plt in (False, True):
            walked = next(((obj, sym) for obj in objects
                           if (sym := match_definition(obj, name, version, False, plt)) is not None), None)
            assert table.lookup(name, version, plt=plt) == walked, (name, version, plt)
            found += walked is not None
    assert found > 5000


def test_every_symbol_start_is_named_as_the_address_index_names_it():
    """ElfInfo.symbolize_many names symbol starts from one filtered pass
    (no address index): at every start of libc's (debug file included),
    ld.so's and python3's symbols, and a spread of other addresses, the
    same name as symbolize() through the index of another parse."""
    from loaderdbg.debug_files import find_debug_file

    def parsed(path):
        info = parse_elf(Path(path).read_bytes(), path)
        debug = find_debug_file(path, info)
        return info.with_debug_file(debug) if debug else info

    for path in (LIBC, LDSO, "/usr/bin/python3"):
        reference = parsed(path)
        starts = reference._address_index[0]
        addresses = set(starts) | set(range(min(starts), max(starts), 997)) | {0, 1}
        fast = parsed(path).symbolize_many(addresses)
        assert fast == {addr: reference.symbolize(addr) for addr in addresses}, path
        assert sum(1 for found in fast.values() if found and found[1] == 0) > 300
