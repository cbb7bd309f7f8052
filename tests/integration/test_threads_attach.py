"""An attached multi-threaded process is all-stop like a launched one
(issue 20): attach to a running ctor_threads, see every thread's registers
in the JSON, make a worker current and step it while the others wait, hit
a breakpoint in the workers, detach: every thread runs on, untraced, our
int3 out. One process and one session for the module; the tests check
what was seen."""

from __future__ import annotations

import subprocess
import time

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.session import Capability
from loaderdbg.snapshot_json import snapshot_to_json


def _task_field(pid: int, tid: int, name: str) -> str:
    with open(f"/proc/{pid}/task/{tid}/status") as handle:
        return next(line.split(":", 1)[1].strip() for line in handle if line.startswith(name + ":"))


def _cpu_time(pid: int, tid: int) -> int:
    with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
        return int(handle.read().split()[0])


@pytest.fixture(scope="module")
def seen(fixtures_dir) -> dict:
    path = str(fixtures_dir / "threads" / "ctor_threads")
    proc = subprocess.Popen([path, "forever"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    out: dict = {"pid": proc.pid}
    try:
        assert proc.stdout.readline() == "ctor_threads: running\n"
        session = LiveSession(pid=proc.pid)
        try:
            out["capabilities"] = frozenset(session.capabilities)
            out["attached"] = snapshot_to_json(session.snapshot())
            out["states_attached"] = {t["tid"]: _task_field(proc.pid, t["tid"], "State")[0]
                                      for t in out["attached"]["threads"]}
            worker = max(t["tid"] for t in out["attached"]["threads"])
            out["worker"] = worker
            session.select_thread(worker)
            before = {t.tid: t.pc for t in session.threads()}
            out["step_reasons"] = [session.step() for _ in range(20)]
            after = {t.tid: t.pc for t in session.threads()}
            out["others_before"] = {tid: pc for tid, pc in before.items() if tid != worker}
            out["others_after"] = {tid: pc for tid, pc in after.items() if tid != worker}
            out["worker_moved"] = before[worker] != after[worker]
            out["address"] = address = session.resolve("common_work")
            out["original"] = session.read_memory(address, 1)
            session.add_breakpoint(address)
            out["hits"] = []
            for _ in range(4):
                reason = session.cont()
                shown = snapshot_to_json(session.snapshot())
                out["hits"].append((reason.kind, reason.thread, int(shown["registers"]["rip"], 16)))
        finally:
            session.close()  # attached: detach
        time.sleep(0.05)
        tids = sorted(out["states_attached"])
        out["states_after"] = {tid: _task_field(proc.pid, tid, "State")[0] for tid in tids}
        out["tracers_after"] = {tid: int(_task_field(proc.pid, tid, "TracerPid")) for tid in tids}
        with open(f"/proc/{proc.pid}/mem", "rb") as mem:
            mem.seek(address)
            out["byte_after"] = mem.read(1)
        workers = [t for t in tids if t != proc.pid]
        cpu_before = {t: _cpu_time(proc.pid, t) for t in workers}
        # CPU time counts in clock ticks, and on a loaded machine a worker
        # may wait a while for one: each must run on within two seconds.
        deadline = time.monotonic() + 2.0
        while True:
            time.sleep(0.05)
            out["ran_on"] = [_cpu_time(proc.pid, t) > cpu_before[t] for t in workers]
            if all(out["ran_on"]) or time.monotonic() > deadline:
                break
        out["alive"] = proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    return out


def test_attach_stops_every_thread_and_shows_each_ones_registers(seen):
    assert Capability.THREADS in seen["capabilities"]
    threads = seen["attached"]["threads"]
    assert len(threads) == 4 and set(seen["states_attached"].values()) == {"t"}
    assert all(t["pc"] == t["registers"]["rip"] for t in threads)
    assert [t["tid"] for t in threads if t["current"]] == [seen["pid"]]
    assert seen["attached"]["stop"]["reason"] == "attach" and "thread" not in seen["attached"]["stop"]


def test_a_stepped_worker_moves_while_the_others_wait(seen):
    assert all(r.thread == seen["worker"] for r in seen["step_reasons"])
    assert seen["worker_moved"]
    assert seen["others_after"] == seen["others_before"]


def test_breakpoint_hits_in_the_workers_stop_the_program_there(seen):
    for kind, thread, pc in seen["hits"]:
        assert kind == "breakpoint" and thread != seen["pid"] and pc == seen["address"]


def test_detach_leaves_every_thread_running_untraced_with_our_int3_out(seen):
    assert "t" not in seen["states_after"].values()
    assert set(seen["tracers_after"].values()) == {0}
    assert seen["byte_after"] == seen["original"]
    # main waits in pthread_join; the three workers keep working.
    assert seen["ran_on"] == [True, True, True] and seen["alive"]
