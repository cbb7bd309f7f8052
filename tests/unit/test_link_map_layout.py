"""glibc's private struct link_map members: where ld.so's DWARF puts them
(against readelf's own reading of the same debug file) and how a member's
bits are taken out of memory (bitfields either byte order, a struct cut
off by an unmapped page)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from loaderdbg.analysis.link_map_layout import layout_from_dwarf, private_layout
from loaderdbg.debug_files import find_debug_file
from loaderdbg.decode.elf import parse_elf
from loaderdbg.decode.linkmap import LinkMapPrivateLayout, PrivateField, read_private_fields
from loaderdbg.decode.memory import MemoryImage

LDSO = "/lib64/ld-linux-x86-64.so.2"
LAYOUT = LinkMapPrivateLayout(l_relocated=PrivateField(6563, 1), l_init_called=PrivateField(6564, 1),
                              l_tls_modid=PrivateField(1152 * 8, 64), l_tls_offset=PrivateField(1144 * 8, 64))


def _ldso_debug_file():
    info = parse_elf(Path(LDSO).read_bytes(), LDSO)
    debug = find_debug_file(LDSO, info)
    assert debug is not None, "libc6-dbg is required (make sysdeps installs it)"
    return info, debug


def _readelf_members(path: str) -> dict[str, tuple[int, int]]:
    """The first struct link_map's members as readelf -wi prints them:
    name -> (bit offset, bit size or 0)."""
    out = subprocess.run(["readelf", "-wi", path], capture_output=True, text=True, check=True).stdout
    members: dict[str, tuple[int, int]] = {}
    for block in re.split(r"\n <\d+><", out):
        name = re.search(r"DW_AT_name\s*:.*?: (\w+)\s*$|DW_AT_name\s*: (\w+)\s*$", block, re.M)
        if name is None or "DW_TAG_member" not in block:
            continue
        name = name.group(1) or name.group(2)
        if name in members or name not in ("l_relocated", "l_init_called", "l_tls_modid", "l_tls_offset"):
            continue
        bits = re.search(r"DW_AT_data_bit_offset\s*: (\d+)", block)
        size = re.search(r"DW_AT_bit_size\s*: (\d+)", block)
        byte = re.search(r"DW_AT_data_member_location\s*: (\d+)", block)
        offset = int(bits.group(1)) if bits else int(byte.group(1)) * 8
        members[name] = (offset, int(size.group(1)) if size else 0)
        if len(members) == 4:
            break
    return members


def test_layout_from_ld_so_s_dwarf_equals_readelf():
    info, debug = _ldso_debug_file()
    layout = layout_from_dwarf(debug.data)
    members = _readelf_members(debug.path)
    assert layout is not None and len(members) == 4
    for name in members:
        spot = getattr(layout, name)
        offset, bits = members[name]
        assert spot.bit_offset == offset, name
        assert spot.bit_size == (bits or 64), name
    # Worked out once per build-id.
    with_debug = info.with_debug_file(debug)
    assert private_layout(LDSO, with_debug) is private_layout(LDSO, with_debug)


def test_bitfields_and_words_out_of_memory():
    struct_at = 0x10000
    raw = bytearray(1200)
    raw[820] = 0b0001_1000  # bit 3 (l_relocated) and bit 4 (l_init_called) of byte 820
    raw[1152:1160] = (1).to_bytes(8, "little")
    raw[1144:1152] = (0x90).to_bytes(8, "little")
    fields = read_private_fields(MemoryImage.of((struct_at, bytes(raw))), struct_at, LAYOUT)
    assert (fields.l_relocated, fields.l_init_called, fields.l_tls_modid, fields.l_tls_offset) == (True, True, 1, 0x90)
    assert fields.reason is None
    raw[820] = 0b0000_1000
    fields = read_private_fields(MemoryImage.of((struct_at, bytes(raw))), struct_at, LAYOUT)
    assert (fields.l_relocated, fields.l_init_called) == (True, False)


def test_big_endian_bitfields_count_from_the_most_significant_bit():
    layout = LinkMapPrivateLayout(PrivateField(8 * 4 + 2, 1), PrivateField(8 * 4 + 7, 1), PrivateField(64, 32), None)
    raw = bytearray(16)
    raw[4] = 0b0010_0001
    raw[8:12] = (5).to_bytes(4, "big")
    fields = read_private_fields(MemoryImage.of((0x1000, bytes(raw))), 0x1000, layout, little_endian=False)
    assert (fields.l_relocated, fields.l_init_called, fields.l_tls_modid, fields.l_tls_offset) == (True, True, 5, None)


def test_a_struct_cut_off_by_unmapped_memory_says_so():
    fields = read_private_fields(MemoryImage.of((0x10000, bytes(900))), 0x10000, LAYOUT)
    assert fields.l_relocated is None and fields.l_tls_modid is None
    assert "0x10000 is unreadable" in fields.reason


STRUCT = """
#include <stddef.h>
struct link_map {
    unsigned long l_addr; char *l_name; void *l_ld; struct link_map *l_next, *l_prev;
    void *pad[3];
    unsigned int l_type:2; unsigned int l_dt_relr_ref:1; unsigned int l_relocated:1;
    unsigned int l_init_called:1; unsigned int l_global:1;
    size_t l_tls_offset; size_t l_tls_modid;
} there;
"""


def test_dwarf_2_to_5_bitfield_spellings_give_one_layout(tmp_path):
    """GCC spells bitfields with DW_AT_bit_offset (from the storage unit's
    most significant bit) up to DWARF 4 and DW_AT_data_bit_offset in
    DWARF 5: both must land on the same bits."""
    import shutil
    gcc = shutil.which("gcc")
    assert gcc is not None, "gcc is required"
    (tmp_path / "lm.c").write_text(STRUCT)
    layouts = {}
    for version in (2, 4, 5):
        out = tmp_path / f"lm{version}.o"
        subprocess.run([gcc, "-c", f"-gdwarf-{version}", "-o", str(out), str(tmp_path / "lm.c")], check=True)
        layouts[version] = layout_from_dwarf(out.read_bytes())
    expected = LinkMapPrivateLayout(PrivateField(64 * 8 + 3, 1), PrivateField(64 * 8 + 4, 1),
                                    PrivateField(80 * 8, 64), PrivateField(72 * 8, 64))
    assert layouts == {2: expected, 4: expected, 5: expected}
