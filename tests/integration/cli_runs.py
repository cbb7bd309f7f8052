"""Driving a loaderdbg command from a test the way a user at a terminal
does: Ctrl-C it at a chosen moment, find the program it traces, see that
program gone. The command is never left running, whatever the test does.
Imported as a plain module, as the other helpers here."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def never_left_running(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``proc``, killed and reaped if the block leaves it running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ctrl_c(proc: subprocess.Popen, timeout: float) -> str:
    """Ctrl-C (SIGINT) to the command, then what it said on stderr."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=timeout)[1]


def traced_child(proc: subprocess.Popen) -> int | None:
    """The program the command launched (its first child), once it has one."""
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as handle:
            return int(handle.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def gone_within(pid: int, seconds: float = 10) -> bool:
    """Whether process ``pid`` is gone (reaped) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists(f"/proc/{pid}")
