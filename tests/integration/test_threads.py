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
import threading
import time
from dataclasses import dataclass, field

import pytest
from elftools.elf.elffile import ELFFile

from loaderdbg.process import ptrace
from loaderdbg.process.attach import attach
from loaderdbg.process.stops import Stop, StopKind
from loaderdbg.process.thread_group import ThreadGroup
from loaderdbg.process.tracee import LaunchSpec, launch



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


def _cpu_time(pid: int, tid: int) -> int:
    """Nanoseconds thread ``tid`` has run (schedstat's first field)."""
    with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
        return int(handle.read().split()[0])


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
    syscall_stops: int = 0
    syscall_order_errors: list[str] = field(default_factory=list)  # entry/exit out of turn in a thread


def _check_all_stopped(group: ThreadGroup, run: Run, where: str) -> None:
    states = _task_states(run.pid)
    running = {tid: s for tid, s in states.items() if s != "t"}
    untraced = set(states) - set(group.tids())
    if running or untraced:
        run.not_all_stopped.append(f"{where}: running {running}, not traced {sorted(untraced)}")


def _drive(path: str, breakpoints: tuple[str, ...], *, syscalls: bool) -> Run:
    """Launch, put breakpoints on ``breakpoints`` (symbols of ``path``) and
    continue to the exit (stopping at every syscall too with ``syscalls``),
    checking all-stop at every stop."""
    read_end, write_end = os.pipe()
    tracee = launch(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=write_end))
    os.close(write_end)
    group = ThreadGroup(tracee)
    run = Run(tracee.pid)
    try:
        base = _load_base(tracee.pid, path)
        addresses = {base + _symbol(path, name): name for name in breakpoints}
        for addr, name in addresses.items():
            assert group.insert_breakpoint(addr)
            run.hits[name] = []
        last_op: dict[int, int] = {}
        while True:
            tid, stop = group.resume_all(syscalls=syscalls)
            if not stop.alive:
                run.final = stop
                break
            if group.current != tid:
                run.reported_not_current += 1
            _check_all_stopped(group, run, f"{stop.describe()} in {tid}")
            if stop.kind is StopKind.BREAKPOINT and group.tracee(tid).pc in addresses:
                run.hits[addresses[group.tracee(tid).pc]].append(tid)
                continue
            if stop.kind is StopKind.SYSCALL:
                run.syscall_stops += 1
                info = ptrace.get_syscall_info(tid)
                if last_op.get(tid) == info.op:
                    run.syscall_order_errors.append(f"thread {tid}: op {info.op} twice")
                last_op[tid] = info.op
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
    return _drive(str(fixtures_dir / "threads" / "ctor_threads"), ("common_work",), syscalls=False)


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
    # Syscalls watched all the way, as a live session does.
    return _drive(str(fixtures_dir / "threads" / "churn"), ("quick_start", "keeper_tick"), syscalls=True)


def test_churn_runs_to_exit_with_breakpoints_in_place(churn_run):
    by_name = churn_run.hits
    assert len(by_name["quick_start"]) == 32 == len(set(by_name["quick_start"]))  # 8 batches x 4
    assert len(set(by_name["keeper_tick"])) == 2 and len(by_name["keeper_tick"]) >= 2
    assert churn_run.final.kind is StopKind.EXITED and churn_run.final.exit_code == 0
    assert churn_run.output == "churn: 32 quick threads, 2 keepers\n"
    # Our stop requests never show up as the program's signals.
    assert [s.describe() for s in churn_run.stops] == ["ptrace event exit"]


