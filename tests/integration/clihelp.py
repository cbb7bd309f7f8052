"""Running the loaderdbg CLI as a subprocess, and the one-line error contract
its failures keep (issue 8). Imported as a plain module (tests/integration is
on sys.path under pytest's default import mode, as tests/tui is for
tuihelp.py)."""

from __future__ import annotations

import re
import subprocess
import sys

LOADERDBG = [sys.executable, "-m", "loaderdbg"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # stdin is /dev/null: `run` and `attach` must fail before any TUI exists,
    # and one started anyway hangs to the timeout instead of taking the terminal.
    return subprocess.run([*LOADERDBG, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # `loaderdbg: …`, or a command line error naming its command (`loaderdbg attach: …`).
    assert re.match(r"loaderdbg( [a-z]+)?: ", lines[0]), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result.stdout == ""
    return lines[0]
