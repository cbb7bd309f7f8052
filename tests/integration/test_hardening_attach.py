"""Attach errors (issue 8): `inspect --json --pid P` and `attach P`.

One line on stderr, exit 2 (bad PID) or 1 (the target cannot be attached or
went away), no traceback, nothing left stopped. `attach` must fail before any
TUI exists (stdin is /dev/null: a TUI would hang, not print one line).
test_attach.py covers the happy paths and the first error lines through
`inspect`; this file is the matrix across both commands, plus the races.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from loaderdbg.errors import LoaderdbgError
from loaderdbg.live import LiveSession

from clihelp import LOADERDBG, assert_one_line, run_cli

COMMANDS = {
    "inspect": lambda pid: ["inspect", "--json", "--pid", str(pid)],
    "attach": lambda pid: ["attach", str(pid)],
}

# A second tracer in its own process: it PTRACE_ATTACHes, says so, and holds
# the target until its stdin closes, then detaches.
HOLDER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = int(sys.argv[1])
if libc.ptrace(16, pid, None, None) != 0:      # PTRACE_ATTACH
    print("error", ctypes.get_errno(), flush=True); sys.exit(1)
os.waitpid(pid, 0)
print("holding", flush=True)
sys.stdin.read()
libc.ptrace(17, pid, None, None)               # PTRACE_DETACH
"""


def status_field(pid: int, key: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["/bin/sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def zombie():
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        wait_until(lambda: (status_field(child, "State") or "").startswith("Z"))
        yield child
    finally:
        os.waitpid(child, 0)


@pytest.fixture
def traced_by_other(sleeper):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(sleeper.pid)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield sleeper.pid, holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        # Let go of by the holder, the sleeper must run again: not stopped by us.
        wait_until(lambda: status_field(sleeper.pid, "TracerPid") == "0")


def free_pid() -> int:
    limit = int(open("/proc/sys/kernel/pid_max").read())
    for pid in range(limit - 1, 1, -1):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    raise AssertionError("no free pid")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_such_pid(command):
    pid = free_pid()
    assert_one_line(run_cli(*COMMANDS[command](pid)), 2, f"{pid}: no such process")


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("pid", ["0", "-1", "abc", "99999999999999999999"])
def test_not_a_pid(command, pid):
    args = ["inspect", "--json", "--pid", pid] if command == "inspect" else ["attach", pid]
    assert_one_line(run_cli(*args), 2)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_zombie(command, zombie):
    assert_one_line(run_cli(*COMMANDS[command](zombie)), 1, "zombie")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_already_traced_by_another_process(command, traced_by_other):
    target, holder = traced_by_other
    line = assert_one_line(run_cli(*COMMANDS[command](target)), 1, "already traced by", f"pid {holder}")
    assert "python" in line  # the tracer is named, not just numbered
    assert status_field(target, "TracerPid") == str(holder)  # we took nothing from it


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_kernel_thread(command):
    assert status_field(2, "Name") == "kthreadd"
    assert_one_line(run_cli(*COMMANDS[command](2)), 2, "kernel thread")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_inspect_pid_and_program_together(command, sleeper):
    if command == "inspect":
        assert_one_line(run_cli("inspect", "--json", "--pid", str(sleeper.pid), "/bin/true"), 2, "not both")
    else:
        assert_one_line(run_cli("attach", str(sleeper.pid), "extra"), 2)


def _kill_when_traced(pid: int, delay: float, stop: threading.Event) -> None:
    while not stop.is_set():
        if status_field(pid, "TracerPid") not in ("0", None):
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0)


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02, 0.1])
def test_inspect_pid_target_killed_while_attaching(delay, fixtures_dir):
    """The target dies (SIGKILL, the moment TracerPid shows us, plus a delay)
    somewhere in seize / interrupt / first reads / snapshot. Either the
    snapshot made it out whole, or one line and exit 1."""
    proc = subprocess.Popen([str(fixtures_dir / "zoo" / "threads")], stdout=subprocess.PIPE, text=True)
    stop = threading.Event()
    try:
        assert proc.stdout.readline().strip() == "threads ready"
        killer = threading.Thread(target=_kill_when_traced, args=(proc.pid, delay, stop))
        killer.start()
        result = run_cli("inspect", "--json", "--pid", str(proc.pid))
        stop.set()
        killer.join()
        if result.returncode == 0:
            snap = json.loads(result.stdout)
            # A snapshot printed as good must not be one read from a corpse.
            assert snap["maps"] and snap["registers"], snap["stop"]
        else:
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    finally:
        stop.set()
        proc.kill()
        proc.wait()


