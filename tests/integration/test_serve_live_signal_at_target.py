"""gdb's `signal SIG` over `loaderdbg serve --live` at a stop the engine
reached by its own int3 (`monitor until main`): the signal is delivered as
the thread leaves that stop, so a signal of the same kind the program
raises later is news gdb stops at, as natively at a breakpoint.

The program handles SIGUSR1 from a constructor (before main) and raises
it in main.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from test_serve_gdb import run_gdb

PROGRAM = r"""
#include <signal.h>
#include <unistd.h>
static void on_signal(int sig) { (void)sig; write(1, "handler SIGUSR1\n", 16); }
__attribute__((constructor)) static void setup(void) { signal(SIGUSR1, on_signal); }
int main(void) { raise(SIGUSR1); write(1, "after raise\n", 12); return 0; }
"""

TELLING = re.compile(r"^(handler SIGUSR1|after raise|Program received signal .*|"
                     r"\[Inferior 1 \(process \d+\) exited .*)$", re.M)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is required: run `make sysdeps`", pytrace=False)
    directory = tmp_path_factory.mktemp("signal_at_target")
    (directory / "raises.c").write_text(PROGRAM)
    path = directory / "raises"
    subprocess.run([gcc, "-O2", "-o", str(path), str(directory / "raises.c")], check=True,
                   capture_output=True, timeout=60)
    return str(path)


def _telling(text: str) -> list[str]:
    return [re.sub(r"process \d+", "process N", match.group(0)) for match in TELLING.finditer(text)]


def test_a_signal_given_at_an_until_stop_leaves_the_next_one_news(program):
    served = run_gdb(["--live", program], [("run", ["monitor until main", "signal SIGUSR1", "continue",
                                                    "continue"])])
    native = run_gdb([], [("run", ["signal SIGUSR1", "continue", "continue"])],
                     native=[f"file {program}", "starti", "tbreak main", "continue"])
    expected = ["handler SIGUSR1", "Program received signal SIGUSR1, User defined signal 1.",
                "handler SIGUSR1", "after raise", "[Inferior 1 (process N) exited normally]"]
    assert _telling(native["run"]) == expected
    assert _telling(served["run"]) == expected, served["run"]
