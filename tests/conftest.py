"""Suite-wide guards: no test may leave a traced process stopped, or any
child process behind (issue 8, "No orphans")."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "build" / "fixtures"


# The fields the guard reads. Picked out of the whole file with one search:
# splitting every line of every process's status after every test cost more
# than reading them.
_FIELDS = re.compile(r"^(Name|State|PPid|TracerPid):[ \t]*(.*?)[ \t]*$", re.M)


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return dict(_FIELDS.findall(handle.read()))
    except OSError:
        return {}


def _processes() -> dict[int, dict[str, str]]:
    """One pass over /proc: every process's status (reading each file once
    keeps this guard cheap enough to run after every test)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            status = _status(int(entry))
            if status:
                found[int(entry)] = status
    return found


def _leftovers() -> list[str]:
    me = os.getpid()
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, status in processes.items():
        ppid = status.get("PPid", "")
        if ppid.isdigit():
            children.setdefault(int(ppid), []).append(pid)
    found = []
    todo = [me]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            status = processes[child]
            found.append(f"{child} {status.get('Name')} {status.get('State', '')}")
    my_threads = set(os.listdir(f"/proc/{me}/task"))
    for pid, status in processes.items():
        if status.get("TracerPid") in my_threads:
            found.append(f"{pid} {status.get('Name')} traced by the test run")
    return sorted(set(found))


@pytest.fixture(autouse=True)
def no_orphans():
    yield
    deadline = time.monotonic() + 2.0
    left = _leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _leftovers()
    if left:
        pytest.fail("processes left behind by this test: " + "; ".join(left), pytrace=False)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "execsolib").is_dir() or not (FIXTURES / "zoo").is_dir():
        pytest.fail("fixtures are not built: run `make fixtures`", pytrace=False)
    return FIXTURES


@pytest.fixture
def dlmopen_process(fixtures_dir):
    """The zoo's dlmopen program, running with libzoo-ns.so (and a second
    libc.so.6) in a namespace of its own, blocked reading its stdin."""
    proc = subprocess.Popen([str(fixtures_dir / "zoo" / "dlmopen")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "dlmopen ok"
        yield proc
    finally:
        proc.kill()
        proc.wait()


_X86_64_READ = 0  # read's syscall number


def _reader_in_read(session) -> int:
    """Run threads/blocked_reader to marker() until its other thread waits
    in read (cut short by our stop, -ERESTARTSYS, run again as the thread
    resumes; or stopped at its entry, syscalls being watched): that
    thread's id. Under load the reader can take several marks to get there."""
    for _ in range(20):
        reason = session.cont("sym:marker")
        assert reason.reached, reason
        reader = next(t for t in session.threads() if t.tid != reason.thread)
        # Not with news of its own kept back (a stop it reached as we halted
        # it): a step of it reports that news first, as gdb's does.
        if reader.registers is not None and reader.registers.values["orig_rax"] == _X86_64_READ \
                and "not reported yet" not in reader.stop:
            return reader.tid
    raise AssertionError(f"the reader never waited in read: {session.threads()}")



@pytest.fixture
def reader_in_read():
    """_reader_in_read, for the tests that step a thread blocked in read."""
    return _reader_in_read
