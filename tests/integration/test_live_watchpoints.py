"""Hardware watchpoints in a live session (issue 17.2): a continue and a
single step stop at a watched access with a watchpoint stop reason, a
restart keeps them, and a process attached to is detached with its debug
registers cleared (PTRACE_DETACH would leave them armed: it would die of
SIGTRAP at its next watched write)."""

from __future__ import annotations

import subprocess
import time

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec

SOURCE = r"""
#include <stdint.h>
#include <unistd.h>
volatile uint64_t counter;
int main(int argc, char **argv) {
    if (argc > 1)
        for (;;) { counter++; usleep(1000); }   /* spin: attached to */
    counter = 1;
    counter = 2;
    return 0;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> tuple[str, int]:
    directory = tmp_path_factory.mktemp("live-watch")
    (directory / "counter.c").write_text(SOURCE)
    path = str(directory / "counter")
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", path, str(directory / "counter.c")], check=True)
    nm = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    return path, int(next(line.split()[0] for line in nm.splitlines() if line.endswith(" counter")), 16)


def test_continue_step_and_restart_stop_at_a_watched_write(program):
    path, counter = program
    with LiveSession(LaunchSpec(path=path, argv=(path,), env={}, aslr=False)) as session:
        session.add_watchpoint(counter, 8, "write")
        reason = session.cont()
        assert reason.kind == "watchpoint" and f"[{counter:#x}, +8) written" in reason.description
        assert session.watchpoint_hit() == (counter, 8, "write")
        assert session.read_memory(counter, 8) == (1).to_bytes(8, "little")
        for _ in range(20):  # the next store is a few instructions on
            reason = session.step()
            if session.watchpoint_hit() is not None:
                break
        assert reason.kind == "watchpoint" and session.read_memory(counter, 8) == (2).to_bytes(8, "little")
        assert session.cont().kind != "watchpoint" and session.watchpoint_hit() is None
        session.restart()
        assert session.cont().kind == "watchpoint"  # kept across starti
        session.remove_watchpoint(counter, 8, "write")
        assert session.cont().target == "exit" and session.watchpoint_hit() is None


def test_an_attached_process_is_left_without_armed_registers(program):
    path, counter = program
    process = subprocess.Popen([path, "spin"])
    try:
        time.sleep(0.05)
        with LiveSession.attach(process.pid) as session:
            session.add_watchpoint(counter, 8, "write")
            before = int.from_bytes(session.read_memory(counter, 8), "little")
            assert session.cont().kind == "watchpoint"
            assert int.from_bytes(session.read_memory(counter, 8), "little") == before + 1
        time.sleep(0.1)  # ~100 more writes to counter
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
