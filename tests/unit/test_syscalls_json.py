"""The snapshot's syscalls[] (issue 15's JSON): every syscall made up to the
stop, with its raw arguments, result and errno name, from the sample
recordings (no ptrace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loaderdbg.arch import X86_64
from loaderdbg.record.replay import ReplaySession
from loaderdbg.snapshot_json import snapshot_to_json

RECORDINGS = Path(__file__).resolve().parents[2] / "recordings"
KEYS = {"step", "number", "name", "args", "result", "errno"}


@pytest.fixture(scope="module")
def glibc():
    with ReplaySession(str(RECORDINGS / "execsolib-glibc-entry.ldbg")) as session:
        yield session


def shown_at(session: ReplaySession, target: str) -> dict:
    session.goto(0)
    session.cont(target)
    return snapshot_to_json(session.snapshot())


def test_every_call_up_to_the_stop_as_its_event(glibc):
    shown = shown_at(glibc, "entry")
    calls = shown["syscalls"]
    assert len(calls) > 20 and all(set(call) == KEYS for call in calls)
    events = [(e["step"], e["name"]) for e in shown["events"] if e["kind"] == "syscall"]
    assert [(c["step"], c["name"]) for c in calls] == events
    assert all(c["step"] <= shown["step"] for c in calls)
    for call in calls:
        assert X86_64.syscall_numbers[call["name"]] == call["number"]
        assert 1 <= len(call["args"]) <= 6 and all(a.startswith("0x") for a in call["args"])


def test_raw_arguments_result_and_errno(glibc):
    rows = {row["step"] + 1: row for row in glibc.recording.syscalls()}
    calls = shown_at(glibc, "entry")["syscalls"]
    for call in calls:
        row = rows[call["step"]]
        assert [int(a, 16) for a in call["args"]] == list(row["args"])
        if row["result"] is not None and row["result"] < 0:
            assert call["result"] == f"-{-row['result']:#x}"
        else:
            assert call["result"] == f"{row['result']:#x}"
    failed = [c for c in calls if c["errno"] is not None]
    # ld.so probes for /etc/ld.so.preload with access(); it is not there.
    assert any(c["name"] == "access" and c["errno"] == "ENOENT" and c["result"] == "-0x2" for c in failed)
    assert all(c["result"].startswith("-") for c in failed)
    mmaps = [c for c in calls if c["name"] == "mmap"]
    assert mmaps and all(c["errno"] is None and int(c["result"], 16) % 4096 == 0 for c in mmaps)


def test_a_syscall_entry_stop_lists_the_call_only_once_made(glibc):
    shown = shown_at(glibc, "syscall:mmap")
    pending = shown["step"]
    assert all(c["step"] <= pending for c in shown["syscalls"])
    assert not any(c["name"] == "mmap" for c in shown["syscalls"])  # the first mmap has not run yet
    glibc.step()
    after = snapshot_to_json(glibc.snapshot())["syscalls"]
    assert after[-1]["name"] == "mmap" and after[-1]["step"] == pending + 1


def test_nothing_before_the_first_call(glibc):
    glibc.goto(0)
    assert snapshot_to_json(glibc.snapshot())["syscalls"] == []
