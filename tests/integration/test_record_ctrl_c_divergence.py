"""Ctrl-C while a thread of the recorded program waits in a syscall that
writes memory. Once every thread waits in one, the recorder polls the
stepping thread's syscall for its end; Ctrl-C there sends that thread our
SIGSTOP, which cuts a sleep short (the kernel writes the time it had left
into nanosleep's second argument) or finds a read that has just got its
bytes. The recorder ended the recording at once, before that syscall's
step, and its final keyframe found those bytes changed with no recorded
write ("WARNING: 12 bytes changed without a recorded write", `verify`
failing), recorded as written by the step before, which did not write
them. The syscall's step is now collected and recorded as a one-thread
recording records it (a sleep cut short returns ERESTART_RESTARTBLOCK and
writes what it had left; a read that got its bytes wrote them). A syscall
that does not come back (a vfork waiting for its child, whose writes to
the memory it borrows were blamed on the steps too) is left out: the
recording ends before it, and the final check leaves its writes out.

One thread alone in ppoll: its step was recorded, but not the time it had
left, which ppoll writes into its timeout when it fails too.

The program is built here (two sleepers, one reader of stdin, one vforker,
or one thread in ppoll); Ctrl-C is sent once every one of its threads has
been seen waiting in the kernel for a while, which a traced thread only
does while the recorder lets it block."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import threading
import time

import pytest

from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
SLEEP_NS = 200_000_000
UNTOUCHED = struct.pack("<qq", 7, 7)
ERESTART_RESTARTBLOCK = -516
# Every thread seen waiting for this long: the recorder has stopped
# expecting the stepping thread's syscall back (it waits for any thread's).
STILL_WAITING = 0.02

SOURCE = r"""
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct timespec left[2] = {{7, 7}, {7, 7}};
char got[64];
struct timespec timeout;

static void *sleeper(void *arg)
{
    struct timespec pause = {0, 200000000};
    for (;;)
        nanosleep(&pause, arg);
    return arg;
}

static void *reader(void *arg)
{
    while (read(0, got, sizeof got) > 0)
        ;
    return arg;
}

/* The child borrows the thread's memory (its stack) while the vfork waits
   for it, a wait no signal but SIGKILL cuts short. */
static void *vforker(void *arg)
{
    for (;;) {
        if (vfork() == 0) {
            struct timespec pause = {5, 0};
            nanosleep(&pause, NULL);
            _exit(0);
        }
    }
    return arg;
}

