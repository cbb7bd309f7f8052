"""`loaderdbg serve` as a gdb or pwndbg user meets it, in one real gdb run
on the glibc sample recording at AT_ENTRY:

- what pwndbg asks gdb for, asked through gdb's Python (pwndbg itself is
  not installed here): `vmmap` reads /proc/PID/maps with `remote get` once
  `maintenance packet Qqemu.sstepbits` says the target is no qemu;
  `telescope` reads the stack through the inferior's memory; `nearpc`
  disassembles at pc; `context` reads the general registers, fs_base among
  them, and takes a MemoryError for an unmapped address;
- `monitor goto` with the hook `monitor help` gives: gdb then shows the new
  stop's registers, frames and code (its register cache and its code cache
  both dropped), not the ones it had cached at the old stop.

Expected values come from the recording itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.record.replay import ReplaySession
from loaderdbg.serve.monitor import HELP

ROOT = Path(__file__).resolve().parents[2]
LOADERDBG = str(Path(sys.executable).with_name("loaderdbg"))
GLIBC = ROOT / "recordings" / "execsolib-glibc-entry.ldbg"
PC, SP = 16, 19  # rip's and rsp's words in user_regs_struct

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


def _word(regs: bytes, index: int) -> int:
    return int.from_bytes(regs[index * 8:(index + 1) * 8], "little")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    folder = tmp_path_factory.mktemp("gdb-user")
    hook = re.search(r"^ *(define hookpost-monitor\n.*?^ *end)$", HELP, flags=re.M | re.S)
    assert hook, HELP
    (folder / "hook.gdb").write_text("\n".join(line.strip() for line in hook.group(1).splitlines()) + "\n")
    (folder / "pwndbg_like.py").write_text(PWNDBG_LIKE)
    done = subprocess.run(
        [gdb, "-nx", "-batch", "-ex", "set remotetimeout 60", "-ex", f"source {folder / 'hook.gdb'}",
         "-ex", f"target remote | {LOADERDBG} serve --stdio --at entry {GLIBC}",
         "-ex", f"source {folder / 'pwndbg_like.py'}",
         "-ex", "echo @@late\\n", "-ex", "x/i printf", "-ex", "bt 1",
         "-ex", "monitor goto 0",
         "-ex", "echo @@early\\n", "-ex", "p/x $pc", "-ex", "x/i printf", "-ex", "bt 1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    out = done.stdout + done.stderr
    line = next((line for line in done.stdout.splitlines() if line.startswith("@@JSON")), None)
    assert line and "@@late\n" in out and "@@early\n" in out, out
    late, early = out.split("@@late\n", 1)[1].split("@@early\n", 1)
    with ReplaySession(str(GLIBC)) as replay:
        last = replay.last_step
        replay.goto(last)
        regs = replay.recording.regs_at(last)
        recorded = dict(maps=replay.recording.maps_text(last), rip=_word(regs, PC), rsp=_word(regs, SP),
                        stack=replay.read_memory(_word(regs, SP), 64), pid=replay.pid,
                        first_pc=_word(replay.recording.regs_at(0), PC))
    return dict(seen=json.loads(line[len("@@JSON"):]), late=late, early=early, out=out, recorded=recorded)


def test_what_pwndbg_reads_is_the_recording(session):
    seen, recorded = session["seen"], session["recorded"]
    assert 'received: ""' in seen["qemu"]  # not qemu: pwndbg's vmmap goes on to /proc/PID/maps
    assert seen["pid"] == recorded["pid"]
    assert seen["maps"] == recorded["maps"] and "[stack]" in recorded["maps"]
    assert seen["registers"]["rip"] == recorded["rip"] and seen["registers"]["rsp"] == recorded["rsp"]
    assert seen["registers"]["fs_base"] != 0  # ld.so set up TLS before AT_ENTRY
    assert bytes.fromhex(seen["stack"]) == recorded["stack"]
    assert len(seen["nearpc"]) == 4 and seen["nearpc"][0].startswith("xor")  # _start: xor %ebp,%ebp
    assert seen["unmapped"] == "MemoryError"


def test_the_hook_from_monitor_help_makes_gdb_see_where_goto_went(session):
    late, early, out = session["late"], session["early"], session["out"]
    assert re.search(r"<__printf>:\s+\w+", late), out  # libc is mapped at AT_ENTRY
    assert "_start" in late, out
    assert f"= {session['recorded']['first_pc']:#x}" in early, out  # step 0's registers, not AT_ENTRY's
    assert "Cannot access memory" in early, out  # libc is not mapped yet at step 0: no cached code
    assert "execsolib_start" in early, out
