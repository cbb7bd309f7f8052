"""Hardware watchpoints through the debug registers (issue 17.2), on a real
tiny program: each watched access stops the continued process with
SIGTRAP/TRAP_HWBKPT right after the instruction, DR6 names the slot, and
the kernel itself enforces the rules DebugRegisters states (lengths
1/2/4/8, aligned, four slots)."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from loaderdbg.decode.disasm import disassemble
from loaderdbg.arch import X86_64
from loaderdbg.errors import UsageError
from loaderdbg.process import ptrace, tracee
from loaderdbg.process.debug_registers import DR7, SLOTS, DebugRegisters, check_watchpoint, dr7_bits
from loaderdbg.process.stops import TRAP_HWBKPT, StopKind, classify
from loaderdbg.process.tracee import LaunchSpec

SOURCE = r"""
#include <stdint.h>
volatile uint64_t counter = 5;
volatile uint64_t other;
volatile uint32_t source = 42;
volatile uint64_t sink;
int main(void) {
    counter = 5;        /* the value it already holds: the hardware fires all the same */
    other = 1;          /* next to counter, not watched */
    counter = 7;
    sink = source;      /* a read of source */
    counter = 9;
    return 0;
}
"""
RIP = 16 * 8  # offsetof(struct user_regs_struct, rip)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> tuple[str, dict[str, int]]:
    directory = tmp_path_factory.mktemp("watched")
    (directory / "watched.c").write_text(SOURCE)
    path = str(directory / "watched")
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", path, str(directory / "watched.c")], check=True)
    symbols = {}
    for line in subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols[parts[2]] = int(parts[0], 16)
    return path, symbols


def _launch(path: str):
    return tracee.launch(LaunchSpec(path=path, argv=(path,), env={}, aslr=False))


def _run_to_hits(process, registers: DebugRegisters, counter: int) -> list[tuple[int, int, int]]:
    """Continue to the exit; at each SIGTRAP: (slot that fired, rip, counter's value)."""
    pid = process.pid
    hits = []
    while True:
        ptrace.cont(pid)
        _, status = ptrace.waitpid(pid)
        stop = classify(pid, status)
        if not stop.alive:
            process.alive = False
            return hits
        if stop.event is None and stop.signal == signal.SIGTRAP:
            assert stop.si_code == TRAP_HWBKPT and stop.kind is StopKind.WATCHPOINT
            fired = registers.fired()
            assert fired is not None
            rip = ptrace.request(ptrace.PEEKUSER, pid, RIP)
            hits.append((fired.slot, rip, int.from_bytes(process.read_memory(counter, 8), "little")))
            assert registers.fired() is None  # DR6 was cleared


def _instruction_before(path: str, main: int, pc: int):
    """The instruction of main (decoded from its start) that ends at pc."""
    with open(path, "rb") as handle:
        handle.seek(main - 0x400000)  # -no-pie: text at file offset = vaddr - 0x400000
        code = handle.read(pc - main)
    return next((insn for insn in disassemble(code, main, X86_64, count=64) if insn.address + insn.size == pc), None)


def test_writes_and_reads_stop_after_the_instruction(program):
    path, symbols = program
    process = _launch(path)
    try:
        registers = DebugRegisters(process.pid)
        counter = registers.add(symbols["counter"], 8, "write")
        source = registers.add(symbols["source"], 4, "read")
        assert (counter.slot, source.slot) == (0, 1)
        assert registers.read(0) == symbols["counter"] and registers.read(1) == symbols["source"]
        assert registers.read(DR7) == dr7_bits(0, 8, "write") | dr7_bits(1, 4, "read")
        assert registers.add(symbols["counter"], 8, "write") == counter  # the same watch twice: one slot
        hits = _run_to_hits(process, registers, symbols["counter"])
    finally:
        process.close()
    # counter = 5 (unchanged), counter = 7, the read of source, counter = 9; never `other`.
    assert [(slot, value) for slot, _, value in hits] == [(0, 5), (0, 7), (1, 7), (0, 9)]
    for slot, rip, _ in hits:
        insn = _instruction_before(path, symbols["main"], rip)
        assert insn is not None and insn.mnemonic == "mov", (hex(rip), insn)
        target = symbols["counter"] if slot == 0 else symbols["source"]
        displacement = re.search(r"\[rip ([+-]) (0x[0-9a-f]+)\]", insn.op_str)
        assert displacement is not None, insn.op_str
        sign = 1 if displacement.group(1) == "+" else -1
        assert rip + sign * int(displacement.group(2), 16) == target, insn.op_str  # rip-relative, from the next insn


def test_removed_watchpoints_stop_nothing(program):
    path, symbols = program
    process = _launch(path)
    try:
        registers = DebugRegisters(process.pid)
        registers.add(symbols["counter"], 8, "write")
        registers.add(symbols["sink"], 8, "access")
        assert registers.remove(symbols["sink"], 8, "access")
        assert not registers.remove(symbols["sink"], 8, "access")
        assert registers.read(DR7) == dr7_bits(0, 8, "write") and registers.read(1) == 0
        assert registers.armed
        registers.clear()
        assert registers.read(DR7) == 0 and registers.watchpoints == () and not registers.armed
        assert _run_to_hits(process, registers, symbols["counter"]) == []
    finally:
        process.close()


def test_the_hardware_rules(program):
    path, symbols = program
    base = symbols["counter"]
    for length in (3, 5, 16, 0):
        with pytest.raises(UsageError, match="1, 2, 4 or 8 bytes"):
            check_watchpoint(base, length, "write")
    with pytest.raises(UsageError, match="multiple of 8"):
        check_watchpoint(base + 4, 8, "write")
    with pytest.raises(UsageError, match="multiple of 2"):
        check_watchpoint(base + 1, 2, "read")
    check_watchpoint(base + 4, 4, "access")
    check_watchpoint(base + 3, 1, "write")
    process = _launch(path)
    try:
        registers = DebugRegisters(process.pid)
        for n in range(SLOTS):
            registers.add(base + 8 * n, 8, "write")
        with pytest.raises(UsageError, match="all 4 debug registers are in use"):
            registers.add(base + 8 * SLOTS, 8, "write")
        registers.clear()
        # The kernel enforces the alignment rule itself: a misaligned
        # 8-byte watch written straight into DR0/DR7 is refused.
        registers.write(0, base + 4)
        with pytest.raises(ptrace.PtraceError) as refused:
            registers.write(DR7, dr7_bits(0, 8, "write"))
        assert refused.value.errno == 22  # EINVAL
    finally:
        process.close()


SPIN = r"""
#include <stdint.h>
#include <unistd.h>
volatile uint64_t counter;
int main(void) { for (;;) { counter++; usleep(1000); } }
"""


@pytest.mark.parametrize("cleared", [True, False])
def test_a_detach_keeps_armed_slots_so_clear_comes_first(tmp_path, cleared):
    """PTRACE_DETACH leaves the debug registers armed: the process then dies
    of SIGTRAP at its next watched write, unless they were cleared."""
    (tmp_path / "spin.c").write_text(SPIN)
    path = str(tmp_path / "spin")
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", path, str(tmp_path / "spin.c")], check=True)
    counter = int(next(line.split()[0] for line in subprocess.run(
        ["nm", path], capture_output=True, text=True, check=True).stdout.splitlines()
        if line.endswith(" counter")), 16)
    process = subprocess.Popen([path])
    try:
        ptrace.seize(process.pid, 0)
        ptrace.interrupt(process.pid)
        ptrace.waitpid(process.pid)
        registers = DebugRegisters(process.pid)
        registers.add(counter, 8, "write")
        if cleared:
            registers.clear()
        ptrace.detach(process.pid)
        try:
            process.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            pass
        assert process.returncode == (None if cleared else -signal.SIGTRAP)
    finally:
        process.kill()
        process.wait()
