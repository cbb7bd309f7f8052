"""Two threads call execve at once (threads/exec_race: /bin/true and
/bin/false behind a barrier). One wins and the kernel ends the other inside
its call: the syscalls view must show the winner's call, returning 0 (the
exit status says which program ran), and the loser's never returning. The
winner is the exec event's former tid, not the first execve pending.

With main busy in syscalls (the fixture's argument) the exec ends main in
a syscall stop we hold while stopping the others. Reported after the exec,
that stop of the old main (the pid lives on as the winner's) came before
the exec and said the winner was gone: its execve was closed `= ?`."""

from __future__ import annotations

import os

import pytest
from elftools.elf.elffile import ELFFile

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec


@pytest.fixture(scope="module")
def program(fixtures_dir) -> str:
    return str(fixtures_dir / "threads" / "exec_race")


def _path_address(program: str, base: int, path: str) -> int:
    with open(program, "rb") as handle:
        rodata = ELFFile(handle).get_section_by_name(".rodata")
        return base + rodata["sh_addr"] + rodata.data().index(path.encode() + b"\0")


@pytest.mark.parametrize("main_does, runs", [("join", 8), ("syscalls", 12)])
def test_the_execve_that_won_returns_and_the_other_does_not(program, main_does, runs):
    argv = (program,) if main_does == "join" else (program, "busy")
    for _ in range(runs):
        with open(os.devnull, "w") as sink, \
                LiveSession(LaunchSpec(path=program, argv=argv, env={"PATH": "/usr/bin:/bin"},
                                       stdout_fd=sink.fileno(), stderr_fd=sink.fileno())) as session:
            session.cont("entry")
            base = next(o.base for o in session.snapshot().objects if o.path == program)
            reason = session.cont("exit")
            assert reason.exit_code in (0, 1), reason
            winner = _path_address(program, base, "/bin/true" if reason.exit_code == 0 else "/bin/false")
            snapshot = session.snapshot()
            execs = [call for call in snapshot.syscalls if call.name == "execve"]
            # The winner's call is there (its entry was seen) and returned 0
            # into the new program; the loser's, if it got in, never returns.
            assert [call.result for call in execs if call.args[0] == winner] == [0], execs
            assert all(call.result is None for call in execs if call.args[0] != winner), execs
            assert any(event.kind == "milestone" and event.name == "exec" for event in snapshot.events)
