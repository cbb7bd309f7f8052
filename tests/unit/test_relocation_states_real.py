"""Relocation states and bindings on real files where the slot value alone
cannot tell: a non-PIE program (/usr/bin/python3.11 here) at base 0, weak
undefined symbols bound to 0, variables rewritten after relocation; and the
lookup rules (scope order, versions, canonical PLT entries). Memory images
are built from the files as ld.so maps them (see test_relocations.Process),
then changed the way ld.so would."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from test_relocations import (LDSO, LDSO_BASE, LIBC, LIBC_BASE, ZOO, Process, _SelfMemory, fixture,
                              publish_r_debug)

from loaderdbg.analysis.link_map import scope_from_link_map
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable, match_definition
from loaderdbg.decode.elf import parse_elf
from loaderdbg.decode.linkmap import LinkMapEntry, classify, image_extent
from loaderdbg.decode.syscalls import decode_syscall
from loaderdbg.arch import get_arch

PYTHON = "/usr/bin/python3.11"
LIBDIR = "/lib/x86_64-linux-gnu"
LIBM, LIBZ, LIBEXPAT = f"{LIBDIR}/libm.so.6", f"{LIBDIR}/libz.so.1", f"{LIBDIR}/libexpat.so.1"
# Address order puts libc below libm; python's DT_NEEDED order is libm first.
BASES = {LIBC: LIBC_BASE, LIBEXPAT: 0x7FFFF7E80000, LIBZ: 0x7FFFF7EB0000, LIBM: 0x7FFFF7ED0000}
DEBUG_REGION = 0x10000000  # where the fake r_debug and link_map live


def python_process() -> Process:
    for path in (PYTHON, *BASES):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing")
    proc = Process((PYTHON, 0), *((path, base) for path, base in sorted(BASES.items(), key=lambda kv: kv[1])),
                   (LDSO, LDSO_BASE))
    assert proc.obj().info.type == "ET_EXEC", "python3.11 is non-PIE here"
    return proc


def states_of(proc: Process, index: int = 0) -> dict:
    return {(s.type_name, s.symbol, s.address): s for s in proc.states(index)}


def got_words(proc: Process) -> tuple[int, int]:
    pltgot = proc.obj().info.dynamic_value("DT_PLTGOT")
    return pltgot + 8, pltgot + 16


def plt_slots(proc: Process):
    return [s for s in proc.states() if s.type_name == "R_X86_64_JUMP_SLOT"]


# -- a non-PIE program's PLT slots at base 0 -----------------------------------


def test_plt_slots_at_base_zero_are_pending_until_ld_so_sets_up_lazy_binding() -> None:
    proc = python_process()
    slots = plt_slots(proc)
    assert len(slots) > 400
    # The stub address is both the file value and, at base 0, the lazy value.
    assert all(s.current == s.link_value and s.state == "pending" for s in slots)
    link_map, resolver = got_words(proc)
    proc.write(link_map, 0x7FFFF7FFE2E0)
    half = plt_slots(proc)
    assert {s.state for s in half} == {"unknown"}
    assert "GOT[1..2]" in half[0].reason
    proc.write(resolver, 0x7FFFF7FD8D30)
    assert {s.state for s in plt_slots(proc)} == {"lazy"}
    # One slot bound by _dl_fixup since: applied, the others stay lazy.
    first = plt_slots(proc)[0]
    proc.write(first.address, first.expected)
    after = plt_slots(proc)
    assert after[0].state == "applied" and {s.state for s in after[1:]} == {"lazy"}


def test_plt_slot_still_a_stub_after_bind_now_processing_is_unknown() -> None:
    """GOT[1..2] empty (no lazy binding) yet later slots bound: a stub left
    behind is not pending, it is something we cannot explain."""
    proc = python_process()
    slots = plt_slots(proc)
    proc.write(slots[-1].address, slots[-1].expected)
    first = plt_slots(proc)[0]
    assert first.state == "unknown" and "without lazy binding" in first.reason


# -- weak undefined symbols bound to 0 -----------------------------------------


def test_weak_undefined_glob_dat_follows_what_ld_so_did() -> None:
    proc = python_process()

    def gmon():
        return next(s for s in proc.states() if s.symbol == "__gmon_start__")

    # DT_DEBUG still 0: ld.so has not started on the program.
    state = gmon()
    assert (state.state, state.expected, state.current) == ("pending", 0, 0)
    assert state.binding is not None and state.binding.object is None
    publish_r_debug(proc)
    state = gmon()
    assert state.state == "unknown" and "both before and after relocation" in state.reason
    # A relocation later in table order is applied: ld.so has been past it.
    later = next(s for s in proc.states() if s.symbol == "__libc_start_main")
    assert later.state == "pending"
    proc.write(later.address, later.expected)
    assert gmon().state == "applied" and gmon().reason is None


def _c_string_region(strings: list[bytes]) -> tuple[bytes, list[int]]:
    blob, offsets = b"", []
    for text in strings:
        offsets.append(len(blob))
        blob += text + b"\0"
    return blob, offsets


def publish_link_map(proc: Process, names: list[str], state: int) -> None:
    """An r_debug (r_version 1) and a link_map chain, as ld.so lays them
    out, at DEBUG_REGION; DT_DEBUG points at it."""
    strings, offsets = _c_string_region([n.encode() for n in names])
    maps_at = DEBUG_REGION + 0x100
    strings_at = maps_at + 0x40 * len(names)
    region = bytearray(0x100 + 0x40 * len(names) + len(strings))
    # struct r_debug: r_version, r_map, r_brk, r_state, r_ldbase (LP64).
    struct.pack_into("<i4xQQi4xQ", region, 0, 1, maps_at, 0x7FFFF7FCC060, state, LDSO_BASE)
    for index, name in enumerate(names):
        obj = next((o for o in proc.objects if o.path == name), None)
        l_addr = obj.base if obj is not None else 0
        next_map = maps_at + 0x40 * (index + 1) if index + 1 < len(names) else 0
        prev_map = maps_at + 0x40 * (index - 1) if index else 0
        struct.pack_into("<QQQQQ", region, 0x100 + 0x40 * index, l_addr, strings_at + offsets[index], 0,
                         next_map, prev_map)
    region[strings_at - DEBUG_REGION:] = strings
    proc.regions[DEBUG_REGION] = region
    publish_r_debug(proc, DEBUG_REGION)


def test_weak_undefined_applied_once_ld_so_says_startup_relocation_is_done() -> None:
    """glibc sets r_state to RT_CONSISTENT only after relocating every
    startup object; until then (RT_ADD) nothing shows the program's last
    GLOB_DATs were processed."""
    proc = python_process()
    everything = ["", *sorted(BASES, key=lambda p: -BASES[p]), LDSO]

    def gmon():
        return next(s for s in proc.states() if s.symbol == "__gmon_start__")

    publish_link_map(proc, everything, state=1)  # RT_ADD
    assert gmon().state == "unknown"
    publish_link_map(proc, everything[:2] + [LDSO], state=0)  # consistent, but libc not in the list yet
    assert gmon().state == "unknown"
    publish_link_map(proc, everything, state=0)
    assert gmon().state == "applied"
    # The same facts settle a library's own weak slots.
    libm = next(i for i, o in enumerate(proc.objects) if o.path == LIBM)
    weak = [s for s in proc.states(libm) if s.binding is not None and s.binding.object is None]
    assert weak and {s.state for s in weak} == {"applied"}


# -- variables rewritten after relocation --------------------------------------


def test_relative_slot_rewritten_by_the_program_is_applied_with_the_reason() -> None:
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    relative = [s for s in proc.states() if s.type_name == "R_X86_64_RELATIVE"]
    slot, later = relative[0], relative[-1]
    proc.write(slot.address, 0x7FFFFFFFEA0E)  # a stack address: argv[0], say
    state = next(s for s in proc.states() if s.address == slot.address)
    assert state.state == "unknown" and "neither the file value" in state.reason
    proc.write(later.address, later.expected)
    state = next(s for s in proc.states() if s.address == slot.address)
    assert state.state == "applied"
    assert "rewritten after relocation" in state.reason and state.current == 0x7FFFFFFFEA0E


def test_got_slot_holding_a_wrong_value_is_never_called_applied() -> None:
    """A GOT slot is ld.so's alone: a value that is not the one we compute
    stays unknown however far ld.so got."""
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    glob = next(s for s in proc.states() if s.type_name == "R_X86_64_GLOB_DAT" and s.expected)
    proc.write(glob.address, 0x1234)
    last = proc.states()[-1]
    proc.write(last.address, last.expected if last.expected is not None else LIBC_BASE)
    state = next(s for s in proc.states() if s.address == glob.address)
    assert state.state == "unknown" and state.reason.startswith("holds 0x1234")


# -- lookups ------------------------------------------------------------------


def test_scope_is_the_program_then_needed_breadth_first_not_address_order() -> None:
    proc = python_process()
    symbols = SymbolTable(proc.objects)
    assert [o.path for o in symbols.scope[:5]] == [PYTHON, LIBM, LIBZ, LIBEXPAT, LIBC]
    # frexp is defined by libm and libc; libm comes first in python's list.
    found = symbols.lookup("frexp", "GLIBC_2.2.5")
    assert found is not None and found[0].path == LIBM
    frexp = next(s for s in proc.states() if s.symbol == "frexp")
    assert frexp.binding.object == LIBM and frexp.binding.version == "GLIBC_2.2.5"


def test_an_object_outside_the_global_scope_searches_its_own_dependencies_last() -> None:
    hello = fixture(ZOO / "hello-glibc")
    proc = Process((hello, 0x555555554000), (LIBC, LIBC_BASE), (LIBZ, 0x7FFFF7EB0000), (LDSO, LDSO_BASE))
    symbols = SymbolTable(proc.objects)
    libz = next(o for o in proc.objects if o.path == LIBZ)
    libc = next(o for o in proc.objects if o.path == LIBC)
    assert not symbols.in_global_scope(libz) and symbols.in_global_scope(libc)
    assert symbols.scope_for(libc) == symbols.scope
    assert symbols.scope_for(libz) == symbols.scope + (libz,)
    # libz's own exports are found from libz, not from the program.
    assert symbols.lookup("zlibVersion", requester=libz)[0] is libz
    assert symbols.lookup("zlibVersion") is None


def test_versioned_reference_takes_an_unversioned_definition() -> None:
    """glibc's check_match: a symbol with version index 0/1 (a program's own
    export, as ssh's mkstemp) satisfies mkstemp@GLIBC_2.2.5; a definition
    of another version does not."""
    proc = python_process()
    python = proc.obj()
    found = match_definition(python, "PyObject_Call", "GLIBC_2.2.5")
    assert found is not None and found.version is None
    libc = next(o for o in proc.objects if o.path == LIBC)
    assert match_definition(libc, "memcpy", "GLIBC_99") is None
    assert match_definition(libc, "memcpy", "GLIBC_2.2.5").version == "GLIBC_2.2.5"


def test_canonical_plt_entries_define_a_symbol_for_data_lookups_only() -> None:
    proc = python_process()
    python = proc.obj()
    entry = match_definition(python, "malloc", "GLIBC_2.2.5")
    assert entry is not None and not entry.shndx_defined and entry.value
    assert match_definition(python, "malloc", "GLIBC_2.2.5", plt=True) is None
    # libc's GLOB_DAT for malloc binds to python's PLT entry, its
    # JUMP_SLOT (if any) to libc's own malloc.
    libc = next(i for i, o in enumerate(proc.objects) if o.path == LIBC)
    glob = next(s for s in proc.states(libc) if s.symbol == "malloc" and s.type_name == "R_X86_64_GLOB_DAT")
    assert glob.binding.object == PYTHON and glob.expected == entry.value


def test_scope_from_link_map_keeps_preloads_and_drops_the_vdso() -> None:
    proc = python_process()
    objects = proc.objects
    by_path = {o.path: o for o in objects}
    crypt = f"{LIBDIR}/libcrypt.so.1"
    preload = LoadedObject("/preloaded.so", 0x7FFFF7000000, parse_elf(Path(crypt).read_bytes(), crypt))

    def entry(name: str, obj: LoadedObject | None, kind: str) -> LinkMapEntry:
        return LinkMapEntry(0, 0, name, obj.base if obj else 0x7FFFF7FC8000, 0, kind)

    entries = [entry("", by_path[PYTHON], "main"), entry("linux-vdso.so.1", None, "vdso"),
               entry("/preloaded.so", preload, "library"),
               *(entry(p, by_path[p], "library") for p in (LIBM, LIBZ, LIBEXPAT, LIBC)),
               entry(LDSO, by_path[LDSO], "ldso")]
    scope = scope_from_link_map([*objects, preload], entries)
    assert [o.path for o in scope] == [PYTHON, "/preloaded.so", LIBM, LIBZ, LIBEXPAT, LIBC, LDSO]
    assert scope_from_link_map(objects, []) is None


# -- the vDSO ------------------------------------------------------------------


def test_image_extent_finds_this_process_vdso() -> None:
    auxv = dict(struct.iter_unpack("<QQ", Path("/proc/self/auxv").read_bytes()))
    vdso = auxv[33]  # AT_SYSINFO_EHDR
    memory = _SelfMemory()
    start, end = image_extent(memory, vdso)
    assert start == vdso and vdso < end <= vdso + 0x10000
    assert image_extent(memory, 0x1000) is None  # unmapped
    assert image_extent(memory, vdso + 0x1000) is None  # inside the image, not a header


def test_nameless_link_map_entry_after_the_first_is_the_vdso() -> None:
    assert classify("", True) == "main"
    assert classify("", False) == "vdso"  # musl's vDSO entry
    assert classify("linux-vdso.so.1", False) == "vdso"
    assert classify("/lib/x86_64-linux-gnu/libc.so.6", False) == "library"


# -- fcntl --------------------------------------------------------------------


@pytest.mark.parametrize("args,text", [
    ([3, 1, 0x7FFC0000], "fcntl(3, F_GETFD) = 0"),
    ([3, 3, 0], "fcntl(3, F_GETFL) = 0"),
    ([3, 9, 0], "fcntl(3, F_GETOWN) = 0"),
    ([3, 2, 1], "fcntl(3, F_SETFD, FD_CLOEXEC) = 0"),
    ([3, 4, 0o4002], "fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0"),
    ([3, 1030, 10], "fcntl(3, F_DUPFD_CLOEXEC, 10) = 0"),
    ([3, 5, 0x7FFC0000], "fcntl(3, F_GETLK, 0x7ffc0000) = 0"),
    ([3, 1033, 0xF], "fcntl(3, F_ADD_SEALS, F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE) = 0"),
])
def test_fcntl_arguments_follow_the_command(args, text) -> None:
    arch = get_arch("x86_64")
    assert decode_syscall(72, [*args, 0, 0, 0], 0, arch).format() == text


def test_ld_so_slots_bound_to_itself_at_bootstrap_are_applied_with_the_reason() -> None:
    """ld.so's bootstrap binds its JUMP_SLOTs to its own definitions; the
    global scope later binds them to libc's (_dl_catch_exception...)."""
    proc = Process((fixture(ZOO / "hello-glibc"), 0x555555554000), (LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    ldso = 2
    slots = [s for s in proc.states(ldso) if s.type_name == "R_X86_64_JUMP_SLOT"]
    assert slots and {s.state for s in slots} == {"pending"}
    info = proc.objects[ldso].info
    for s in slots:
        own = next(d for d in info.definitions(s.symbol))
        assert s.binding.object == LIBC  # the global scope's answer
        proc.write(s.address, LDSO_BASE + own.value)
    after = [s for s in proc.states(ldso) if s.type_name == "R_X86_64_JUMP_SLOT"]
    assert {s.state for s in after} == {"applied"}
    assert all("bootstrap self-relocation" in s.reason for s in after)
    for s in after:
        proc.write(s.address, s.expected)
    assert all(s.state == "applied" and s.reason is None
               for s in proc.states(ldso) if s.type_name == "R_X86_64_JUMP_SLOT")


def test_an_object_whose_libraries_are_not_all_mapped_is_not_relocated_yet() -> None:
    """ld.so relocates nothing before it has loaded every library: while
    libc is still missing, python's open slots are pending, and so are the
    slots of a half-mapped library (not readable yet)."""
    proc = Process((PYTHON, 0), (LIBM, BASES[LIBM]), (LDSO, LDSO_BASE))
    publish_r_debug(proc)
    states = proc.states()
    gmon = next(s for s in states if s.symbol == "__gmon_start__")
    assert gmon.state == "pending" and gmon.reason is None
    copies = [s for s in states if s.type_name == "R_X86_64_COPY"]
    assert copies and {s.state for s in copies} == {"pending"}
    # libm's data segment not mapped yet: its slots cannot be read.
    libm = proc.objects[1]
    data = next(seg for seg in libm.info.load_segments() if "W" in seg.flags)
    del proc.regions[libm.base + data.vaddr]
    unreadable = [s for s in proc.states(1) if s.current is None]
    assert unreadable and {s.state for s in unreadable} == {"pending"}  # libm needs libc
    # With libc mapped, an unreadable slot is just that: unknown, and why.
    full = Process((PYTHON, 0), *((path, base) for path, base in BASES.items()), (LDSO, LDSO_BASE))
    publish_r_debug(full)
    libm_index = next(i for i, o in enumerate(full.objects) if o.path == LIBM)
    libm = full.objects[libm_index]
    del full.regions[libm.base + data.vaddr]
    unreadable = [s for s in full.states(libm_index) if s.current is None]
    assert unreadable and {s.state for s in unreadable} == {"unknown"}
    assert {s.reason for s in unreadable} == {"the slot is not readable"}


def test_an_object_ld_so_has_not_listed_yet_is_not_relocated() -> None:
    """While ld.so maps a library it is not in the link_map yet: a slot
    holding neither value there (a half-mapped page) is pending."""
    proc = python_process()
    listed = ["", *(p for p in sorted(BASES, key=lambda p: -BASES[p]) if p != LIBM), LDSO]
    publish_link_map(proc, listed, state=1)  # RT_ADD: loading
    libm = next(i for i, o in enumerate(proc.objects) if o.path == LIBM)
    relative = next(s for s in proc.states(libm) if s.type_name == "R_X86_64_RELATIVE")
    proc.write(relative.address, 0)
    state = next(s for s in proc.states(libm) if s.address == relative.address)
    assert state.state == "pending"
    # Listed, nothing else known: the same slot is unknown, and says why.
    publish_link_map(proc, ["", *sorted(BASES, key=lambda p: -BASES[p]), LDSO], state=1)
    state = next(s for s in proc.states(libm) if s.address == relative.address)
    assert state.state == "unknown" and "neither the file value" in state.reason
