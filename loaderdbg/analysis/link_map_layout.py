"""Where glibc keeps its private struct link_map members (l_relocated,
l_init_called, l_tls_modid, l_tls_offset), read from the DWARF of ld.so's
separate debug file (libc6-dbg's). These members are glibc's own business:
their offsets move between versions and builds, so they are taken from the
very build that runs, never assumed; without its DWARF they stay unknown,
with a reason.

The layout is worked out once per ld.so build-id for the process.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from elftools.common.exceptions import DWARFError, ELFError
from elftools.construct import ConstructError
from elftools.dwarf.die import DIE

from loaderdbg.decode.dwarf_lines import dwarf_info
from loaderdbg.decode.elf import image_section_headers
from loaderdbg.decode.elf_structs import SharedELFFile
from loaderdbg.decode.linkmap import LinkMapPrivateLayout, PrivateField

if TYPE_CHECKING:
    from loaderdbg.decode.elf import ElfInfo

# glibc's struct link_map starts with <link.h>'s public five; a DWARF
# struct link_map that does not is someone else's.
_PUBLIC_FIELDS = (("l_addr", 0), ("l_name", 8), ("l_ld", 16), ("l_next", 24), ("l_prev", 32))
_DW_OP_PLUS_UCONST = 0x23
_TYPE_WRAPPERS = frozenset({"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                            "DW_TAG_restrict_type", "DW_TAG_atomic_type"})


@dataclass(frozen=True)
class PrivateLayoutAnswer:
    """The layout, or None and why it is unknown."""

    layout: LinkMapPrivateLayout | None
    reason: str | None
    source: str | None = None  # the debug file it came from


_lock = threading.Lock()
_answers: dict[tuple, PrivateLayoutAnswer] = {}


def private_layout(path: str, info: "ElfInfo") -> PrivateLayoutAnswer:
    """The private link_map layout of the ld.so at ``path`` (as mapped),
    from its separate debug file's DWARF; cached per build-id."""
    debug_file = info.debug_file
    # The same build seen without its debug file (an ElfInfo parsed alone)
    # must not hide the layout from one that has it.
    debug_path = None if debug_file is None else debug_file.path
    key = (info.build_id, debug_path) if info.build_id else (path, debug_path)
    with _lock:
        hit = _answers.get(key)
    if hit is not None:
        return hit
    answer = _work_out(path, info)
    with _lock:
        return _answers.setdefault(key, answer)


def _work_out(path: str, info: "ElfInfo") -> PrivateLayoutAnswer:
    if not info.definitions("_rtld_global"):
        # musl's ld.so (its libc.so) keeps its objects in its own struct
        # dso, whose public head alone matches glibc's link_map.
        return PrivateLayoutAnswer(None, f"{path} is not glibc's ld.so: musl's struct dso shares only "
                                         "the public l_addr..l_prev with glibc's link_map, so l_relocated, "
                                         "l_init_called and the TLS module id are not read")
    debug_file = info.debug_file
    build_id = f"build-id {info.build_id}" if info.build_id else "no build-id"
    if debug_file is None:
        return PrivateLayoutAnswer(None, f"no separate debug file with DWARF for {path} ({build_id}; "
                                         "libc6-dbg provides it): the private link_map layout is unknown")
    try:
        layout = layout_from_dwarf(debug_file.data)
    except (ELFError, DWARFError, ConstructError, ValueError, KeyError, IndexError, AttributeError,
            TypeError, AssertionError, UnicodeDecodeError, RecursionError) as err:
        return PrivateLayoutAnswer(None, f"{debug_file.path}: its DWARF does not read ({err})")
    if layout is None:
        return PrivateLayoutAnswer(None, f"{debug_file.path} describes no glibc struct link_map "
                                         "with l_relocated and l_init_called")
    return PrivateLayoutAnswer(layout, None, debug_file.path)


def layout_from_dwarf(data: bytes) -> LinkMapPrivateLayout | None:
    """The first complete glibc struct link_map the file's DWARF defines
    (ld.so's first compilation units include <link.h>'s internal one)."""
    layout = _layout_from_leading_units(data)
    if layout is not None:
        return layout
    elffile = SharedELFFile(io.BytesIO(data))
    if not elffile.has_dwarf_info():
        return None
    return _first_layout(dwarf_info(elffile), elffile.little_endian)


