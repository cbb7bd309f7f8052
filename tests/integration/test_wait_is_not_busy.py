"""A continue asks for the program's next stop without blocking only
briefly (thread_group._ASK_SECONDS, for stop-to-stop speed on two CPUs),
then blocks: a program that sleeps between stops costs the tracer next to
no CPU."""

from __future__ import annotations

import os
import time

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec


def test_a_sleeping_program_costs_the_tracer_no_cpu():
    with open(os.devnull, "w") as sink:
        spec = LaunchSpec(path="/bin/sleep", argv=("sleep", "0.6"), env={"PATH": "/usr/bin:/bin"},
                          stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as session:
            session.cont("entry")
            wall, cpu = time.perf_counter(), time.process_time()
            reason = session.cont("exit")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert reason.target == "exit" and reason.exit_code == 0, reason
    assert wall >= 0.6
    # The run to exit is a few syscall stops and one 0.6 s sleep: spinning
    # through the sleep would take ~0.6 s of CPU.
    assert cpu < 0.15, f"the tracer used {cpu * 1e3:.0f} ms of CPU while the program slept {wall:.2f} s"
