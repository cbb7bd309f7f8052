"""All-stop thread control (issue 20) on real multi-threaded programs.

Each scenario runs once per module (the fixture drives the program to its
end and keeps what it saw); the tests check what was seen. At every
reported stop, /proc must show every thread of the process traced and in a
tracing stop ('t'): that is what all-stop means.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

import pytest
from elftools.elf.elffile import ELFFile

from loaderdbg.process import ptrace
from loaderdbg.process.attach import attach
from loaderdbg.process.stops import Stop, StopKind
from loaderdbg.process.thread_group import ThreadGroup
from loaderdbg.process.tracee import LaunchSpec, launch

EXIT_GROUP = 231


def _symbol(path: str, name: str) -> int:
    with open(path, "rb") as handle:
        symbols = ELFFile(handle).get_section_by_name(".symtab").get_symbol_by_name(name)
        return symbols[0]["st_value"]


def _load_base(pid: int, path: str) -> int:
    with open(f"/proc/{pid}/maps") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == path and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    raise AssertionError(f"{path} is not mapped in {pid}")


def _task_states(pid: int) -> dict[int, str]:
    """tid -> state letter of every thread /proc lists."""
    states = {}
    for entry in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{entry}/stat") as handle:
                states[int(entry)] = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            pass  # reaped between listing and reading
    return states


def _tracer_pids(pid: int) -> dict[int, int]:
    out = {}
    for entry in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{entry}/status") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        out[int(entry)] = int(fields["TracerPid"])
    return out


@dataclass
class Run:
    """What driving one launched program to its end showed."""

    pid: int
    hits: dict[str, list[int]] = field(default_factory=dict)  # symbol -> tids that hit it, in order
    not_all_stopped: list[str] = field(default_factory=list)  # stops where a thread ran on
    reported_not_current: int = 0
    stops: list[Stop] = field(default_factory=list)  # every reported stop but breakpoints
    exit_event_tid: int | None = None
    final: Stop | None = None
    output: str = ""
    leftover_tasks: bool = True
    notes: list = field(default_factory=list)


def _check_all_stopped(group: ThreadGroup, run: Run, where: str) -> None:
    states = _task_states(run.pid)
    running = {tid: s for tid, s in states.items() if s != "t"}
    untraced = set(states) - set(group.tids())
    if running or untraced:
        run.not_all_stopped.append(f"{where}: running {running}, not traced {sorted(untraced)}")


def _drive(path: str, breakpoints: tuple[str, ...], argv: tuple[str, ...] = ()) -> Run:
    """Launch, put breakpoints on ``breakpoints`` (symbols of ``path``) and
    continue to the exit, checking all-stop at every stop."""
    read_end, write_end = os.pipe()
    tracee = launch(LaunchSpec(path, (path, *argv), dict(os.environ), stdout_fd=write_end))
    os.close(write_end)
    group = ThreadGroup(tracee)
    run = Run(tracee.pid)
    try:
        base = _load_base(tracee.pid, path)
        addresses = {base + _symbol(path, name): name for name in breakpoints}
        for addr, name in addresses.items():
            assert group.insert_breakpoint(addr)
            run.hits[name] = []
        while True:
            tid, stop = group.resume_all(syscalls=False)
            if not stop.alive:
                run.final = stop
                break
            if group.current != tid:
                run.reported_not_current += 1
            _check_all_stopped(group, run, f"{stop.describe()} in {tid}")
            if stop.kind is StopKind.BREAKPOINT and group.tracee(tid).pc in addresses:
                run.hits[addresses[group.tracee(tid).pc]].append(tid)
                continue
            run.stops.append(stop)
            if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT:
                run.exit_event_tid = tid
            elif stop.kind is StopKind.SIGNAL:
                group.tracee(tid).pending_signal = stop.signal
        run.notes = group.take_notes()
        run.leftover_tasks = os.path.exists(f"/proc/{tracee.pid}")
    finally:
        group.close()
        run.output = os.read(read_end, 65536).decode()
        os.close(read_end)
    return run


@pytest.fixture(scope="module")
def ctor_run(fixtures_dir) -> Run:
    return _drive(str(fixtures_dir / "threads" / "ctor_threads"), ("common_work",))


def test_every_worker_hits_the_common_breakpoint_each_round(ctor_run):
    tids = ctor_run.hits["common_work"]
    assert len(tids) == 15  # 3 workers x 5 rounds: no hit lost, none reported twice
    per_thread = {tid: tids.count(tid) for tid in set(tids)}
    assert sorted(per_thread.values()) == [5, 5, 5]
    assert ctor_run.pid not in per_thread  # main never calls it


def test_every_thread_is_stopped_at_every_stop(ctor_run):
    assert ctor_run.not_all_stopped == []
    assert ctor_run.reported_not_current == 0


def test_the_program_ends_normally_with_its_output(ctor_run):
    assert ctor_run.final.kind is StopKind.EXITED and ctor_run.final.exit_code == 0
    assert ctor_run.output == "ctor_threads: 3 workers x 5 rounds, total 22477500\n"
    # exit_group's exit event is reported once, by main; the workers' own exits are not stops.
    assert ctor_run.exit_event_tid == ctor_run.pid
    assert [s.describe() for s in ctor_run.stops] == ["ptrace event exit"]
    news = sorted(n.tid for n in ctor_run.notes if n.kind == "new")
    gone = sorted(n.tid for n in ctor_run.notes if n.kind == "exited")
    assert len(news) == 3 and news == gone == sorted(set(ctor_run.hits["common_work"]))
    assert not ctor_run.leftover_tasks


@pytest.fixture(scope="module")
def churn_run(fixtures_dir) -> Run:
    return _drive(str(fixtures_dir / "threads" / "churn"), ("quick_start", "keeper_tick"))


def test_churn_runs_to_exit_with_breakpoints_in_place(churn_run):
    by_name = churn_run.hits
    assert len(by_name["quick_start"]) == 32 == len(set(by_name["quick_start"]))  # 8 batches x 4
    assert len(set(by_name["keeper_tick"])) == 2 and len(by_name["keeper_tick"]) >= 2
    assert churn_run.final.kind is StopKind.EXITED and churn_run.final.exit_code == 0
    assert churn_run.output == "churn: 32 quick threads, 2 keepers\n"


def test_churn_leaves_no_thread_running_at_a_stop_and_none_behind(churn_run):
    assert churn_run.not_all_stopped == []
    assert not churn_run.leftover_tasks
    created = {n.tid for n in churn_run.notes if n.kind == "new"}
    ended = {n.tid for n in churn_run.notes if n.kind == "exited"}
    assert len(created) == 34 and created == ended


@pytest.fixture(scope="module")
def exec_run(fixtures_dir):
    """thread_exec to its exec event: who reports it, which threads are left."""
    path = str(fixtures_dir / "threads" / "thread_exec")
    tracee = launch(LaunchSpec(path, (path,), dict(os.environ)))
    group = ThreadGroup(tracee)
    seen: dict = {"pid": tracee.pid, "threads_before": set()}
    try:
        while True:
            tid, stop = group.resume_all(syscalls=False)
            assert stop.alive, stop.describe()
            if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXEC:
                break
        seen["tid"] = tid
        seen["former_tid"] = ptrace.get_event_msg(tid)
        seen["tids"] = group.tids()
        seen["tasks"] = set(_task_states(tracee.pid))
        seen["exe"] = os.readlink(f"/proc/{tracee.pid}/exe")
        seen["notes"] = group.take_notes()
        seen["breakpoints_after"] = dict(tracee.breakpoints)
        _, seen["final"] = group.resume_all(syscalls=False)
        while seen["final"].alive:
            _, seen["final"] = group.resume_all(syscalls=False)
    finally:
        group.close()
    return seen


def test_a_thread_exec_is_reported_for_the_leader_pid(exec_run):
    assert exec_run["tid"] == exec_run["pid"]
    assert exec_run["exe"] == "/usr/bin/true"
    created = [n.tid for n in exec_run["notes"] if n.kind == "new"]
    assert len(created) == 2 and exec_run["former_tid"] in created  # a worker called execve


def test_after_a_thread_exec_only_the_leader_is_left(exec_run):
    assert exec_run["tids"] == (exec_run["pid"],)
    assert exec_run["tasks"] == {exec_run["pid"]}
    ended = {n.tid for n in exec_run["notes"] if n.kind == "exited"}
    assert ended == {n.tid for n in exec_run["notes"] if n.kind == "new"}
    assert exec_run["final"].kind is StopKind.EXITED and exec_run["final"].exit_code == 0
