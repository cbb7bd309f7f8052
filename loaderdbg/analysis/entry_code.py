"""Where a program's ``main`` is when no symbol says so.

A stripped program still tells: its entry code (crt1's ``_start``) passes
``main`` as the first argument of the C library's start routine, as gdb's
users find by hand. The shapes on x86-64:

- glibc, dynamic: ``lea main(%rip), %rdi`` (PIE) or ``mov $main, %rdi``
  (ET_EXEC), then ``call *__libc_start_main@GOTPCREL(%rip)``, a GOT slot
  whose relocation names the routine.
- glibc, static or static-pie: the linker relaxes that call to a direct
  ``addr32 call __libc_start_main``.
- musl: ``_start`` calls ``_start_c``, which loads ``main`` and tail-jumps
  to ``__libc_start_main`` (through a PLT stub when dynamic).
- unrelaxed code (``-Wl,--no-relax``): ``mov main@GOTPCREL(%rip), %rdi``
  reads a GOT slot whose relocation names ``main`` or is RELATIVE, or, in a
  static ET_EXEC, whose file bytes already hold the address.

Everything here reads the file's bytes: it works before the program runs,
so a run to ``main`` can say up front that it cannot be found.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from loaderdbg.arch import ArchTables
from loaderdbg.decode.disasm import Instruction, disassemble
from loaderdbg.decode.elf import ElfInfo, Relocation

# C library start routines whose first argument is main.
START_ROUTINES = frozenset({"__libc_start_main", "__uClibc_main"})

# The first integer argument register's names that set all of it (with the
# mask a write through that name leaves), and those that set only a part.
_FIRST_ARGUMENT = {"x86_64": {"rdi": None, "edi": 0xFFFF_FFFF}}
_PARTIAL_WRITES = {"x86_64": frozenset({"di", "dil"})}

# Entry code is short; musl's _start_c is the one level of indirection seen.
_ENTRY_BYTES = 256
_MAX_INSTRUCTIONS = 64
_MAX_DEPTH = 2
_PLT_STUB_INSTRUCTIONS = 3

_RELATIVE_TYPES = frozenset({"R_X86_64_RELATIVE"})
_SYMBOL_VALUE_TYPES = frozenset({"R_X86_64_GLOB_DAT", "R_X86_64_64", "R_X86_64_JUMP_SLOT"})


@dataclass(frozen=True)
class MainLocation:
    """Where main is, link-time (add the load bias), or why it is not known."""

    address: int | None
    how: str  # "symbol main", "first argument of __libc_start_main (call at 0x…)", or the reason it failed
    call_site: int | None = None  # link-time address of the call or jump that passes main

    @property
    def found(self) -> bool:
        return self.address is not None


def find_main(info: ElfInfo, file_bytes: bytes, arch: ArchTables) -> int | None:
    """Link-time address of main: its symbol, else the first argument the
    entry code passes to __libc_start_main."""
    return locate_main(info, file_bytes, arch).address


def main_not_found_reason(program: str, info: ElfInfo, file_bytes: bytes, arch: ArchTables) -> str | None:
    """One line saying why a run to main cannot work, or None when main is
    found. Meant to be said before running, not after the program exited."""
    location = locate_main(info, file_bytes, arch)
    if location.found:
        return None
    return f"main not found: {program} has no symbol `main` and {location.how}"


def locate_main(info: ElfInfo, file_bytes: bytes, arch: ArchTables) -> MainLocation:
    symbol = info.symbol_named("main")
    if symbol is not None and symbol.value and symbol.type in ("FUNC", "NOTYPE", "GNU_IFUNC"):
        return MainLocation(symbol.value, "symbol main")
    return main_from_entry_code(info, file_bytes, arch)


def main_from_entry_code(info: ElfInfo, file_bytes: bytes, arch: ArchTables) -> MainLocation:
    """main as the entry code passes it, ignoring any symbol."""
    if arch.name not in _FIRST_ARGUMENT:
        return MainLocation(None, f"its entry code cannot be read on {arch.name} yet")
    if _code(info, file_bytes, info.entry, 1) is None:
        return MainLocation(None, f"its entry point {info.entry:#x} is not in an executable segment")
    return _EntryCode(info, file_bytes, arch).search(info.entry, 0)


class _EntryCode:
    """One walk over one object's entry code, tracking the first argument
    register as a link-time constant when the code makes it one."""

    def __init__(self, info: ElfInfo, data: bytes, arch: ArchTables) -> None:
        self.info = info
        self.data = data
        self.arch = arch
        self.views = _FIRST_ARGUMENT[arch.name]
        self.partial = _PARTIAL_WRITES[arch.name]
        # Relocation i by its slot, from the columns: a big program has tens
        # of thousands, of which the walk asks about a few (gdb: 34,000
        # Relocation objects were ~60 ms of a run to main).
        self._columns = info.relocation_columns
        self._index_at = dict(zip(self._columns.offsets, range(len(self._columns))))

    def search(self, start: int, depth: int) -> MainLocation:
        code = _code(self.info, self.data, start, _ENTRY_BYTES)
        if code is None:
            return MainLocation(None, f"its entry code jumps to {start:#x}, outside executable code")
        argument: int | None = None
        for insn in disassemble(code, start, self.arch, count=_MAX_INSTRUCTIONS):
            if insn.is_bad or insn.is_ret or insn.mnemonic == "hlt":
                break
            if insn.is_call or insn.is_jump:
                return self._at_branch(insn, argument, depth)
            argument = self._after(insn, argument)
        return MainLocation(None, "its entry code does not call __libc_start_main")

    def _at_branch(self, insn: Instruction, argument: int | None, depth: int) -> MainLocation:
        callee = self._callee_name(insn)
        where = f"{insn.mnemonic} at {insn.address:#x}"
        starts = callee in START_ROUTINES
        if (starts or callee is None) and argument is not None and self._executable(argument):
            routine = callee or "the C library's start routine"
            return MainLocation(argument, f"first argument of {routine} ({where})", insn.address)
        if not starts and insn.branch_target is not None and depth < _MAX_DEPTH:
            # musl: _start passes its stack pointer to _start_c, which makes
            # the call.
            inner = self.search(insn.branch_target, depth + 1)
            if inner.found or callee is None:
                return inner
        if starts:
            return MainLocation(None, f"its entry code calls {callee} with a first argument that is not "
                                      f"a constant address in code ({where})")
        if callee is not None:
            return MainLocation(None, f"its entry code calls {callee}, not __libc_start_main ({where})")
        return MainLocation(None, "its entry code does not call __libc_start_main")

    # -- the first argument ------------------------------------------------

    def _after(self, insn: Instruction, argument: int | None) -> int | None:
        """The first argument register's value after insn (None: unknown)."""
        if not insn.operands:
            return argument
        first = insn.operands[0]
        writes_it = any(op.kind == "reg" and op.access in ("write", "readwrite") and
                        (op.reg in self.views or op.reg in self.partial) for op in insn.operands)
        if not writes_it:
            return argument
        if first.kind != "reg" or first.reg not in self.views or len(insn.operands) != 2 \
                or first.access != "write":
            return None
        mask = self.views[first.reg]
        source = insn.operands[1]
        value: int | None = None
        if insn.mnemonic == "mov" and source.kind == "imm":
            value = source.imm
        elif insn.mnemonic == "lea" and source.kind == "mem":
            value = self._rip_relative(insn, source)
        elif insn.mnemonic == "mov" and source.kind == "mem" and mask is None:
            slot = self._rip_relative(insn, source)
            value = self._slot_value(slot) if slot is not None else None
        if value is None:
            return None
        value &= self.arch.word_mask
        return value & mask if mask is not None else value

    def _rip_relative(self, insn: Instruction, op) -> int | None:
        if op.base != self.arch.pc_register or op.index is not None or op.segment is not None:
            return None
        return (insn.next_address + op.disp) & self.arch.word_mask

    def _slot_value(self, slot: int) -> int | None:
        """What a GOT slot holds once relocated: RELATIVE's addend, the named
        symbol's value when this object defines it, or (no relocation, a
        static ET_EXEC) the word in the file."""
        reloc = self._relocation(slot)
        if reloc is None:
            return self._word(slot) if self.info.type == "ET_EXEC" else None
        if reloc.type_name in _RELATIVE_TYPES:
            return reloc.addend if reloc.addend is not None else self._word(slot)
        if reloc.type_name in _SYMBOL_VALUE_TYPES and reloc.symbol:
            symbol = self.info.symbol_named(reloc.symbol)
            if symbol is not None and symbol.value:
                return symbol.value + (reloc.addend or 0)
        return None

    def _word(self, vaddr: int) -> int | None:
        offset = self.info.vaddr_to_file_offset(vaddr)
        size = self.arch.word_size
        if offset is None or offset + size > len(self.data):
            return None
        return struct.unpack_from(self.arch.word_format, self.data, offset)[0]

    def _executable(self, vaddr: int) -> bool:
        segment = self.info.segment_for_vaddr(vaddr)
        return segment is not None and segment.executable

    # -- the callee ----------------------------------------------------------

    def _callee_name(self, insn: Instruction) -> str | None:
        """The name of what a call or jump reaches, when the file says:
        the relocation of the GOT slot it goes through (directly, or via a
        PLT stub), or a symbol at a direct target. None when unnamed."""
        memory = next((op for op in insn.operands if op.kind == "mem"), None)
        if memory is not None:
            slot = self._rip_relative(insn, memory)
            if slot is None:
                return None
            named = self._slot_symbol(slot)
            if named is not None:
                return named
            # A static program's GOT slot holds (or is relocated to) the
            # target itself.
            target = self._slot_value(slot)
        else:
            target = insn.branch_target
        if target is None:
            return None
        for routine in START_ROUTINES:
            # Checked by name: an alias (__libc_start_main_impl) may be the
            # name symbolize prefers.
            symbol = self.info.symbol_named(routine)
            if symbol is not None and symbol.value == target:
                return routine
        named = self.info.symbolize(target)
        if named is not None and named[1] == 0:
            return named[0]
        return self._plt_stub_symbol(target)

    def _relocation(self, slot: int) -> Relocation | None:
        index = self._index_at.get(slot)
        return None if index is None else self._columns.relocation(index)

    def _slot_symbol(self, slot: int) -> str | None:
        reloc = self._relocation(slot)
        return reloc.symbol if reloc is not None else None

    def _plt_stub_symbol(self, target: int) -> str | None:
        code = _code(self.info, self.data, target, _PLT_STUB_INSTRUCTIONS * 8)
        if code is None:
            return None
        for insn in disassemble(code, target, self.arch, count=_PLT_STUB_INSTRUCTIONS):
            if insn.is_jump:
                memory = next((op for op in insn.operands if op.kind == "mem"), None)
                slot = self._rip_relative(insn, memory) if memory is not None else None
                return self._slot_symbol(slot) if slot is not None else None
            if insn.is_call or insn.is_ret or insn.is_bad:
                return None
        return None


def _code(info: ElfInfo, data: bytes, vaddr: int, size: int) -> bytes | None:
    """Up to size file bytes at vaddr, if vaddr is in an executable PT_LOAD."""
    segment = info.segment_for_vaddr(vaddr)
    if segment is None or not segment.executable:
        return None
    offset = info.vaddr_to_file_offset(vaddr)
    if offset is None or offset >= len(data):
        return None
    end = min(offset + size, segment.offset + segment.filesz, len(data))
    return data[offset:end]
