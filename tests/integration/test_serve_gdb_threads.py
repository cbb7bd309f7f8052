"""`loaderdbg serve --live` of a multi-threaded program, driven by the real
gdb: gdb is told every thread (as by gdbserver, and as native gdb lists
them), the thread that hit a breakpoint is the one the stop names, and gdb
can read any thread's registers (`thread apply all bt`).

The fixture (tests/fixtures/zoo/threads.c) starts three workers named
worker-1..3, waits on a barrier for them, prints "threads ready" and
sleeps; the workers sleep in pause() for ever. A recording of it up to
that puts is served with every thread alive at the step too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from test_serve_gdb import LOADERDBG, registers, run_gdb

ROOT = Path(__file__).resolve().parents[2]
THREADS = ROOT / "build" / "fixtures" / "zoo" / "threads"


@pytest.fixture(scope="module")
def out() -> dict[str, str]:
    sections = [
        ("worker", ["break worker", "continue", "info threads", "info registers rip", "delete"]),
        ("step", ["stepi", "info registers rip", "bt 1"]),
        ("ready", ["break puts", "continue", "info threads", "thread apply all bt", "delete"]),
        ("end", ["kill"]),
    ]
    return run_gdb(["--live", str(THREADS)], sections)


def _thread_rows(text: str) -> list[tuple[bool, int, int, str]]:
    """(current, pid, tid, frame) of each row of gdb's `info threads`."""
    rows = re.findall(r'^(\*| ) +\d+ +Thread (\d+)\.(\d+) "([^"]*)" .*?\) (.*)$', text, flags=re.M)
    return [(mark == "*", int(pid), int(tid), name, frame) for mark, pid, tid, name, frame in rows]


def test_a_breakpoint_in_a_worker_names_the_worker_thread(out):
    rows = _thread_rows(out["worker"])
    assert "Breakpoint 1, worker (arg=0x1)" in out["worker"], out["worker"]
    current = [row for row in rows if row[0]]
    assert len(current) == 1, out["worker"]
    _, pid, tid, name, frame = current[0]
    assert tid != pid, out["worker"]  # the worker's own task, not the main thread
    assert frame.startswith("worker (arg=0x1)"), out["worker"]
    assert name in ("threads", "worker-1"), out["worker"]  # named by the worker itself, soon after
    assert any(row[2] == pid for row in rows), out["worker"]  # and the main thread is listed too


def test_stepi_steps_the_thread_that_stopped(out):
    before = registers(out["worker"])["rip"]
    after = registers(out["step"])["rip"]
    assert after != before
    assert "worker (arg=0x1)" in out["step"] or "in worker" in out["step"], out["step"]


def test_every_thread_is_listed_with_its_own_backtrace(out):
    rows = _thread_rows(out["ready"])
    assert len(rows) == 4, out["ready"]
    assert sum(row[0] for row in rows) == 1, out["ready"]
    assert len({row[2] for row in rows}) == 4, out["ready"]
    # Named as natively: the main thread by its comm, each worker by pthread_setname_np.
    assert sorted(row[3] for row in rows) == ["threads", "worker-1", "worker-2", "worker-3"], out["ready"]
    traces = re.split(r"^Thread \d+ \(", out["ready"], flags=re.M)[1:]
    assert len(traces) == 4, out["ready"]
    assert sum(" in worker (" in trace for trace in traces) == 3, out["ready"]
    assert sum(" in main ()" in trace for trace in traces) == 1, out["ready"]


# -- a recording of the same program: its threads as of each step -------------------------

@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict[str, str]:
    recording = tmp_path_factory.mktemp("threads") / "threads.ldbg"
    subprocess.run([LOADERDBG, "record", "-o", str(recording), "--until", "sym:puts", str(THREADS)],
                   check=True, capture_output=True, timeout=120)
    sections = [
        ("ready", ["info threads", "thread apply all bt"]),
        ("back", ["break worker", "reverse-continue", "info threads", "info registers rip", "delete"]),
    ]
    return run_gdb(["--at", "sym:puts", str(recording)], sections)


def test_a_recording_lists_the_threads_alive_at_the_step(replayed):
    rows = re.findall(r"^(\*| ) +\d+ +Thread (\d+)\.(\d+) ", replayed["ready"], flags=re.M)
    assert len(rows) == 4, replayed["ready"]
    assert [int(pid) == int(tid) for mark, pid, tid in rows if mark == "*"] == [True], replayed["ready"]
    traces = re.split(r"^Thread \d+ \(", replayed["ready"], flags=re.M)[1:]
    assert sum(" in worker (" in trace for trace in traces) == 3, replayed["ready"]


def test_reverse_continue_to_a_workers_breakpoint_names_that_worker(replayed):
    back = replayed["back"]
    assert "Breakpoint 1, worker (arg=" in back, back
    current = re.findall(r"^\* +\d+ +Thread (\d+)\.(\d+) .*worker \(arg=", back, flags=re.M)
    assert len(current) == 1 and current[0][0] != current[0][1], back
