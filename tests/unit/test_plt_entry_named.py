"""ElfInfo.plt_entry_named, behind sym:puts@plt: the entry objdump labels
`<puts@plt>:` for every label objdump prints in the PLT sections (IBT's
.plt.sec, .plt.got's GLOB_DAT entries, IRELATIVE's *ABS*+0x…@plt, aarch64's
.plt), reached mostly through the psABI layout's guess without decoding
the other entries; names no entry has get None."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_plt_names import AARCH64_OBJECTS, X86_64_OBJECTS, _objdump_labels, _parsed


def _check(path, objdump: str = "objdump") -> None:
    labels = _objdump_labels(path, objdump)
    info = _parsed(path)
    at: dict[str, set[int]] = {}
    for address, name in labels.items():
        at.setdefault(name, set()).add(address)
    # One of them where two entries have the name (libc's IRELATIVE slots
    # of one resolver: *ABS*+0x9f550@plt twice).
    found = {name: info.plt_entry_named(name) for name in at}
    assert all(found[name] in addresses for name, addresses in at.items()), \
        {name: found[name] for name in at if found[name] not in at[name]}
    assert info.plt_entry_named("no_such_function@plt") is None
    assert info.plt_entry_named("puts") is None  # not a PLT entry's name


@pytest.mark.parametrize("path", X86_64_OBJECTS, ids=lambda p: Path(p).name)
def test_every_objdump_label_is_found_by_name(path):
    _check(path)


@pytest.mark.parametrize("path", AARCH64_OBJECTS, ids=lambda p: f"{Path(p).parent.name}/{Path(p).name}")
def test_every_aarch64_objdump_label_is_found_by_name(path):
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        pytest.skip("aarch64-linux-gnu-objdump is not installed (make fixtures installs it)")
    _check(path, objdump)


def test_the_layout_guess_spares_decoding_the_other_entries():
    """gdb's own 744 .plt entries: its last JUMP_SLOT's name decodes one."""
    info = _parsed("/usr/bin/gdb")
    columns = info.relocation_columns
    last = [symbol for symbol, table in zip(columns.symbols, columns.tables) if table == "JMPREL"][-1]
    assert info.plt_entry_named(f"{last}@plt") is not None
    assert len(info._plt_names) == 1
