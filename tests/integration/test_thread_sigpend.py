"""threads[].sigpend is the program's pending signals, not loaderdbg's.

A launched group is halted with a SIGSTOP to each thread (tgkill); a thread
that stopped for something else first keeps that SIGSTOP queued until it
runs again, when the engine swallows it. /proc lists it in SigPnd all that
while, so the view left it in, and most stops of a busy multi-threaded
program read as if the program had stopped its own threads.
"""

from __future__ import annotations

import os
import signal

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.process import ptrace


@pytest.fixture
def ctor_threads(fixtures_dir):
    return str(fixtures_dir / "threads" / "ctor_threads")


@pytest.fixture
def session(ctor_threads):
    with open(os.devnull, "w") as sink:
        spec = launch_spec(ctor_threads, [], aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as live:
            yield live


def test_no_thread_lists_the_sigstop_that_halted_it(session):
    seen_others = 0
    for _ in range(8):
        reason = session.cont("sym:common_work")
        assert reason.reached, reason
        threads = session.threads()
        seen_others += len(threads) - 1
        for thread in threads:
            assert "SIGSTOP" not in thread.sigpend, (reason.description, thread)
    assert seen_others >= 8  # the workers were there to be halted


def test_a_signal_sent_to_a_halted_thread_is_listed(session):
    """What the program is owed still shows, SIGSTOP's neighbours and all."""
    reason = session.cont("sym:common_work")
    assert reason.reached, reason
    other = next(t.tid for t in session.threads() if t.tid != reason.thread)
    ptrace.tgkill(session.pid, other, signal.SIGUSR1)
    listed = {t.tid: t.sigpend for t in session.threads()}
    assert "SIGUSR1" in listed[other], listed
    assert "SIGSTOP" not in listed[other], listed