def test_churn_syscall_stops_come_in_order_in_every_thread(churn_run):
    assert churn_run.syscall_stops > 100
    assert churn_run.syscall_order_errors == []


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
            tid, stop = group.resume_all(syscalls=True)
            assert stop.alive, stop.describe()
            if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXEC:
                break
            assert stop.kind is StopKind.SYSCALL, stop.describe()
        seen["tid"] = tid
        seen["former_tid"] = ptrace.get_event_msg(tid)
        seen["tids"] = group.tids()
        seen["tasks"] = set(_task_states(tracee.pid))
        seen["exe"] = os.readlink(f"/proc/{tracee.pid}/exe")
        seen["notes"] = group.take_notes()
        seen["after"] = []
        _, seen["final"] = group.resume_all(syscalls=True)
        while seen["final"].alive:
            if seen["final"].kind is not StopKind.SYSCALL:
                seen["after"].append(seen["final"].describe())
            _, seen["final"] = group.resume_all(syscalls=True)
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
    assert exec_run["after"] == ["ptrace event exit"]  # no stop request of ours left over


@pytest.fixture(scope="module")
def step_run(fixtures_dir):
    """ctor_threads stepped, scheduler-locked, through the constructor's
    first pthread_create, then continued; a signal sent to one worker."""
    path = str(fixtures_dir / "threads" / "ctor_threads")
    read_end, write_end = os.pipe()
    tracee = launch(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=write_end))
    os.close(write_end)
    group = ThreadGroup(tracee)
    seen: dict = {"pid": tracee.pid, "hits": [], "signals": []}
    try:
        base = _load_base(tracee.pid, path)
        constructor = base + _symbol(path, "start_workers")
        group.insert_breakpoint(constructor)
        _, stop = group.resume_all(syscalls=False)
        seen["at_constructor"] = stop.kind is StopKind.BREAKPOINT and tracee.pc == constructor
        group.remove_breakpoint(constructor)
        for _ in range(50_000):  # about 4,000 steps here
            before = tracee.pc
            stop = group.step_current()
            notes = group.take_notes()
            if notes:
                break
        seen["clone_step"] = (before, tracee.memory.read(before, 2), tracee.pc, stop.kind)
        seen["r11"] = int.from_bytes(tracee.regs_raw()[6 * 8:7 * 8], "little")
        seen["new"] = [(n.kind, n.tid) for n in notes]
        worker = notes[0].tid
        worker_pc = group.tracee(worker).pc
        for _ in range(50):
            group.step_current()
        seen["worker_moved"] = group.tracee(worker).pc != worker_pc
        seen["states_while_stepping"] = _task_states(tracee.pid)
        seen["current_after_steps"] = group.current
        group.insert_breakpoint(base + _symbol(path, "common_work"))
        target = None
        while True:
            tid, stop = group.resume_all(syscalls=False)
            if not stop.alive:
                seen["final"] = stop
                break
            if stop.kind is StopKind.BREAKPOINT:
                seen["hits"].append(tid)
                workers = [t for t in group.tids() if t != tracee.pid]
                if target is None and len(workers) == 3:
                    target = next(t for t in workers if t != tid)
                    seen["signal_target"] = target
                    ptrace.tgkill(tracee.pid, target, signal.SIGWINCH)  # ignored by default
            elif stop.kind is StopKind.SIGNAL:
                seen["signals"].append((tid, stop.signal, stop.si_code))
                group.tracee(tid).pending_signal = stop.signal
    finally:
        group.close()
        seen["output"] = os.read(read_end, 65536).decode()
        os.close(read_end)
    return seen


def test_a_thread_created_during_a_step_starts_stopped(step_run):
    assert step_run["at_constructor"]
    before, code, after, kind = step_run["clone_step"]
    assert code == b"\x0f\x05" and after == before + 2 and kind is StopKind.STEP  # one `syscall`, done
    assert not step_run["r11"] & 0x100  # our trap flag is not left in the saved RFLAGS
    assert [kind for kind, _ in step_run["new"]] == ["new"]


def test_a_step_steps_the_current_thread_alone(step_run):
    assert step_run["current_after_steps"] == step_run["pid"]
    assert not step_run["worker_moved"]
    assert set(step_run["states_while_stepping"].values()) == {"t"}