def _first_layout(dwarf, little_endian: bool) -> LinkMapPrivateLayout | None:
    for unit in dwarf.iter_CUs():
        for die in unit.get_top_DIE().iter_children():
            if (die.tag == "DW_TAG_structure_type" and _name(die) == "link_map"
                    and "DW_AT_declaration" not in die.attributes):
                layout = _layout_of(die, little_endian)
                if layout is not None:
                    return layout
    return None


# How much of .debug_info the quick search decompresses: ld.so's first
# unit, which defines struct link_map, is 4 KiB of 650 KiB.
_LEADING_BYTES = 1 << 14
_SHT_NOBITS, _SHF_COMPRESSED, _ELFCOMPRESS_ZLIB = 8, 0x800, 1
# Sections whose presence leaves the search to pyelftools' whole reading:
# relocated DWARF (an object file's), DWARF in another file (dwz), old
# .zdebug compression, type units.
_UNUSUAL = (".rel.debug", ".rela.debug", ".zdebug", ".gnu_debugaltlink", ".debug_sup", ".debug_types")
_QUICK_ERRORS = (ELFError, DWARFError, ConstructError, ValueError, KeyError, IndexError, AttributeError,
                 TypeError, AssertionError, UnicodeDecodeError, RecursionError, EOFError, struct.error, zlib.error)


