"""Issue 16.7: when loaderdbg's own output cannot be written (stdout closed
or full, stderr closed, a reader that stops reading, a recording's disk
filling up), it ends with one clear line and a documented exit code
(3: output failed; 0 for a reader that stopped reading, as with SIGPIPE),
never a traceback; and the text report is not the slow path."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from clihelp import LOADERDBG

EXIT_OUTPUT = 3


def _shell(command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `command` in sh with LD for loaderdbg: redirections such as
    `>&-` are what users type."""
    ld = " ".join(LOADERDBG)
    return subprocess.run(["sh", "-c", command.replace("LD", ld)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loaderdbg: "), stderr
    return lines[0]


@pytest.mark.parametrize("json_flag", ["", "--json"])
def test_stdout_closed_is_said_before_any_work(json_flag):
    done = _shell(f"LD inspect {json_flag} --at exit /bin/true >&-")
    assert done.returncode == EXIT_OUTPUT, done.stderr
    assert "stdout is closed" in _one_line(done.stderr)


@pytest.mark.parametrize("json_flag", ["", "--json"])
def test_stdout_on_a_full_disk(json_flag):
    done = _shell(f"LD inspect {json_flag} /bin/true > /dev/full")
    assert done.returncode == EXIT_OUTPUT, done.stderr
    assert "No space left on device" in _one_line(done.stderr)


def test_stderr_closed_keeps_json_whole_on_stdout(fixtures_dir):
    # The program writes on its stdout and stderr; neither may reach ours.
    done = _shell("LD inspect --json --at exit /bin/sh -c 'echo out; echo err >&2' 2>&-")
    assert done.returncode == 0
    assert json.loads(done.stdout)["stop"]["target"] == "exit"
    # A failure with stderr closed: its line is lost, the exit code says it.
    rdxbug = fixtures_dir / "execsolib" / "rdxbug" / "libexecsolib.so"
    done = _shell(f"LD inspect --json --at ldso-entry {rdxbug} 2>&-")
    assert done.returncode == 1
    assert json.loads(done.stdout)["stop"]["signal"] == "SIGSEGV"


def test_text_report_keeps_the_programs_output_off_stdout():
    done = _shell("LD inspect --at exit /bin/sh -c 'echo zz-out; echo zz-err >&2'")
    assert done.returncode == 0, done.stderr
    assert "zz-out\n" in done.stderr and "zz-err\n" in done.stderr
    assert "\nzz-out" not in done.stdout and "\nzz-err" not in done.stdout


@pytest.mark.parametrize("json_flag", ["", "--json"])
def test_reader_that_stops_reading_is_not_an_error(json_flag):
    # A report far bigger than a pipe's buffer, so writing meets the closed pipe.
    args = [str(i) for i in range(20000)]
    proc = subprocess.Popen([*LOADERDBG, "inspect", *([json_flag] if json_flag else []), "/bin/true", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0, err
    finally:
        proc.kill()
        proc.wait()
    assert err == ""


@pytest.fixture
def small_disk(tmp_path):
    """A 400 kB tmpfs when mount works here (root), else a 400 kB file size
    limit (RLIMIT_FSIZE) on the recorder: the same write error at the same
    size, for a different reason (EFBIG instead of ENOSPC)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount_point)],
                             capture_output=True).returncode == 0
    limit = None if mounted else 400 * 1024
    try:
        yield mount_point, limit
    finally:
        if mounted:
            subprocess.run(["umount", str(mount_point)], check=True)


def test_recording_disk_full_is_one_line_and_the_prefix_replays(small_disk):
    directory, limit = small_disk
    output = directory / "full.ldbg"

    def limit_file_size():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([*LOADERDBG, "record", "-o", str(output), "/bin/true"], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, preexec_fn=limit_file_size)
    assert done.returncode == EXIT_OUTPUT, done.stderr
    line = _one_line(done.stderr.replace("\r", "\n").splitlines()[-1])
    assert str(output) in line and "cannot write the recording" in line
    replay = subprocess.run([*LOADERDBG, "inspect", "--json", "--replay", str(output), "--at", "exit"],
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert replay.stdout, replay.stderr  # exit 1: the recording ends before the exit, as it should
    snapshot = json.loads(replay.stdout)
    assert snapshot["step"] > 0  # a prefix of the run, readable


def test_recording_full_before_its_first_step_says_so_and_the_file_says_why(tmp_path):
    """A disk that fills while the recorder writes its header: one line
    (not SQLite's traceback), and a replay of what is there says the
    recording is unfinished (it used to say "architecture None not supported")."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(mount_point)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        output = mount_point / "full.ldbg"
        done = subprocess.run([*LOADERDBG, "record", "-o", str(output), "/bin/true"], capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == EXIT_OUTPUT, done.stderr
        assert "Traceback" not in done.stderr
        line = _one_line(done.stderr.replace("\r", "\n").splitlines()[-1])
        assert "cannot write the recording" in line
        if output.exists():
            replay = subprocess.run([*LOADERDBG, "inspect", "--json", "--replay", str(output)],
                                    capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            assert replay.returncode != 0 and "Traceback" not in replay.stderr
            assert "unfinished recording" in replay.stderr or "cannot" in replay.stderr, replay.stderr
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_text_report_of_100k_arguments_is_not_the_slow_path():
    args = [str(i) for i in range(100000)]
    timings = {}
    for mode in ("--json", "--at"):
        command = [*LOADERDBG, "inspect", *(["--json"] if mode == "--json" else ["--at", "first"]),
                   "/bin/true", *args]
        # The CPU loaderdbg and its tracee used (children's rusage), not the
        # wall clock, which on a loaded machine counts others' turns too.
        started = _children_cpu()
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                              stdin=subprocess.DEVNULL)
        timings[mode] = _children_cpu() - started
        assert done.returncode == 0, done.stderr[-2000:]
        assert b"'99999'" in done.stdout or b'"99999"' in done.stdout
    # Before the fix: 25 s against 2 s.
    assert timings["--at"] < 2.5 * timings["--json"] + 2, timings
