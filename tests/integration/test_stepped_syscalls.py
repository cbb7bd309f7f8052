"""A syscall a step finishes is listed as a continue lists it (strace's
way): stepping over exit_group's `syscall` instruction lists it `= ?`
(it never returns), and a step from a syscall's entry stop (`until
syscall:NAME`, then `si`) lists the call with its result. A step that
ends a worker thread (its exit) says so and the process goes on."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.snapshot_json import snapshot_to_json

PROGRAM = r"""
#include <unistd.h>
#include <sys/syscall.h>
int main(void) { syscall(SYS_getppid); return 0; }
"""

WORKER = r"""
#include <pthread.h>
#include <unistd.h>
static void *worker(void *arg) { usleep(1000); return arg; }
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    return 0;
}
"""


def _build(directory, name: str, source: str, flags: list[str]) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is required: run `make sysdeps`", pytrace=False)
    (directory / f"{name}.c").write_text(source)
    path = directory / name
    done = subprocess.run([gcc, "-O2", *flags, "-o", str(path), str(directory / f"{name}.c")],
                          capture_output=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"gcc {' '.join(flags)} failed: {done.stderr.decode()[-300:]}", pytrace=False)
    return str(path)


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    return tmp_path_factory.mktemp("stepped_syscalls")


@pytest.fixture(scope="module")
def program(directory) -> str:
    return _build(directory, "getppid", PROGRAM, ["-static", "-no-pie"])


@pytest.fixture(scope="module")
def worker(directory) -> str:
    return _build(directory, "worker", WORKER, ["-pthread"])


def _symbol(path: str, name: str) -> int:
    listed = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    return next(int(fields[0], 16) for fields in map(str.split, listed.splitlines())
                if len(fields) == 3 and fields[2] == name)


def _session(path: str) -> LiveSession:
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        return LiveSession(launch_spec(path, [], aslr=False, stdin_fd=devnull, stdout_fd=devnull,
                                       stderr_fd=devnull))
    finally:
        os.close(devnull)


def _calls(session: LiveSession) -> list[tuple[str, object]]:
    return [(call["name"], call["result"]) for call in snapshot_to_json(session.snapshot())["syscalls"]]


def test_stepping_over_exit_group_lists_it_unfinished(program):
    with _session(program) as session:
        assert session.add_breakpoint(_symbol(program, "_exit"))
        session.cont(None)
        for _ in range(100):
            session.step(1)
            if session.stop_reason.kind == "exiting":
                break
        assert session.stop_reason.kind == "exiting", session.stop_reason
        assert _calls(session)[-1] == ("exit_group", None)


def test_a_step_from_a_syscall_entry_stop_lists_the_call(program):
    with _session(program) as session:
        assert session.cont("syscall:getppid").reached
        session.step(1)
        calls = _calls(session)
        assert calls[-1] == ("getppid", hex(os.getpid())), calls[-3:]
        session.cont("exit")
        assert [name for name, _ in _calls(session)].count("getppid") == 1


def test_a_step_that_ends_a_worker_says_so_and_the_process_goes_on(worker):
    with _session(worker) as session:
        assert session.cont("syscall:exit").reached
        reason = session.step(1)
        assert reason.kind == "step" and "exited" in reason.description, reason
        assert session.alive
        session.step(1)
        assert session.stop_reason.kind == "step", session.stop_reason
        assert session.cont("exit").reached
        calls = _calls(session)
        assert calls.count(("exit", None)) == 1 and calls[-1] == ("exit_group", None), calls[-4:]
