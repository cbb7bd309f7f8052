"""The loader's list of loaded objects: r_debug and its link_map chain, read
from tracee memory.

glibc (>= 2.35) publishes ``struct r_debug_extended``: r_version 2 and an
``r_next`` pointer to the r_debug of the next namespace (dlmopen). musl has
one list and r_version 1. Both start their link_map entries with the public
five fields (l_addr, l_name, l_ld, l_next, l_prev), which is all we read.

Memory may be half-initialised or garbage at any stop, so every walk is
bounded and cycle-checked: a cycle or an unreadable pointer ends the walk
with what was found so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from elftools.elf.structs import ELFStructs

from loaderdbg.decode.memory import MemoryReader, read_cstring


@dataclass(frozen=True)
class _Layout:
    """Offsets of the fields we read, per ABI."""

    pointer: int
    # struct r_debug / r_debug_extended
    r_version: int
    r_map: int
    r_brk: int
    r_state: int
    r_ldbase: int
    r_next: int
    # struct link_map (public part)
    l_addr: int
    l_name: int
    l_ld: int
    l_next: int
    l_prev: int
    elfclass: int
    little_endian: bool = True


_LP64 = _Layout(pointer=8, r_version=0, r_map=8, r_brk=16, r_state=24, r_ldbase=32, r_next=40,
                l_addr=0, l_name=8, l_ld=16, l_next=24, l_prev=32, elfclass=64)
LAYOUTS: dict[str, _Layout] = {
    "x86_64": _LP64,
    "aarch64": _LP64,
    "i386": _Layout(pointer=4, r_version=0, r_map=4, r_brk=8, r_state=12, r_ldbase=16, r_next=20,
                    l_addr=0, l_name=4, l_ld=8, l_next=12, l_prev=16, elfclass=32),
}

R_STATES = {0: "RT_CONSISTENT", 1: "RT_ADD", 2: "RT_DELETE"}

# Name -> kind, first match wins; the first entry of the first namespace is
# the main program whatever its name (glibc leaves it "", musl uses argv[0]).
_KIND_RULES: tuple[tuple[str, str, str], ...] = (
    ("prefix", "/proc/self/fd/", "memfd"),
    ("prefix", "/memfd:", "memfd"),
    ("contains", "linux-vdso", "vdso"),
    ("contains", "linux-gate", "vdso"),
    ("contains", "ld-linux", "ldso"),
    ("contains", "ld-musl", "ldso"),
)


@dataclass(frozen=True)
class LinkMapEntry:
    """One struct link_map read from the tracee: the public fields, and glibc's private ones when known."""

    namespace: int
    address: int  # of the link_map struct
    name: str
    l_addr: int
    l_ld: int
    kind: str  # main | ldso | vdso | memfd | library
    l_next: int = 0
    l_prev: int = 0
    # glibc's private fields past the public five (None: not read).
    private: "LinkMapPrivate | None" = None


@dataclass(frozen=True)
class PrivateField:
    """Where one private struct link_map member sits: bits from the
    struct's start (a bitfield's own bits, a size_t's 64)."""

    bit_offset: int
    bit_size: int


@dataclass(frozen=True)
class LinkMapPrivateLayout:
    """glibc's private struct link_map members, as its ld.so's DWARF places
    them (they move between glibc versions and builds)."""

    l_relocated: PrivateField
    l_init_called: PrivateField
    l_tls_modid: PrivateField | None
    l_tls_offset: PrivateField | None


@dataclass(frozen=True)
class LinkMapPrivate:
    """One entry's private fields; each None when not known, and then
    ``reason`` says why (no layout, or the struct unreadable)."""

    l_relocated: bool | None = None
    l_init_called: bool | None = None
    l_tls_modid: int | None = None
    l_tls_offset: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RDebug:
    """One struct r_debug (one per dlmopen namespace)."""

    address: int
    version: int
    r_map: int
    r_brk: int
    r_state: str
    ldbase: int
    next: int  # r_next (0 for r_version < 2)


