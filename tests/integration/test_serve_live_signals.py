"""gdb's signal controls over `loaderdbg serve --live`, compared with native
gdb on the same program: what the program receives after a signal stop is
what gdb's resume asks for (gdbserver's way), so `handle SIG nopass`,
`signal 0`, `signal SIG` and `queue-signal` change it, a `stepi` with the
signal passed lands in its handler, and a detach hands it on only if gdb
passes it. A recording cannot change what it received: gdb's console is
told so.

The fixture (tests/fixtures/zoo/signal-controls.c) handles SIGUSR1 and
SIGUSR2 (each handler prints its name), raises SIGUSR1, then SIGTERM, which
it does not handle, printing a line after each.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from test_serve_gdb import RDXBUG, run_gdb

ROOT = Path(__file__).resolve().parents[2]
CONTROLS = ROOT / "build" / "fixtures" / "zoo" / "signal-controls"
THREAD_SIGNAL = ROOT / "build" / "fixtures" / "threads" / "thread_signal"

# What the program says and how gdb says it stopped or ended: the lines
# that must be the same under native gdb and over serve.
TELLING = re.compile(r"^(handler SIG\w+|after SIGUSR1|survived SIGTERM|thread_signal: .*|"
                     r"(Thread \d+ \"\w+\" |Program )received signal .*|Program terminated with .*|"
                     r"\[Inferior 1 \(process \d+\) exited .*|#0  on_signal .*)$", re.M)

SCENARIOS = {
    # Withheld at the stop: neither handler runs, and SIGTERM does not kill.
    "nopass": [("run", ["handle SIGUSR1 nopass", "handle SIGTERM nopass", "continue", "continue", "continue"])],
    # Not even stopped at, and still withheld (gdb resumes it with vCont;c by itself).
    "silent_nopass": [("run", ["handle SIGUSR1 nostop noprint nopass", "continue", "continue"])],
    # Replaced by another (its handler runs), then dropped by a queued 0.
    "replaced": [("run", ["continue", "signal SIGUSR2", "queue-signal 0", "continue"])],
    "queued": [("run", ["continue", "queue-signal SIGUSR2", "continue", "signal 0"])],
    # Passed (the default): a stepi lands in the handler, SIGTERM kills.
    "passed": [("run", ["continue", "stepi", "bt 1", "continue", "continue"])],
}


def _telling(text: str) -> list[str]:
    return [re.sub(r"process \d+", "process N", match.group(0)) for match in TELLING.finditer(text)]


def _require(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is not built: run `make fixtures`", pytrace=False)


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[list[str], list[str]]]:
    """Each scenario's telling lines: (native gdb's, over serve)."""
    _require(CONTROLS)
    found = {}
    for name, sections in SCENARIOS.items():
        native = run_gdb([], sections, native=[f"file {CONTROLS}", "starti"])
        served = run_gdb(["--live", str(CONTROLS)], sections)
        found[name] = (_telling(native["run"]), _telling(served["run"]))
    return found


def test_handle_nopass_withholds_the_signal_as_natively(runs):
    native, served = runs["nopass"]
    assert served == native
    assert served == ["Program received signal SIGUSR1, User defined signal 1.", "after SIGUSR1",
                      "Program received signal SIGTERM, Terminated.", "survived SIGTERM",
                      "[Inferior 1 (process N) exited normally]"], served


def test_nostop_noprint_nopass_withholds_it_without_stopping(runs):
    native, served = runs["silent_nopass"]
    assert served == native
    assert served[0] == "after SIGUSR1" and "handler SIGUSR1" not in served, served


def test_signal_sig_replaces_it_and_queue_signal_0_drops_the_next(runs):
    native, served = runs["replaced"]
    assert served == native
    assert served[1:3] == ["handler SIGUSR2", "after SIGUSR1"], served
    assert served[-2:] == ["survived SIGTERM", "[Inferior 1 (process N) exited normally]"], served


def test_queue_signal_replaces_it_and_signal_0_drops_the_next(runs):
    native, served = runs["queued"]
    assert served == native
    assert "handler SIGUSR2" in served and "handler SIGUSR1" not in served, served
    assert "survived SIGTERM" in served, served


def test_a_passed_signal_is_delivered_by_stepi_and_continue(runs):
    native, served = runs["passed"]
    assert served == native
    assert any(line.startswith("#0  on_signal (sig=10) at ./signal-controls.c:") for line in served), served
    assert served[-1] == "Program terminated with signal SIGTERM, Terminated.", served


def test_another_threads_signal_reaches_that_thread(tmp_path):
    """The worker stops with SIGUSR1; gdb switches to the main thread and
    continues: it passes the worker's signal by naming the worker
    (vCont;C1e:WORKER;c), and the worker's handler runs."""
    _require(THREAD_SIGNAL)
    sections = [("run", ["continue", "thread 1", "continue"])]
    native = _telling(run_gdb([], sections, native=[f"file {THREAD_SIGNAL}", "starti"])["run"])
    served = _telling(run_gdb(["--live", str(THREAD_SIGNAL)], sections)["run"])
    assert served == native
    assert served == ['Thread 2 "thread_signal" received signal SIGUSR1, User defined signal 1.',
                      "thread_signal: handled by the worker: yes",
                      "[Inferior 1 (process N) exited normally]"], served