def test_a_signal_sent_to_one_thread_is_reported_for_it_and_delivered(step_run):
    assert step_run["signals"] == [(step_run["signal_target"], signal.SIGWINCH, -6)]  # SI_TKILL
    assert len(step_run["hits"]) == 15
    assert step_run["final"].kind is StopKind.EXITED and step_run["final"].exit_code == 0
    assert step_run["output"] == "ctor_threads: 3 workers x 5 rounds, total 22477500\n"


@pytest.fixture(scope="module")
def attached_run(fixtures_dir):
    """Attach to a busy multi-threaded process, step a worker, hit a
    breakpoint in the workers, detach; then look at the process."""
    path = str(fixtures_dir / "threads" / "ctor_threads")
    proc = subprocess.Popen([path, "forever"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    seen: dict = {"pid": proc.pid, "hits": []}
    try:
        assert proc.stdout.readline() == "ctor_threads: running\n"
        tracee, threads = attach(proc.pid)
        group = ThreadGroup.adopt_attached(tracee, threads)
        try:
            seen["tids"] = group.tids()
            seen["states_attached"] = _task_states(proc.pid)
            worker = max(t for t in group.tids() if t != proc.pid)
            group.select(worker)
            others = {tid: group.registers_raw(tid) for tid in group.tids() if tid != worker}
            pcs = []
            for _ in range(30):
                pcs.append(group.tracee().pc)
                seen.setdefault("step_kinds", set()).add(group.step_current().kind)
            seen["worker_pcs"] = pcs
            seen["others_unchanged"] = all(group.registers_raw(t) == raw for t, raw in others.items())
            addr = _load_base(proc.pid, path) + _symbol(path, "common_work")
            seen["original"] = tracee.memory.read(addr, 1)
            group.insert_breakpoint(addr)
            for _ in range(6):
                tid, stop = group.resume_all(syscalls=False)
                seen["hits"].append((tid, stop.kind, group.tracee(tid).pc == addr,
                                     set(_task_states(proc.pid).values())))
        finally:
            group.close()  # attached: detach
        time.sleep(0.05)
        seen["states_after"] = _task_states(proc.pid)
        seen["tracers_after"] = _tracer_pids(proc.pid)
        with open(f"/proc/{proc.pid}/mem", "rb") as mem:
            mem.seek(addr)
            seen["byte_after"] = mem.read(1)
        workers = [t for t in seen["tids"] if t != proc.pid]
        cpu_before = {t: _cpu_time(proc.pid, t) for t in workers}
        time.sleep(0.1)
        seen["ran_on"] = {t: _cpu_time(proc.pid, t) > cpu_before[t] for t in workers}
        seen["alive"] = proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    return seen


def test_attach_stops_every_thread(attached_run):
    assert len(attached_run["tids"]) == 4
    assert attached_run["states_attached"] == {tid: "t" for tid in attached_run["tids"]}


def test_attached_worker_steps_while_the_others_wait(attached_run):
    assert attached_run["step_kinds"] == {StopKind.STEP}
    assert len(set(attached_run["worker_pcs"])) > 1
    assert attached_run["others_unchanged"]


def test_attached_breakpoint_hits_stop_every_thread(attached_run):
    for tid, kind, at_breakpoint, states in attached_run["hits"]:
        assert kind is StopKind.BREAKPOINT and at_breakpoint and tid != attached_run["pid"]
        assert states == {"t"}
    assert len({tid for tid, *_ in attached_run["hits"]}) >= 2  # not one thread's stops only


def test_detach_lets_every_thread_run_on(attached_run):
    assert set(attached_run["states_after"]) == set(attached_run["tids"])
    assert "t" not in attached_run["states_after"].values()
    assert set(attached_run["tracers_after"].values()) == {0}
    assert attached_run["byte_after"] == attached_run["original"]  # our int3 is out
    # main waits in pthread_join; the three workers keep working.
    assert list(attached_run["ran_on"].values()) == [True, True, True] and attached_run["alive"]


@pytest.fixture(scope="module")
def exiting_step_run(fixtures_dir):
    """churn: a quick thread stopped at quick_start, stepped until it exits."""
    path = str(fixtures_dir / "threads" / "churn")
    read_end, write_end = os.pipe()
    tracee = launch(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=write_end))
    os.close(write_end)
    group = ThreadGroup(tracee)
    seen: dict = {"pid": tracee.pid}
    try:
        quick_start = _load_base(tracee.pid, path) + _symbol(path, "quick_start")
        group.insert_breakpoint(quick_start)
        tid, stop = group.resume_all(syscalls=False)
        assert stop.kind is StopKind.BREAKPOINT
        seen["quick"] = tid
        for steps in range(100_000):
            stop = group.step_current()
            if stop.kind is not StopKind.STEP:
                break
        seen["steps"] = steps
        seen["stop"] = stop
        seen["current"] = group.current
        seen["tids"] = group.tids()
        seen["tasks"] = set(_task_states(tracee.pid))
        while stop.alive:
            _, stop = group.resume_all(syscalls=False)
        seen["final"] = stop
    finally:
        group.close()
        seen["output"] = os.read(read_end, 65536).decode()
        os.close(read_end)
    return seen


def test_a_thread_stepped_to_its_end_leaves_and_another_is_current(exiting_step_run):
    run = exiting_step_run
    stop = run["stop"]
    assert stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT and stop.pid == run["quick"]
    assert run["steps"] > 10
    assert run["quick"] not in run["tids"] and run["quick"] not in run["tasks"]
    assert run["current"] in run["tids"] and set(run["tids"]) == run["tasks"]
    assert run["final"].kind is StopKind.EXITED and run["final"].exit_code == 0
    assert run["output"] == "churn: 32 quick threads, 2 keepers\n"


@pytest.fixture(scope="module")
def dropped_pending_run(fixtures_dir):
    """ctor_threads until a hit is reported while another thread's hit waits
    pending; then the breakpoint is removed and the program continued."""
    path = str(fixtures_dir / "threads" / "ctor_threads")
    for _ in range(5):  # two workers hitting it at once: about 1 in 4 hits here
        read_end, write_end = os.pipe()
        tracee = launch(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=write_end))
        os.close(write_end)
        group = ThreadGroup(tracee)
        seen: dict = {"after": []}
        try:
            addr = _load_base(tracee.pid, path) + _symbol(path, "common_work")
            group.insert_breakpoint(addr)
            while True:
                _, stop = group.resume_all(syscalls=False)
                if not stop.alive:
                    break
                waiting = [t.tid for t in group.threads() if t.pending]
                if waiting:
                    seen["waiting"] = waiting
                    seen["waiting_pcs"] = [group.tracee(tid).pc for tid in waiting]
                    group.remove_breakpoint(addr)
                    while stop.alive:
                        _, stop = group.resume_all(syscalls=False)
                        seen["after"].append(stop.kind)
                    break
            seen["addr"] = addr
        finally:
            group.close()
            seen["output"] = os.read(read_end, 65536).decode()
            os.close(read_end)
        if "waiting" in seen:
            return seen
    pytest.fail("no two workers ever hit common_work at once in 5 runs")


