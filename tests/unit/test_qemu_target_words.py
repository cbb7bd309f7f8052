"""qemu_target.py's word-level rules: the stub's register block as
user_pt_regs, gdb's signal numbers, and which instructions make an atomic
sequence (the encodings checked against capstone)."""

from __future__ import annotations

import signal
import struct

import capstone
import pytest
from a64_oracle import load_store_exclusive

from loaderdbg.decode.aarch64_sequences import SEQUENCE_LOADS, SEQUENCE_STORES
from loaderdbg.process.qemu_target import (
    AARCH64, GDB_TO_LINUX_SIGNAL, LINUX_TO_GDB_SIGNAL, gdb_registers_to_user_regs, user_regs_to_gdb_registers)
from loaderdbg.errors import TargetError

WORDS = {
    0x885FFC01: ("ldaxr", True), 0x8802FC01: ("stlxr", True), 0xC8DFFC20: ("ldar", True),
    0xC89FFC20: ("stlr", True), 0xC87F0440: ("ldxp", True), 0x085F7C20: ("ldxrb", True),
    0x88E07C41: ("casa", False), 0x48207C82: ("casp", False), 0x11000421: ("add", False),
    0xB9400020: ("ldr", False),
}


@pytest.mark.parametrize("word", sorted(WORDS))
def test_sequence_instructions_are_binutils_ldstexcl(word):
    """The mnemonics an atomic sequence starts and ends with
    (decode/aarch64_sequences.py) are exactly binutils' ldstexcl class,
    loads (bit 22, L) and stores."""
    mnemonic, exclusive = WORDS[word]
    disassembler = capstone.Cs(AARCH64.capstone_arch, AARCH64.capstone_mode)
    assert next(disassembler.disasm(struct.pack("<I", word), 0)).mnemonic == mnemonic
    assert load_store_exclusive(word) is exclusive
    load = bool(word & (1 << 22))
    assert (mnemonic in SEQUENCE_LOADS) is (exclusive and load)
    assert (mnemonic in SEQUENCE_STORES) is (exclusive and not load)


def test_register_block_round_trip():
    block = b"".join(struct.pack("<Q", 0x1000 + n) for n in range(33)) + struct.pack("<I", 0x60000000)
    raw = gdb_registers_to_user_regs(block + b"\xff" * 8)  # anything after the core block is not ours
    assert len(raw) == AARCH64.user_regs_size
    offset = AARCH64.register_offset
    assert raw[offset("x30"):offset("x30") + 8] == struct.pack("<Q", 0x1000 + 30)
    assert raw[offset("pc"):offset("pc") + 8] == struct.pack("<Q", 0x1000 + 32)
    assert raw[offset("pstate"):offset("pstate") + 8] == struct.pack("<Q", 0x60000000)
    assert user_regs_to_gdb_registers(raw) == block
    with pytest.raises(TargetError):
        gdb_registers_to_user_regs(block[:-1])


def test_gdb_signal_numbers():
    assert GDB_TO_LINUX_SIGNAL[5] == signal.SIGTRAP and GDB_TO_LINUX_SIGNAL[11] == signal.SIGSEGV
    assert GDB_TO_LINUX_SIGNAL[10] == signal.SIGBUS == 7  # gdb's numbering is not Linux's
    assert GDB_TO_LINUX_SIGNAL[30] == signal.SIGUSR1 and GDB_TO_LINUX_SIGNAL[20] == signal.SIGCHLD
    assert GDB_TO_LINUX_SIGNAL[45] == 33 and GDB_TO_LINUX_SIGNAL[77] == 32
    assert all(LINUX_TO_GDB_SIGNAL[linux] == gdb for gdb, linux in GDB_TO_LINUX_SIGNAL.items())
