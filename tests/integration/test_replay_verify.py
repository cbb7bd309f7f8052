"""A replay checks what it replays (issue 16.2).

A copy of the rdxbug sample recording with one recorded write changed (the
chunk re-encoded with a valid checksum, as a recorder bug would leave it)
must be caught: by `loaderdbg verify`, by `inspect --replay` and `explain`
(exit 1, a loud first line, `verified`/`divergence` in the JSON) and by a
ReplaySession as soon as a move crosses the keyframe after the change. The
untouched sample must verify, and stay quiet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.record import replay as replay_module
from loaderdbg.record.replay import ReplaySession

from damaged_recording import SAMPLE, change_recorded_write, copy_of_sample

REPO = Path(__file__).resolve().parents[2]
LOADERDBG = [sys.executable, "-m", "loaderdbg"]
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "PYTHONPATH": str(REPO)}
KEYFRAME = 32768  # the sample's first keyframe after step 0
PAST_IT = "step:40000"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADERDBG, *args], capture_output=True, text=True, env=ENV, timeout=timeout,
                          cwd=REPO)


@pytest.fixture(scope="module")
def changed(tmp_path_factory):
    """(path, step, address): the last write before the keyframe to some
    bytes, its new bytes flipped."""
    path = copy_of_sample(tmp_path_factory.mktemp("verify") / "changed.ldbg")
    step, address = change_recorded_write(path, KEYFRAME)
    return path, step, address


@pytest.fixture(scope="module")
def changed_old(tmp_path_factory):
    """The first write after step 0 to some bytes, the bytes it replaced flipped."""
    path = copy_of_sample(tmp_path_factory.mktemp("verify") / "changed-old.ldbg")
    step, address = change_recorded_write(path, KEYFRAME, old_bytes=True)
    return path, step, address


def test_verify_command(changed):
    path, step, address = changed
    good = run("verify", str(SAMPLE))
    assert good.returncode == 0, good.stderr
    assert "matches the recording at all" in good.stdout and not good.stderr
    bad = run("verify", str(path))
    assert bad.returncode == 1, bad.stderr
    first = bad.stdout.splitlines()[0]
    assert first.startswith(f"{path}: DIVERGENCE") and f"step {step + 1}" in first and f"{address:#x}" in first
    assert f"the write of step {step}" in bad.stdout and "Traceback" not in bad.stderr


def test_verify_a_bad_file_exits_2(tmp_path):
    not_a_recording = tmp_path / "notes.ldbg"
    not_a_recording.write_text("hello\n")
    for path in (not_a_recording, tmp_path / "missing.ldbg"):
        done = run("verify", str(path))
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert not done.stdout


def test_verify_progress_line_on_a_terminal(changed):
    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed")
    path, _, _ = changed
    command = " ".join([sys.executable, "-m", "loaderdbg", "verify", str(path)])
    done = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, env=ENV, timeout=120,
                          cwd=REPO, stdin=subprocess.DEVNULL)
    shown = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 1, shown
    assert "\rverifying: keyframe 1/3" in shown and "keyframe 3/3 (100%)" in shown
    assert "DIVERGENCE" in shown
    quiet = run("verify", str(path))
    assert "verifying" not in quiet.stderr  # no terminal, no progress line


def test_inspect_json_says_verified_and_divergence(changed):
    path, step, address = changed
    good = run("inspect", "--json", "--replay", str(SAMPLE), "--at", PAST_IT)
    assert good.returncode == 0, good.stderr
    shown = json.loads(good.stdout)
    assert shown["verified"] is True and shown["divergence"] is None
    at_start = json.loads(run("inspect", "--json", "--replay", str(SAMPLE)).stdout)
    assert at_start["verified"] is None and at_start["divergence"] is None  # nothing crossed yet
    bad = run("inspect", "--json", "--replay", str(path), "--at", PAST_IT)
    assert bad.returncode == 1
    shown = json.loads(bad.stdout)
    assert shown["step"] == 40000 and shown["stop"]["reached"]
    assert shown["verified"] is False
    assert shown["divergence"]["step"] == step + 1 and shown["divergence"]["address"] == f"{address:#x}"
    assert bad.stderr.startswith("loaderdbg: DIVERGENCE: ") and len(bad.stderr.splitlines()) == 1
    # Before the keyframe nothing was crossed: nothing to say yet.
    early = run("inspect", "--json", "--replay", str(path), "--at", "step:1000")
    assert early.returncode == 0 and json.loads(early.stdout)["verified"] is None


def test_text_report_and_explain_open_with_the_divergence(changed):
    path, step, _ = changed
    report = run("inspect", "--replay", str(path), "--at", PAST_IT)
    assert report.returncode == 1
    assert report.stdout.splitlines()[0].startswith(f"DIVERGENCE: replay diverges from the recording at step {step + 1}")
    story = run("explain", str(path))
    assert story.returncode == 1, story.stderr
    assert story.stdout.splitlines()[0].startswith(f"DIVERGENCE: replay diverges from the recording at step {step + 1}")
    assert "SIGSEGV" in story.stdout  # the report itself still follows
    quiet = run("explain", str(SAMPLE))
    assert quiet.returncode == 0 and "DIVERGENCE" not in quiet.stdout


def test_a_session_finds_it_when_a_move_crosses_the_keyframe(changed):
    path, step, address = changed
    with ReplaySession(str(path)) as session:
        session.goto(KEYFRAME - 100)
        assert session.verified is None and session.divergence is None
        session.step(200)  # crosses the keyframe
        assert session.verified is False
        assert (session.divergence.step, session.divergence.address) == (step + 1, address)
        assert session.snapshot().divergence == session.divergence
    with ReplaySession(str(path)) as session:
        # Backwards too: from the end, reverse-continue to the start crosses it.
        session.goto(session.last_step)
        assert session.divergence is not None and session.divergence.step == step + 1


def test_changed_old_bytes_are_found_going_backwards(changed_old):
    path, step, address = changed_old
    with ReplaySession(str(path)) as session:
        session.goto(KEYFRAME + 10)
        session.reverse_cont()  # back to step 0, undoing every write in between
        assert session.position == 0
        assert (session.divergence.step, session.divergence.address) == (step, address)
        assert "undoing the write of step" in session.divergence.message
    done = run("verify", str(path))
    assert done.returncode == 1 and f"address {address:#x}" in done.stdout


def test_each_keyframe_is_checked_once(monkeypatch):
    checked = []
    real = replay_module.check_keyframe

    def counting(rec, keyframe, **kwargs):
        checked.append(keyframe)
        return real(rec, keyframe, **kwargs)

    monkeypatch.setattr(replay_module, "check_keyframe", counting)
    with ReplaySession(str(SAMPLE)) as session:
        keyframes = session.recording.keyframes
        session.goto(session.last_step)
        assert sorted(checked) == keyframes[1:] and session.verified is True
        for _ in range(3):  # back and forth: nothing checked again
            session.goto(0)
            session.goto(session.last_step)
            session.step_back(40000)
        assert sorted(checked) == keyframes[1:]


def test_good_recordings_verify(tmp_path):
    for path in sorted((REPO / "recordings").glob("*.ldbg")):
        with ReplaySession(str(path)) as session:
            report = session.verify()
            assert report.ok, report.describe()
            session.goto(session.last_step)
            session.goto(0)
            assert session.verified is True and session.divergence is None
