"""PLT entries are named `name@plt`, as BFD's synthetic symbols name them
(objdump -d's `<puts@plt>:` labels, gdb's minimal symbols): each entry's
code, decoded with capstone, jumps through a GOT slot, and that slot's
relocation names the entry; .plt.sec (IBT's second PLT) holds the names
when present, and the lazy stubs in .plt then have none; .plt.got's
entries are named for their GLOB_DAT slots. Checked against objdump on
the zoo's fixtures and on real programs and libraries, and against gdb's
`info symbol`; names are made only for addresses in a PLT, without the
symbol index, and the GOT view's lazy stubs without capstone."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import PLT_SECTIONS, parse_elf

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO / "build" / "fixtures" / "zoo"
EXECSOLIB = REPO / "build" / "fixtures" / "execsolib"
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def _parsed(path) -> object:
    path = str(path)
    if not Path(path).is_file():
        pytest.fail(f"{path} is missing (make fixtures)", pytrace=False)
    return parse_elf(Path(path).read_bytes(), path)


def _objdump_labels(path, objdump: str = "objdump") -> dict[int, str]:
    """objdump -d's `<name@plt>:` labels in the PLT sections, by address."""
    listing = subprocess.run([objdump, "-d", *[arg for name in sorted(PLT_SECTIONS) for arg in ("-j", name)],
                              str(path)], capture_output=True, text=True, check=True).stdout
    return {int(address, 16): name for address, name in re.findall(r"^([0-9a-f]+) <(.+@plt)>:$", listing, re.M)}


def _plt_starts(info) -> dict[int, str]:
    """Every address of the PLT sections that plt_symbolize names at offset
    0, checking on the way that each named byte is named for the entry it
    is in (name, its distance from the entry's start)."""
    named: dict[int, str] = {}
    entry = None
    for start, end, _ in info._plt_ranges:
        for address in range(start, end):
            found = info.plt_symbolize(address)
            if found is None:
                entry = None
                continue
            name, offset = found
            if offset == 0:
                entry = (address, name)
                named[address] = name
            assert entry is not None and found == (entry[1], address - entry[0]), (hex(address), found, entry)
    return named


X86_64_OBJECTS = [
    ZOO / "lazy", ZOO / "lazy-ibt", ZOO / "hello-glibc", ZOO / "hello-musl", ZOO / "ifunc-tls",
    ZOO / "hello-static", ZOO / "hello-static-pie", EXECSOLIB / "glibc-O2" / "libexecsolib.so",
    "/usr/bin/python3", "/usr/bin/perl", "/usr/bin/gdb", LIBC, "/lib64/ld-linux-x86-64.so.2",
]


@pytest.mark.parametrize("path", X86_64_OBJECTS, ids=lambda p: Path(p).name)
def test_every_plt_entry_is_named_as_objdump_labels_it(path):
    info = _parsed(path)
    labels = _objdump_labels(path)
    assert _plt_starts(info) == labels
    # Static programs have IRELATIVE PLT entries but no dynamic symbols:
    # BFD names none of them, nor does gdb.
    if Path(path).name.startswith("hello-static"):
        assert not labels and info._plt_ranges
    elif Path(path).name != "ld-linux-x86-64.so.2":
        assert len(labels) >= 2


def test_the_sections_and_kinds_of_entry_are_all_there():
    """The cases the comparison above covers, so that it cannot pass by
    naming nothing: .plt.sec with unnamed lazy stubs, .plt.got for
    GLOB_DAT-called functions (8 and 16 bytes an entry), libc's IRELATIVE
    entries, python3's canonical PLT entries (a non-PIE program's)."""
    ibt = _parsed(ZOO / "lazy-ibt")
    puts = _objdump_address(ZOO / "lazy-ibt", "puts@plt")
    assert ibt.section_at(puts)[2] == ".plt.sec" and ibt.plt_symbolize(puts + 4) == ("puts@plt", 4)
    lazy_stubs = ibt.section_named(".plt")
    assert all(ibt.plt_symbolize(a) is None for a in range(lazy_stubs[0], lazy_stubs[1]))
    assert ibt.plt_symbolize(ibt.section_named(".plt.got")[0]) == ("__cxa_finalize@plt", 0)
    assert _parsed(ZOO / "lazy").plt_symbolize(_parsed(ZOO / "lazy").section_named(".plt.got")[0] + 7) == \
        ("__cxa_finalize@plt", 7)
    gdb_names = _plt_starts(_parsed("/usr/bin/gdb"))
    got_entries = [a for a in gdb_names if _parsed("/usr/bin/gdb").section_at(a)[2] == ".plt.got"]
    assert len(got_entries) >= 4 and {b - a for a, b in zip(got_entries, got_entries[1:])} == {8}
    libc = _plt_starts(_parsed(LIBC))
    assert any(name.startswith("*ABS*+0x") for name in libc.values())
    python = _parsed("/usr/bin/python3")
    canonical = python._canonical_plt_entries
    assert len(canonical) >= 10
    decoded = {entry: python._plt_entry_name(entry, 16, ".plt") for entry in canonical}
    assert decoded == {entry: f"{name}@plt" for entry, name in canonical.items()}


