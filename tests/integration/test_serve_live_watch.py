"""gdb's watch and awatch on a live served process (`loaderdbg serve --stdio
--live`): Z2/Z4 set the debug registers, a hit is a `watch:`/`awatch:`
stop reply, Z3 gets the empty reply (gdb falls back to Z4), and gdb prints its own Old value / New value. One gdb run in
batch mode on a tiny program compiled here; the expected values are the
program's own stores."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LOADERDBG = str(Path(sys.executable).with_name("loaderdbg"))
SOURCE = r"""
volatile int counter = 5;
volatile int seen;
volatile long a, b, c, d, e;
int main(void) {
    counter = 7;
    seen = counter;     /* a read of counter */
    seen = counter;     /* and another */
    counter = 9;
    a = b = c = d = e = 1;
    return 0;
}
"""


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> dict[str, str]:
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    directory = tmp_path_factory.mktemp("livewatch")
    (directory / "written.c").write_text(SOURCE)
    program = str(directory / "written")
    subprocess.run(["gcc", "-O1", "-g", "-no-pie", "-o", program, str(directory / "written.c")], check=True)
    sections = [
        ("write", ["watch counter", "continue"]),
        ("access", ["delete", "awatch counter", "continue"]),
        ("read", ["delete", "rwatch counter", "continue"]),
        ("write_again", ["delete", "watch counter", "continue"]),
        ("five", ["delete", "watch a", "watch b", "watch c", "watch d", "watch e", "continue"]),
        ("end", ["delete", "continue"]),
    ]
    args = [gdb, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", "set remotetimeout 60", "-ex", f"target remote | {LOADERDBG} serve --stdio --live {program}"]
    for name, commands in sections:
        args += ["-ex", f"echo @@{name}\\n"]
        for command in commands:
            args += ["-ex", command]
    args += ["-ex", "echo @@END\\n"]
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
                          check=False, cwd=directory)
    parts = re.split(r"^@@(\w+)$", done.stdout, flags=re.M)
    found = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    assert "END" in found, done.stdout
    assert "Traceback" not in done.stdout, done.stdout
    return found


def test_watch_stops_after_the_write_with_old_and_new_value(out):
    assert re.search(r"Hardware watchpoint 1: counter\s+Old value = 5\s+New value = 7", out["write"]), out["write"]
    assert "main" in out["write"]


def test_awatch_stops_at_the_read_in_between(out):
    assert re.search(r"Hardware access \(read/write\) watchpoint 2: counter\s+Value = 7", out["access"]), \
        out["access"]


def test_rwatch_falls_back_to_an_access_watch_and_stops_at_the_next_read(out):
    # Z3 gets the empty reply (x86 cannot watch reads alone, as with
    # gdbserver); gdb then inserts a Z4 and reports only the accesses that
    # left the value as it was.
    assert re.search(r"Hardware read watchpoint 3: counter\s+Value = 7", out["read"]), out["read"]


def test_a_write_watch_skips_the_reads_and_stops_at_the_next_write(out):
    assert re.search(r"Hardware watchpoint 4: counter\s+Old value = 7\s+New value = 9", out["write_again"]), \
        out["write_again"]


def test_a_fifth_watchpoint_is_refused_and_gdb_says_so(out):
    assert re.search(r"Could not insert hardware watchpoint", out["five"]), out["five"]


def test_the_program_runs_to_its_exit_once_watches_are_deleted(out):
    assert "exited normally" in out["end"], out["end"]
