"""`loaderdbg serve` of aarch64 programs to gdb-multiarch: live (the
program under qemu-user, through our stub client) and recorded (reverse
execution). gdb is told of aarch64's core registers (x0-x30, sp, pc, cpsr),
sees the real library list, and a watchpoint stops where it stops on
aarch64 hardware: gdb steps over the accessing instruction itself (aarch64
watchpoints are non-steppable to gdb), so the server stops *before* it, and
gdb shows the stop just after the store or load, never one instruction
later."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from loaderdbg.process.qemu_target import DEFAULT_SYSROOT
from loaderdbg.record.replay import ReplaySession

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "build" / "fixtures" / "zoo" / "aarch64-hello"
LD_SO = Path(DEFAULT_SYSROOT) / "lib" / "ld-linux-aarch64.so.1"
LOADERDBG = str(Path(sys.executable).with_name("loaderdbg"))

pytestmark = pytest.mark.skipif(
    not (shutil.which("qemu-aarch64") and shutil.which("gdb-multiarch") and LD_SO.exists() and HELLO.exists()),
    reason="needs qemu-user, gdb-multiarch, the arm64 sysroot and the aarch64 fixtures (make fixtures)")


def gdb(remote: str, commands: list[str]) -> str:
    args = ["gdb-multiarch", "-nx", "-batch", "-ex", "set remotetimeout 60", "-ex", f"target remote | {remote}"]
    for command in commands:
        args += ["-ex", command]
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr


def register(text: str, name: str) -> list[int]:
    return [int(value, 16) for value in re.findall(rf"^{name}\s+(0x[0-9a-f]+)", text, flags=re.M)]


@pytest.fixture(scope="module")
def live() -> str:
    return gdb(f"{LOADERDBG} serve --stdio --live {HELLO}", [
        "info registers pc sp cpsr",
        "x/i $pc",
        "stepi",
        "info registers pc",
        "break main",
        "continue",
        "bt",
        "info sharedlibrary",
        "watch *(int*)(&_IO_2_1_stdout_)",
        "continue",
        "x/2i $pc-4",
        "delete",
        'eval "rwatch *(long*)%lu", $sp',
        "continue",
        "x/2i $pc-4",
        "delete",
        "continue",
    ])


def test_gdb_gets_aarch64_registers_at_the_first_instruction(live):
    # A dynamic program starts at ld.so's entry (the first stop is in ld.so,
    # at its ELF entry from a page-aligned base).
    first = register(live, "pc")[0]
    with open(LD_SO, "rb") as handle:
        entry = ELFFile(handle).header.e_entry
    assert (first - entry) % 4096 == 0, live
    assert re.search(rf"{first:#018x} in \?\? \(\) from target:/lib/ld-linux-aarch64.so.1", live), live
    assert re.search(rf"=> {first:#x}:\s+\w+", live), live  # gdb disassembles it as aarch64
    assert register(live, "sp")[0] % 16 == 0
    assert re.search(r"^cpsr\s+0x[0-9a-f]+\s+\[", live, flags=re.M), live  # the flags described by name
    assert register(live, "pc")[1] == first + 4  # stepi


def test_gdb_sees_the_libraries_and_stops_at_main(live):
    assert "Breakpoint 1, main () at ./hello.c" in live, live
    assert re.search(r"#0\s+main \(\) at ./hello.c", live), live
    assert re.search(r"target:/lib/ld-linux-aarch64.so.1", live), live
    assert re.search(r"Yes.*target:/lib/libc.so.6", live), live
    assert "hello from aarch64" in live
    assert "exited normally" in live


def test_a_watchpoint_stops_just_after_the_accessing_instruction(live):
    write = re.search(r"Hardware watchpoint 2: .*?Old value = (-?\d+)\s+New value = (-?\d+)\s+"
                      r"(0x[0-9a-f]+) in .*?\n\s+(0x[0-9a-f]+) <[^>]+>:\s+(\S+)\s+(\S+), \[(\w+)\]\s*\n=> (0x[0-9a-f]+)",
                      live, flags=re.S)
    assert write is not None, live
    old, new, stop, before, mnemonic, _source, _base, at = write.groups()
    assert old != new
    # The store that wrote the flags word is the instruction just before
    # the stop: gdb did not step one instruction further.
    assert int(at, 16) == int(stop, 16) == int(before, 16) + 4
    assert mnemonic.startswith("st"), live
    read = re.search(r"Hardware read watchpoint 3: .*?Value = \d+\s+(0x[0-9a-f]+) in .*?\n\s+(0x[0-9a-f]+) "
                     r"<[^>]+>:\s+(\S+)", live, flags=re.S)
    assert read is not None, live
    stop, before, mnemonic = read.groups()
    assert int(stop, 16) == int(before, 16) + 4
    assert mnemonic.startswith("ld"), live


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve-aarch64") / "hello.ldbg"
    done = subprocess.run([LOADERDBG, "record", "-o", str(path), "--until", "step:1500", str(HELLO)],
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return path


def test_a_recorded_aarch64_program_runs_backwards_in_gdb(recorded):
    shown = gdb(f"{LOADERDBG} serve --stdio {recorded}", [
        "info registers pc",
        "stepi", "stepi", "stepi",
        "info registers pc x0 x1 sp",
        "reverse-stepi",
        "info registers pc x0 x1 sp",
        "continue",
        "info registers pc",
        "reverse-continue",
        "info registers pc",
    ])
    pcs = register(shown, "pc")
    with ReplaySession(str(recorded)) as replay:
        at = {}
        for step in (0, 3, 2, replay.last_step):
            replay.goto(step)
            at[step] = {name: replay.register(name) for name in ("pc", "x0", "x1", "sp")}
    assert pcs[0] == at[0]["pc"]
    assert pcs[1] == at[3]["pc"] and register(shown, "x0")[0] == at[3]["x0"]
    assert pcs[2] == at[2]["pc"] and register(shown, "x1")[1] == at[2]["x1"]
    assert register(shown, "sp")[1] == at[2]["sp"]
    assert pcs[3] == at[replay.last_step]["pc"]  # continue runs to the end of the history
    assert pcs[4] == at[0]["pc"]  # and reverse-continue back to its start
    assert shown.count("No more reverse-execution history") == 2, shown  # at its end, and at its start