def _attach_while_dying(program: str, rounds: int) -> list[str]:
    """Attach through the API to processes SIGKILLed at the moment they become
    traced; anything but a LoaderdbgError (or success) is a bug."""
    bugs = []
    rng = random.Random(8)
    for _ in range(rounds):
        proc = subprocess.Popen([program], stdout=subprocess.DEVNULL, stdin=subprocess.PIPE)
        stop = threading.Event()
        try:
            time.sleep(0.03)
            killer = threading.Thread(target=_kill_when_traced,
                                      args=(proc.pid, rng.choice([0.0, 0.0, 0.0005, 0.002]), stop))
            killer.start()
            try:
                with LiveSession.attach(proc.pid) as session:
                    session.snapshot()
            except LoaderdbgError as err:
                assert "\n" not in str(err)
            except Exception as err:  # noqa: BLE001 - exactly what we look for
                bugs.append(f"{type(err).__name__}: {err}")
        finally:
            stop.set()
            proc.kill()
            proc.wait()
    return bugs


def test_api_attach_to_a_dying_process_raises_only_loaderdbg_errors():
    bugs = _attach_while_dying("/bin/cat", 40)
    assert not bugs, bugs[:5]


def _as_nobody(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "loaderdbg", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to drop to another uid with setpriv")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_permission_denied_names_the_cause(command, sleeper):
    """An unprivileged user attaching to root's process: the owner is named."""
    probe = _as_nobody("--version")
    if probe.returncode != 0:
        pytest.skip(f"uid 65534 cannot run this interpreter: {probe.stderr.strip()[:100]}")
    line = assert_one_line(_as_nobody(*COMMANDS[command](sleeper.pid)), 1, "owned by uid 0")
    assert "root" in line
    assert status_field(sleeper.pid, "TracerPid") == "0"


def test_api_snapshot_of_a_killed_attached_process_says_so(fixtures_dir):
    """SIGKILLed while stopped under us: the snapshot must not still claim
    the attach stop (it did, with stale maps, until the engine noticed)."""
    proc = subprocess.Popen([str(fixtures_dir / "zoo" / "threads")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "threads ready"
        with LiveSession.attach(proc.pid) as session:
            os.kill(proc.pid, signal.SIGKILL)
            wait_until(lambda: (status_field(proc.pid, "State") or "Z").startswith("Z"))
            try:
                snapshot = session.snapshot()
            except LoaderdbgError:
                return
            stop = snapshot.stop
            assert not stop.reached or stop.kind != "attach", stop
    finally:
        proc.kill()
        proc.wait()


def test_inspect_pid_at_exit_of_a_process_that_ends_normally(fixtures_dir):
    """An exit we ran to is not a process that died under us."""
    proc = subprocess.Popen([str(fixtures_dir / "zoo" / "dlmopen")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "dlmopen ok"
        cli = subprocess.Popen([*LOADERDBG, "inspect", "--json", "--at", "exit", "--pid", str(proc.pid)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
        try:
            # EOF only once the attach is over and the process runs again
            # under us (stopped, then sleeping): earlier, it would exit
            # *during* the attach, which is another test.
            seen_stop, deadline = False, time.monotonic() + 30
            while time.monotonic() < deadline:
                state = status_field(proc.pid, "State") or ""
                traced = status_field(proc.pid, "TracerPid") not in ("0", None)
                seen_stop = seen_stop or (traced and state.startswith("t"))
                if seen_stop and traced and state.startswith("S"):
                    break
                time.sleep(0.002)
            proc.stdin.close()  # dlmopen exits on EOF
            out, err = cli.communicate(timeout=60)
        finally:
            cli.kill()
            cli.wait()
        assert cli.returncode == 0, err
        snap = json.loads(out)
        assert snap["stop"]["reason"] == "exited" and snap["stop"]["exit_code"] == 0
    finally:
        proc.kill()
        proc.wait()
