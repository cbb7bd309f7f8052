"""Suite-wide guards: no test may leave a traced process stopped, or any
child process behind (issue 8, "No orphans")."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "build" / "fixtures"


def _status(pid: int) -> dict[str, str]:
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = _status(int(entry)).get("PPid")
            if ppid and ppid.isdigit():
                children.setdefault(int(ppid), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _leftovers() -> list[str]:
    me = os.getpid()
    found = []
    for pid in _descendants(me):
        status = _status(pid)
        if not status:
            continue
        state = status.get("State", "")
        # Zombies we have not reaped yet are pytest's own business only if
        # they linger; a live or stopped child is a leak.
        found.append(f"{pid} {status.get('Name')} {state}")
    my_threads = set(os.listdir(f"/proc/{me}/task"))
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            status = _status(int(entry))
            if status.get("TracerPid") in my_threads:
                found.append(f"{entry} {status.get('Name')} traced by the test run")
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
