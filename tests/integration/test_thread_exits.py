"""A process that ends through a thread a tracer does not expect (issue 20's
gaps): the main thread calls pthread_exit and the workers carry on (the
leader is a zombie until the last one returns), or a worker calls
exit_group while the others are blocked in syscalls. Live, recorded and
replayed; and the threads of a child caught from a running parent are let
go when its recording ends, so it runs on to its own exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
LOADERDBG = [sys.executable, "-m", "loaderdbg"]


@pytest.fixture(scope="module")
def program(fixtures_dir) -> str:
    return str(fixtures_dir / "threads" / "thread_exits")


def spec(program: str, mode: str, out_fd: int) -> LaunchSpec:
    return LaunchSpec(path=program, argv=(program, mode), env=dict(ENV), stdout_fd=out_fd, stderr_fd=out_fd)


@pytest.fixture
def null_fd():
    fd = os.open(os.devnull, os.O_WRONLY)
    yield fd
    os.close(fd)


def test_after_main_calls_pthread_exit_breakpoints_hit_in_both_workers_and_it_exits_0(program, null_fd):
    with LiveSession(spec(program, "leader", null_fd)) as session:
        address = session.resolve("worker_step")
        assert address is not None
        session.add_breakpoint(address)
        hit_by = set()
        for _ in range(20):
            reason = session.cont()
            if reason.kind != "breakpoint":
                break
            hit_by.add(reason.thread)
        # c stops where the process is about to exit, as gdb's catch would.
        assert reason.target == "exit" and reason.exit_code == 0, reason
        assert len(hit_by) == 2 and session.pid not in hit_by, hit_by


def test_a_worker_calling_exit_group_ends_the_run_with_its_status(program, null_fd):
    """The other threads are being killed while we list them: one can go
    between its /proc entry and its registers (CI saw GETREGS fail with
    ESRCH about once in 16 runs unpinned), so the race is run many times."""
    for _ in range(30):
        with LiveSession(spec(program, "group", null_fd)) as session:
            reason = session.cont("exit")
            assert reason.reached and reason.exit_code == 7, reason
            assert reason.thread is not None and reason.thread != session.pid
            # How many of the others are still listed is the kernel's race;
            # the exiting one is.
            assert reason.thread in {thread.tid for thread in session.threads()}
            assert session.cont().kind == "exited"


@pytest.mark.parametrize("mode", ["leader", "group"])
def test_a_snapshot_where_the_last_thread_exits_after_the_leader_does_not_wait(program, mode, null_fd):
    """At the exit event we hold the exiting thread; the leader left its
    stop before (main's pthread_exit, or the exit_group's kill) and waits
    for it as a zombie. A snapshot there took the leader's leaving for a
    SIGKILL from outside and waited 5 s for a death that only comes once we
    let the thread go. A SIGKILL from outside is still noticed."""
    with LiveSession(spec(program, mode, null_fd)) as session:
        reason = session.cont("exit")
        assert reason.reached and reason.thread != session.pid, reason
        started = time.monotonic()
        session.snapshot()
        assert time.monotonic() - started < 2.5  # 5 s before, whatever the machine
        assert session.alive and session.stop_reason == reason
    with LiveSession(spec(program, mode, null_fd)) as session:
        assert session.add_breakpoint(session.resolve("worker_step"))
        assert session.cont().kind == "breakpoint"
        os.kill(session.pid, signal.SIGKILL)
        session.snapshot()
        assert not session.alive and "killed by SIGKILL" in session.stop_reason.description


@pytest.mark.parametrize("mode, status", [("leader", 0), ("group", 7)])
def test_recorded_to_its_exit_it_replays_without_divergence(program, mode, status, null_fd, tmp_path):
    output = str(tmp_path / f"{mode}.ldbg")
    summary = record_program(spec(program, mode, null_fd), output, "exit", progress=False)
    assert summary.divergences == 0, summary.describe()
    assert f"exited with status {status}" in summary.describe()
    with ReplaySession(output) as replay:
        assert replay.recording.threaded
        report = replay.verify()
        assert report.ok, report.describe()
        reason = replay.goto(replay.last_step)
        assert reason.exit_code == status or f"status {status}" in reason.description, reason


def test_a_caught_childs_threads_run_on_after_its_recording_ends(program, tmp_path, fixtures_dir):
    """record --pid --follow-exec ending before the child's exit: every
    thread of the child is detached and it finishes as it would have."""
    spawner = subprocess.Popen([str(fixtures_dir / "zoo" / "spawner"), program, "leader"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)
    try:
        output = tmp_path / "caught.ldbg"
        recording = subprocess.Popen([*LOADERDBG, "record", "--pid", str(spawner.pid), "--follow-exec",
                                      "--match", "*thread_exits*", "--until", "sym:worker_step",
                                      "-o", str(output)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = recording.stderr.readline()
        assert "waiting for" in line, line + recording.stderr.read()
        spawner.stdin.write("go\n")
        spawner.stdin.flush()
        _, err = recording.communicate(timeout=120)
        assert recording.returncode == 0, err
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines.append(spawner.stdout.readline())
            if lines[-1].startswith("spawned "):
                break
        assert lines[-1].startswith("spawned ") and lines[-1].strip().endswith("status=exited:0"), lines
        assert sum("done" in line for line in lines) == 2, lines
        with ReplaySession(str(output)) as replay:
            assert replay.verify().ok
    finally:
        spawner.kill()
        spawner.wait()


@pytest.mark.timeout(90)
def test_exit_group_racing_the_other_threads_stops_neither_hangs_nor_fails(program, null_fd):
    """The worker's exit_group kills threads that have just stopped (their
    stop must not be reported: they are gone) and the leader, which then
    reports nothing until the last thread has gone (waiting for it hung).
    A race: each run is one more chance to meet it."""
    for _ in range(25):
        with LiveSession(spec(program, "group", null_fd)) as session:
            reason = session.cont("exit")
            assert reason.exit_code == 7, reason
            ended = session.cont()
            assert ended.kind == "exited" and ended.exit_code == 7, ended
