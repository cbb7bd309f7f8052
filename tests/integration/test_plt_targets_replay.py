"""A replay runs to sym:puts@plt as the live run does: to the first call
through any loaded object's entry of that name (lazy's own puts@plt; libc's
malloc@plt, a .plt.got entry), where it said the target was not reached."""

from __future__ import annotations

import os

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def _spec(path: str, out_fd: int) -> LaunchSpec:
    return LaunchSpec(path=path, argv=(path,), env=dict(ENV), stdout_fd=out_fd, stderr_fd=out_fd)


@pytest.mark.parametrize("target", ["sym:puts@plt", "sym:malloc@plt"])
def test_replay_stops_at_a_plt_target_where_live_does(fixtures_dir, tmp_path, target):
    path = str(fixtures_dir / "zoo" / "lazy")
    output = str(tmp_path / "lazy.ldbg")
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        record_program(_spec(path, null), output, "exit", progress=False)
        with LiveSession(_spec(path, null)) as live:
            live_reason = live.cont(target)
            live_pc = live.snapshot().registers.get("rip")
            live_name = live.symbolize(live_pc)
    finally:
        os.close(null)
    with ReplaySession(output) as replay:
        replay_reason = replay.cont(target)
        replay_pc = replay.snapshot().registers.get("rip")
    assert live_reason.reached and live_name == target.removeprefix("sym:")
    assert replay_reason.reached, replay_reason
    assert replay_pc == live_pc and replay_reason.description == live_reason.description