def test_a_pending_hit_of_a_removed_breakpoint_is_dropped(dropped_pending_run):
    run = dropped_pending_run
    assert run["waiting_pcs"] == [run["addr"]] * len(run["waiting"])  # back on the instruction
    assert run["after"] == [StopKind.EVENT, StopKind.EXITED]  # exit event, exit: no stale hit
    # The threads whose hit was dropped ran common_work's first instruction, not a byte past it.
    assert run["output"] == "ctor_threads: 3 workers x 5 rounds, total 22477500\n"


def test_group_target_is_the_process_with_the_current_threads_registers(fixtures_dir):
    """What an engine written for one Tracee sees through GroupTarget."""
    from loaderdbg.process.thread_group import GroupTarget

    path = str(fixtures_dir / "threads" / "ctor_threads")
    read_end, write_end = os.pipe()
    tracee = launch(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=write_end))
    os.close(write_end)
    target = GroupTarget(ThreadGroup(tracee))
    try:
        addr = _load_base(tracee.pid, path) + _symbol(path, "common_work")
        assert target.insert_breakpoint(addr) and addr in target.breakpoints
        stop = target.resume(syscalls=False)
        worker = target.group.current
        assert stop.kind is StopKind.BREAKPOINT and worker != tracee.pid
        assert target.pid == target.maps_pid == tracee.pid  # the process, whoever is current
        assert target.pc == addr and target.regs_raw() == target.group.registers_raw(worker)
        assert target.pc != tracee.pc  # main never calls it
        assert target.read_memory(addr, 1) != b"\xcc"  # our int3 hidden
        assert target.thread_count() == len(_task_states(tracee.pid)) >= 2
        before = target.pc
        assert target.step().kind is StopKind.STEP and target.pc != before
        assert target.group.current == worker and target.last_stop.kind is StopKind.STEP
        target.remove_breakpoint(addr)
        while stop.alive:
            stop = target.resume(syscalls=True)
            if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT:
                assert target.event_message() == 0  # the exit status, of the thread that is exiting
        assert stop.kind is StopKind.EXITED and not target.alive
    finally:
        target.close()
        output = os.read(read_end, 65536).decode()
        os.close(read_end)
    assert output == "ctor_threads: 3 workers x 5 rounds, total 22477500\n"


