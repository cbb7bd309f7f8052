"""parse_elf unpacks relocation and symbol tables in bulk (issue 19): every
entry is what pyelftools' own per-entry parse of the same table says, on
gdb's 59 objects, the fixtures, separate debug files and a 32-bit library."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from loaderdbg.decode.elf import DebugFile, parse_elf

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "build" / "fixtures"


def gdb_objects() -> list[str]:
    if not os.access("/usr/bin/gdb", os.X_OK):
        return []
    listing = subprocess.run(["ldd", "/usr/bin/gdb"], capture_output=True, text=True).stdout
    paths = [part for line in listing.splitlines() for part in line.split() if part.startswith("/")]
    return ["/usr/bin/gdb", *sorted(set(paths))]


def debug_files(limit: int = 6) -> list[str]:
    root = Path("/usr/lib/debug/.build-id")
    return sorted(str(p) for p in root.glob("*/*.debug"))[:limit] if root.is_dir() else []


def objects() -> list[str]:
    found = [*gdb_objects(), *debug_files(), "/usr/bin/python3", "/usr/bin/perl",
             *(str(p) for p in sorted((FIX / "execsolib").glob("*/libexecsolib.so"))),
             *(str(p) for p in sorted((FIX / "zoo").glob("*")) if p.is_file())]
    return [p for p in found if os.path.isfile(p)]


def pyelftools_relocations(elffile: ELFFile) -> list[tuple]:
    """(offset, type, symbol index, addend) of the allocated relocation
    sections, which are the dynamic tables in a linked object."""
    rows = []
    for section in elffile.iter_sections():
        if isinstance(section, RelocationSection) and section["sh_flags"] & 0x2:
            for reloc in section.iter_relocations():
                rows.append((reloc["r_offset"], reloc["r_info_type"], reloc["r_info_sym"],
                             reloc["r_addend"] if section.is_RELA() else None))
    return sorted(rows)


def pyelftools_symbols(elffile: ELFFile, kind: str) -> list[tuple]:
    rows = []
    for section in elffile.iter_sections():
        if isinstance(section, SymbolTableSection) and section["sh_type"] == kind:
            for sym in section.iter_symbols():
                entry = sym.entry
                rows.append((sym.name, entry["st_value"], entry["st_size"], str(entry["st_info"]["type"]),
                             str(entry["st_info"]["bind"]), str(entry["st_other"]["visibility"]),
                             entry["st_shndx"] != "SHN_UNDEF"))
    return rows


def ours(symbols) -> list[tuple]:
    return [(s.name, s.value, s.size, s.type, s.bind, s.visibility, s.defined) for s in symbols]


# pyelftools' names for the GNU OS-specific values (readelf's are ours).
GNU_NAMES = {"STT_LOOS": "STT_GNU_IFUNC", "STB_LOOS": "STB_GNU_UNIQUE"}


def same_symbols(mine: list[tuple], theirs: list[tuple]) -> None:
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        assert a[:3] == b[:3] and a[6] == b[6], (a, b)
        # pyelftools says STT_FUNC, STB_GLOBAL, STV_DEFAULT; we drop the prefix.
        for ours_name, their_name in zip(a[3:6], b[3:6]):
            assert GNU_NAMES.get(their_name, their_name)[4:] == ours_name, (a, b)


@pytest.mark.parametrize("path", objects())
def test_tables_match_pyelftools_entry_by_entry(path):
    data = Path(path).read_bytes()
    elffile = ELFFile(io.BytesIO(data))
    info = parse_elf(data, path)
    if info.dynamic:
        mine = sorted((r.offset, r.type, r.symbol_index, r.addend) for r in info.relocations if r.table != "RELR")
        assert mine == pyelftools_relocations(elffile)
        same_symbols(ours(info.dynsyms), pyelftools_symbols(elffile, "SHT_DYNSYM")[:len(info.dynsyms)])
    # .symtab through DebugFile, which reads only sections, as for a debug file.
    same_symbols(ours(DebugFile(path, data).symbols), pyelftools_symbols(elffile, "SHT_SYMTAB"))


def test_32_bit_library(tmp_path):
    gcc = shutil.which("gcc")
    source = tmp_path / "l32.c"
    source.write_text("extern int ext_var; extern int ext_fn(int);\nint cells[4];\n"
                      "int *ptrs[3] = {&cells[0], &cells[1], &ext_var};\n__thread int tv = 3;\n"
                      "int use(int x) { return ext_fn(x) + ext_var + tv + *ptrs[x & 1]; }\n")
    library = tmp_path / "l32.so"
    if gcc is None or subprocess.run([gcc, "-m32", "-shared", "-fPIC", "-nostdlib", "-o", str(library),
                                      str(source)], capture_output=True).returncode != 0:
        pytest.skip("no 32-bit gcc")
    test_tables_match_pyelftools_entry_by_entry(str(library))
    info = parse_elf(library.read_bytes())
    assert {r.type_name for r in info.relocations} >= {"R_386_GLOB_DAT", "R_386_JUMP_SLOT", "R_386_TLS_DTPMOD32"}
