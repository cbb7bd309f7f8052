"""The quick search for glibc's struct link_map (the first units of
.debug_info decompressed alone, only the sections their entries read)
finds what pyelftools' reading of the whole DWARF finds, and leaves to it
what it does not find: ld.so's debug file, and debug files whose first
units define no link_map."""

from __future__ import annotations

import glob
import io
from pathlib import Path

from elftools.elf.elffile import ELFFile
from test_link_map_layout import LAYOUT, _ldso_debug_file

from loaderdbg.analysis import link_map_layout
from loaderdbg.decode.dwarf_lines import dwarf_info


def _whole_search(data: bytes):
    elffile = ELFFile(io.BytesIO(data))
    return link_map_layout._first_layout(dwarf_info(elffile), elffile.little_endian)


def test_ld_so_s_first_unit_gives_the_whole_search_s_layout():
    _, debug = _ldso_debug_file()
    quick = link_map_layout._layout_from_leading_units(debug.data)
    assert quick == LAYOUT == _whole_search(debug.data)


def test_without_a_link_map_in_the_first_units_the_whole_dwarf_is_searched():
    # Small debug files of libraries that never mention struct link_map.
    others = [p for p in sorted(glob.glob("/usr/lib/debug/.build-id/*/*.debug"))
              if Path(p).stat().st_size < 200_000][:3]
    assert others
    for path in others:
        data = Path(path).read_bytes()
        assert link_map_layout._layout_from_leading_units(data) is None, path
        assert link_map_layout.layout_from_dwarf(data) == _whole_search(data), path


def test_a_file_without_dwarf_has_no_layout():
    data = Path("/bin/true").read_bytes()
    assert link_map_layout._layout_from_leading_units(data) is None
    assert link_map_layout.layout_from_dwarf(data) is None
