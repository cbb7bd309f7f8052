"""bt against gdb's (issue 17.2): /usr/bin/true stopped inside ld.so at its
first mmap (ld.so's minimal malloc, called from dl_main), unwound by
loaderdbg (analysis/backtrace.py, .eh_frame CFI) and by gdb in a second
run of the same program with the same empty environment and no ASLR, so
both stacks are byte for byte alike: every real (not inlined) frame of
gdb's must be ours, same pc, same sp. gdb goes on past ld.so's _start
into argc and argv (0x1 in ??); we stop at the outermost frame.

Also: inspect --json at the same stop carries the frames under
"backtrace"."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec

PROGRAM = "/usr/bin/true"
STOP = "syscall:mmap"
# gdb's python: each frame that has its own stack (not an inlined one).
GDB_FRAMES = """
f = gdb.newest_frame()
while f is not None:
    if f.type() != gdb.INLINE_FRAME:
        print("FRAME %#x %#x" % (f.pc(), int(f.read_register("rsp"))))
    f = f.older()
"""


def _gdb_frames(tmp_path) -> list[tuple[int, int]]:
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    script = tmp_path / "frames.py"
    script.write_text("import gdb\n" + GDB_FRAMES)
    out = subprocess.run(
        [gdb, "-nx", "-batch", "-ex", "set startup-with-shell off", "-ex", "unset environment LINES",
         "-ex", "unset environment COLUMNS", "-ex", "catch syscall mmap", "-ex", "run",
         "-ex", f"source {script}", "-ex", "kill", PROGRAM],
        env={}, capture_output=True, text=True, timeout=60, check=False).stdout
    frames = [(int(pc, 16), int(sp, 16)) for _, pc, sp in
              (line.split() for line in out.splitlines() if line.startswith("FRAME "))]
    assert frames, out
    return frames


def test_bt_inside_ld_so_matches_gdb(tmp_path):
    theirs = _gdb_frames(tmp_path)
    with LiveSession(LaunchSpec(path=PROGRAM, argv=(PROGRAM,), env={}, aslr=False)) as session:
        reason = session.cont(STOP)
        assert reason.kind == "syscall"
        frames = session.backtrace()
        maps = session.maps()
    ours = [(f.pc, f.sp) for f in frames]
    assert len(ours) >= 5  # mmap, __minimal_malloc, _dl_init_paths, dl_main, _dl_sysdep_start, _dl_start, _start
    assert ours == theirs[:len(ours)]
    # What gdb shows beyond our last frame is not code: the stack's argc and argv.
    assert all(not any(m.start <= pc < m.end and m.executable for m in maps) for pc, _ in theirs[len(ours):])
    assert [f.number for f in frames] == list(range(len(frames)))
    assert frames[0].how == "registers" and all(f.how == "cfi" for f in frames[1:])
    assert all(f.object == "ld-linux-x86-64.so.2" for f in frames)
    names = [f.symbol.split("+")[0] for f in frames]
    assert "dl_main" in names and "_dl_start" in names
    # Each frame's CFA is its caller's sp.
    assert all(f.cfa == caller.sp for f, caller in zip(frames, frames[1:]))


def test_inspect_json_carries_the_backtrace():
    out = subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "--json", "--at", STOP, PROGRAM],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    frames = json.loads(out)["backtrace"]
    assert len(frames) >= 5
    assert frames[0]["pc"] == json.loads(out)["registers"]["rip"]
    assert frames[0]["sp"] == json.loads(out)["registers"]["rsp"]
    assert {"number", "pc", "sp", "cfa", "symbol", "object", "path", "how"} <= set(frames[0])
    assert frames[-1]["symbol"] == "_dl_start_user" and frames[-1]["object"] == "ld-linux-x86-64.so.2"
    assert all(int(f["sp"], 16) < int(g["sp"], 16) for f, g in zip(frames, frames[1:]))
