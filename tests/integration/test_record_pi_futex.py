"""A recording of threads that contend for a priority-inheritance mutex
replays right. The kernel writes such a lock's word in the futex calls
(FUTEX_LOCK_PI marks it as waited for, FUTEX_UNLOCK_PI hands it to the
waiter's tid), which the recorder took to write nothing, as other futex
calls: the keyframe check then found the word changed with no recorded
write ("WARNING: 1 bytes changed without a recorded write", `verify`
failing), and replay showed the lock's word wrong in between."""

from __future__ import annotations

import subprocess

import pytest

from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.capture import futex_lock_words, syscall_writes
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

SOURCE = r"""
#define _GNU_SOURCE
#include <pthread.h>

static pthread_mutex_t lock;
static volatile int counter;

static void *worker(void *arg) {
    for (int i = 0; i < 60; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        for (volatile int j = 0; j < 40; j++)
            ;  /* held for a while: the other thread comes to wait */
        pthread_mutex_unlock(&lock);
    }
    return arg;
}

int main(void) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&lock, &attr);
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], 0, worker, 0);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], 0);
    return counter == 120 ? 0 : 1;
}
"""

FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_WAIT_REQUEUE_PI, FUTEX_PRIVATE_FLAG = 6, 7, 11, 128


def no_memory(address, size):
    return None


def test_pi_futex_calls_write_their_lock_words():
    word, other = 0x7000, 0x8000
    for op in (FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_LOCK_PI | FUTEX_PRIVATE_FLAG):
        assert syscall_writes("futex", (word, op, 0, 0, 0, 0), 0, no_memory) == [(word, 4)]
    assert syscall_writes("futex", (word, FUTEX_WAIT_REQUEUE_PI, 0, 0, other, 0), 0, no_memory) \
        == [(word, 4), (other, 4)]
    assert syscall_writes("futex", (word, 0, 1, 0, 0, 0), 0, no_memory) == []  # FUTEX_WAIT: nothing
    assert futex_lock_words((word, 1 | FUTEX_PRIVATE_FLAG, 1, 0, 0, 0)) == []  # FUTEX_WAKE


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pi")
    (directory / "pi_mutex.c").write_text(SOURCE)
    path = str(directory / "pi_mutex")
    subprocess.run(["gcc", "-O1", "-static", "-pthread", "-o", path, str(directory / "pi_mutex.c")], check=True)
    return path


def test_threads_contending_for_a_pi_mutex_replay_right(program, tmp_path):
    output = str(tmp_path / "pi.ldbg")
    spec = LaunchSpec(path=program, argv=(program,), env={"PATH": "/usr/bin:/bin", "LANG": "C"},
                      stdout_fd=None, stderr_fd=None)
    # A keyframe every 512 steps: one comes while a waiter has marked the
    # word, before the owner's unlock hands it over (at the default 32,768
    # this short a program has only its last, with the lock free again).
    summary = record_program(spec, output, "exit", progress=False, chunk_steps=256, keyframe_chunks=2)
    assert "exited with status 0" in summary.describe(), summary.describe()
    assert summary.divergences == 0 and "WARNING" not in summary.describe(), summary.warnings
    with ReplaySession(output) as replay:
        report = replay.verify()
        assert report.ok, report.describe()
