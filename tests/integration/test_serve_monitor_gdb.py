"""`monitor goto` under the real gdb, with the hook `monitor help` gives:
after the monitor command gdb shows the new stop's registers, frames and
code (its register cache and its code cache both dropped), not the ones
it had cached at the old stop."""

from __future__ import annotations

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


def test_the_hook_from_monitor_help_makes_gdb_see_where_goto_went(tmp_path):
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    hook = re.search(r"^ *(define hookpost-monitor\n.*?^ *end)$", HELP, flags=re.M | re.S)
    assert hook, HELP
    script = tmp_path / "hook.gdb"
    script.write_text("\n".join(line.strip() for line in hook.group(1).splitlines()) + "\n")
    with ReplaySession(str(GLIBC)) as replay:
        first_pc = int.from_bytes(replay.recording.regs_at(0)[16 * 8:17 * 8], "little")  # user_regs_struct's rip
    done = subprocess.run(
        [gdb, "-nx", "-batch", "-ex", "set remotetimeout 60", "-ex", f"source {script}",
         "-ex", f"target remote | {LOADERDBG} serve --stdio --at entry {GLIBC}",
         "-ex", "echo @@late\\n", "-ex", "x/i printf", "-ex", "bt 1",
         "-ex", "monitor goto 0",
         "-ex", "echo @@early\\n", "-ex", "p/x $pc", "-ex", "x/i printf", "-ex", "bt 1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    out = done.stdout + done.stderr
    late, early = out.split("@@late\n", 1)[1].split("@@early\n", 1)
    assert re.search(r"<__printf>:\s+\w+", late), out  # libc is mapped at AT_ENTRY
    assert "_start" in late, out
    assert f"= {first_pc:#x}" in early, out  # the registers of step 0, not AT_ENTRY's
    assert "Cannot access memory" in early, out  # libc is not mapped yet at step 0: no cached code
    assert "execsolib_start" in early, out
