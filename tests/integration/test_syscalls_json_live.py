"""syscalls[] live and replayed alike (issue 15's JSON): `inspect --json
--at step:N` of the glibc demo lists the same calls, at the same steps, as
`inspect --json --replay` of a recording of the same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOADERDBG = [sys.executable, "-m", "loaderdbg"]
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "PYTHONPATH": str(REPO)}
AT = "step:9000"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADERDBG, *args], capture_output=True, text=True, env=ENV, timeout=120, cwd=REPO)


def test_live_and_replayed_syscalls_alike(tmp_path, fixtures_dir):
    program = str(fixtures_dir / "execsolib/glibc-O2/libexecsolib.so")
    live = run("inspect", "--json", "--at", AT, program, "hello")
    assert live.returncode == 0, live.stderr
    output = tmp_path / "demo.ldbg"
    recorded = run("record", "-o", str(output), "--until", AT, program, "hello")
    assert recorded.returncode == 0, recorded.stderr
    replayed = run("inspect", "--json", "--at", AT, "--replay", str(output))
    assert replayed.returncode == 0, replayed.stderr
    live_shown, replay_shown = json.loads(live.stdout), json.loads(replayed.stdout)
    calls = live_shown["syscalls"]
    assert len(calls) >= 5 and {c["name"] for c in calls} >= {"open", "mmap"}
    assert [(c["step"], c["name"]) for c in calls] == \
        [(e["step"], e["name"]) for e in live_shown["events"] if e["kind"] == "syscall"]
    assert [(c["step"], c["number"], c["name"]) for c in calls] == \
        [(c["step"], c["number"], c["name"]) for c in replay_shown["syscalls"]]
    assert live_shown["verified"] is None and live_shown["divergence"] is None  # live: nothing to check
