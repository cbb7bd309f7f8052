"""MotionThread: the one thread that runs the app's motions (a step, a
continue, a goto) and decodes the stop that follows.

A Textual thread worker per step costs the event loop a task, an executor
hand-off and three Worker.StateChanged messages, about a millisecond of
the main thread's time on a ~13 ms step; motions never overlap (the app
refuses or coalesces a second one), so one long-lived thread fed by a
queue does the same job. Jobs run in order; an exception in a job is the
job's to report (the app's jobs post ViewReady with the error).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable


class MotionThread:
    def __init__(self, name: str = "loaderdbg-motion") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self, timeout: float = 5.0) -> None:
        """Let the job under way finish (a session call cannot be cut off
        from here: the app interrupts the session first), then end."""
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
