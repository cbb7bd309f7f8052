"""Signals of a live program, as the real gdb sees them over `loaderdbg
serve --live`, compared with what gdb says natively of the same program:
the signal's own name (gdb's numbering is not Linux's: Linux's SIGUSR1 10
is gdb's SIGBUS), and a continue stops at a signal gdb stops at by default
(SIGUSR1, even one the program handles) but not at one gdb passes quietly
(SIGALRM), whose handler then runs.
"""

from __future__ import annotations

import pytest

from test_serve_gdb import run_gdb

PROGRAMS = {
    # Dies of SIGUSR1 (no handler): native gdb stops at it, then reports the death.
    "usr1_kills": "import os\nos.kill(os.getpid(), 10)\n",
    # Dies of SIGBUS (7 on Linux, 10 in gdb's numbering).
    "bus_kills": "import os\nos.kill(os.getpid(), 7)\n",
    # Handles SIGUSR1: gdb stops at it, and the handler runs on the continue.
    "usr1_handled": "import os, signal\nsignal.signal(10, lambda *a: print('handled'))\n"
                    "os.kill(os.getpid(), 10)\nprint('after')\n",
    # SIGALRM is nostop/noprint/pass in gdb: the program runs to its exit, handler run.
    "alarm_passed": "import os, signal\nsignal.signal(14, lambda *a: print('alarm handled'))\n"
                    "os.kill(os.getpid(), 14)\nraise SystemExit(4)\n",
}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> dict[str, dict[str, str]]:
    folder = tmp_path_factory.mktemp("signals")
    found = {}
    for name, source in PROGRAMS.items():
        script = folder / f"{name}.py"
        script.write_text(source)
        found[name] = run_gdb(["--live", "/usr/bin/python3", str(script)],
                              [("first", ["continue"]), ("second", ["continue"])])
    return found


def test_a_signal_that_kills_is_stopped_at_then_reported_by_its_own_name(out):
    first, second = out["usr1_kills"]["first"], out["usr1_kills"]["second"]
    assert "Program received signal SIGUSR1, User defined signal 1." in first, first
    assert "Program terminated with signal SIGUSR1, User defined signal 1." in second, second


def test_sigbus_is_sigbus(out):
    first, second = out["bus_kills"]["first"], out["bus_kills"]["second"]
    assert "Program received signal SIGBUS, Bus error." in first, first
    assert "Program terminated with signal SIGBUS, Bus error." in second, second


def test_a_handled_signal_stops_gdb_and_its_handler_runs_on_continue(out):
    first, second = out["usr1_handled"]["first"], out["usr1_handled"]["second"]
    assert "Program received signal SIGUSR1, User defined signal 1." in first, first
    assert "handled" not in first
    assert second.index("handled") < second.index("after") < second.index("exited normally"), second


def test_a_signal_gdb_passes_does_not_stop_and_is_delivered(out):
    first = out["alarm_passed"]["first"]
    assert "received signal" not in first, first
    assert first.index("alarm handled") < first.index("exited with code 04"), first
