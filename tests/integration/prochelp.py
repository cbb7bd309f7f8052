"""Processes the CLI tests drive: loaderdbg in a pseudo-terminal, and a
task's /proc status. Imported as a plain module (tests/integration is on
sys.path under pytest's default import mode, as clihelp is)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import time

from clihelp import LOADERDBG


def task_status(pid: int, tid: int | None = None) -> dict[str, str]:
    """/proc/PID/status (or a thread's) as a dict; empty once it is gone."""
    path = f"/proc/{pid}" if tid is None else f"/proc/{pid}/task/{tid}"
    try:
        with open(f"{path}/status") as handle:
            return {key: value.strip() for key, _, value in (line.partition(":") for line in handle)}
    except OSError:
        return {}


class PtySession:
    """loaderdbg in a pseudo-terminal of its own, as if typed at a shell
    (the pty module: pty.fork makes it the session's foreground)."""

    def __init__(self, args: list[str], background: bool = False, env: dict[str, str] | None = None) -> None:
        self.child, self.master = pty.fork()
        if self.child == 0:  # pragma: no cover - the child execs at once
            if background:
                # A job the shell put in the background: a process group of
                # its own, not the terminal's foreground one.
                grandchild = os.fork()
                if grandchild:
                    _, status = os.waitpid(grandchild, 0)
                    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
                os.setpgid(0, 0)
            os.environ.update(env or {})
            os.execv(LOADERDBG[0], [*LOADERDBG, *args])
        self.output = b""

    def read_for(self, seconds: float, until: bytes | None = None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in self.output):
            if self.master < 0:
                time.sleep(0.05)
                continue
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # EIO: every writer has gone
                    return

    def wait_until_lent(self, seconds: float) -> None:
        """Read until the terminal's foreground process group is no longer
        loaderdbg's (pty.fork made it the session's, and its group; 0 until
        the child has set the session up): the program has read the terminal
        and loaderdbg lent it."""
        deadline = time.monotonic() + seconds
        while os.tcgetpgrp(self.master) in (0, self.child):
            if time.monotonic() > deadline:
                raise AssertionError(f"the terminal was not lent in {seconds} s: {self.text[-2000:]}")
            self.read_for(0.02)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def hang_up(self) -> None:
        """The terminal goes away (a closed window): the kernel sends
        SIGHUP, and every write to it fails."""
        os.close(self.master)
        self.master = -1

    def exit_code(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_for(0.1)
            pid, status = os.waitpid(self.child, os.WNOHANG)
            if pid:
                self.child = 0
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"loaderdbg did not end: {self.text[-2000:]}")

    @property
    def text(self) -> str:
        """What the terminal showed, without colours."""
        return re.sub(r"\x1b\[[0-9;]*m", "", self.output.decode(errors="replace").replace("\r\n", "\n"))

    def close(self) -> None:
        if self.child:
            os.kill(self.child, signal.SIGKILL)
            os.waitpid(self.child, 0)
        if self.master >= 0:
            os.close(self.master)
