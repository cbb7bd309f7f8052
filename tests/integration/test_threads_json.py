"""`inspect --json` gives every thread's registers (issue 20): with more
than one thread, each entry of `threads[]` carries `registers` (the shape
of the top-level `registers`) and `pc`, read from that thread (ptrace
GETREGS); a single-threaded program's JSON has neither (goldens unchanged).
One launched ctor_threads, stopped with every worker at common_work's
breakpoint or on its way; the kernel's own view of each stopped thread
(/proc/PID/task/TID/syscall: its user sp and pc) is what the JSON must say."""

from __future__ import annotations

import os

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.snapshot_json import snapshot_to_json


def _kernel_sp_pc(pid: int, tid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/task/{tid}/syscall") as handle:
        fields = handle.read().split()
    return int(fields[-2], 16), int(fields[-1], 16)


@pytest.fixture(scope="module")
def at_hit(fixtures_dir) -> dict:
    path = str(fixtures_dir / "threads" / "ctor_threads")
    read_end, write_end = os.pipe()
    session = LiveSession(LaunchSpec(path, (path,), dict(os.environ), stdout_fd=write_end))
    os.close(write_end)
    try:
        first = snapshot_to_json(session.snapshot())  # one thread yet: before the constructors
        session.add_breakpoint(session.resolve("common_work"))
        for _ in range(10):
            session.cont()
            if len(session.threads()) == 4:
                break
        shown = snapshot_to_json(session.snapshot())
        kernel = {t["tid"]: _kernel_sp_pc(session.pid, t["tid"]) for t in shown["threads"]}
    finally:
        session.close()
        os.close(read_end)
    return {"first": first, "shown": shown, "kernel": kernel}


def test_every_thread_has_its_own_registers_and_pc(at_hit):
    threads = at_hit["shown"]["threads"]
    assert len(threads) == 4
    for thread in threads:
        registers = thread["registers"]
        assert set(registers) == set(at_hit["shown"]["registers"])  # the top-level shape
        assert thread["pc"] == registers["rip"]
        assert (int(registers["rsp"], 16), int(registers["rip"], 16)) == at_hit["kernel"][thread["tid"]]
        assert int(registers["fs_base"], 16) == int(thread["fs_base"], 16)
    assert len({t["registers"]["fs_base"] for t in threads}) == 4  # each its own TLS


def test_the_current_threads_entry_repeats_the_top_level_registers(at_hit):
    current = [t for t in at_hit["shown"]["threads"] if t["current"]]
    assert len(current) == 1
    assert current[0]["registers"] == at_hit["shown"]["registers"]
    assert current[0]["tid"] == at_hit["shown"]["stop"]["thread"]


def test_one_thread_has_no_per_thread_registers(at_hit):
    threads = at_hit["first"]["threads"]
    assert len(threads) == 1
    assert "registers" not in threads[0] and "pc" not in threads[0] and "current" not in threads[0]
