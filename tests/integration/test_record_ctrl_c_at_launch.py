"""Ctrl-C that arrives while `record` is still launching the program (no
process to stop yet) ends the recording at the first instruction, instead
of being noted and then ignored until the program exits."""

from __future__ import annotations

import os
import signal

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
