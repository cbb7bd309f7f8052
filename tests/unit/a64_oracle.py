"""An oracle for A64 encodings, apart from capstone's mnemonics."""


def load_store_exclusive(insn: int) -> bool:
    """binutils' ldstexcl class, from the encoding: the load/store exclusive
    group (bits 29-24 001000) less the CAS family (lse_atomic: o1 set with
    o2 set, or with size bit 31 clear for CASP)."""
    if (insn >> 24) & 0x3F != 0x08:
        return False
    compare_and_swap = (insn >> 21) & 1 and ((insn >> 23) & 1 or not (insn >> 31) & 1)
    return not compare_and_swap
