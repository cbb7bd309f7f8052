"""Recording real programs: the replay must be the run.

Zero divergences: on every program below, the recorder's keyframe checks
found no byte that changed without a recorded write, and the replay
reconstructs every keyframe checksum. (That a replayed snapshot is the live
one, byte for byte, is checked through the CLI in test_record_cli.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "build" / "fixtures"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def spec_for(path: str, *args: str) -> LaunchSpec:
    null = os.open(os.devnull, os.O_WRONLY)
    return LaunchSpec(path=path, argv=(path, *args), env=dict(ENV), stdout_fd=null, stderr_fd=null)


def close_spec(spec: LaunchSpec) -> None:
    os.close(spec.stdout_fd)


CASES = [
    ("execsolib/glibc-relr/libexecsolib.so", ("a",), "entry"),
    ("execsolib/musl-O2/libexecsolib.so", ("a", "b"), "exit"),
    ("execsolib/rdxbug/libexecsolib.so", (), "signal"),
    ("zoo/lazy", (), "exit"),  # lazy binding: _dl_runtime_resolve's xsavec
    ("zoo/ifunc-tls", (), "exit"),
    ("/bin/true", (), "exit"),
    ("/usr/bin/python3", ("-c", "pass"), "entry"),
]


@pytest.mark.parametrize("program,args,until", CASES, ids=[c[0].split("/")[-2 if "execsolib" in c[0] else -1]
                                                          + f"-{c[2]}" for c in CASES])
def test_no_divergence(tmp_path, fixtures_dir, program, args, until, capsys):
    path = program if program.startswith("/") else str(fixtures_dir / program)
    output = tmp_path / "run.ldbg"
    spec = spec_for(path, *args)
    progress = program == "/bin/true"
    try:
        summary = record_program(spec, str(output), until, progress=progress)
    finally:
        close_spec(spec)
    assert summary.divergences == 0, summary.warnings
    assert not [w for w in summary.warnings if "divergence" in w]
    assert summary.steps > 10_000
    if progress:
        assert "steps/s" in capsys.readouterr().err
    with ReplaySession(str(output)) as replay:
        assert replay.last_step == summary.steps
        report = replay.verify()
        assert report.ok, report.describe()
        if until == "signal":
            assert summary.stop_reason.reached and summary.stop_reason.signal == "SIGSEGV"
            replay.goto(replay.last_step)
            assert replay.pc == 0
        if until == "entry":
            replay.goto(replay.last_step)
            assert replay.pc == replay.recording.meta["at_entry"]["value"]
        if "execsolib" in program and until == "exit":
            # Stepping onto ld.so's r_brk hook counts like a live breakpoint on it.
            loaded = [e for e in replay.events() if e.kind == "link-map"]
            assert [e.name for e in loaded] == ["loaded"] and "/proc/self/fd/" in loaded[0].detail
            assert loaded[0].exact and loaded[0].step > 0
