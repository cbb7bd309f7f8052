"""A syscall cut short by a signal that the program ignores is run again by
the kernel within the step that delivers the signal (rip moved back onto the
`syscall`, or restart_syscall for a sleep). The recording keeps what it
wrote and lists it, as strace does. (The terminal's SIGTTIN, swallowed by
loaderdbg, is test_terminal_programs'.)"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from clihelp import LOADERDBG
from loaderdbg.record.replay import ReplaySession

# Static musl: a few hundred steps to main. The timer fires while the
# program waits; SIGALRM is ignored, so nothing but the kernel's restart
# follows it.
SLEEPER = r"""
#include <signal.h>
#include <sys/time.h>
#include <time.h>
int main(void) {
    signal(SIGALRM, SIG_IGN);
    struct itimerval timer = {{0, 0}, {0, 100000}};
    setitimer(ITIMER_REAL, &timer, 0);
    struct timespec pause = {0, 400000000};
    return nanosleep(&pause, 0);
}
"""
READER = r"""
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>
int main(void) {
    char buf[64];
    signal(SIGALRM, SIG_IGN);
    struct itimerval timer = {{0, 0}, {0, 300000}};
    setitimer(ITIMER_REAL, &timer, 0);
    ssize_t n = read(0, buf, sizeof buf);
    return n == 15 ? 0 : 1;
}
"""


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("restart")
    built = {}
    for name, source in (("sleeper", SLEEPER), ("reader", READER)):
        (directory / f"{name}.c").write_text(source)
        built[name] = str(directory / name)
        subprocess.run(["musl-gcc", "-static", "-O1", "-o", built[name], str(directory / f"{name}.c")], check=True)
    return built


def _syscalls(replay: ReplaySession) -> list:
    return [e for e in replay.events() if e.kind == "syscall"]


def test_a_sleep_restarted_after_an_ignored_signal_is_recorded(tmp_path, programs):
    path = tmp_path / "sleeper.ldbg"
    done = subprocess.run([*LOADERDBG, "record", "-o", str(path), programs["sleeper"]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with ReplaySession(str(path)) as replay:
        assert replay.end_reason.kind == "exited" and replay.verify().ok
        details = [e.detail for e in _syscalls(replay)]
    sleep = next(i for i, d in enumerate(details) if d.startswith("nanosleep("))
    assert "ERESTART_RESTARTBLOCK" in details[sleep], details
    assert details[sleep + 1] == "restart_syscall() = 0", details


def _blocked_in_read(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == "0"
    except (OSError, IndexError):
        return False


def test_a_read_restarted_after_an_ignored_signal_keeps_its_bytes(tmp_path, programs):
    path = tmp_path / "reader.ldbg"
    recorder = subprocess.Popen([*LOADERDBG, "record", "-o", str(path), programs["reader"]],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        tracee = None
        while tracee is None or not _blocked_in_read(tracee):
            assert time.monotonic() < deadline and recorder.poll() is None, "the program never read"
            children = f"/proc/{recorder.pid}/task/{recorder.pid}/children"
            with open(children) as f:
                found = f.read().split()
            tracee = int(found[0]) if found else None
            time.sleep(0.02)
        time.sleep(0.6)  # its timer (300 ms from before the read) has fired: the read was restarted
        os.write(recorder.stdin.fileno(), b"from-the-pipe!\n")
        recorder.stdin.close()
        assert recorder.wait(timeout=60) == 0, recorder.stderr.read()
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    with ReplaySession(str(path)) as replay:
        assert replay.end_reason.kind == "exited" and replay.verify().ok
        reads = [e for e in _syscalls(replay) if e.name == "read"]
        assert "ERESTARTSYS" in reads[-2].detail and reads[-1].detail.endswith(" = 15"), reads
        replay.goto(reads[-1].step - 1)
        buffer = replay.register("rsi")
        assert replay.read_memory(buffer, 15) != b"from-the-pipe!\n"
        replay.goto(reads[-1].step)
        assert replay.read_memory(buffer, 15) == b"from-the-pipe!\n"


def test_a_chunk_filled_by_the_cut_short_sleep_keeps_its_size(tmp_path, programs):
    """The nanosleep's step ends exactly as a chunk fills, and the next step
    (the kernel's restart) goes the careful way too: it starts the next
    chunk (it went into the full one, which then would not open)."""
    from loaderdbg.process.tracee import LaunchSpec
    from loaderdbg.record.recorder import record_program

    program = programs["sleeper"]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        def record(path, **chunks):
            spec = LaunchSpec(program, (program,), {"PATH": "/usr/bin:/bin"}, stdout_fd=null, stderr_fd=null)
            record_program(spec, str(path), "exit", progress=False, **chunks)
        record(tmp_path / "plain.ldbg")
        with ReplaySession(str(tmp_path / "plain.ldbg")) as replay:
            sleep_step = next(e.step for e in _syscalls(replay) if e.detail.startswith("nanosleep("))
        for chunk_steps in (sleep_step, sleep_step + 1, sleep_step + 2):
            path = tmp_path / f"chunks-{chunk_steps}.ldbg"
            record(path, chunk_steps=chunk_steps, keyframe_chunks=1)
            with ReplaySession(str(path)) as replay:
                assert replay.end_reason.kind == "exited" and replay.verify().ok
                details = [e.detail for e in _syscalls(replay)]
                assert "restart_syscall() = 0" in details, details
    finally:
        os.close(null)
