"""How a recording ends when loaderdbg is told to end:

- Ctrl-C that arrives while `record` is still launching the program (no
  process to stop yet) ends the recording at the first instruction, instead
  of being noted and then ignored until the program exits;
- SIGTERM and SIGHUP end it as Ctrl-C does, at the last complete step: the
  file verifies, and the exit code says which signal it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record import recorder
from loaderdbg.record.replay import ReplaySession


def test_ctrl_c_during_launch_ends_at_the_first_instruction(tmp_path, monkeypatch):
    real_launch = recorder.launch

    def launch_after_ctrl_c(spec):
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, while the launch is under way
        return real_launch(spec)

    monkeypatch.setattr(recorder, "launch", launch_after_ctrl_c)
    path = tmp_path / "sleep.ldbg"
    spec = LaunchSpec(path="/bin/sleep", argv=("/bin/sleep", "30"), env={"PATH": "/usr/bin:/bin"})
    summary = recorder.record_program(spec, str(path), "exit", progress=False)
    assert summary.stop_reason.kind == "interrupted" and summary.steps == 0
    assert summary.seconds < 10  # not the program's 30 s
    with ReplaySession(str(path)) as replay:
        assert replay.last_step == 0 and replay.end_reason.kind == "interrupted"


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_terminated_recording_ends_cleanly(tmp_path, signum):
    path = tmp_path / "sleep.ldbg"
    proc = subprocess.Popen([sys.executable, "-m", "loaderdbg", "record", "-o", str(path), "/bin/sleep", "30"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not path.exists() or path.stat().st_size < 200_000:  # well under way
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert "recording interrupted at step" in err and err.count("\n") == 1
    with ReplaySession(str(path)) as replay:
        assert replay.end_reason.kind == "interrupted" and replay.last_step > 0
        assert replay.verify().ok
