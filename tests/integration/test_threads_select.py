"""Choosing the current thread (issue 20, gdb's `thread N`) in a live
session on ctor_threads: stopped at common_work in one worker, another
thread made current shows its own registers (those the kernel shows in
/proc/PID/task/TID/syscall), a step steps it alone, and the stop names the
thread that reached it. The module's fixture runs the program once, to
its end, and keeps what it saw (no process outlives a test); the tests
check what was seen."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loaderdbg.errors import UsageError
from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.session import Capability
from loaderdbg.snapshot_json import snapshot_to_json

CTOR_THREADS = Path(__file__).resolve().parents[2] / "build" / "fixtures" / "threads" / "ctor_threads"


def _kernel_sp_pc(pid: int, tid: int) -> tuple[int, int]:
    """The user sp and pc the kernel shows for a blocked (here: ptrace-
    stopped) thread: the last two fields of /proc/PID/task/TID/syscall."""
    with open(f"/proc/{pid}/task/{tid}/syscall") as handle:
        fields = handle.read().split()
    return int(fields[-2], 16), int(fields[-1], 16)


@dataclass
class Seen:
    pid: int = 0
    capabilities: frozenset = frozenset()
    address: int = 0
    hit: int | None = None
    at_hit: dict = field(default_factory=dict)  # JSON at the breakpoint
    other: int = 0
    kernel_sp_pc: tuple[int, int] = (0, 0)  # the other thread's, before selecting it
    selected: dict = field(default_factory=dict)  # JSON with the other thread current
    backtrace_pc: int = 0
    pcs_before_step: dict = field(default_factory=dict)
    step_reason: object = None
    pcs_after_step: dict = field(default_factory=dict)
    kernel_pcs_after_step: dict = field(default_factory=dict)
    pc_after_step: int = 0
    refused: str = ""
    end: object = None


@pytest.fixture(scope="module")
def seen() -> Seen:
    if not CTOR_THREADS.is_file():
        pytest.fail("build/fixtures/threads/ctor_threads is not built: run `make fixtures`", pytrace=False)
    read_end, write_end = os.pipe()
    path = str(CTOR_THREADS)
    out = Seen()
    session = LiveSession(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=write_end))
    os.close(write_end)
    try:
        out.pid, out.capabilities = session.pid, frozenset(session.capabilities)
        out.address = address = session.resolve("common_work")
        session.add_breakpoint(address)
        # The first worker may reach common_work before the constructor has
        # started the others: on to a hit with every worker there.
        for _ in range(10):
            reason = session.cont()
            if len(session.threads()) == 4:
                break
        out.hit = hit = reason.thread
        out.at_hit = snapshot_to_json(session.snapshot())
        out.other = other = next(t["tid"] for t in out.at_hit["threads"] if t["tid"] not in (hit, session.pid))
        out.kernel_sp_pc = _kernel_sp_pc(session.pid, other)
        session.select_thread(other)
        out.selected = snapshot_to_json(session.snapshot())
        out.backtrace_pc = session.backtrace(1)[0].pc
        out.pcs_before_step = {t.tid: t.pc for t in session.threads()}
        out.step_reason = session.step()
        out.pcs_after_step = {t.tid: t.pc for t in session.threads()}
        out.kernel_pcs_after_step = {tid: _kernel_sp_pc(session.pid, tid)[1] for tid in out.pcs_after_step}
        out.pc_after_step = session.snapshot().registers.pc
        try:
            session.select_thread(1)
        except UsageError as err:
            out.refused = str(err)
        session.remove_breakpoint(address)
        out.end = session.cont()
    finally:
        session.close()
        os.close(read_end)
    return out


def test_the_stop_names_the_thread_that_hit_the_breakpoint(seen):
    shown, hit = seen.at_hit, seen.hit
    assert Capability.THREADS in seen.capabilities
    assert shown["stop"]["reason"] == "breakpoint"
    assert hit is not None and hit != seen.pid
    assert shown["stop"]["thread"] == hit
    assert shown["stop"]["description"].endswith(f"(common_work) (thread {hit})")
    assert int(shown["registers"]["rip"], 16) == seen.address
    assert len(shown["threads"]) == 4 and all("current" in t for t in shown["threads"])
    assert [t["tid"] for t in shown["threads"] if t["current"]] == [hit]


def test_another_thread_selected_shows_its_own_registers(seen):
    registers = seen.selected["registers"]
    assert (int(registers["rsp"], 16), int(registers["rip"], 16)) == seen.kernel_sp_pc
    # Its own stack (it may stand at the breakpoint too, with a hit not reported yet).
    assert registers["rsp"] != seen.at_hit["registers"]["rsp"]
    assert registers["fs_base"] != seen.at_hit["registers"]["fs_base"]
    assert [t["tid"] for t in seen.selected["threads"] if t["current"]] == [seen.other]
    assert seen.backtrace_pc == seen.kernel_sp_pc[1]
    # The stop is still the breakpoint hit's, in the thread that hit it.
    assert seen.selected["stop"]["thread"] == seen.hit
    assert next(t["stop"] for t in seen.selected["threads"] if t["tid"] == seen.hit) == "breakpoint"


def test_a_step_steps_the_selected_thread_alone(seen):
    other = seen.other
    assert seen.pcs_before_step[seen.hit] == seen.address
    assert seen.step_reason.thread == other
    assert seen.step_reason.description.endswith(f"(thread {other})")
    # Scheduler-locking on a step: every other thread is where it was.
    others_before = {tid: pc for tid, pc in seen.pcs_before_step.items() if tid != other}
    others_after = {tid: pc for tid, pc in seen.pcs_after_step.items() if tid != other}
    assert others_after == others_before
    assert {tid: seen.kernel_pcs_after_step[tid] for tid in others_after} == others_after
    assert seen.pc_after_step == seen.pcs_after_step[other] == seen.kernel_pcs_after_step[other]


def test_no_such_thread_is_refused_and_the_program_runs_to_its_end(seen):
    assert seen.refused.startswith("no thread 1 (threads: ")
    assert seen.end.exit_code == 0 and seen.end.thread is None
