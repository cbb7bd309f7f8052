"""What pwndbg asks gdb for, asked through gdb's Python in the real gdb on
`loaderdbg serve` (pwndbg itself is not installed here): `vmmap` reads
/proc/PID/maps with `remote get` once `maintenance packet Qqemu.sstepbits`
says the target is no qemu; `telescope` reads the stack through the
inferior's memory; `nearpc` disassembles at pc; `context` reads the
general registers, fs_base among them, and takes a MemoryError for an
unmapped address. Expected values come from the recording itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.record.replay import ReplaySession

ROOT = Path(__file__).resolve().parents[2]
LOADERDBG = str(Path(sys.executable).with_name("loaderdbg"))
GLIBC = ROOT / "recordings" / "execsolib-glibc-entry.ldbg"

PWNDBG_LIKE = r'''
import gdb, json, os, tempfile
inferior = gdb.selected_inferior()
frame = gdb.selected_frame()
out = {"pid": inferior.pid,
       "qemu": gdb.execute("maintenance packet Qqemu.sstepbits", to_string=True)}
local = tempfile.mktemp()
gdb.execute(f"remote get /proc/{inferior.pid}/maps {local}", to_string=True)
with open(local) as handle:
    out["maps"] = handle.read()
os.unlink(local)
registers = {name: int(frame.read_register(name)) for name in ("rip", "rsp", "rax", "fs_base", "eflags")}
out["registers"] = registers
out["stack"] = bytes(inferior.read_memory(registers["rsp"], 64)).hex()
out["nearpc"] = [i["asm"] for i in frame.architecture().disassemble(registers["rip"], count=4)]
try:
    inferior.read_memory(0x10, 8)
    out["unmapped"] = "read"
except gdb.MemoryError:
    out["unmapped"] = "MemoryError"
print("@@JSON" + json.dumps(out))
'''


def test_what_pwndbg_reads_is_the_recording(tmp_path):
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    script = tmp_path / "pwndbg_like.py"
    script.write_text(PWNDBG_LIKE)
    done = subprocess.run(
        [gdb, "-nx", "-batch", "-ex", "set remotetimeout 60",
         "-ex", f"target remote | {LOADERDBG} serve --stdio --at entry {GLIBC}", "-ex", f"source {script}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    line = next((line for line in done.stdout.splitlines() if line.startswith("@@JSON")), None)
    assert line, done.stdout + done.stderr
    seen = json.loads(line[len("@@JSON"):])
    with ReplaySession(str(GLIBC)) as replay:
        last = replay.last_step
        replay.goto(last)
        maps = replay.recording.maps_text(last)
        regs = replay.recording.regs_at(last)
        rsp = int.from_bytes(regs[19 * 8:20 * 8], "little")  # user_regs_struct: rsp is the 20th word
        rip = int.from_bytes(regs[16 * 8:17 * 8], "little")
        stack = replay.read_memory(rsp, 64)
        pid = replay.pid
    assert 'received: ""' in seen["qemu"]  # not qemu: pwndbg's vmmap goes on to /proc/PID/maps
    assert seen["pid"] == pid
    assert seen["maps"] == maps and "[stack]" in maps
    assert seen["registers"]["rip"] == rip and seen["registers"]["rsp"] == rsp
    assert seen["registers"]["fs_base"] != 0  # ld.so set up TLS before AT_ENTRY
    assert bytes.fromhex(seen["stack"]) == stack
    assert len(seen["nearpc"]) == 4 and seen["nearpc"][0].startswith("xor")  # _start: xor %ebp,%ebp
    assert seen["unmapped"] == "MemoryError"
