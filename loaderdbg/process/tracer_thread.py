"""The one OS thread that makes every ptrace call (DESIGN.md §8).

The kernel binds a tracee to the thread that attached it: GETREGS from any
other thread fails with ESRCH (PTRACE_NOTES.md §7). Callers hand work to
this thread and block on the result; exceptions travel back unchanged.
"""

from __future__ import annotations

from loaderdbg.job_thread import JobThread


class TracerThread(JobThread):
    def __init__(self, name: str = "loaderdbg-tracer") -> None:
        super().__init__(name)