int main(int argc, char **argv)
{
    pthread_t threads[2];
    if (argc > 1 && strcmp(argv[1], "ppoll") == 0) {
        struct pollfd input = {0, POLLIN, 0};
        for (;;) {
            timeout.tv_sec = 5;
            timeout.tv_nsec = 0;
            /* Not glibc's ppoll, which passes a copy of the timeout. */
            if (syscall(SYS_ppoll, &input, 1, &timeout, NULL, 8) > 0)
                return 0;
        }
    }
    if (argc > 1 && strcmp(argv[1], "read") == 0) {
        pthread_create(&threads[0], NULL, reader, NULL);
    } else if (argc > 1 && strcmp(argv[1], "vfork") == 0) {
        pthread_create(&threads[0], NULL, vforker, NULL);
    } else {
        pthread_create(&threads[0], NULL, sleeper, &left[0]);
        pthread_create(&threads[1], NULL, sleeper, &left[1]);
    }
    pthread_join(threads[0], NULL);
    return 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The program (static, not PIE: its globals at link-time addresses) and
    the addresses of `left`, `got` and `timeout`."""
    directory = tmp_path_factory.mktemp("waiters")
    (directory / "waiters.c").write_text(SOURCE)
    path = str(directory / "waiters")
    subprocess.run(["gcc", "-O1", "-static", "-pthread", "-o", path, str(directory / "waiters.c")], check=True)
    symbols = {}
    for line in subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2] in ("left", "got", "timeout"):
            symbols[fields[2]] = int(fields[0], 16)
    return path, symbols["left"], symbols["got"], symbols["timeout"]


def _program_pid(me: int, path: str) -> int | None:
    try:
        with open(f"/proc/{me}/task/{me}/children") as handle:
            children = handle.read().split()
    except OSError:
        return None
    for pid in children:
        try:
            if os.readlink(f"/proc/{pid}/exe") == path:
                return int(pid)
        except OSError:
            continue
    return None


def _all_waiting(pid: int, threads: int) -> bool:
    """Every one of the program's ``threads`` threads waits in the kernel
    (S; D: vfork's wait for its child)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        if len(tasks) != threads:
            return False
        for tid in tasks:
            with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] not in ("S", "D"):
                    return False
    except (OSError, IndexError):
        return False
    return True


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return found


def record_until_ctrl_c(path: str, output: str, threads: int, mode: str, stdin_fd: int | None = None,
                        before_ctrl_c=None):
    """Record ``path`` ``mode``; Ctrl-C (SIGINT to us, as the CLI gets it)
    once all its ``threads`` threads are seen waiting together, after
    ``before_ctrl_c(pid)``."""
    me = os.getpid()
    done = threading.Event()
    sent = []

    def watch() -> None:
        deadline = time.monotonic() + 120
        pid = None
        since = None
        while not done.is_set() and time.monotonic() < deadline:
            pid = pid or _program_pid(me, path)
            if pid is None or not _all_waiting(pid, threads):
                since = None
            elif since is None:
                since = time.monotonic()
            elif time.monotonic() - since >= STILL_WAITING:
                if before_ctrl_c is not None:
                    before_ctrl_c(pid)
                sent.append(True)
                os.kill(me, signal.SIGINT)
                return
            time.sleep(0.0005)
        os.kill(me, signal.SIGINT)  # never seen: end the recording all the same (the test fails)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        spec = LaunchSpec(path=path, argv=(path, mode), env=dict(ENV),
                          stdin_fd=stdin_fd, stdout_fd=None, stderr_fd=None)
        summary = record_program(spec, output, "exit", progress=False)
    finally:
        done.set()
        watcher.join()
    assert sent, "the program's threads were never seen waiting together"
    return summary


def check_the_end(summary, replay: ReplaySession) -> None:
    """What every such recording must be: interrupted, no divergence found
    by the recorder or by a replay, the last step and its snapshot readable."""
    assert summary.interrupted and summary.stop_reason.kind == "interrupted"
    assert summary.divergences == 0 and "WARNING" not in summary.describe(), summary.warnings
    assert not [w for w in summary.warnings if "divergence" in w]
    report = replay.verify()
    assert report.ok, report.describe()
    assert replay.last_step == summary.steps
    replay.goto(replay.last_step)
    replay.snapshot()


def test_ctrl_c_while_every_thread_sleeps(program, tmp_path):
    """Two threads sleep 0.2 s at a time with a place for the time left
    (main joins): Ctrl-C while all three wait. A sleep is cut short only
    when Ctrl-C meets it; the last step's `left` is then the time it had
    left, written by that sleep's recorded step (the kernel's write), and
    untouched otherwise."""
    path, left, _, _ = program
    cut_short_seen = 0
    for attempt in range(3):
        output = str(tmp_path / f"sleepers{attempt}.ldbg")
        summary = record_until_ctrl_c(path, output, threads=3, mode="sleep")
        with ReplaySession(output) as replay:
            check_the_end(summary, replay)
            rows = replay.recording.syscalls()
            for slot in (left, left + 16):
                cut = [row for row in rows if row["name"] in ("nanosleep", "clock_nanosleep")
                       and slot in row["args"][1:4:2] and row["result"] == ERESTART_RESTARTBLOCK]
                now = replay.read_memory(slot, 16)
                if not cut:
                    assert now == UNTOUCHED, (slot, now)
                    continue
                cut_short_seen += 1
                seconds, nanoseconds = struct.unpack("<qq", now)
                assert seconds == 0 and 0 < nanoseconds < SLEEP_NS
                write = replay.last_memory_write(slot, 16)
                assert write.kind == "kernel" and write.step == cut[-1]["step"]
    assert cut_short_seen >= 1  # Ctrl-C met a sleep (the case this is about) at least once


