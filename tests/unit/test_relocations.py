"""relocation_states on memory images built from the files themselves: the
unrelocated image is what the kernel/ld.so maps before relocating, and we
apply relocations by hand to get the "after" picture. (The live cross-check
against a real ld.so is an integration test.)"""

from __future__ import annotations

import functools
import time
from collections import Counter
from pathlib import Path

import pytest

from loaderdbg.analysis.relocations import RelocationState, relocation_states, relocation_totals
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import parse_elf
from loaderdbg.decode.memory import MemoryImage

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "build" / "fixtures" / "zoo"
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LDSO = "/lib64/ld-linux-x86-64.so.2"

MAIN_BASE = 0x555555554000
LIBC_BASE = 0x7FFFF7D80000
LDSO_BASE = 0x7FFFF7FC0000
M64 = (1 << 64) - 1


def fixture(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make fixtures`")
    return path


class Process:
    """Objects mapped at bases, as ld.so maps them before relocating: file
    bytes up to p_filesz, zeros up to p_memsz. Slots can be written."""

    def __init__(self, *objects: tuple[str | Path, int]) -> None:
        self.files: dict[str, bytes] = {}
        self.objects: list[LoadedObject] = []
        self.regions: dict[int, bytearray] = {}
        for path, base in objects:
            data = Path(path).read_bytes()
            info = parse_elf(data, str(path))
            self.files[str(path)] = data
            self.objects.append(LoadedObject(str(path), base, info))
            for seg in info.load_segments():
                self.regions[base + seg.vaddr] = bytearray(
                    data[seg.offset:seg.offset + seg.filesz] + bytes(seg.memsz - seg.filesz))
        self.reads = 0

    def obj(self, index: int = 0) -> LoadedObject:
        return self.objects[index]

    def write(self, addr: int, value: int | bytes) -> None:
        raw = value if isinstance(value, bytes) else (value & M64).to_bytes(8, "little")
        for start, buf in self.regions.items():
            if start <= addr and addr + len(raw) <= start + len(buf):
                buf[addr - start:addr - start + len(raw)] = raw
                return
        raise AssertionError(f"{addr:#x} not mapped")

    def read(self, addr: int, size: int) -> bytes | None:
        self.reads += 1
        return self.image().read(addr, size)

    def image(self) -> MemoryImage:
        return MemoryImage.of(*((start, bytes(buf)) for start, buf in self.regions.items()))

    def states(self, index: int = 0, memory=None) -> tuple[RelocationState, ...]:
        obj = self.objects[index]
        return relocation_states(obj, self.files[obj.path], memory or self.image(), SymbolTable(self.objects))


def publish_r_debug(proc: Process, address: int = 0x10) -> None:
    """Do what ld.so does before it relocates anything: point the main
    program's DT_DEBUG at an r_debug (here an unreadable one: published,
    nothing more to learn)."""
    obj = proc.obj()
    dynamic = next(s for s in obj.info.segments if s.type == "DYNAMIC")
    index = next(i for i, e in enumerate(obj.info.dynamic) if e.name == "DT_DEBUG")
    proc.write(obj.base + dynamic.vaddr + index * 16 + 8, address)


def apply_before(proc: Process, type_name: str, index: int = 0) -> None:
    """Write the relocated value of every relocation of object index that
    precedes the first one of type_name, as ld.so would have."""
    states = proc.states(index)
    first = next(i for i, s in enumerate(states) if s.type_name == type_name)
    for s in states[:first]:
        if s.expected is not None:
            proc.write(s.address, s.expected)


def by_type(states) -> Counter:
    return Counter((s.type_name, s.state) for s in states)


def test_unrelocated_libc_is_all_pending() -> None:
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    states = proc.states()
    info = proc.obj().info
    assert len(states) == len(info.relocations)
    relative = [s for s in states if s.type_name == "R_X86_64_RELATIVE"]
    assert relative and all(s.state == "pending" for s in relative)
    for s in relative:
        assert s.current == s.link_value
        assert s.expected == (LIBC_BASE + (s.addend if s.addend is not None else s.link_value)) & M64
    totals = relocation_totals(states)
    assert totals.total == len(states) == totals.applied + totals.pending + totals.lazy + totals.unknown
    assert totals.pending == len(states) and totals.object == LIBC


def test_relative_applied_by_hand() -> None:
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    before = proc.states()
    for s in before:
        if s.type_name == "R_X86_64_RELATIVE":
            proc.write(s.address, s.expected)
    after = proc.states()
    assert {s.state for s in after if s.type_name == "R_X86_64_RELATIVE"} == {"applied"}
    # Half-way: only the RELR ones (ld.so does RELR first).
    proc2 = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    for s in before:
        if s.table == "RELR":
            proc2.write(s.address, s.expected)
    mixed = Counter((s.table, s.state) for s in proc2.states() if s.type_name == "R_X86_64_RELATIVE")
    assert mixed[("RELR", "applied")] == sum(1 for s in before if s.table == "RELR")
    assert mixed[("RELR", "pending")] == 0


def test_base_zero_is_unknown() -> None:
    proc = Process((fixture(ZOO / "hello-glibc"), 0), (LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    relative = [s for s in proc.states() if s.type_name == "R_X86_64_RELATIVE"]
    # DT_DEBUG still 0: ld.so has not started on the program's objects.
    assert relative and {s.state for s in relative} == {"pending"}
    # RELA with the addend also in the slot: at base 0, before == after.
    publish_r_debug(proc)
    relative = [s for s in proc.states() if s.type_name == "R_X86_64_RELATIVE"]
    assert relative and {s.state for s in relative} == {"unknown"}
    assert all("both before and after relocation" in s.reason for s in relative)
    # RELR keeps the addend in the slot: same story.
    libc = Process((LIBC, 0), (LDSO, LDSO_BASE))
    relr = [s for s in libc.states() if s.table == "RELR"]
    assert relr and {s.state for s in relr} == {"unknown"}


def test_32_bit_objects_are_unknown_not_misread() -> None:
    import dataclasses

    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    obj = proc.obj()
    as32 = dataclasses.replace(obj, info=dataclasses.replace(obj.info, elf_class=32))
    states = relocation_states(as32, proc.files[LIBC], proc.image(), SymbolTable(proc.objects))
    assert {s.state for s in states} == {"unknown"}


def test_ifunc_constructor_returning_zero_is_applied_by_order() -> None:
    """glibc's x86 cacheinfo/cpu-features resolvers return 0, so their
    IRELATIVE slot reads 0 before and after. Once a relocation later in
    glibc's processing order is applied, the earlier ones were processed."""
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    states = proc.states()
    irel = [i for i, s in enumerate(states) if s.type_name == "R_X86_64_IRELATIVE" and s.table == "RELA"]
    assert irel, "libc has IRELATIVE in .rela.dyn"
    assert states[irel[0]].link_value == 0 and states[irel[0]].state == "pending"
    later = next(s for s in states[irel[0] + 1:] if s.expected is not None and s.state == "pending")
    proc.write(later.address, later.expected)
    settled = proc.states()
    assert settled[irel[0]].state == "applied"
    # Nothing after the last applied relocation is guessed.
    last = max(i for i, s in enumerate(settled) if s.state == "applied")
    assert all(s.state == "pending" for s in settled[last + 1:] if s.type_name == "R_X86_64_IRELATIVE")


def test_glob_dat_and_jump_slot_lazy_vs_applied() -> None:
    proc = Process((fixture(ZOO / "lazy"), MAIN_BASE), (LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    symbols = SymbolTable(proc.objects)
    states = proc.states()
    slots = [s for s in states if s.type_name == "R_X86_64_JUMP_SLOT"]
    assert len(slots) >= 2 and {s.state for s in slots} == {"pending"}
    # Lazy: ld.so adds the bias; the slot points at its own PLT push stub.
    lazy_slot, bound_slot = slots[0], slots[1]
    proc.write(lazy_slot.address, MAIN_BASE + lazy_slot.link_value)
    # Bound: the symbol's runtime address in libc.
    target = symbols.resolve(bound_slot.symbol)
    assert target is not None and LIBC_BASE <= target < LDSO_BASE
    proc.write(bound_slot.address, target)
    after = {s.address: s for s in proc.states()}
    assert after[lazy_slot.address].state == "lazy"
    assert after[bound_slot.address].state == "applied"
    assert after[bound_slot.address].expected == target
    # A value that is neither: unknown, never a guess.
    proc.write(lazy_slot.address, 0x1234)
    assert {s.address: s for s in proc.states()}[lazy_slot.address].state == "unknown"


def test_glob_dat_versioned_symbol_resolves_default_version() -> None:
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    symbols = SymbolTable(proc.objects)
    libc = proc.obj().info
    default = next(s for s in libc.definitions("memcpy") if not s.version_hidden)
    assert symbols.resolve("memcpy") == LIBC_BASE + default.value
    hidden = [s for s in libc.definitions("memcpy") if s.version_hidden]
    for sym in hidden:
        assert symbols.resolve("memcpy", sym.version) == LIBC_BASE + sym.value
    # A reference to a version nobody defines does not bind.
    assert symbols.resolve("memcpy", "GLIBC_99") is None


def test_irelative() -> None:
    proc = Process((fixture(ZOO / "ifunc-tls"), MAIN_BASE), (LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    irel = [s for s in proc.states() if s.type_name == "R_X86_64_IRELATIVE"]
    assert len(irel) == 1 and irel[0].state == "pending"
    slot = irel[0]
    resolver = MAIN_BASE + slot.addend
    # The resolver returned one of the implementations: some other address.
    proc.write(slot.address, resolver + 0x40)
    assert [s.state for s in proc.states() if s.address == slot.address] == ["applied"]
    # The resolver's own address is neither before nor a plausible after.
    proc.write(slot.address, resolver)
    assert [s.state for s in proc.states() if s.address == slot.address] == ["unknown"]


def test_tpoff64() -> None:
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    tp = [s for s in proc.states() if s.type_name == "R_X86_64_TPOFF64"]
    assert tp and {s.state for s in tp} == {"pending"}
    proc.write(tp[0].address, -0x80)
    after = {s.address: s.state for s in proc.states()}
    assert after[tp[0].address] == "applied"
    assert after[tp[1].address] == "pending"


def test_copy_relocation() -> None:
    main = fixture(ZOO / "threads")
    proc = Process((main, MAIN_BASE), (LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    # Before ld.so fills DT_DEBUG, nothing is relocated.
    assert {s.state for s in proc.states() if s.type_name == "R_X86_64_COPY"} == {"pending"}
    # ld.so started (DT_DEBUG) but the program's earlier relocations are
    # still pending: ld.so applies a table in order, so the copies are too.
    publish_r_debug(proc)
    assert {s.state for s in proc.states() if s.type_name == "R_X86_64_COPY"} == {"pending"}
    apply_before(proc, "R_X86_64_COPY")
    # Before libc is relocated its stdout/stderr words are still 0, like the
    # main program's .bss copies: nothing to tell apart.
    assert {s.state for s in proc.states() if s.type_name == "R_X86_64_COPY"} == {"unknown"}
    # ld.so relocates libraries before the main program: apply libc's first.
    for s in proc.states(1):
        if s.expected is not None and s.type_name in ("R_X86_64_64", "R_X86_64_RELATIVE"):
            proc.write(s.address, s.expected)
    copies = [s for s in proc.states() if s.type_name == "R_X86_64_COPY"]
    assert copies and {s.state for s in copies} == {"pending"}, copies
    symbols = SymbolTable(proc.objects)
    main_obj = proc.obj()
    for s in copies:
        obj, sym = symbols.lookup(s.symbol, skip=main_obj)
        assert obj.path == LIBC
        source = proc.image().read(obj.runtime(sym.value), sym.size)
        proc.write(s.address, source)
    assert {s.state for s in proc.states() if s.type_name == "R_X86_64_COPY"} == {"applied"}


def test_unreadable_slots_are_unknown() -> None:
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    text_only = MemoryImage.of(*(
        (start, bytes(buf)) for start, buf in proc.regions.items()
        if not proc.obj().info.segment_for_vaddr(start - LIBC_BASE)
        or "W" not in proc.obj().info.segment_for_vaddr(start - LIBC_BASE).flags))
    states = proc.states(memory=text_only)
    assert {s.state for s in states} == {"unknown"}
    assert all(s.current is None for s in states)


def test_libc_states_are_fast_and_read_in_blocks() -> None:
    proc = Process((LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    image = proc.image()

    class Counting:
        reads = 0

        def read(self, addr: int, size: int) -> bytes | None:
            Counting.reads += 1
            return image.read(addr, size)

    symbols = SymbolTable(proc.objects)
    obj = proc.obj()
    data = proc.files[LIBC]
    # This thread's CPU time, not the wall clock: the work is pure
    # computation on bytes in memory, and on a loaded machine the wall clock
    # also counts the time other processes held the CPU.
    start = time.thread_time()
    states = relocation_states(obj, data, Counting(), symbols)
    elapsed = time.thread_time() - start
    assert len(states) == 1339 or len(states) == len(obj.info.relocations)
    assert Counting.reads <= 4  # one block per PT_LOAD holding slots
    assert elapsed < 0.25, f"{elapsed * 1000:.1f} ms of CPU"


def test_symbol_table_symbolize_and_object_at() -> None:
    proc = Process((fixture(ZOO / "hello-glibc"), MAIN_BASE), (LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    symbols = SymbolTable(proc.objects)
    malloc = symbols.resolve("malloc")
    assert malloc is not None
    assert symbols.symbolize(malloc) == "malloc"
    assert symbols.symbolize(malloc + 0x12) == "malloc+0x12"
    assert symbols.object_at(malloc).path == LIBC
    assert symbols.object_at(0x1000) is None and symbols.symbolize(0x1000) is None
    main = proc.obj().info
    assert symbols.object_at(MAIN_BASE + main.entry).path.endswith("hello-glibc")
    # Main program first in load order: its definitions win (symbol interposition).
    assert symbols.lookup("main") is None or symbols.lookup("main")[0] is proc.obj()
    # An address with no symbol falls back to object+offset.
    plt = next(s for s in main.segments if s.type == "LOAD" and "E" in s.flags)
    name = symbols.symbolize(MAIN_BASE + plt.vaddr)
    assert name is not None


def test_weak_undefined_resolves_to_zero() -> None:
    proc = Process((fixture(ZOO / "hello-glibc"), MAIN_BASE), (LIBC, LIBC_BASE), (LDSO, LDSO_BASE))
    info = proc.obj().info
    weak = [r for r in info.relocations if r.symbol and info.dynsyms[r.symbol_index].bind == "WEAK"
            and not info.dynsyms[r.symbol_index].shndx_defined]
    assert weak  # _ITM_*, __gmon_start__
    publish_r_debug(proc)
    first_weak = min(info.relocations.index(r) for r in weak)
    # An earlier relocation still pending: ld.so has not reached them.
    assert {proc.states()[info.relocations.index(r)].state for r in weak} == {"pending"}
    for s in proc.states()[:first_weak]:
        if s.expected is not None:
            proc.write(s.address, s.expected)
    states = {s.address: s for s in proc.states()}
    for r in weak:
        state = states[MAIN_BASE + r.offset]
        if SymbolTable(proc.objects).lookup(r.symbol) is None:
            # expected 0 == link value 0: we cannot tell, and say so.
            assert state.expected == 0 and state.state == "unknown" and state.reason


def test_totals_of_nothing() -> None:
    totals = relocation_totals((), object="x")
    assert (totals.object, totals.total, totals.applied, totals.pending) == ("x", 0, 0, 0)


# -- this very process: relocated by the real ld.so ---------------------------


class _SelfMemory:
    """MemoryReader over /proc/self/mem (no ptrace: our own memory)."""

    def __init__(self) -> None:
        import os

        self._fd = os.open("/proc/self/mem", os.O_RDONLY)

    def read(self, addr: int, size: int) -> bytes | None:
        import os

        try:
            data = os.pread(self._fd, size, addr)
        except (OSError, OverflowError, ValueError):
            return None
        return data if len(data) == size else None


@functools.lru_cache(maxsize=1)
def _this_process() -> tuple[_SelfMemory, list[LoadedObject], tuple]:
    import os
    import struct

    from loaderdbg.decode.linkmap import find_r_debug_via_dt_debug, walk_r_debug

    memory = _SelfMemory()
    exe = os.readlink("/proc/self/exe")
    main = parse_elf(Path(exe).read_bytes(), exe)
    auxv = Path("/proc/self/auxv").read_bytes()
    at = dict(struct.iter_unpack("<QQ", auxv))
    phdr = next(s for s in main.segments if s.type == "PHDR")
    base = at[3] - phdr.vaddr  # AT_PHDR
    r_debug = find_r_debug_via_dt_debug(memory, base + main.dynamic_vaddr)
    assert r_debug is not None
    _, entries = walk_r_debug(memory, r_debug)
    objects = []
    for entry in entries:
        path = exe if entry.kind == "main" else entry.name
        if entry.kind == "vdso" or not path:
            continue
        objects.append(LoadedObject(path, entry.l_addr, parse_elf(Path(path).read_bytes(), path)))
    assert entries[0].kind == "main" and entries[0].l_addr == base
    return memory, objects, entries


def test_this_process_libraries_are_relocated() -> None:
    """ld.so relocated the test interpreter's libc long ago: every
    relocation we can judge must be applied or lazy, none pending."""
    memory, objects, entries = _this_process()
    kinds = {e.kind for e in entries}
    assert {"main", "ldso"} <= kinds
    symbols = SymbolTable(objects)
    libc = next(o for o in objects if o.path.endswith("/libc.so.6"))
    ldso = next(o for o in objects if "ld-linux" in o.path)
    for obj in (libc, ldso):
        states = relocation_states(obj, Path(obj.path).read_bytes(), memory, symbols)
        totals = relocation_totals(states)
        assert totals.pending == 0, [s for s in states if s.state == "pending"][:5]
        assert totals.applied + totals.lazy >= 0.95 * totals.total
        for s in states:
            if s.type_name in ("R_X86_64_GLOB_DAT", "R_X86_64_TPOFF64", "R_X86_64_IRELATIVE"):
                assert s.state == "applied", s


def test_this_process_symbols_match_dlsym() -> None:
    """Our scope lookup (load order, default versions) against ld.so's own
    dlsym(RTLD_DEFAULT, name) in this process."""
    import ctypes

    _, objects, _ = _this_process()
    symbols = SymbolTable(objects)
    everything = ctypes.CDLL(None)
    # pthread_create and pthread_cond_wait have hidden old versions in libc.
    for name in ("malloc", "free", "printf", "pthread_create", "pthread_cond_wait", "dlopen"):
        ours = symbols.resolve(name)
        theirs = ctypes.cast(getattr(everything, name), ctypes.c_void_p).value
        assert ours == theirs, (name, hex(ours or 0), hex(theirs or 0))
        assert symbols.symbolize(ours) is not None
