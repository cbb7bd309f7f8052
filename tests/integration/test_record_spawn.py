"""`loaderdbg record --pid PID --follow-exec`: a child caught from a running
spawner is recorded like a launched program, and the parent survives us
(untraced, still serving), whether the recording ends, is interrupted while
waiting, or is interrupted mid-recording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from loaderdbg.errors import UsageError
from loaderdbg.record.format import open_recording
from loaderdbg.record.replay import ReplaySession

from spawner import Spawner, execsolib_so

LOADERDBG = [sys.executable, "-m", "loaderdbg"]


@pytest.fixture
def spawner_factory(fixtures_dir):
    made = []

    def make(variant: str) -> Spawner:
        made.append(Spawner(fixtures_dir, execsolib_so(fixtures_dir, variant)))
        return made[-1]
    yield make
    for spawner in made:
        spawner.close()


def start_recording(pid: int, output, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([*LOADERDBG, "record", "--pid", str(pid), "--follow-exec",
                             "--match", "*libexecsolib*", "-o", str(output), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # the parent is seized: spawns are caught from now on
    assert "waiting for" in line, line + proc.stderr.read()
    return proc


def wait_for_steps(path, steps: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            rec = open_recording(str(path))
        except UsageError:
            time.sleep(0.1)
            continue
        try:
            if rec.last_step >= steps:
                return
        finally:
            rec.close()
        time.sleep(0.1)
    pytest.fail(f"{path} never reached {steps} steps")


def test_caught_rdxbug_child_is_explained_like_a_launched_one(tmp_path, spawner_factory):
    spawner = spawner_factory("rdxbug")
    output = tmp_path / "caught.ldbg"
    recorder = start_recording(spawner.proc.pid, output)
    spawner.spawn()
    out, err = recorder.communicate(timeout=120)
    assert recorder.returncode == 0, err
    assert "SIGSEGV" in err and "Traceback" not in err
    # Recorded to its end: it died of its fault, as it would have untraced.
    assert spawner.status_line().endswith("status=signaled:11")
    assert spawner.traced_by() == 0
    with ReplaySession(str(output)) as replay:
        meta = replay.recording.meta
        assert meta["caught_from"] == spawner.proc.pid and meta["argv"][0] == "execsolib-helper"
        assert replay.end_reason.signal == "SIGSEGV" and meta["divergences"] == 0
        assert any(e.name == "caught" and e.step == 0 for e in replay.events())
        assert replay.verify().ok
    explained = subprocess.run([*LOADERDBG, "explain", str(output)], capture_output=True, text=True, timeout=60)
    assert explained.returncode == 0, explained.stderr
    text = explained.stdout
    assert "SIGSEGV at rip 0x0" in text
    assert "`jmp rdx`" in text and "`xor edx, edx`" in text and "one step earlier" in text
    assert "ld.so's entry point" in text
    spawner.spawn()  # and the parent keeps serving
    assert spawner.status_line().startswith("spawned ")


def test_ctrl_c_and_kill_leave_the_parent_serving(tmp_path, spawner_factory):
    spawner = spawner_factory("glibc-O2")
    # Waiting for a spawn: the parent is let go, untraced, and serves on.
    output = tmp_path / "none.ldbg"
    recorder = start_recording(spawner.proc.pid, output)
    recorder.send_signal(signal.SIGINT)
    _, err = recorder.communicate(timeout=30)
    assert recorder.returncode == 130 and "Traceback" not in err, err
    assert spawner.traced_by() == 0
    # Mid-recording: a valid file ending where we stopped; the child is
    # detached and runs to its normal end.
    output = tmp_path / "cut.ldbg"
    recorder = start_recording(spawner.proc.pid, output)
    spawner.spawn()
    wait_for_steps(output, 5_000, recorder)
    recorder.send_signal(signal.SIGINT)
    _, err = recorder.communicate(timeout=30)
    assert recorder.returncode == 130 and "Traceback" not in err, err
    assert spawner.status_line().endswith("status=exited:0")
    assert spawner.traced_by() == 0
    with ReplaySession(str(output)) as replay:
        assert replay.end_reason.kind == "interrupted" and replay.last_step >= 5_000
        assert replay.verify().ok
    # kill -9 of the recorder: the parent was let go long ago; the file
    # replays up to its last committed chunk. (The child is detached by the
    # kernel with our trap flag still set and dies of SIGTRAP one
    # instruction later: exit_ptrace does not clear single-stepping.)
    output = tmp_path / "killed.ldbg"
    recorder = start_recording(spawner.proc.pid, output)
    spawner.spawn()
    wait_for_steps(output, 5_000, recorder)
    recorder.kill()
    recorder.communicate(timeout=30)
    assert spawner.status_line().startswith("spawned ")
    assert spawner.traced_by() == 0
    with ReplaySession(str(output)) as replay:
        assert replay.end_reason.kind == "end" and replay.last_step >= 4_096
        assert replay.verify().ok
    spawner.spawn()
    assert spawner.status_line().endswith("status=exited:0")
    assert os.path.exists(f"/proc/{spawner.proc.pid}")