def classify(name: str, first_of_main_namespace: bool, ldso_path: str | None = None) -> str:
    if first_of_main_namespace:
        return "main"
    if ldso_path and name == ldso_path:
        return "ldso"
    if not name:
        # Only the main program (first) is nameless in glibc; musl names
        # its vDSO entry "" (shortname linux-gate.so.1 stays private).
        return "vdso"
    for how, text, kind in _KIND_RULES:
        if (how == "prefix" and name.startswith(text)) or (how == "contains" and text in name):
            return kind
    return "library"


def _word(memory: MemoryReader, addr: int, size: int, layout: _Layout) -> int | None:
    raw = memory.read(addr, size)
    if raw is None:
        return None
    return int.from_bytes(raw, "little" if layout.little_endian else "big")


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def read_r_debug(memory: MemoryReader, addr: int, arch: str = "x86_64") -> RDebug | None:
    layout = LAYOUTS[arch]
    p = layout.pointer
    raw = memory.read(addr, layout.r_ldbase + p)
    if raw is None:
        return None
    order = "little" if layout.little_endian else "big"

    def field(offset: int, size: int) -> int:
        return int.from_bytes(raw[offset:offset + size], order)

    version = _signed32(field(layout.r_version, 4))
    state = field(layout.r_state, 4)
    # r_next exists only in r_debug_extended (r_version >= 2).
    nxt = _word(memory, addr + layout.r_next, p, layout) if version >= 2 else 0
    return RDebug(
        address=addr,
        version=version,
        r_map=field(layout.r_map, p),
        r_brk=field(layout.r_brk, p),
        r_state=R_STATES.get(state, f"{state:#x}"),
        ldbase=field(layout.r_ldbase, p),
        next=nxt or 0,
    )


def walk_r_debug(memory: MemoryReader, r_debug_addr: int, arch: str = "x86_64", max_namespaces: int = 16,
                 max_entries: int = 4096, ldso_path: str | None = None,
                 ) -> tuple[tuple[RDebug, ...], tuple[LinkMapEntry, ...]]:
    """All namespaces reachable from r_debug_addr and their link_map
    entries, in list order."""
    layout = LAYOUTS[arch]
    p = layout.pointer
    debugs: list[RDebug] = []
    entries: list[LinkMapEntry] = []
    seen_debug: set[int] = set()
    seen_maps: set[int] = set()
    addr = r_debug_addr
    while addr and addr not in seen_debug and len(debugs) < max_namespaces:
        seen_debug.add(addr)
        rd = read_r_debug(memory, addr, arch)
        if rd is None:
            break
        namespace = len(debugs)
        debugs.append(rd)
        node = rd.r_map
        first = True
        while node and node not in seen_maps and len(entries) < max_entries:
            seen_maps.add(node)
            raw = memory.read(node, layout.l_prev + p)
            if raw is None:
                break
            order = "little" if layout.little_endian else "big"
            l_addr, l_name, l_ld, l_next, l_prev = (
                int.from_bytes(raw[o:o + p], order)
                for o in (layout.l_addr, layout.l_name, layout.l_ld, layout.l_next, layout.l_prev))
            name_bytes = read_cstring(memory, l_name) if l_name else b""
            name = (name_bytes or b"").decode("utf-8", "surrogateescape")
            entries.append(LinkMapEntry(
                namespace=namespace, address=node, name=name, l_addr=l_addr, l_ld=l_ld,
                kind=classify(name, first and namespace == 0, ldso_path),
                l_next=l_next, l_prev=l_prev,
            ))
            first = False
            node = l_next
        addr = rd.next
    return tuple(debugs), tuple(entries)


@lru_cache(maxsize=None)
def _structs(arch: str) -> ELFStructs:
    layout = LAYOUTS[arch]
    structs = ELFStructs(little_endian=layout.little_endian, elfclass=layout.elfclass)
    structs.create_basic_structs()
    structs.create_advanced_structs()
    return structs


def _dyn_struct(arch: str):
    return _structs(arch).Elf_Dyn


