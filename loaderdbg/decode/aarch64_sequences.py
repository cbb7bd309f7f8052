"""Where an A64 atomic sequence ends: the load-exclusive … store-exclusive
run that must be one step.

Stepped instruction by instruction, a sequence's store-exclusive always
fails (every trap clears the exclusive monitor, qemu's as a kernel's), and
its retry loop never ends. So a debugger runs the whole sequence as one
step, to where it can leave. gdb's rule (aarch64_deal_with_atomic_sequence)
scans in address order and follows only b.cond: it misses musl's loops
(a_cas rotated so that the store-exclusive comes first and a cbz leads back
to it: stepped for ever) and can name an exit control never reaches (the
run goes on to the program's end). This follows the branches instead: the
sequence ends after each store-exclusive (or store-release, which gdb's
rule counts too) reachable within 16 instructions, and wherever a branch
leaves for code that reaches none.

Pure: the code comes from ``read_word(addr)`` (4 bytes, None when
unreadable); used by the qemu target's steps and by the aarch64 recorder,
so a live step and a recorded one end in the same place.
"""

from __future__ import annotations

import functools
from typing import Callable

# The loads of the load/store-exclusive class (binutils' ldstexcl, L set):
# where an atomic sequence may start.
SEQUENCE_LOADS = frozenset({"ldxr", "ldxrb", "ldxrh", "ldxp", "ldaxr", "ldaxrb", "ldaxrh", "ldaxp",
                            "ldar", "ldarb", "ldarh", "ldlar", "ldlarb", "ldlarh"})
# Its stores (L clear): where an atomic sequence ends.
SEQUENCE_STORES = frozenset({"stxr", "stxrb", "stxrh", "stxp", "stlxr", "stlxrb", "stlxrh", "stlxp",
                             "stlr", "stlrb", "stlrh", "stllr", "stllrb", "stllrh"})
# How far an atomic sequence is followed (gdb's aarch64 limit).
SEQUENCE_LENGTH = 16
_CONDITIONAL_BRANCHES = frozenset({"cbz", "cbnz", "tbz", "tbnz"})
_ENDS_FLOW = frozenset({"br", "blr", "ret", "bl", "svc", "brk", "hlt", "udf", "eret", "braa", "brab", "blraa",
                        "blrab", "retaa", "retab", "braaz", "brabz", "blraaz", "blrabz"})

ReadWord = Callable[[int], "bytes | None"]

@functools.cache
def _disassembler():
    # Imported on first use: capstone costs ~30 ms to import, and the x86
    # engine loads this module with the qemu target without ever calling it.
    import capstone
    handle = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    handle.detail = True
    return handle


def _flow(read_word: ReadWord, addr: int) -> tuple[str | None, tuple[int, ...]]:
    """(mnemonic, the addresses control may go to next) of the instruction
    at addr; (None, ()) when unreadable or undecodable."""
    import capstone
    from capstone import arm64 as cs_arm64
    code = read_word(addr)
    insn = None
    if code:
        try:
            insn = next(_disassembler().disasm(bytes(code[:4]), addr, 1), None)
        except capstone.CsError:
            insn = None
    if insn is None:
        return None, ()
    mnemonic = insn.mnemonic
    if mnemonic in _ENDS_FLOW:
        return mnemonic, ()
    target = next((op.imm for op in reversed(insn.operands) if op.type == cs_arm64.ARM64_OP_IMM), None)
    if mnemonic == "b" and target is not None:
        return mnemonic, (target,)
    if (mnemonic.startswith("b.") or mnemonic in _CONDITIONAL_BRANCHES) and target is not None:
        return mnemonic, (target, addr + 4)
    return mnemonic, (addr + 4,)


def starts_sequence(read_word: ReadWord, pc: int) -> bool:
    """Whether the instruction at pc is a load-exclusive (or load-acquire)."""
    return _flow(read_word, pc)[0] in SEQUENCE_LOADS


def atomic_sequence_exits(read_word: ReadWord, pc: int) -> tuple[int, ...]:
    """Where to stop the atomic sequence that starts with the load-exclusive
    at pc; () when pc starts none, or no store is reachable from it (the
    load is then one instruction like any other)."""
    if not starts_sequence(read_word, pc):
        return ()
    reaches: dict[int, bool] = {}

    def reaches_store(addr: int, depth: int, path: frozenset) -> bool:
        if depth > SEQUENCE_LENGTH or addr in path:
            return False
        if addr in reaches:
            return reaches[addr]
        mnemonic, successors = _flow(read_word, addr)
        found = mnemonic in SEQUENCE_STORES or any(reaches_store(s, depth + 1, path | {addr}) for s in successors)
        reaches[addr] = found
        return found

    if not reaches_store(pc, 0, frozenset()):
        return ()
    exits: set[int] = set()
    pending, seen = [pc], set()
    while pending:
        addr = pending.pop()
        if addr in seen:
            continue
        seen.add(addr)
        mnemonic, successors = _flow(read_word, addr)
        if mnemonic in SEQUENCE_STORES:
            exits.add(addr + 4)
            continue
        for successor in successors:
            if reaches.get(successor) or reaches_store(successor, 1, frozenset()):
                pending.append(successor)
            else:
                exits.add(successor)
    exits.discard(pc)
    return tuple(sorted(exits))
