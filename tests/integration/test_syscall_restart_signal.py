"""A signal for a thread whose blocking syscall our all-stop halt cut short.

The halt (a SIGSTOP, or PTRACE_INTERRUPT when attached, one thread having
stopped at a breakpoint) makes the reader's read(2) return -ERESTARTSYS;
left alone, the kernel runs it again as the thread resumes, and that second
entry is no news (one call, not two). A SIGUSR1 made pending for the reader
while every thread is stopped is delivered first instead: its handler runs
(a write(-1, …) nothing else makes), and the read fails with EINTR (no
SA_RESTART) or runs again after the handler (SA_RESTART). The handler's
write was taken for the read's restart and swallowed: it was missing from
the syscalls, and its return closed the read (`read(…) = -1 EBADF`). The
syscalls must read as strace shows them: the read interrupted
(ERESTARTSYS), the handler's write, rt_sigreturn (EINTR: the read is over),
then, with SA_RESTART, the read made again, returning the byte.

A nanosleep cut short returns -ERESTART_RESTARTBLOCK and comes back as
restart_syscall (same instruction, another number): that is its restart,
no news; a signal's handler makes it fail with EINTR.

threads/signal_restart: main calls marker() every 5 ms until the handler
has run, then writes the byte the reader waits for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.process import ptrace
from loaderdbg.process.tracee import LaunchSpec

# x86-64 syscall numbers and the kernel's restart errors
_READ = 0
_CLOCK_NANOSLEEP = 230
_RESTART_SYSCALL = 219
_ERESTARTSYS = -512
_ERESTART_RESTARTBLOCK = -516
_EBADF = -9
_EINTR = -4
_U64 = (1 << 64) - 1
_FD_MINUS_ONE = 0xFFFFFFFF  # the handler's fd, an int: the low half of the argument register
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def _cut_short(session, numbers: tuple[int, ...], error: int) -> dict[str, int] | None:
    """Continue to marker(): the other thread's registers if it stands
    where our halt cut a call in ``numbers`` short (rax ``error``), its
    stop not news kept back; else None."""
    reason = session.cont("sym:marker")
    assert reason.reached, reason
    other = next(t for t in session.threads() if t.tid != reason.thread)
    values = other.registers.values if other.registers is not None else {}
    if values.get("orig_rax") in numbers and values.get("rax") == error & _U64 \
            and "not reported yet" not in other.stop:
        return {"tid": other.tid, **values}
    return None


def _until_cut_short(session, numbers: tuple[int, ...], error: int) -> dict[str, int]:
    """_cut_short until it says yes: under load the reader can take several
    marks to get into its call."""
    for _ in range(40):
        values = _cut_short(session, numbers, error)
        if values is not None:
            return values
    raise AssertionError(f"the thread was never cut out of its call: {session.threads()}")


def _signal_and_finish(session, tid: int) -> list:
    """Give ``tid`` a SIGUSR1 while every thread is stopped (pending: a
    ptrace stop is not woken by it, so it is the first thing the thread
    meets as every thread resumes), continue to the end: the syscalls."""
    ptrace.tgkill(session.pid, tid, signal.SIGUSR1)
    final = session.cont()
    assert final.target == "exit" and final.exit_code == 0, final
    snapshot = session.snapshot()
    assert any(e.kind == "signal" and e.name == "SIGUSR1" for e in snapshot.events), snapshot.events
    return list(snapshot.syscalls)


def _handler_calls(calls, own) -> list[tuple[str, int | None]]:
    """The interrupted thread's calls ``own`` picks, the handler's write and
    its return, in order."""
    return [(c.name, c.result) for c in calls
            if own(c) or (c.name == "write" and c.args[0] & _FD_MINUS_ONE == _FD_MINUS_ONE)
            or c.name == "rt_sigreturn"]


def _check_read(calls, fd: int, mode: str, *, earlier_restarts: bool = False) -> None:
    # The reader's read of one byte (ld.so read libc through the same fd number).
    seen = _handler_calls(calls, lambda c: c.name == "read" and c.args[0] == fd and c.args[2] == 1)
    interrupted = [("read", _ERESTARTSYS), ("write", _EBADF)]
    if mode == "intr":
        wanted = interrupted + [("rt_sigreturn", _EINTR)]  # EINTR: the read's result
    else:
        wanted = interrupted + [("rt_sigreturn", _READ), ("read", 1)]
    if earlier_restarts:
        # Attached, a read stopped at its entry with our INTERRUPT queued
        # returns -ERESTARTSYS at once when resumed (the trap went with
        # that stop, the pending-signal flag stays), a call of its own.
        while seen[:1] == [("read", _ERESTARTSYS)] and len(seen) > len(wanted):
            seen = seen[1:]
    assert seen == wanted, seen


def _said(out, mode: str) -> None:
    said = out.read_text()
    assert {"intr": "read failed: Interrupted system call", "restart": "read returned 1",
            "sleep": "nanosleep failed: Interrupted system call"}[mode] in said, said


def _launch(fixtures_dir, mode: str, sink) -> LiveSession:
    program = str(fixtures_dir / "threads" / "signal_restart")
    return LiveSession(LaunchSpec(path=program, argv=(program, mode), env=_ENV,
                                  stdout_fd=sink.fileno(), stderr_fd=sink.fileno()))


@pytest.mark.parametrize("mode", ["intr", "restart"])
def test_a_handler_run_in_a_cut_short_read_shows_its_syscalls(fixtures_dir, tmp_path, mode):
    """Launched: our halts are SIGSTOPs (tgkill), one still queued for the
    reader as the SIGUSR1 is delivered."""
    out = tmp_path / "out"
    with open(out, "w") as sink, _launch(fixtures_dir, mode, sink) as session:
        reader = _until_cut_short(session, (_READ,), _ERESTARTSYS)
        calls = _signal_and_finish(session, reader["tid"])
    _said(out, mode)
    _check_read(calls, reader["rdi"], mode)


@pytest.mark.parametrize("mode", ["intr", "restart"])
def test_the_same_in_an_attached_process(fixtures_dir, tmp_path, mode):
    """Attached (seized): our halts are PTRACE_INTERRUPTs."""
    program = str(fixtures_dir / "threads" / "signal_restart")
    out = tmp_path / "out"
    with open(out, "w") as sink:
        proc = subprocess.Popen([program, mode], stdout=sink, stderr=sink, env=_ENV)
    try:
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{proc.pid}/task")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with LiveSession.attach(proc.pid) as session:
            # The reader waits in read since before we came (our attach cut
            # it short too, unseen): a row needs its entry, seen as it runs
            # again; until then it may still stand where the attach left it.
            assert session.cont("syscall:read").reached
            reader = None
            for _ in range(40):
                reader = _cut_short(session, (_READ,), _ERESTARTSYS)
                if reader is not None:
                    break
            if reader is None:
                # Now and then every mark finds it back at the read's entry,
                # a halt having caught it there (rax -ENOSYS): the signal
                # meets the read as it runs on, not cut short by us.
                other = next(t for t in session.threads() if t.tid != session.pid)
                assert other.registers.values["orig_rax"] == _READ, session.threads()
                reader = {"tid": other.tid, **other.registers.values}
            calls = _signal_and_finish(session, reader["tid"])
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    _said(out, mode)
    _check_read(calls, reader["rdi"], mode, earlier_restarts=True)


def test_a_sleep_cut_short_comes_back_as_restart_syscall(fixtures_dir, tmp_path):
    """The sleeper's nanosleep, cut short at every mark, comes back each
    time as restart_syscall: one call, no restart_syscall of its own (nor
    for main's 5 ms sleeps, cut short by the reports of the sleeper's
    stops); the SIGUSR1's handler then ends it, EINTR."""
    out = tmp_path / "out"
    with open(out, "w") as sink, _launch(fixtures_dir, "sleep", sink) as session:
        # (Main's syscall stops are news too: a halt for one may have cut
        # the sleep short before the first mark, and it sleeps on in its
        # restart, whose registers it keeps.)
        sleeper = _until_cut_short(session, (_CLOCK_NANOSLEEP, _RESTART_SYSCALL), _ERESTART_RESTARTBLOCK)
        # Cut short again in its restart: the next marks find it there.
        again = 0
        for _ in range(20):
            if again == 2:
                break
            again += _cut_short(session, (_RESTART_SYSCALL,), _ERESTART_RESTARTBLOCK) is not None
        assert again == 2, session.threads()
        calls = _signal_and_finish(session, sleeper["tid"])
    _said(out, "sleep")
    # The sleeper's call: its request's address (rdx) is on its own stack.
    seen = _handler_calls(calls, lambda c: c.name == "clock_nanosleep" and c.args[2] == sleeper["rdx"])
    assert seen == [("clock_nanosleep", _ERESTART_RESTARTBLOCK), ("write", _EBADF), ("rt_sigreturn", _EINTR)], seen
    assert not [c for c in calls if c.name == "restart_syscall"], calls
    others = [c.result for c in calls if c.name == "clock_nanosleep" and c.args[2] != sleeper["rdx"]]
    assert others and set(others) == {0}, others
