"""A fault the program handles (zoo/segv-handled: its SIGSEGV handler makes
the page writable) is part of its run, not a crash: a continue to exit
passes it on and reaches the exit, as the recorder does, with the signal
in the events and no crash milestone; `signal` still stops at it. A fault
nobody handles still ends the run as a crash (the rdxbug demo)."""

from __future__ import annotations

import os
import subprocess

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession

from clihelp import LOADERDBG


@pytest.fixture(scope="module")
def program(fixtures_dir):
    return str(fixtures_dir / "zoo" / "segv-handled")


def _session(program: str, sink) -> LiveSession:
    return LiveSession(launch_spec(program, [], aslr=False, stdout_fd=sink.fileno()))


def test_a_continue_to_exit_passes_a_handled_fault_on(program):
    with open(os.devnull, "w") as sink, _session(program, sink) as session:
        reason = session.cont("exit")
        events = [(e.kind, e.name) for e in session.events()]
    assert reason.reached and reason.description == "about to exit (status 0)"
    assert ("signal", "SIGSEGV") in events and ("milestone", "crash") not in events


def test_the_signal_target_still_stops_at_it(program):
    with open(os.devnull, "w") as sink, _session(program, sink) as session:
        reason = session.cont("signal")
        assert reason.reached and reason.signal == "SIGSEGV"
        assert session.cont("exit").description == "about to exit (status 0)"


def test_inspect_at_exit_on_the_command_line(program, fixtures_dir):
    done = subprocess.run([*LOADERDBG, "inspect", "--at", "exit", "--tracee-output", os.devnull, program],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "stop: about to exit (status 0)" in done.stdout
    crash = subprocess.run([*LOADERDBG, "inspect", "--at", "exit", "--tracee-output", os.devnull,
                            str(fixtures_dir / "execsolib" / "rdxbug" / "libexecsolib.so")],
                           capture_output=True, text=True, timeout=60)
    assert "stop: SIGSEGV at pc 0x0, fault address 0x0" in crash.stdout
