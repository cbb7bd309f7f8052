"""bt on aarch64 (analysis/backtrace.py with the arch tables' DWARF
numbering, x30 as the return-address column and x29 frame records):
aarch64-hello under qemu-user stopped at its write syscall inside libc
(exit's flush of stdout: write, _IO_file_write, ... exit,
__libc_start_main, _start), against gdb-multiarch on its own qemu of the
same program, argv and env stopped at the same pc. Every frame's pc and sp
must be gdb's, and frame-pointer unwinding alone (no CFI) must find the
same pcs.

One launched session for the module; gdb's run takes ~0.2 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from qemuhelp import qemu_listening
from loaderdbg.analysis.backtrace import unwind
from loaderdbg.arch import get_arch
from loaderdbg.live import LiveSession
from loaderdbg.process.qemu_target import DEFAULT_SYSROOT
from loaderdbg.process.tracee import LaunchSpec

ROOT = Path(__file__).resolve().parents[2]
LOADERDBG = ROOT / ".venv" / "bin" / "loaderdbg"
HELLO = ROOT / "build" / "fixtures" / "zoo" / "aarch64-hello"
LD_SO = Path(DEFAULT_SYSROOT) / "lib" / "ld-linux-aarch64.so.1"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
DEVNULL = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
# gdb's python: each frame that has its own stack (not an inlined one).
GDB_FRAMES = """import gdb
f = gdb.newest_frame()
while f is not None:
    if f.type() != gdb.INLINE_FRAME:
        print("FRAME %#x %#x" % (f.pc(), int(f.read_register("sp"))))
    f = f.older()
"""

pytestmark = pytest.mark.skipif(
    not (shutil.which("qemu-aarch64") and shutil.which("gdb-multiarch") and LD_SO.exists() and HELLO.exists()),
    reason="needs qemu-user, gdb-multiarch, the arm64 sysroot and the aarch64 fixtures (make fixtures)")


def spec() -> LaunchSpec:
    return LaunchSpec(str(HELLO), (str(HELLO),), dict(ENV), stdout_fd=DEVNULL)


@pytest.fixture(scope="module")
def stop() -> dict:
    """Ours at the write syscall: the frames, and the frames frame
    pointers alone give (unwind with no objects, so no CFI)."""
    with LiveSession(spec()) as session:
        reason = session.cont("syscall:write")
        assert reason.reached, reason
        frame_pointer_only = unwind(session.snapshot().registers, session.read_memory, session.maps(), (),
                                    lambda obj: None, session.symbolize, arch=get_arch("aarch64"))
        return {"frames": session.backtrace(), "frame_pointer_only": frame_pointer_only}


def gdb_frames(break_at: int) -> list[tuple[int, int]]:
    with qemu_listening(spec()) as sock:
        script = Path(os.path.dirname(sock), "frames.py")
        script.write_text(GDB_FRAMES)
        out = subprocess.run(
            ["gdb-multiarch", "-nx", "-batch", "-ex", "set architecture aarch64",
             "-ex", f"set sysroot {DEFAULT_SYSROOT}", "-ex", f"file {HELLO}", "-ex", f"target remote {sock}",
             "-ex", f"break *{break_at:#x}", "-ex", "continue", "-ex", f"source {script}", "-ex", "kill"],
            capture_output=True, text=True, timeout=60).stdout
    frames = [(int(pc, 16), int(sp, 16)) for _, pc, sp in
              (line.split() for line in out.splitlines() if line.startswith("FRAME "))]
    assert frames, out
    return frames


def test_every_frame_is_gdb_multiarchs(stop):
    frames = stop["frames"]
    assert [(f.pc, f.sp) for f in frames] == gdb_frames(frames[0].pc)
    assert len(frames) >= 8
    assert frames[0].how == "registers" and all(f.how == "cfi" for f in frames[1:])
    assert frames[0].symbol.startswith("write+") and frames[0].object == "libc.so.6"
    assert frames[-1].symbol.startswith("_start+") and frames[-1].object == "aarch64-hello"
    assert "__libc_start_main" in [f.symbol.split("+")[0] for f in frames]
    # Each frame's CFA is its caller's sp; the outermost's caller is unknown.
    assert all(f.cfa == caller.sp for f, caller in zip(frames, frames[1:])) and frames[-1].cfa is None


def test_frame_records_alone_find_the_same_callers(stop):
    """x29 chains the frame records ([x29] = the caller's x29, [x29 + 8]
    = its x30); a caller's sp is not in a record, so it stays unknown."""
    frames, by_records = stop["frames"], stop["frame_pointer_only"]
    assert [f.pc for f in by_records] == [f.pc for f in frames]
    assert all(f.how == "frame pointer" for f in by_records[1:])
    assert all(f.sp is None for f in by_records[1:])


def test_inspect_json_carries_the_aarch64_backtrace(stop):
    out = subprocess.run([str(LOADERDBG), "inspect", "--json", "--at", "syscall:write", str(HELLO)],
                         env=ENV, capture_output=True, text=True, timeout=60, check=True).stdout
    snap = json.loads(out)
    frames = snap["backtrace"]
    # pcs do not depend on the environment's size; sps do.
    assert [int(f["pc"], 16) for f in frames] == [f.pc for f in stop["frames"]]
    assert frames[0]["pc"] == snap["registers"]["pc"] and frames[0]["sp"] == snap["registers"]["sp"]


PAC_SOURCE = r"""
#include <unistd.h>
__attribute__((noinline)) int leafy(int n) { return write(1, "x\n", 2) + n; }
__attribute__((noinline)) int middle(int n) { int r = leafy(n + 1); return r * 2; }
int main(void) { return middle(3) == 0; }
"""


@pytest.mark.skipif(not shutil.which("aarch64-linux-gnu-gcc"), reason="needs aarch64-linux-gnu-gcc")
def test_return_addresses_signed_by_pointer_authentication_are_unwound(tmp_path):
    """-mbranch-protection=standard: paciasp signs x30 before it is saved
    (qemu's default cpu implements PAC), so a saved return address carries
    a signature above bit 48 (gdb-multiarch over qemu's stub stops there,
    showing 0x75...). The address below it is the caller."""
    source, program = tmp_path / "pac.c", tmp_path / "pac"
    source.write_text(PAC_SOURCE)
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-mbranch-protection=standard", "-o", str(program), str(source)],
                   check=True, timeout=60)
    with LiveSession(LaunchSpec(str(program), (str(program),), dict(ENV), stdout_fd=DEVNULL)) as session:
        assert session.cont("syscall:write").reached
        frames = session.backtrace()
    names = [f.symbol.split("+")[0] for f in frames]
    assert names[:4] == ["write", "leafy", "middle", "main"], names
    assert names[-2:] == ["__libc_start_main", "_start"], names
    assert all(f.how == "cfi" for f in frames[1:])
    assert all(f.pc < 1 << 48 for f in frames)
