"""`bt` and `finish`: unwinding the stack with each object's .eh_frame CFI
(pyelftools reads it), frame pointers where an object has none for pc.

Frames are worked out from the stop's registers and memory read through
the session, so this runs in a worker (it blocks on the tracer thread).
An object's call-frame table is parsed once and kept (libc's: 0.4 s).
"""

from __future__ import annotations

import bisect
import io
import threading
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.dwarf.callframe import FDE, RegisterRule
from elftools.elf.elffile import ELFFile

MAX_FRAMES = 64
WORD = 8
# DWARF register numbers on x86_64 (psABI figure 3.36); 16 is the return address.
DWARF_REGISTERS = {0: "rax", 1: "rdx", 2: "rcx", 3: "rbx", 4: "rsi", 5: "rdi", 6: "rbp", 7: "rsp",
                   **{n: f"r{n}" for n in range(8, 16)}}
RETURN_ADDRESS = 16
# Registers a callee keeps (psABI): only these are known in a caller's frame.
CALLEE_SAVED = frozenset({"rbx", "rbp", "r12", "r13", "r14", "r15"})


@dataclass(frozen=True)
class Frame:
    number: int
    pc: int
    cfa: int | None        # the caller's rsp once this frame returns
    symbol: str | None
    object_path: str | None
    how: str               # "registers" (frame 0), "cfi" or "frame pointer": how its caller was found


class CallFrameTable:
    """An object's FDEs by link-time address, decoded on first use."""

    def __init__(self, fdes: list) -> None:
        fdes.sort(key=lambda f: f.header["initial_location"])
        self._fdes = fdes
        self._starts = [f.header["initial_location"] for f in fdes]
        self._decoded: dict[int, list] = {}

    def row(self, vaddr: int) -> dict | None:
        """The CFI row in force at vaddr, None if no FDE covers it."""
        index = bisect.bisect_right(self._starts, vaddr) - 1
        if index < 0:
            return None
        fde = self._fdes[index]
        if not vaddr < fde.header["initial_location"] + fde.header["address_range"]:
            return None
        rows = self._decoded.get(index)
        if rows is None:
            rows = self._decoded[index] = fde.get_decoded().table
        found = None
        for row in rows:
            if row["pc"] > vaddr:
                break
            found = row
        return found


_TABLES: dict[tuple[str, int], CallFrameTable | None] = {}
_TABLES_LOCK = threading.Lock()


def call_frame_table(path: str, elf_offset: int) -> CallFrameTable | None:
    """The .eh_frame table of the ELF at elf_offset in path (an exec-solib
    embeds one), None if unreadable or without CFI. Kept per file."""
    key = (path, elf_offset)
    with _TABLES_LOCK:
        if key in _TABLES:
            return _TABLES[key]
    table = None
    try:
        with open(path, "rb") as stream:
            stream.seek(elf_offset)
            data = stream.read()
        elf = ELFFile(io.BytesIO(data))
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        if dwarf.has_EH_CFI():
            table = CallFrameTable([e for e in dwarf.EH_CFI_entries() if isinstance(e, FDE)])
    except (OSError, ELFError, ValueError, KeyError, AttributeError, TypeError):
        table = None
    with _TABLES_LOCK:
        _TABLES[key] = table
    return table


def _object_at(snapshot, address: int):
    """(the ObjectSummary whose mapping holds address, that mapping), or (None, mapping)."""
    mapping = next((m for m in snapshot.maps if m.entry.start <= address < m.entry.end), None)
    if mapping is None:
        return None, None
    obj = next((o for o in snapshot.objects if o.name == mapping.object), None)
    return obj, mapping


def _read_word(session, address: int) -> int | None:
    data = session.read_memory(address, WORD)
    if data is None or len(data) < WORD:
        return None
    return int.from_bytes(data, "little")


def _executable(snapshot, address: int) -> bool:
    return any(m.entry.start <= address < m.entry.end and "x" in m.entry.perms for m in snapshot.maps)


def backtrace(session, snapshot, limit: int = MAX_FRAMES) -> list[Frame]:
    """Frames from the stop's registers outwards, innermost first."""
    regs = snapshot.registers
    if regs is None:
        return []
    known = {name: regs[name] for name in (*DWARF_REGISTERS.values(), "rip") if name in regs}
    frames: list[Frame] = []
    pc = known.get("rip", regs.pc)
    seen: set[tuple[int, int]] = set()
    for number in range(limit):
        obj, mapping = _object_at(snapshot, pc)
        symbol = session.symbolize(pc)
        path = mapping.entry.path if mapping is not None else None
        # A caller's pc is a return address: look up the call, one byte before.
        lookup = pc if number == 0 else pc - 1
        caller, how = None, "frame pointer"
        table = call_frame_table(obj.path, obj.elf_offset) if obj is not None and obj.path else None
        row = table.row(lookup - obj.base) if table is not None else None
        if row is not None:
            caller = _unwind_cfi(session, row, known)
            how = "cfi"
        if caller is None:
            caller = _unwind_frame_pointer(session, known, at_entry=bool(symbol) and "+" not in symbol)
        cfa = caller.get("rsp") if caller is not None else None
        frames.append(Frame(number, pc, cfa, symbol, path, "registers" if number == 0 else how))
        if caller is None:
            break
        next_pc = caller.get("rip")
        if not next_pc or not _executable(snapshot, next_pc) or (next_pc, cfa) in seen:
            break
        seen.add((next_pc, cfa))
        known, pc = caller, next_pc
    return frames


def _unwind_cfi(session, row: dict, known: dict[str, int]) -> dict[str, int] | None:
    rule = row["cfa"]
    if rule.expr is not None or rule.reg not in DWARF_REGISTERS:
        return None
    base = known.get(DWARF_REGISTERS[rule.reg])
    if base is None:
        return None
    cfa = base + rule.offset
    caller = {name: value for name, value in known.items() if name in CALLEE_SAVED}
    caller["rsp"] = cfa
    for register, saved in row.items():
        if not isinstance(register, int) or not isinstance(saved, RegisterRule):
            continue
        name = "rip" if register == RETURN_ADDRESS else DWARF_REGISTERS.get(register)
        if name is None:
            continue
        if saved.type == RegisterRule.OFFSET:
            value = _read_word(session, cfa + saved.arg)
            if value is None:
                return None
            caller[name] = value
        elif saved.type == RegisterRule.UNDEFINED:
            caller.pop(name, None)
            if name == "rip":
                return None  # the outermost frame (_start marks its return address undefined)
        elif saved.type == RegisterRule.SAME_VALUE and name in known:
            caller[name] = known[name]
    return caller if "rip" in caller else None


def _unwind_frame_pointer(session, known: dict[str, int], *, at_entry: bool) -> dict[str, int] | None:
    """No CFI for pc: at a function's first instruction the return address
    is at rsp; elsewhere rbp chains the frames (push rbp; mov rbp, rsp)."""
    rsp, rbp = known.get("rsp"), known.get("rbp")
    if at_entry and rsp is not None:
        ra = _read_word(session, rsp)
        return None if ra is None else {**{k: v for k, v in known.items() if k in CALLEE_SAVED},
                                         "rip": ra, "rsp": rsp + WORD}
    if not rbp or rsp is None or rbp < rsp:
        return None
    saved, ra = _read_word(session, rbp), _read_word(session, rbp + WORD)
    if ra is None or saved is None:
        return None
    return {**{k: v for k, v in known.items() if k in CALLEE_SAVED}, "rbp": saved, "rip": ra, "rsp": rbp + 2 * WORD}
