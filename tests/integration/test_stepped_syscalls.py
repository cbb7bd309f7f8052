"""A syscall a step finishes is listed as a continue lists it (strace's
way): stepping over exit_group's `syscall` instruction lists it `= ?`
(it never returns), and a step from a syscall's entry stop (`until
syscall:NAME`, then `si`) lists the call with its result."""

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


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is required: run `make sysdeps`", pytrace=False)
    directory = tmp_path_factory.mktemp("stepped_syscalls")
    (directory / "getppid.c").write_text(PROGRAM)
    path = directory / "getppid"
    done = subprocess.run([gcc, "-O2", "-static", "-no-pie", "-o", str(path), str(directory / "getppid.c")],
                          capture_output=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"gcc -static failed (libc.a missing?): {done.stderr.decode()[-300:]}", pytrace=False)
    return str(path)


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
