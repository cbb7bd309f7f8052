"""aarch64 mapping symbols (`$x` where code starts, `$d` where data does)
name nothing, as gdb and objdump see them: the symbol index named code
after them (`$x+0x20` in crti's _init, `$d+0x8` over the ABI note, where
gdb says `_init + 16`, `__abi_tag + 8` or No symbol matches). Every word of
the executable segments of the aarch64 fixtures is named as
gdb-multiarch's `info symbol` names it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import is_mapping_symbol

from test_plt_names import EXECSOLIB, ZOO, _gdb_info_symbol, _parsed

REPO = Path(__file__).resolve().parents[2]
OBJECTS = [ZOO / "aarch64-hello", ZOO / "aarch64-hello-musl", EXECSOLIB / "aarch64-glibc-O2" / "libexecsolib.so",
           REPO / "build" / "fixtures" / "qemu" / "probe"]


def test_mapping_symbol_names():
    assert all(is_mapping_symbol(name) for name in ("$x", "$d", "$a", "$t", "$x.0", "$d.rodata"))
    assert not any(is_mapping_symbol(name) for name in ("$", "$xy", "$b", "x", "_$x", "$dollar"))


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_code_is_named_as_gdb_multiarch_names_it(path):
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        pytest.skip("gdb-multiarch is not installed (make fixtures installs it)")
    info = _parsed(path)
    assert info.machine == "EM_AARCH64"
    # The file has mapping symbols where the index looks.
    assert any(is_mapping_symbol(sym.name) for sym in info._symtab if sym.value)
    table = SymbolTable([LoadedObject(str(path), 0, info)])
    addresses = [address for segment in info.load_segments() if segment.executable
                 for address in range(segment.vaddr, segment.vaddr + segment.memsz, 4)]
    addresses = addresses[::max(1, len(addresses) // 1500)]
    assert len(addresses) > 300
    for address, said in zip(addresses, _gdb_info_symbol(path, addresses, gdb)):
        name = table.symbolize(address)
        if said is None:
            assert name == f"{path.name}+{address:#x}", (hex(address), name)
            continue
        # gdb drops a GCC clone's number: apply_rela.part.0 is its apply_rela.part.
        symbol, _, offset = name.partition("+")
        assert symbol == said[0] or symbol.startswith(said[0] + "."), (hex(address), name, said)
        assert int(offset or "0", 16) == said[1], (hex(address), name, said)
