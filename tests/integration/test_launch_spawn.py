"""The launch (process/tracee.launch, _stepper.c's vfork + TRACEME + execve)
and the syscall stops' short ways (GET_SYSCALL_INFO into a kept buffer, its
ip standing in for GETREGS' rip, a shared Stop), on real processes."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from loaderdbg.arch import X86_64
from loaderdbg.errors import TargetError
from loaderdbg.process import ptrace
from loaderdbg.process.stops import StopKind
from loaderdbg.process.tracee import RIP_OFFSET, LaunchSpec, launch, launch_failure

SLEEP = "/bin/sleep"
TRUE = "/bin/true"


def status_lines(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as handle:
        return dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)


def mask(*signals: int) -> int:
    return sum(1 << (s - 1) for s in signals)


@pytest.fixture
def dispositions():
    """Ours while launching: SIGHUP ignored (as under nohup), SIGUSR1
    caught, SIGUSR2 blocked; restored afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGUSR1)}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, lambda *_: None)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_launched_program_starts_stopped_with_execs_signal_state(dispositions):
    tracee = launch(LaunchSpec(SLEEP, ("sleep", "30"), {"PATH": "/usr/bin:/bin"}))
    try:
        status = status_lines(tracee.pid)
        assert status["State"].startswith("t")
        assert int(status["TracerPid"]) == os.getpid()
        # What execve keeps: what we ignore (SIGHUP, and whatever whoever
        # started the tests ignores: under `make test` signal 32 was) and our
        # mask; Python's SIGPIPE/SIGXFSZ ignores, SIGINT (the tracer's) and
        # its handlers are the program's defaults.
        ignored_here = int(status_lines(os.getpid())["SigIgn"], 16)
        expected = (ignored_here | mask(signal.SIGHUP)) & ~mask(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)
        assert int(status["SigIgn"], 16) == expected
        assert int(status["SigBlk"], 16) == mask(signal.SIGUSR2)
        assert int(status["SigCgt"], 16) == 0
        assert os.getpgid(tracee.pid) == tracee.pid  # its own process group
        # At the first instruction of the new image (ld.so's entry), out of execve.
        with open(f"/proc/{tracee.pid}/auxv", "rb") as handle:
            auxv = handle.read()
        words = [int.from_bytes(auxv[i:i + 8], "little") for i in range(0, len(auxv), 8)]
        at_base = dict(zip(words[::2], words[1::2]))[7]  # AT_BASE
        assert at_base <= tracee.pc < at_base + 0x100000
        assert tracee.last_stop.kind is StopKind.EVENT and tracee.last_stop.event == ptrace.EVENT_EXEC
    finally:
        tracee.kill()


@pytest.mark.parametrize("spec, reason", [
    (LaunchSpec("/nonexistent/program", ("program",), {}), "No such file or directory (ENOENT)"),
    (LaunchSpec(TRUE, ("true",), {}, stdout_fd=987), "Bad file descriptor (EBADF)"),
    (LaunchSpec(TRUE, ("true",), {"A=B": "c"}), "illegal environment variable name"),
    (LaunchSpec(TRUE, ("tr\0ue",), {}), "embedded null byte"),
])
def test_a_launch_that_fails_says_why_and_leaves_no_child(spec, reason):
    before = children()
    with pytest.raises(TargetError) as failure:
        launch(spec)
    assert str(failure.value) == f"{spec.path}: execve failed: {reason}"
    assert children() == before  # reaped, not a zombie


def children() -> set[int]:
    """Our child processes, zombies included."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                out.add(int(entry))
    return out


def test_syscall_stops_pc_without_getregs_is_rip():
    tracee = launch(LaunchSpec(TRUE, ("true",), {}))
    try:
        seen = 0
        while True:
            stop = tracee.resume(syscalls=True)
            if not stop.alive or stop.kind is StopKind.EVENT:
                break
            assert stop.kind is StopKind.SYSCALL and stop is tracee.syscall_stop
            info = tracee.syscall_info()
            assert tracee.pc == info.instruction_pointer  # no registers fetched yet
            raw = ptrace.RegisterBuffer().fetch(tracee.pid)
            assert int.from_bytes(raw[RIP_OFFSET:RIP_OFFSET + 8], "little") == tracee.pc
            # The unpacked record against the registers (x86-64's syscall ABI).
            reg = {name: int.from_bytes(raw[X86_64.register_offset(name):X86_64.register_offset(name) + 8],
                                        "little", signed=True) for name in X86_64.register_indexes}
            if info.op == ptrace.SYSCALL_INFO_ENTRY:
                assert info.number == reg["orig_rax"]
                assert info.args == tuple(reg[r] & (1 << 64) - 1 for r in ("rdi", "rsi", "rdx", "r10", "r8", "r9"))
            else:
                assert info.op == ptrace.SYSCALL_INFO_EXIT and info.return_value == reg["rax"]
                assert info.is_error == (-4095 <= reg["rax"] < 0)
            assert info.stack_pointer == reg["rsp"] & (1 << 64) - 1
            assert ptrace.get_syscall_info(tracee.pid) == info
            seen += 1
        assert seen > 20  # /bin/true: ld.so's and libc's startup syscalls, entry and exit
    finally:
        tracee.kill()


def test_a_child_killed_before_its_first_instruction_is_told_as_such():
    """A kill -9 from someone else before the launched program stopped at
    its first instruction (a random-kill sweep met it) is told as that,
    not as an execve failure with a raw wait status. The status is a real
    one: a child of ours killed by SIGKILL."""
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(0)  # not reached
    _, status = os.waitpid(pid, 0)
    assert launch_failure("/usr/bin/true", 0, status) == \
        "/usr/bin/true: killed by SIGKILL before its first instruction"
    assert launch_failure("/x", errno.ENOENT, 0) == "/x: execve failed: No such file or directory (ENOENT)"
