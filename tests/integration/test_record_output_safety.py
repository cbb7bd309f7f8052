"""The user's files are never destroyed by `record -o` (issue 16.1), on real
files and real recorders: a device node, a FIFO, a symlink, a directory,
any file that is not a loaderdbg recording (the program being recorded
too) is refused before anything runs and left exactly as it was; an
existing recording is replaced only with --force, and only once the new one
is finished; a recorder killed while replacing leaves the old recording
whole and the new one's readable prefix beside it; two recorders on one
path never corrupt each other."""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loaderdbg.errors import UsageError
from loaderdbg.record.format import open_recording
from loaderdbg.record.replay import ReplaySession

REPO = Path(__file__).resolve().parents[2]
LOADERDBG = [sys.executable, "-m", "loaderdbg"]
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "PYTHONPATH": str(REPO)}
LONG_PROGRAM = ("/usr/bin/python3", "-c", "pass")  # some 12 million steps: still running when we act


def record(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADERDBG, "record", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)


def start_recording(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*LOADERDBG, "record", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=REPO, stdin=subprocess.DEVNULL)


def fingerprint(path: Path) -> tuple:
    """What must not change: the entry's type, identity and, for a file,
    its bytes."""
    info = os.lstat(path)
    content = None
    if stat.S_ISREG(info.st_mode):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISLNK(info.st_mode):
        content = os.readlink(path)
    return stat.S_IFMT(info.st_mode), info.st_ino, info.st_rdev, info.st_size, content


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial-" in p.name or p.name.endswith(("-wal", "-shm")))


