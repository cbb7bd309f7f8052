"""LiveSession.current_registers (what serve's stop replies read instead
of a whole snapshot at every stepi) is the snapshot's current thread and
registers: at breakpoint stops of a multi-threaded program, after steps,
after selecting another thread, and once the process is gone."""

from __future__ import annotations

import os

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession


def _from_snapshot(session):
    snapshot = session.snapshot()
    current = next((t.tid for t in snapshot.threads if t.current), session.pid)
    return current, snapshot.registers


def test_current_registers_are_the_snapshots(fixtures_dir):
    program = str(fixtures_dir / "threads" / "ctor_threads")
    with open(os.devnull, "w") as sink:
        spec = launch_spec(program, [], aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as session:
            assert session.current_registers() == _from_snapshot(session)  # the first instruction
            for _ in range(3):
                reason = session.cont("sym:common_work")
                assert reason.reached, reason
                assert session.current_registers() == _from_snapshot(session) and \
                    session.current_registers()[0] == reason.thread
                session.step(3)
                assert session.current_registers() == _from_snapshot(session)
            other = next(t.tid for t in session.threads() if t.tid != session.current_registers()[0])
            session.select_thread(other)
            assert session.current_registers()[0] == other
            assert session.current_registers() == _from_snapshot(session)
            session.cont()
            while session.alive:
                session.cont()
            assert session.current_registers() == (session.pid, None)