def _layout_from_leading_units(data: bytes) -> LinkMapPrivateLayout | None:
    """_first_layout over the complete compilation units in the first
    16 KiB of .debug_info, decompressed alone, with only the sections a
    unit's entries read (pyelftools' get_dwarf_info decompresses every
    DWARF section whole: most of the layout's cost). None when it is not
    found there or anything is unusual: then the whole DWARF is searched,
    which finds the same first one when this finds it."""
    headers = image_section_headers(data)
    if not headers:
        return None
    sections = {header.name: header for header in headers}  # the last of a name, as pyelftools' map
    if any(name.startswith(_UNUSUAL) for name in sections):
        return None
    info, abbrev = sections.get(".debug_info"), sections.get(".debug_abbrev")
    if info is None or abbrev is None or info.type == _SHT_NOBITS:
        return None
    little_endian, elf_class = data[5] == 1, 64 if data[4] == 2 else 32
    try:
        leading = _leading_bytes(data, info, little_endian, elf_class, _LEADING_BYTES)
        if leading is None:
            return None
        units_end = _complete_units(leading, little_endian)
        if not units_end:
            return None
        elffile = SharedELFFile(io.BytesIO(data))
        from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DWARFInfo, DwarfConfig

        def whole(name: str):
            header = sections.get(name)
            if header is None or header.type == _SHT_NOBITS:
                return None
            contents = elffile.get_section(header.index).data()
            return DebugSectionDescriptor(io.BytesIO(contents), name, header.offset, len(contents), header.addr)

        dwarf = DWARFInfo(
            config=DwarfConfig(little_endian=little_endian, machine_arch=elffile.get_machine_arch(),
                               default_address_size=elf_class // 8),
            debug_info_sec=DebugSectionDescriptor(io.BytesIO(leading[:units_end]), ".debug_info", info.offset,
                                                  units_end, info.addr),
            debug_aranges_sec=None, debug_abbrev_sec=whole(".debug_abbrev"), debug_frame_sec=None,
            eh_frame_sec=None, debug_str_sec=whole(".debug_str"), debug_loc_sec=None, debug_ranges_sec=None,
            debug_line_sec=None, debug_pubtypes_sec=None, debug_pubnames_sec=None,
            debug_addr_sec=whole(".debug_addr"), debug_str_offsets_sec=whole(".debug_str_offsets"),
            debug_line_str_sec=whole(".debug_line_str"), debug_loclists_sec=None, debug_rnglists_sec=None,
            debug_sup_sec=None, gnu_debugaltlink_sec=None, debug_types_sec=None)
        return _first_layout(dwarf, little_endian)
    except _QUICK_ERRORS:
        return None


def _leading_bytes(data: bytes, header, little_endian: bool, elf_class: int, limit: int) -> bytes | None:
    """Up to limit bytes from the start of a section's contents,
    decompressing (zlib) only as far as that."""
    raw = data[header.offset:header.offset + header.size]
    if len(raw) != header.size:
        return None
    if not header.flags & _SHF_COMPRESSED:
        return raw[:limit]
    order = "<" if little_endian else ">"
    layout = struct.Struct(order + ("IIQQ" if elf_class == 64 else "III"))
    if len(raw) < layout.size:
        return None
    chdr = layout.unpack_from(raw)
    if chdr[0] != _ELFCOMPRESS_ZLIB:
        return None
    return zlib.decompressobj().decompress(raw[layout.size:], limit)


def _complete_units(leading: bytes, little_endian: bool) -> int:
    """Where the last whole 32-bit-DWARF unit in leading ends (0: none)."""
    end = 0
    order = "little" if little_endian else "big"
    while end + 4 <= len(leading):
        length = int.from_bytes(leading[end:end + 4], order)
        if length >= 0xFFFFFFF0:  # 64-bit DWARF, or reserved: left to pyelftools
            return 0
        if end + 4 + length > len(leading):
            break
        end += 4 + length
    return end


def _layout_of(struct: DIE, little_endian: bool) -> LinkMapPrivateLayout | None:
    members = {_name(m): m for m in struct.iter_children() if m.tag == "DW_TAG_member"}
    for name, offset in _PUBLIC_FIELDS:
        member = members.get(name)
        spot = None if member is None else _member_bits(member, little_endian)
        if spot is None or spot.bit_offset != offset * 8:
            return None
    fields = {name: None if members.get(name) is None else _member_bits(members[name], little_endian)
              for name in ("l_relocated", "l_init_called", "l_tls_modid", "l_tls_offset")}
    if fields["l_relocated"] is None or fields["l_init_called"] is None:
        return None
    return LinkMapPrivateLayout(**fields)


def _name(die: DIE) -> str | None:
    attr = die.attributes.get("DW_AT_name")
    if attr is None:
        return None
    value = attr.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _type_size(member: DIE) -> int | None:
    """The byte size of a member's type, through typedefs and qualifiers."""
    die = member
    for _ in range(16):
        if "DW_AT_type" not in die.attributes:
            return None
        die = die.get_DIE_from_attribute("DW_AT_type")
        size = die.attributes.get("DW_AT_byte_size")
        if size is not None:
            return size.value
        if die.tag not in _TYPE_WRAPPERS:
            return None
    return None


def _member_offset(member: DIE) -> int | None:
    """DW_AT_data_member_location in bytes: a constant (DWARF 3+) or the
    DWARF 2 expression DW_OP_plus_uconst N."""
    attr = member.attributes.get("DW_AT_data_member_location")
    if attr is None:
        return 0 if "DW_AT_data_bit_offset" not in member.attributes else None
    value = attr.value
    if isinstance(value, int):
        return value
    if isinstance(value, list) and value and value[0] == _DW_OP_PLUS_UCONST:
        result, shift = 0, 0
        for byte in value[1:]:
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result
    return None


def _member_bits(member: DIE, little_endian: bool) -> PrivateField | None:
    """A member's bits from the struct's start: DW_AT_data_bit_offset
    (DWARF 4+), or DWARF 2/3's DW_AT_bit_offset counted from the most
    significant bit of a DW_AT_byte_size storage unit at
    DW_AT_data_member_location."""
    attrs = member.attributes
    type_size = _type_size(member)
    bit_size = attrs["DW_AT_bit_size"].value if "DW_AT_bit_size" in attrs else None
    if bit_size is None:
        if type_size is None:
            return None
        bit_size = type_size * 8
    if "DW_AT_data_bit_offset" in attrs:
        return PrivateField(attrs["DW_AT_data_bit_offset"].value, bit_size)
    offset = _member_offset(member)
    if offset is None:
        return None
    if "DW_AT_bit_offset" not in attrs:
        return PrivateField(offset * 8, bit_size)
    storage = attrs["DW_AT_byte_size"].value if "DW_AT_byte_size" in attrs else type_size
    if storage is None:
        return None
    from_msb = attrs["DW_AT_bit_offset"].value
    if little_endian:
        return PrivateField(offset * 8 + storage * 8 - from_msb - bit_size, bit_size)
    return PrivateField(offset * 8 + from_msb, bit_size)