def wait_for_steps(path: Path, steps: int, recorder: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert recorder.poll() is None, recorder.stderr.read()
        try:
            rec = open_recording(str(path))
        except UsageError:
            time.sleep(0.2)
            continue
        reached = rec.last_step
        rec.close()
        if reached >= steps:
            return
        time.sleep(0.2)
    pytest.fail(f"{path} did not reach {steps} steps")


def stop(recorder: subprocess.Popen, how: int) -> str:
    recorder.send_signal(how)
    try:
        _, err = recorder.communicate(timeout=60)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    return err


@pytest.fixture
def program(tmp_path, fixtures_dir) -> Path:
    """A copy of a small static program, so that `-o PROG PROG` risks only the copy."""
    copy = tmp_path / "hello"
    shutil.copy(fixtures_dir / "zoo/hello-static", copy)
    return copy


def test_what_is_not_a_recording_is_never_written_over(tmp_path, program):
    targets = tmp_path / "targets"
    targets.mkdir()
    made = {}
    os.mkfifo(targets / "fifo")
    made["fifo"] = "FIFO"
    try:
        os.mknod(targets / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        made["null"] = "character device"
    except PermissionError:
        pass  # not root: the FIFO and the rest still run
    (targets / "notes.txt").write_text("my notes\n")
    made["notes.txt"] = "not a loaderdbg recording"
    sqlite3.connect(targets / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    made["other.db"] = "not a loaderdbg recording"
    os.symlink(program, targets / "link-to-program")
    made["link-to-program"] = "symbolic link"
    os.symlink(targets / "nowhere.ldbg", targets / "dangling")
    made["dangling"] = "symbolic link"
    (targets / "directory").mkdir()
    made["directory"] = "directory"
    before = {name: fingerprint(targets / name) for name in os.listdir(targets)}
    program_before = fingerprint(program)
    cases = [(str(targets / name), why) for name, why in made.items()]
    cases += [(str(program), "not a loaderdbg recording"), ("", "empty"), (str(targets) + "/", "directory")]
    for output, why in cases:
        for force in ((), ("--force",)):
            started = time.monotonic()
            done = record("-o", output, *force, str(program), timeout=30)
            assert done.returncode == 2, (output, done.stderr)
            assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
            assert why in done.stderr, (output, done.stderr)
            assert time.monotonic() - started < 15  # refused up front, not after recording
    assert {name: fingerprint(targets / name) for name in os.listdir(targets)} == before
    assert fingerprint(program) == program_before
    assert leftovers(targets) == [] and leftovers(tmp_path) == []


def test_a_recording_is_replaced_only_with_force(tmp_path, program):
    output = tmp_path / "out.ldbg"
    done = record("-o", str(output), "--until", "first", str(program))
    assert done.returncode == 0, done.stderr
    with ReplaySession(str(output)) as replay:
        first_pid = replay.recording.meta["pid"]
    before = fingerprint(output)
    done = record("-o", str(output), "--until", "first", str(program))
    assert done.returncode == 2 and "--force" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert fingerprint(output) == before
    done = record("-o", str(output), "--force", "--until", "step:1000", str(program))
    assert done.returncode == 0, done.stderr
    assert f"recording to {output}.partial-" in done.stderr and f"it replaces {output}" in done.stderr
    with ReplaySession(str(output)) as replay:
        assert replay.recording.meta["pid"] != first_pid and replay.last_step == 1000
        assert replay.verify().ok
    assert leftovers(tmp_path) == []


def test_a_recorder_killed_while_replacing_leaves_both(tmp_path, program):
    """kill -9 while recording over an old recording: the old one is whole,
    and the partial file, named when recording started, replays to its last
    committed chunk."""
    output = tmp_path / "out.ldbg"
    assert record("-o", str(output), "--until", "first", str(program)).returncode == 0
    before = fingerprint(output)
    recorder = start_recording("-o", str(output), "--force", *LONG_PROGRAM)
    try:
        ready, _, _ = select.select([recorder.stderr], [], [], 30)
        assert ready, "no notice of the partial file"
        notice = recorder.stderr.readline()
        assert notice.startswith("loaderdbg: recording to "), notice
        partial = Path(notice.split("recording to ", 1)[1].split(";", 1)[0])
        assert partial.parent == tmp_path and partial.name.startswith("out.ldbg.partial-")
        wait_for_steps(partial, 20_000, recorder)
        recorder.kill()
    finally:
        recorder.wait(timeout=30)
    assert fingerprint(output) == before
    with ReplaySession(str(partial)) as replay:
        assert replay.end_reason.kind == "end" and replay.last_step >= 20_000
        assert not replay.recording.meta["complete"]
        assert replay.verify().ok
    # What the killed recorder left is a recording: --force may replace it.
    done = record("-o", str(partial), "--force", "--until", "first", str(program))
    assert done.returncode == 0, done.stderr


def test_two_recorders_on_one_path(tmp_path, program):
    """The second refuses at once, with or without --force; the first goes
    on and finishes cleanly (it used to die of 'attempt to write a readonly
    database' when the second deleted its file)."""
    output = tmp_path / "two.ldbg"
    first = start_recording("-o", str(output), *LONG_PROGRAM)
    try:
        wait_for_steps(output, 5_000, first)
        for force in ((), ("--force",)):
            done = record("-o", str(output), *force, str(program), timeout=30)
            assert done.returncode == 2 and "another loaderdbg is recording to it" in done.stderr, done.stderr
        wait_for_steps(output, 30_000, first)
    finally:
        err = stop(first, signal.SIGINT)
    assert first.returncode == 130 and "Traceback" not in err, err
    with ReplaySession(str(output)) as replay:
        assert replay.end_reason.kind == "interrupted" and replay.last_step >= 30_000
        assert replay.verify().ok
    assert leftovers(tmp_path) == []


def test_two_recorders_starting_together(tmp_path, program):
    """Started at the same moment on a new path: one records, the other
    refuses (whichever step it gets to first), and the file is whole."""
    for attempt in range(3):
        output = tmp_path / f"race{attempt}.ldbg"
        both = [start_recording("-o", str(output), "--until", "step:5000", str(program)) for _ in range(2)]
        errors = [stop_after(recorder) for recorder in both]
        codes = sorted(recorder.returncode for recorder in both)
        assert codes == [0, 2], errors
        refusal = errors[[r.returncode for r in both].index(2)]
        assert len(refusal.splitlines()) == 1 and "Traceback" not in refusal, refusal
        with ReplaySession(str(output)) as replay:
            assert replay.last_step == 5_000 and replay.verify().ok
    assert leftovers(tmp_path) == []


def stop_after(recorder: subprocess.Popen) -> str:
    try:
        _, err = recorder.communicate(timeout=120)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    return err


def test_sqlite_side_files_of_a_path(tmp_path, program):
    """A WAL left by a killed recorder whose file was since deleted would be
    applied by SQLite to the new recording at that path: it goes. A FIFO
    in its place is refused (SQLite would block opening it)."""
    stale = tmp_path / "stale.ldbg"
    db = sqlite3.connect(stale)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('format', '\"something else\"')")
    db.commit()
    output = tmp_path / "out.ldbg"
    shutil.copy(str(stale) + "-wal", str(output) + "-wal")  # a real WAL, of another database
    db.close()
    assert os.path.getsize(str(output) + "-wal") > 0
    done = record("-o", str(output), "--until", "step:1000", str(program))
    assert done.returncode == 0, done.stderr
    with ReplaySession(str(output)) as replay:
        assert replay.last_step == 1000 and replay.verify().ok
    assert not os.path.exists(str(output) + "-wal")

    fifo_side = tmp_path / "fifo.ldbg"
    os.mkfifo(str(fifo_side) + "-wal")
    done = record("-o", str(fifo_side), "--until", "first", str(program), timeout=30)
    assert done.returncode == 2 and "FIFO" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert not fifo_side.exists() and stat.S_ISFIFO(os.lstat(str(fifo_side) + "-wal").st_mode)
