"""Attach to running processes: all threads stopped, decoded, and let go."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from loaderdbg.live import LiveSession

LOADERDBG = [sys.executable, "-m", "loaderdbg"]


def _state(pid: int) -> tuple[str, int]:
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
    return fields["State"].strip(), int(fields["TracerPid"])


def _task_states(pid: int) -> list[str]:
    return [_state(int(t))[0][0] for t in os.listdir(f"/proc/{pid}/task")]


@pytest.fixture
def threads_process(fixtures_dir):
    proc = subprocess.Popen([str(fixtures_dir / "zoo" / "threads")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "threads ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _gdb_threads(pid: int) -> dict[str, int]:
    out = subprocess.run(
        ["gdb", "-batch", "-nx", "-p", str(pid), "-ex", "info threads",
         "-ex", "thread apply all p/x $fs_base"],
        capture_output=True, text=True, timeout=60).stdout
    names = dict(re.findall(r'\(LWP (\d+)\) "([^"]+)"', out))
    fs = {}
    for lwp, value in re.findall(r'Thread \S+ \(LWP (\d+)\)[^\n]*\n\$\d+ = (0x[0-9a-f]+)', out):
        fs[names[lwp]] = int(value, 16)
    return fs


def test_threads_names_and_fs_base_match_gdb(threads_process):
    pid = threads_process.pid
    with LiveSession.attach(pid) as session:
        snap = session.snapshot()
        assert all(state == "t" for state in _task_states(pid))
    ours = {t.name: t.fs_base for t in snap.threads}
    assert sorted(ours) == ["threads", "worker-1", "worker-2", "worker-3"]
    # Detached: every thread back to sleeping, nobody tracing.
    time.sleep(0.05)
    assert all(state == "S" for state in _task_states(pid))
    assert _state(pid)[1] == 0
    assert _gdb_threads(pid) == ours


def test_detached_process_keeps_working(dlmopen_process):
    pid = dlmopen_process.pid
    result = subprocess.run([*LOADERDBG, "inspect", "--json", "--pid", str(pid)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    assert snap["stop"]["reason"] == "attach"
    namespaces = {}
    for entry in snap["link_map"]:
        namespaces.setdefault(entry["namespace"], []).append(os.path.basename(entry["name"]))
    assert len(namespaces) == 2
    assert "libzoo-ns.so" in namespaces[1] and "libc.so.6" in namespaces[1]
    assert "libzoo-ns.so" not in namespaces[0]
    # It still answers: closing stdin lets it finish normally.
    dlmopen_process.stdin.close()
    assert dlmopen_process.wait(timeout=10) == 0


def test_link_map_matches_gdb_sharedlibrary(dlmopen_process):
    pid = dlmopen_process.pid
    with LiveSession.attach(pid) as session:
        snap = session.snapshot()
    out = subprocess.run(["gdb", "-batch", "-nx", "-p", str(pid), "-ex", "info sharedlibrary"],
                         capture_output=True, text=True, timeout=60).stdout
    gdb_paths = set(re.findall(r"^0x[0-9a-f]+\s+0x[0-9a-f]+\s+\S+\s+(?:\(\*\)\s+)?(/\S+)", out, re.M))
    ours = {os.path.realpath(e.name) for e in snap.link_map if e.name.startswith("/")}
    assert {os.path.realpath(p) for p in gdb_paths} <= ours


def _cli_error(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADERDBG, *args], capture_output=True, text=True, timeout=60)


def test_no_such_pid():
    result = _cli_error("inspect", "--pid", "999999999")
    assert result.returncode == 2
    assert result.stderr.strip() == "loaderdbg: 999999999: no such process"


def test_zombie_is_refused():
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        time.sleep(0.1)  # not reaped: a zombie
        result = _cli_error("inspect", "--pid", str(child))
        assert result.returncode == 1
        assert "zombie" in result.stderr and "Traceback" not in result.stderr
    finally:
        os.waitpid(child, 0)


def test_already_traced_names_the_tracer(threads_process):
    pid = threads_process.pid
    with LiveSession.attach(pid):
        result = _cli_error("inspect", "--pid", str(pid))
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "already traced by" in line and str(os.getpid()) in line
    assert len(line.splitlines()) == 1


def test_kernel_thread_is_refused():
    result = _cli_error("inspect", "--pid", "2")
    assert result.returncode == 2
    assert "kernel thread" in result.stderr


def test_pending_signal_survives_attach(threads_process):
    """A signal that arrives while we hold the process is delivered after."""
    pid = threads_process.pid
    with LiveSession.attach(pid):
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.1)
        assert threads_process.poll() is None  # held while attached
    assert threads_process.wait(timeout=10) == -signal.SIGTERM


def test_startup_targets_are_behind_an_attached_process(threads_process):
    """ldso-entry, entry and main happened before we attached: a run to them
    says so at once (it used to run the process on until it exited), and
    the TUI's timeline offers none of them."""
    from loaderdbg_tui.describe import timeline_markers

    with LiveSession.attach(threads_process.pid) as session:
        for target in ("ldso-entry", "entry", "main"):
            started = time.monotonic()
            reason = session.cont(target)
            assert not reason.reached and "over before we attached" in reason.description, reason
            assert time.monotonic() - started < 5
        markers = timeline_markers(session.events(), None)
        assert [m.name for m in markers if not m.reached] == []
    assert threads_process.poll() is None  # left running
