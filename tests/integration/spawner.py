"""The spawner fixture program (tests/fixtures/zoo/spawner.c), driven from the
tests that catch or record its children. Imported as a plain module
(tests/integration is on sys.path under pytest's default import mode, as
tests/tui is for tuihelp.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def execsolib_so(fixtures_dir: Path, variant: str) -> str:
    return str(fixtures_dir / "execsolib" / variant / "libexecsolib.so")


class Spawner:
    """One fork+exec of `target` per line on stdin, then a
    `spawned pid=N status=…` line."""

    def __init__(self, fixtures_dir: Path, target: str, execsolib_argv: bool = True) -> None:
        args = [str(fixtures_dir / "zoo" / "spawner")]
        if execsolib_argv:
            args.append("--execsolib-argv")
        args.append(target)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)

    def spawn(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def status_line(self) -> str:
        """The next `spawned pid=N status=…` line (child output is skipped)."""
        while True:
            line = self.proc.stdout.readline()
            assert line, "spawner closed its output"
            if line.startswith("spawned "):
                return line.strip()

    def traced_by(self) -> int:
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
        return -1

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