def test_a_sigkill_from_outside_while_stopped_is_noticed(fixtures_dir):
    """Every thread stopped at a breakpoint hit, then SIGKILL from outside:
    polling reaps the threads and reports the leader's end."""
    path = str(fixtures_dir / "threads" / "ctor_threads")
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        tracee = launch(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=null))
    finally:
        os.close(null)
    group = ThreadGroup(tracee)
    try:
        group.insert_breakpoint(_load_base(tracee.pid, path) + _symbol(path, "common_work"))
        _, stop = group.resume_all(syscalls=False)
        assert stop.kind is StopKind.BREAKPOINT and len(group.tids()) > 1
        assert group.poll_death() is None  # nothing happened yet
        os.kill(tracee.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        seen = []
        while time.monotonic() < deadline:
            stop = group.poll_death()
            if stop is not None and stop.alive:
                seen.append(stop.describe())
                _, stop = group.resume_all(syscalls=False)  # from its exit event on to its end
            if stop is not None:
                seen.append(stop.describe())
                break
            time.sleep(0.005)
        assert seen and seen[-1] == "killed by SIGKILL", seen
        assert group.tids() == (tracee.pid,) and not tracee.alive
        assert not os.path.exists(f"/proc/{tracee.pid}")
    finally:
        group.close()


def test_closing_a_launched_group_at_a_stop_kills_and_reaps_every_thread(fixtures_dir):
    path = str(fixtures_dir / "threads" / "ctor_threads")
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        tracee = launch(LaunchSpec(path, (path, "forever"), dict(os.environ), stdout_fd=null))
    finally:
        os.close(null)
    group = ThreadGroup(tracee)
    try:
        group.insert_breakpoint(_load_base(tracee.pid, path) + _symbol(path, "common_work"))
        while len(group.tids()) < 4:
            _, stop = group.resume_all(syscalls=True)
            assert stop.alive
    finally:
        group.close()
    assert not tracee.alive and group.tids() == ()
    assert not os.path.exists(f"/proc/{tracee.pid}")  # reaped, not a zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(-tracee.pid, os.WNOHANG | ptrace.WALL)  # no task of its group left to wait for


def test_threads_waiting_in_syscalls_do_not_ping_pong_when_syscalls_are_watched(fixtures_dir):
    """Every thread of zoo/threads ends up in pause() while every syscall
    stop is watched. Stopping the others interrupts their pause(), which
    the kernel restarts: those syscall stops are ours, not news, or each
    would stop everyone again without end (and an interrupt sent meanwhile
    would merge with our own SIGSTOP and be lost)."""
    path = str(fixtures_dir / "zoo" / "threads")
    read_end, write_end = os.pipe()
    tracee = launch(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=write_end))
    os.close(write_end)
    os.set_blocking(read_end, False)
    group = ThreadGroup(tracee)
    output = b""
    timer = None
    try:
        deadline = time.monotonic() + 10
        stops_after_ready = 0
        while time.monotonic() < deadline:
            tid, stop = group.resume_all(syscalls=True)
            assert stop.alive, stop.describe()
            if timer is not None:
                stops_after_ready += 1
                if stop.kind is StopKind.SIGNAL and stop.signal == signal.SIGSTOP:
                    break  # the interrupt: not delivered, it was ours
            elif stop.kind is StopKind.SIGNAL:
                group.tracee(tid).pending_signal = stop.signal
            try:
                output += os.read(read_end, 100)
            except BlockingIOError:
                pass
            if timer is None and b"threads ready\n" in output:
                timer = threading.Timer(0.5, ptrace.tgkill, (tracee.pid, tracee.pid, signal.SIGSTOP))
                timer.start()
        else:
            pytest.fail(f"no interrupt in 10 s ({stops_after_ready} stops after 'threads ready')")
        assert tid == tracee.pid and len(group.tids()) == 4
        assert stops_after_ready < 100  # a few syscalls on the way into pause(), then quiet
        assert set(_task_states(tracee.pid).values()) == {"t"}
    finally:
        if timer is not None:
            timer.join()
        group.close()
        os.close(read_end)


