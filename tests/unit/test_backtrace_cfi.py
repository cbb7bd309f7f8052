"""bt's call-frame lookup (analysis/backtrace.py): through .eh_frame_hdr's
search table only the FDE a pc needs is parsed; its rows must be the ones
pyelftools gives when it parses the whole .eh_frame, pc by pc."""

from __future__ import annotations

import io
import random

import pytest
from elftools.dwarf.callframe import FDE
from elftools.elf.elffile import ELFFile

from loaderdbg.analysis.backtrace import eh_frame_search_table, parse_call_frame_table

LDSO = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
TRUE = "/usr/bin/true"


def _all_fdes(image: bytes) -> list:
    dwarf = ELFFile(io.BytesIO(image)).get_dwarf_info(relocate_dwarf_sections=False)
    return sorted((e for e in dwarf.EH_CFI_entries() if isinstance(e, FDE)),
                  key=lambda f: f.header["initial_location"])


@pytest.mark.parametrize("path", [LDSO, TRUE])
def test_search_table_rows_match_the_whole_parse(path):
    image = open(path, "rb").read()
    elf = ELFFile(io.BytesIO(image))
    header = elf.get_section_by_name(".eh_frame_hdr")
    table = eh_frame_search_table(header.data(), header["sh_addr"])
    fdes = _all_fdes(image)
    assert table is not None and len(table) == len(fdes)
    assert [start for start, _ in table] == [f.header["initial_location"] for f in fdes]
    frames = parse_call_frame_table(image)
    chosen = random.Random(17).sample(fdes, min(len(fdes), 60))
    for fde in chosen:
        start, size = fde.header["initial_location"], fde.header["address_range"]
        rows = fde.get_decoded().table
        for pc in sorted({start, start + size // 2, start + size - 1}):
            expected = None
            for row in rows:
                if row["pc"] > pc:
                    break
                expected = row
            got = frames.row(pc)
            assert (got is None) == (expected is None)
            if got is not None:
                assert got["pc"] == expected["pc"] and repr(got["cfa"]) == repr(expected["cfa"])
                assert {k: repr(v) for k, v in got.items()} == {k: repr(v) for k, v in expected.items()}
    # Outside every FDE (before the first one) there is no row.
    assert frames.row(fdes[0].header["initial_location"] - 1) is None


def test_search_table_refuses_what_it_does_not_know():
    assert eh_frame_search_table(b"", 0) is None
    assert eh_frame_search_table(b"\x02\x1b\x03\x3b" + bytes(8), 0) is None  # version 2
    assert eh_frame_search_table(b"\x01\x1b\x03\x1b" + bytes(8), 0) is None  # a pcrel table
    assert eh_frame_search_table(b"\x01\x1b\x03\x3b" + bytes(4) + (5).to_bytes(4, "little"), 0) is None  # cut short


def test_cfi_pyelftools_cannot_decode_is_no_row_not_a_crash():
    """gdb's own .eh_frame holds a CFI opcode pyelftools does not know
    (its decoder raises ValueError): `inspect --json --at exit gdb` died in
    the backtrace. Such an FDE counts as none: the unwinder falls back to
    the frame pointer."""
    from loaderdbg.analysis.backtrace import CallFrameTable

    class UndecodableFDE:
        header = {"initial_location": 0x1000, "address_range": 0x100}

        def get_decoded(self):
            raise ValueError("Unknown format code 'x' for object of type 'str'")

    table = CallFrameTable([0x1000], lambda index: UndecodableFDE())
    assert table.row(0x1010) is None
    assert table.row(0x1020) is None  # remembered as unreadable, not decoded again