def _objdump_address(path, label: str) -> int:
    return next(address for address, name in _objdump_labels(path).items() if name == label)


AARCH64_OBJECTS = [ZOO / "aarch64-hello", ZOO / "aarch64-hello-musl",
                   EXECSOLIB / "aarch64-glibc-O2" / "libexecsolib.so",
                   EXECSOLIB / "aarch64-glibc-relr" / "libexecsolib.so"]


@pytest.mark.parametrize("path", AARCH64_OBJECTS, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_aarch64_plt_entries_are_named_as_its_objdump_labels_them(path):
    """adrp x16 / ldr x17, [x16, #off] / br x17 after a 32-byte PLT0, BFD's
    and lld's (aarch64-glibc-relr is linked with lld)."""
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        pytest.skip("aarch64-linux-gnu-objdump is not installed (make fixtures installs it)")
    info = _parsed(path)
    labels = _objdump_labels(path, objdump)
    assert len(labels) >= 2 and _plt_starts(info) == labels


def _gdb_info_symbol(program, addresses: list[int], gdb: str = "gdb") -> list[tuple[str, int] | None]:
    """gdb's `info symbol` on the file at each link-time address: (name,
    offset), or None for `No symbol matches`."""
    commands = [arg for address in addresses for arg in ("-ex", f"info symbol {address:#x}")]
    said = subprocess.run([gdb, "-batch", "-nx", *commands, str(program)], capture_output=True, text=True,
                          timeout=120).stdout.splitlines()
    assert len(said) == len(addresses), said
    out = []
    for line in said:
        found = re.fullmatch(r"(\S+) \+ (\d+) in section \S+( of \S+)?|(\S+) in section \S+( of \S+)?"
                             r"|No symbol matches .*", line)
        assert found, line
        out.append(None if found[0].startswith("No symbol") else
                   (found[1], int(found[2])) if found[1] else (found[4], 0))
    return out


@pytest.mark.parametrize("path", [ZOO / "lazy", ZOO / "lazy-ibt", LIBC, "/usr/bin/perl", "/usr/bin/python3",
                                  ZOO / "hello-static-pie"], ids=lambda p: Path(p).name)
def test_addresses_in_the_plt_are_named_as_gdbs_info_symbol_names_them(path):
    """Every few bytes of each PLT section (entry starts, the push of a
    lazy stub at +6, the middle of .plt.sec and .plt.got entries, PLT0)
    named as symbolize names them for a user: `puts@plt+0x6`, or the
    object and offset where gdb says No symbol matches."""
    info = _parsed(path)
    table = SymbolTable([LoadedObject(str(path), 0, info)])
    addresses = sorted({address for start, end, _ in info._plt_ranges
                        for address in list(range(start, min(end, start + 0x200), 5)) + [end - 1]})
    assert len(addresses) > 20
    for address, said in zip(addresses, _gdb_info_symbol(path, addresses)):
        name = table.symbolize(address)
        if said is None:
            assert "@plt" not in name and name.startswith(f"{Path(path).name}+"), (hex(address), name)
        else:
            assert name == (f"{said[0]}+{said[1]:#x}" if said[1] else said[0]), (hex(address), name, said)


def test_aarch64_addresses_are_named_as_gdb_multiarch_names_them():
    """PLT0 has no name, as gdb says, though the `$x` mapping symbol (which
    gdb ignores) starts there: the symbol index named it `$x+0x4`."""
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        pytest.skip("gdb-multiarch is not installed (make fixtures installs it)")
    path = ZOO / "aarch64-hello"
    info = _parsed(path)
    table = SymbolTable([LoadedObject(str(path), 0, info)])
    start, end, _ = info.section_named(".plt")
    addresses = list(range(start, end, 4))
    for address, said in zip(addresses, _gdb_info_symbol(path, addresses, gdb)):
        name = table.symbolize(address)
        assert name == (path.name + f"+{address:#x}" if said is None else
                        f"{said[0]}+{said[1]:#x}" if said[1] else said[0]), (hex(address), name, said)


def _lazy_values(info) -> list[tuple[int, str, int]]:
    """(slot, symbol, the slot's value in the file) of each JUMP_SLOT: what
    the slot holds until its first call (a link-time address)."""
    columns = info.relocation_columns
    out = []
    for offset, type_name, symbol in zip(columns.offsets, columns.type_names, columns.symbols):
        if type_name == "R_X86_64_JUMP_SLOT" and symbol:
            at = info.vaddr_to_file_offset(offset)
            out.append((offset, symbol, struct.unpack_from("<Q", info._data, at)[0]))
    return out


@pytest.mark.parametrize("path", [ZOO / "lazy", ZOO / "lazy-ibt", "/usr/bin/python3", "/usr/bin/perl",
                                  "/usr/bin/gdb", LIBC], ids=lambda p: Path(p).name)
def test_a_lazy_stub_is_named_as_symbolize_names_its_address(path):
    """lazy_stub (the GOT view's name for a lazy slot's target, from the
    slot's relocation) says what symbolize says there (from the entry's
    decoded jump): one naming of PLT entries, two ways to reach it."""
    info = _parsed(path)
    base = 0x555555554000 if info.type == "ET_DYN" else 0
    name = Path(path).name
    table = SymbolTable([LoadedObject(str(path), base, info)])
    lazy = [(slot, symbol, value) for slot, symbol, value in _lazy_values(info) if value]
    assert len(lazy) >= 4
    for _, symbol, value in lazy:
        stub = table.lazy_stub(base + value, name, symbol)
        said = table.symbolize(base + value)
        if info.section_named(".plt.sec") is not None:
            assert stub is None and "@plt" not in said
        else:
            assert stub == said == f"{symbol}@plt+0x6", (symbol, hex(value))


def test_naming_plt_addresses_joins_the_fast_pass():
    """symbolize_many names PLT entries, like symbol starts, without
    building the symbol index; addresses outside any PLT decode nothing."""
    path = "/usr/bin/gdb"
    info = _parsed(path)
    table = SymbolTable([LoadedObject(path, 0, info)])
    plt = info.section_named(".plt")
    starts = [sym.value for sym in info.dynsyms if sym.value and sym.shndx_defined][:50]
    names = table.symbolize_many(starts)
    assert all(names.values())
    assert "_plt_slot_relocations" not in info.__dict__ and "_plt_names" not in info.__dict__
    addresses = list(range(plt[0] + 16, plt[0] + 16 * 40, 6))
    names = table.symbolize_many(starts + addresses)
    assert "_address_index" not in info.__dict__
    assert all("@plt" in names[address] for address in addresses)
    assert names == {address: table.symbolize(address) for address in starts + addresses}
    # IBT's lazy stubs, which a GOT view names for its lazy slots: no name,
    # and still no index (nor capstone: the rule for .plt beside .plt.sec).
    path = str(ZOO / "lazy-ibt")
    info = _parsed(path)
    table = SymbolTable([LoadedObject(path, 0, info)])
    stubs = list(range(*info.section_named(".plt")[:2], 16))[1:]
    assert table.symbolize_many(stubs) == {stub: f"lazy-ibt+{stub:#x}" for stub in stubs}
    assert "_address_index" not in info.__dict__


GOT_VIEW_WITHOUT_CAPSTONE = """
import sys
from pathlib import Path
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import parse_elf
path = sys.argv[1]
info = parse_elf(Path(path).read_bytes(), path)
base = 0x555555554000
table = SymbolTable([LoadedObject(path, base, info)])
columns = info.relocation_columns
stubs = [table.lazy_stub(base + 0x1020 + entry * 16 + 6, Path(path).name, "x") for entry in range(1, 5)]
names = table.symbolize_many([base + info.entry] + [base + offset for offset in columns.offsets])
print(stubs[0], "capstone" in sys.modules)
"""


def test_the_got_views_names_do_not_import_capstone():
    """A lazy stub is named from its slot's relocation (the GOT view names
    thousands), and addresses outside PLTs are named as before: neither
    imports capstone (20-60 ms a command)."""
    program = ZOO / "lazy"
    plt = _parsed(program).section_named(".plt")
    assert plt[0] == 0x1020  # the entries the script names are at 0x1030 + 16 * k
    said = subprocess.run([sys.executable, "-c", GOT_VIEW_WITHOUT_CAPSTONE, str(program)],
                          capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    assert said == ["x@plt+0x6", "False"]
