"""Catch a spawn: attach to a running spawner, stop its exec'd child at the
child's first instruction, and leave the parent serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from spawner import Spawner, execsolib_so

LOADERDBG = [sys.executable, "-m", "loaderdbg"]


@pytest.fixture
def glibc_spawner(fixtures_dir):
    spawner = Spawner(fixtures_dir, execsolib_so(fixtures_dir, "glibc-O2"))
    yield spawner
    spawner.close()


def start_catching(pid: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([*LOADERDBG, "inspect", "--json", "--pid", str(pid), "--follow-exec", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until loaderdbg says it is waiting, i.e. the parent is seized.
    line = proc.stderr.readline()
    assert "waiting for" in line, line
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


def test_catch_child_at_first_instruction(glibc_spawner):
    catcher = start_catching(glibc_spawner.proc.pid, "--at", "first")
    glibc_spawner.spawn()
    code, snap, err = finish(catcher)
    assert code == 0, err
    rip = int(snap["registers"]["rip"], 16)
    kernel = {e["type"]: int(e["value"], 16) for e in snap["auxv_kernel"]}
    assert rip == kernel["AT_ENTRY"]
    assert kernel["AT_BASE"] == 0  # the kernel mapped the .so alone
    so = next(o for o in snap["objects"] if o["name"] == "libexecsolib.so")
    assert rip == int(so["elf"]["entry"], 16)
    # Let go: the child runs to completion and the parent reports it.
    assert glibc_spawner.status_line().endswith("status=exited:0")
    assert glibc_spawner.traced_by() == 0
    glibc_spawner.spawn()  # and it keeps serving
    assert glibc_spawner.status_line().endswith("status=exited:0")


def test_caught_child_runs_to_entry(glibc_spawner):
    catcher = start_catching(glibc_spawner.proc.pid, "--at", "entry")
    glibc_spawner.spawn()
    code, snap, err = finish(catcher)
    assert code == 0, err
    auxv = {e["type"]: int(e["value"], 16) for e in snap["auxv"]}
    assert int(snap["registers"]["rip"], 16) == auxv["AT_ENTRY"]
    names = [e["name"] for e in snap["events"] if e["kind"] == "milestone"]
    assert names.index("caught") < names.index("ldso-entry") < names.index("at-entry")
    assert glibc_spawner.status_line().endswith("status=exited:0")


def test_unmatched_child_runs_untouched(fixtures_dir):
    spawner = Spawner(fixtures_dir, "/bin/true", execsolib_argv=False)
    try:
        catcher = start_catching(spawner.proc.pid, "--match", "*libexecsolib*", "--at", "first")
        spawner.spawn()
        assert spawner.status_line().endswith("status=exited:0")
        assert catcher.poll() is None  # still waiting for a match
        catcher.send_signal(signal.SIGINT)
        code, snap, err = finish(catcher)
        assert code == 130 and snap is None
        assert "Traceback" not in err
        time.sleep(0.1)
        assert spawner.traced_by() == 0
        spawner.spawn()
        assert spawner.status_line().endswith("status=exited:0")
    finally:
        spawner.close()


def test_killed_catcher_leaves_parent_running(glibc_spawner):
    catcher = start_catching(glibc_spawner.proc.pid)
    catcher.kill()
    catcher.wait()
    time.sleep(0.1)
    assert glibc_spawner.traced_by() == 0
    glibc_spawner.spawn()
    assert glibc_spawner.status_line().endswith("status=exited:0")


def test_rdxbug_child_crash_is_reported(fixtures_dir):
    spawner = Spawner(fixtures_dir, execsolib_so(fixtures_dir, "rdxbug"))
    try:
        catcher = start_catching(spawner.proc.pid, "--at", "ldso-entry")
        spawner.spawn()
        code, snap, err = finish(catcher)
        assert code == 1
        assert snap["stop"]["signal"] == "SIGSEGV" and snap["stop"]["fault_address"] == "0x0"
        assert "ldso-entry not reached" in err
        # Detached at the fault, the child receives its SIGSEGV as it would have.
        assert spawner.status_line().endswith("status=signaled:11")
    finally:
        spawner.close()
