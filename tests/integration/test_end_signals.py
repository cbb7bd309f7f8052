"""Issue 16.4: however loaderdbg ends (SIGINT, SIGTERM, SIGHUP, its terminal
closed), an attached process is left without our int3s and detached, and a
launched one is killed.

The attached program dlopens and dlcloses a library every 20 ms, so it
calls ld.so's r_brk hook, where an attached session keeps an int3 (the
link_map watch): left behind, that int3 kills it with SIGTRAP at once."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from clihelp import LOADERDBG
from prochelp import PtySession, task_status

DLOPEN_LOOP = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < 3000; i++) {
        void *handle = dlopen("libm.so.6", RTLD_NOW);
        if (handle) dlclose(handle);
        handle = dlopen("libz.so.1", RTLD_NOW);
        if (handle) dlclose(handle);
        usleep(20000);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def dlopen_loop(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("endsig")
    (directory / "dlloop.c").write_text(DLOPEN_LOOP)
    program = str(directory / "dlloop")
    subprocess.run(["gcc", "-O1", "-o", program, str(directory / "dlloop.c"), "-ldl"], check=True)
    return program


@pytest.fixture
def looping_process(dlopen_loop):
    proc = subprocess.Popen([dlopen_loop], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _wait_until_running_traced(pid: int, timeout: float = 30) -> None:
    """Attached, analysed and continued: traced, and out of its stop."""
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        status = task_status(pid)
        traced = status.get("TracerPid", "0") != "0"
        calm = calm + 1 if traced and not status.get("State", "").startswith("t") else 0
        if calm >= 5:
            return
        time.sleep(0.02)
    raise AssertionError(f"{pid} never ran on under loaderdbg: {task_status(pid)}")


def _assert_left_running(proc: subprocess.Popen) -> None:
    # Within 0.5 s it calls r_brk some 50 times: an int3 left there kills it.
    time.sleep(0.5)
    assert proc.poll() is None, f"the attached process died: {proc.returncode}"
    status = task_status(proc.pid)
    assert status["TracerPid"] == "0"
    assert not status["State"].startswith(("t", "T")), status["State"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_to_inspect_pid_at_exit_detaches_cleanly(looping_process, signum):
    pid = looping_process.pid
    debugger = subprocess.Popen([*LOADERDBG, "inspect", "--pid", str(pid), "--at", "exit"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
    try:
        _wait_until_running_traced(pid)
        debugger.send_signal(signum)
        out, err = debugger.communicate(timeout=30)
    finally:
        debugger.kill()
        debugger.wait()
    assert debugger.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("loaderdbg: interrupted"), err
    _assert_left_running(looping_process)


def test_closed_terminal_detaches_cleanly(looping_process):
    """The terminal loaderdbg runs in goes away (the kernel's SIGHUP, then
    EIO on every write to it)."""
    pid = looping_process.pid
    session = PtySession(["inspect", "--pid", str(pid), "--at", "exit"])
    try:
        _wait_until_running_traced(pid)
        session.hang_up()
        code = session.exit_code()
    finally:
        session.close()
    assert code == 128 + signal.SIGHUP
    _assert_left_running(looping_process)


def _children(pid: int) -> list[int]:
    """Children of every thread (loaderdbg forks from its tracer thread)."""
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return found


def _children_running(pid: int, program: str) -> list[int]:
    """Its children that run ``program`` (not a helper it runs meanwhile)."""
    found = []
    for child in _children(pid):
        try:
            if os.readlink(f"/proc/{child}/exe") == program:
                found.append(child)
        except OSError:
            pass
    return found


def test_sigterm_kills_a_launched_program(dlopen_loop):
    debugger = subprocess.Popen([*LOADERDBG, "inspect", "--at", "exit", dlopen_loop],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (launched := _children_running(debugger.pid, dlopen_loop)) and time.monotonic() < deadline:
            time.sleep(0.02)
        (program,) = launched
        _wait_until_running_traced(program)
        debugger.send_signal(signal.SIGTERM)
        _, err = debugger.communicate(timeout=30)
    finally:
        debugger.kill()
        debugger.wait()
    assert debugger.returncode == 128 + signal.SIGTERM, err
    # The program's own output ("ready") goes to stderr too, before ours.
    assert err.splitlines()[-1] == "loaderdbg: interrupted (SIGTERM)", err
    assert not os.path.exists(f"/proc/{program}"), task_status(program)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_to_the_tui_detaches_cleanly(looping_process, signum):
    """`loaderdbg attach PID` (the TUI, in a pty): the signal ends the app,
    and the process is detached without our int3s."""
    pid = looping_process.pid
    session = PtySession(["attach", str(pid)], env={"TERM": "xterm-256color"})
    try:
        deadline = time.monotonic() + 60
        # Attached and drawn: the first screen has come.
        while (task_status(pid).get("TracerPid", "0") == "0" or len(session.output) < 2000) \
                and time.monotonic() < deadline:
            session.read_for(0.1)
        os.kill(session.child, signum)
        code = session.exit_code()
    finally:
        session.close()
    assert code == 128 + signum, session.text[-2000:]
    assert "Traceback" not in session.text
    said = "interrupted" if signum == signal.SIGINT else f"interrupted ({signal.Signals(signum).name})"
    assert session.output.rstrip().endswith(f"loaderdbg: {said}".encode())
    assert b"\x1b[?1049l" in session.output  # the main screen is back
    _assert_left_running(looping_process)
