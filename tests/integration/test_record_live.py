"""Recording real programs: the replay must be the run.

- A replayed snapshot is the live one: a LiveSession stepped to the same
  step (cont("step:N")) gives byte-identical registers, auxv, maps and
  relocation states, at several steps of the glibc exec-solib demo.
- Zero divergences: on every program below, the recorder's keyframe checks
  found no byte that changed without a recorded write, and the replay
  reconstructs every keyframe checksum.

Everything runs pinned to one CPU (3x faster stepping, PTRACE_NOTES.md §3).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession
from loaderdbg.snapshot_json import snapshot_to_json

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "build" / "fixtures"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
COMPARED = ("registers", "eflags", "stack_pointer", "argv", "envp", "auxv", "auxv_kernel", "maps",
            "relocations", "objects", "link_map", "handoff")


def spec_for(path: str, *args: str) -> LaunchSpec:
    null = os.open(os.devnull, os.O_WRONLY)
    return LaunchSpec(path=path, argv=(path, *args), env=dict(ENV), stdout_fd=null, stderr_fd=null)


def close_spec(spec: LaunchSpec) -> None:
    os.close(spec.stdout_fd)


@pytest.fixture
def pinned():
    """Pin this thread (and the tracer threads and tracees it starts)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    yield
    os.sched_setaffinity(0, before)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, fixtures_dir):
    program = str(fixtures_dir / "execsolib/glibc-O2/libexecsolib.so")
    path = tmp_path_factory.mktemp("record") / "demo.ldbg"
    spec = spec_for(program, "hello", "world")
    try:
        summary = record_program(spec, str(path), "entry", progress=False)
    finally:
        close_spec(spec)
    return program, path, summary


def without_random_bytes(auxv: list[dict]) -> list[dict]:
    """AT_RANDOM's 16 bytes differ on every exec, even without ASLR
    (PTRACE_NOTES.md §1): two runs can only agree on where they are."""
    return [dict(e, decoded=e["value"]) if e["type"] == "AT_RANDOM" else e for e in auxv]


def test_replay_snapshots_match_a_live_session(demo, pinned):
    program, path, summary = demo
    assert summary.stop_reason.reached and summary.divergences == 0
    with ReplaySession(str(path)) as replay:
        milestones = {e.name: e.step for e in replay.events() if e.kind == "milestone" and e.exact}
        steps = sorted({0, 2_500, milestones["memfd-create"], milestones["ldso-mapped"] + 1,
                        milestones["ldso-entry"], milestones["ldso-entry"] + 40_000, replay.last_step})
        spec = spec_for(program, "hello", "world")
        try:
            with LiveSession(spec) as live:
                for step in steps:
                    if step:
                        live.cont(f"step:{step}")
                    assert live.position == step
                    expected = snapshot_to_json(live.snapshot())
                    replay.goto(step)
                    got = snapshot_to_json(replay.snapshot())
                    for key in ("auxv", "auxv_kernel"):
                        expected[key] = without_random_bytes(expected[key])
                        got[key] = without_random_bytes(got[key])
                    for key in COMPARED:
                        assert got[key] == expected[key], f"{key} differs at step {step}"
                    assert got["relocations"] or step < milestones["ldso-entry"]
        finally:
            close_spec(spec)


def test_the_demo_recording_is_small_and_verifies(demo):
    _, path, summary = demo
    assert summary.bytes_per_step <= 16, summary.describe()
    assert not summary.warnings
    with ReplaySession(str(path)) as replay:
        report = replay.verify()
        assert report.ok, report.describe()


CASES = [
    ("execsolib/glibc-relr/libexecsolib.so", ("a",), "entry"),
    ("execsolib/musl-O2/libexecsolib.so", ("a", "b"), "exit"),
    ("execsolib/rdxbug/libexecsolib.so", (), "exit"),
    ("zoo/lazy", (), "exit"),  # lazy binding: _dl_runtime_resolve's xsavec
    ("zoo/ifunc-tls", (), "exit"),
    ("zoo/hello-static", (), "exit"),
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
        if until == "entry":
            replay.goto(replay.last_step)
            assert replay.pc == replay.recording.meta["at_entry"]["value"]