def test_ctrl_c_while_a_vfork_waits_for_its_child(program, tmp_path):
    """A thread vforks (main joins); the child sleeps 5 s on the thread's
    stack, while the vfork waits in a wait our SIGSTOP does not cut short.
    Ctrl-C then: the recorder gives up waiting for the vfork's step, the
    recording ends before it, and what the child wrote meanwhile in memory
    the recording shares is not blamed on the steps (it was: 85 bytes
    changed without a recorded write)."""
    path, _, _, _ = program
    borrowers: list[int] = []
    try:
        for attempt in range(2):
            output = str(tmp_path / f"vfork{attempt}.ldbg")
            started = time.monotonic()
            summary = record_until_ctrl_c(path, output, threads=2, mode="vfork",
                                          before_ctrl_c=lambda pid: borrowers.extend(_children(pid)))
            assert time.monotonic() - started < 60
            with ReplaySession(output) as replay:
                check_the_end(summary, replay)
                assert not [row for row in replay.recording.syscalls() if row["name"] == "vfork"]
                assert replay.recording.meta["complete"]
    finally:
        for child in borrowers:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_ctrl_c_while_a_read_gets_its_bytes(program, tmp_path):
    """A thread reads stdin (a pipe), main joins: once both wait, the bytes
    are written to the pipe and Ctrl-C follows at once, so the read returns
    as the recording ends. The bytes it got are in the recording as that
    read's (the kernel's write), or, when the recording ended before the
    read, not at all; never found changed with no write."""
    path, _, got, _ = program
    message = b"written as Ctrl-C came"
    for attempt in range(3):
        output = str(tmp_path / f"reader{attempt}.ldbg")
        read_end, write_end = os.pipe()
        try:
            summary = record_until_ctrl_c(path, output, threads=2, mode="read", stdin_fd=read_end,
                                          before_ctrl_c=lambda pid: os.write(write_end, message))
        finally:
            os.close(read_end)
            os.close(write_end)
        with ReplaySession(output) as replay:
            check_the_end(summary, replay)
            reads = [row for row in replay.recording.syscalls() if row["name"] == "read" and row["args"][0] == 0]
            now = replay.read_memory(got, len(message))
            if reads and reads[-1]["result"] == len(message):
                assert now == message
                write = replay.last_memory_write(got, len(message))
                assert write.kind == "kernel" and write.step == reads[-1]["step"]
            else:
                assert now == bytes(len(message))


def test_ctrl_c_while_one_thread_waits_in_ppoll(program, tmp_path):
    """One thread in ppoll on a pipe nobody writes, 5 s at a time: Ctrl-C's
    SIGSTOP cuts it short (ERESTARTNOHAND), and ppoll writes the time it had
    left into its timeout, as it does whenever it fails. Its step recorded
    no write (a failed ppoll was taken to write nothing), and the final
    keyframe found the 12 bytes changed."""
    path, _, _, timeout = program
    for attempt in range(2):
        output = str(tmp_path / f"ppoll{attempt}.ldbg")
        read_end, write_end = os.pipe()
        try:
            summary = record_until_ctrl_c(path, output, threads=1, mode="ppoll", stdin_fd=read_end)
        finally:
            os.close(read_end)
            os.close(write_end)
        with ReplaySession(output) as replay:
            check_the_end(summary, replay)
            polls = [row for row in replay.recording.syscalls() if row["name"] == "ppoll"]
            assert polls and polls[-1]["result"] == -514 and polls[-1]["args"][2] == timeout  # ERESTARTNOHAND
            seconds, nanoseconds = struct.unpack("<qq", replay.read_memory(timeout, 16))
            assert (seconds, nanoseconds) != (5, 0) and 0 <= seconds < 5 and 0 <= nanoseconds < 1_000_000_000
            write = replay.last_memory_write(timeout, 16)
            assert write.kind == "kernel" and write.step == polls[-1]["step"]