def _signal_once_traced(pid: int, sig: int) -> threading.Thread:
    """Send ``sig`` to pid once something traces it (and gdb has had a
    moment to continue it; a signal that comes earlier is reported on the
    continue just the same)."""
    def send() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/status") as handle:
                    traced = re.search(r"^TracerPid:\s+([1-9]\d*)$", handle.read(), flags=re.M)
            except OSError:
                return
            if traced:
                time.sleep(0.5)
                os.kill(pid, sig)
                return
            time.sleep(0.02)
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


def _detach_after_signal(commands: list[str], *, native: bool) -> int | None:
    """Attach to a `sleep 30` that SIGUSR1 then reaches, run ``commands``
    at that stop and detach: how sleep ended (-signal), None if it sleeps on."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        sender = _signal_once_traced(sleeper.pid, signal.SIGUSR1)
        start = [f"attach {sleeper.pid}"] if native else None
        out = run_gdb(["--pid", str(sleeper.pid)], [("run", ["continue", *commands, "detach"])], native=start)
        sender.join(5)
        assert "received signal SIGUSR1" in out["run"], out["run"]
        try:
            return sleeper.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_detach_hands_on_the_signal_only_if_gdb_passes_it():
    assert _detach_after_signal(["handle SIGUSR1 nopass"], native=True) is None  # native gdb: withheld
    assert _detach_after_signal(["handle SIGUSR1 nopass"], native=False) is None
    assert _detach_after_signal([], native=False) == -signal.SIGUSR1


def test_a_recording_says_it_cannot_withhold_its_signal():
    """gdb's record-full replay goes on as recorded without a word; served,
    the recording goes on as recorded too, and gdb's console says why."""
    out = run_gdb([str(RDXBUG)], [("crash", ["continue"]), ("withheld", ["signal 0"])])
    assert "Program received signal SIGSEGV" in out["crash"], out["crash"]
    assert "loaderdbg: a recording replays as recorded: SIGSEGV was delivered here, and the replay " \
           "cannot withhold SIGSEGV" in out["withheld"], out["withheld"]
    assert "Program terminated with signal SIGSEGV" in out["withheld"], out["withheld"]


# -- the resume packets' signals, on a recording's server (no gdb) ----------------------

@pytest.fixture
def crash_server():
    """The rdxbug recording's server, stopped at its crash (SIGSEGV)."""
    from loaderdbg.record.replay import ReplaySession
    from loaderdbg.serve.replay_target import ReplayTarget
    from loaderdbg.serve.server import GdbServer

    target = ReplayTarget(ReplaySession(str(RDXBUG)))
    server = GdbServer(target, log=lambda line: None)
    assert server.handle(b"c").startswith(b"T0b")
    yield server
    target.close()


def test_passing_the_recorded_signal_says_nothing(crash_server):
    pid = crash_server.target.pid
    assert crash_server.handle(b"vCont;C0b:p%x.%x;c:p%x.-1" % (pid, pid, pid)).startswith(b"X0b")
    assert crash_server.take_console() == []


def test_another_signal_than_the_recorded_one_is_said_on_the_console(crash_server):
    assert crash_server.handle(b"C1e").startswith(b"X0b")  # gdb's 30 is SIGUSR1
    (line,) = crash_server.take_console()
    assert line.startswith(b"O")
    text = bytes.fromhex(line[1:].decode()).decode()
    assert "SIGSEGV was delivered here, and the replay cannot deliver SIGUSR1 instead" in text, text
    assert crash_server.take_console() == []  # said once


@pytest.mark.parametrize("packet", [b"vCont;C", b"vCont;Czz", b"vCont;C07", b"C07", b"vCont;Sx:1", b"vCont;q"])
def test_a_signal_linux_has_not_or_a_malformed_one_is_refused(crash_server, packet):
    """gdb's 7 is SIGEMT, which Linux has not; refused before anything runs."""
    position = crash_server.target.position
    assert crash_server.handle(packet) == b"E01"
    assert crash_server.target.position == position
