"""`loaderdbg inspect` without --json: the human report, read through a
pipe (no terminal width) and at a narrow width, never cuts a value short."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from rich.console import Console

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.text_report import print_snapshot


def test_piped_report_keeps_addresses_whole(fixtures_dir):
    demo = fixtures_dir / "execsolib" / "glibc-O2" / "libexecsolib.so"
    done = subprocess.run([sys.executable, "-m", "loaderdbg.cli", "inspect", "--at", "ldso-entry", str(demo)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"\brip\s+0x7fff[0-9a-f]{8}\b", out), out[:2000]
    assert "hand-off check" in out and "passes" in out
    # Every maps row starts with two whole addresses.
    rows = [line for line in out.splitlines() if re.match(r"│ 0x[0-9a-f]", line)]
    assert rows and all(re.match(r"│ 0x[0-9a-f]+\s+│ 0x[0-9a-f]+\s+│", r) for r in rows)
    assert str(demo) in out  # the objects table names the file


def test_narrow_terminal_wraps_rather_than_truncates(fixtures_dir):
    demo = fixtures_dir / "execsolib" / "glibc-O2" / "libexecsolib.so"
    with LiveSession(launch_spec(str(demo), [], aslr=False)) as session:
        assert session.cont("entry").reached
        snapshot = session.snapshot()
    console = Console(width=80, file=io.StringIO())
    print_snapshot(snapshot, console)
    out = console.file.getvalue()
    for name in ("rip", "rsp", "orig_rax"):
        value = snapshot.registers[name]
        assert re.search(rf"\b{name}\s+{value:#x}\b", out), name