def find_r_debug_via_dt_debug(memory: MemoryReader, dynamic_addr: int, arch: str = "x86_64",
                              max_tags: int = 512) -> int | None:
    """The value ld.so stored in the main program's DT_DEBUG (the address of
    its r_debug), read from the PT_DYNAMIC in memory. None when there is no
    DT_DEBUG, it is still 0, or the array is unreadable."""
    entry = _dyn_struct(arch)
    size = entry.sizeof()
    chunk = 32  # entries per read: .dynamic is usually 20-40 entries
    index = 0
    while index < max_tags:
        raw = memory.read(dynamic_addr + index * size, chunk * size)
        if raw is None:
            raw = memory.read(dynamic_addr + index * size, size)
            if raw is None:
                return None
        # Whole entries only: a short read must end the walk, not feed
        # construct a partial entry.
        count = min(len(raw) // size, chunk)
        if count == 0:
            return None
        for i in range(count):
            parsed = entry.parse(raw[i * size:(i + 1) * size])
            tag = parsed["d_tag"]
            if tag == "DT_NULL":
                return None
            if tag == "DT_DEBUG":
                return parsed["d_val"] or None
        index += count
    return None


def image_extent(memory: MemoryReader, address: int, arch: str = "x86_64",
                 max_phnum: int = 64) -> tuple[int, int] | None:
    """[start, end) of the PT_LOAD segments of an ELF image mapped at
    address with load bias address (the vDSO, linked at 0), read from its
    headers in memory; None when they are not readable or not ELF."""
    layout = LAYOUTS[arch]
    structs = _structs(arch)
    header_size = structs.Elf_Ehdr.sizeof()
    raw = memory.read(address, header_size)
    if raw is None or raw[:4] != b"\x7fELF":
        return None
    header = structs.Elf_Ehdr.parse(raw)
    count, size = header["e_phnum"], header["e_phentsize"]
    if not 0 < count <= max_phnum or size != structs.Elf_Phdr.sizeof():
        return None
    table = memory.read(address + header["e_phoff"], count * size)
    if table is None:
        return None
    loads = [structs.Elf_Phdr.parse(table[i * size:(i + 1) * size]) for i in range(count)]
    loads = [ph for ph in loads if ph["p_type"] == "PT_LOAD"]
    if not loads:
        return None
    mask = (1 << layout.elfclass) - 1
    start = min(ph["p_vaddr"] for ph in loads)
    end = max(ph["p_vaddr"] + ph["p_memsz"] for ph in loads)
    return (address + start) & mask, (address + end) & mask


def _field_value(raw: bytes, start: int, spot: PrivateField, little_endian: bool) -> int:
    """spot's value out of raw, the struct's bytes from byte ``start``."""
    first = spot.bit_offset // 8 - start
    last = (spot.bit_offset + spot.bit_size + 7) // 8 - start
    if little_endian:
        shift = spot.bit_offset - (first + start) * 8
    else:
        shift = (last + start) * 8 - spot.bit_offset - spot.bit_size
    return (int.from_bytes(raw[first:last], "little" if little_endian else "big") >> shift) & ((1 << spot.bit_size) - 1)


def read_private_fields(memory: MemoryReader, struct: int, layout: LinkMapPrivateLayout,
                        little_endian: bool = True) -> LinkMapPrivate:
    """The private fields of the struct link_map at ``struct``, read in
    one piece (the span from the first field to the last)."""
    spots = [s for s in (layout.l_relocated, layout.l_init_called, layout.l_tls_modid, layout.l_tls_offset)
             if s is not None]
    start = min(s.bit_offset // 8 for s in spots)
    end = max((s.bit_offset + s.bit_size + 7) // 8 for s in spots)
    raw = memory.read(struct + start, end - start)
    if raw is None or len(raw) != end - start:
        return LinkMapPrivate(reason=f"struct link_map at {struct:#x} is unreadable")

    def value(spot: PrivateField | None) -> int | None:
        return None if spot is None else _field_value(raw, start, spot, little_endian)

    return LinkMapPrivate(bool(value(layout.l_relocated)), bool(value(layout.l_init_called)),
                          value(layout.l_tls_modid), value(layout.l_tls_offset))
