"""The command's entry point: a signal while the command line and the
engine are still being imported ends loaderdbg with its one line and the
shell's exit code, never an import's traceback."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

# A signal that arrives while loaderdbg.cli is being imported: sent from
# a real import hook, in the middle of the import that takes the time.
_SIGNAL_MID_IMPORT = """
import os, signal, sys
class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "loaderdbg.cli":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.{name})
        return None
sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["loaderdbg", "inspect", "--at", "entry", "/bin/true"]
from loaderdbg.entry import main
raise SystemExit(main())
"""


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_while_importing_ends_with_one_line(name):
    signum = getattr(signal, name)
    done = subprocess.run([sys.executable, "-c", _SIGNAL_MID_IMPORT.replace("{name}", name)],
                          capture_output=True, text=True, timeout=30)
    assert "Traceback" not in done.stderr
    words = "interrupted" if signum == signal.SIGINT else f"interrupted ({name})"
    assert done.stderr == f"loaderdbg: {words}\n"
    assert done.returncode == 128 + signum


def test_an_ignored_signal_stays_ignored_while_importing():
    """nohup's SIGHUP (or a background job's SIGINT) is not ours to take."""
    script = _SIGNAL_MID_IMPORT.replace("{name}", "SIGHUP").replace(
        "sys.meta_path.insert", "signal.signal(signal.SIGHUP, signal.SIG_IGN); sys.meta_path.insert")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