def test_group_target_has_every_member_a_tracee_offers_the_engine():
    """GroupTarget stands in for a Tracee: whatever public member the engine
    may use on one (RawTarget, the observer's ObservedTarget, the run loop's
    extras) it has too."""
    from loaderdbg.process.thread_group import GroupTarget
    from loaderdbg.process.tracee import Tracee

    wanted = {name for name in dir(Tracee) if not name.startswith("_")}
    # Per-Tracee machinery a group has no single answer for (or does itself).
    wanted -= {"thread", "let_run", "observe_only", "writes_breakpoints", "holds_terminal"}
    assert sorted(wanted - set(dir(GroupTarget))) == []


def test_a_live_session_stops_at_a_breakpoint_in_any_thread(fixtures_dir, tmp_path):
    """Inferior over a thread group: `break common_work` then `c` stops in
    each worker in turn (registers are that thread's, every thread is in a
    tracing stop, the snapshot lists them all), nothing dies, and `c` with
    the breakpoint removed runs to the normal exit."""
    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.live import LiveSession

    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    hitters = []
    try:
        spec = launch_spec(str(fixtures_dir / "threads" / "ctor_threads"), [], aslr=False, stdout_fd=fd)
        with LiveSession(spec) as session:
            addr = session.resolve("common_work")
            assert addr is not None and session.add_breakpoint(addr)
            for _ in range(6):
                reason = session.cont()
                assert reason.kind == "breakpoint", reason
                assert session.snapshot().registers.pc == addr
                threads = session.threads()
                assert {t.state[0] for t in threads} == {"t"}, threads
                (current,) = [t for t in threads if t.stop == reason.kind]
                assert current.name == "ctor_threads" and current.tid != session.pid
                hitters.append(current.tid)
            session.remove_breakpoint(addr)
            reason = session.cont()
            assert reason.kind in ("exited", "target") and "status 0" in reason.description, reason
            kinds = [(e.kind, e.name) for e in session.events() if e.kind == "thread"]
    finally:
        os.close(fd)
    assert len(set(hitters)) >= 2  # not one thread's hits only
    assert kinds.count(("thread", "new")) == 3
    assert out.read_text() == "ctor_threads: 3 workers x 5 rounds, total 22477500\n"
