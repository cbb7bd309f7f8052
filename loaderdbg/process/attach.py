"""Attach to a running process: seize every thread, stop them, let go cleanly.

PTRACE_SEIZE (not ATTACH) so no SIGSTOP is injected and group-stop keeps
its meaning; INTERRUPT each thread and wait for its EVENT_STOP. Threads can
be born while we list them, so we re-list /proc/PID/task until a round finds
nothing new (PTRACE_NOTES.md §7); TRACECLONE makes the kernel seize threads
created after that. No EXITKILL: an attached process must outlive us.
"""

from __future__ import annotations

import errno
import os
import signal as _signal

from loaderdbg.decode.procstatus import parse_task_status
from loaderdbg.errors import TargetError, UsageError
from loaderdbg.process import ptrace
from loaderdbg.process.tracee import Tracee

ATTACH_OPTIONS = ptrace.O_TRACESYSGOOD | ptrace.O_TRACECLONE | ptrace.O_TRACEEXEC
PF_KTHREAD = 0x00200000
MAX_ROUNDS = 50


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def check_attachable(pid: int) -> None:
    """One clear line for every reason we cannot attach."""
    if pid <= 0:
        raise UsageError(f"{pid}: not a process id")
    if pid == os.getpid():
        raise UsageError(f"{pid}: that is loaderdbg itself")
    status_text = _read(f"/proc/{pid}/status")
    if status_text is None:
        raise UsageError(f"{pid}: no such process")
    status = parse_task_status(status_text)
    if status.state.startswith("Z"):
        raise TargetError(f"{pid} ({status.name}): a zombie; it has exited and only waits for its parent")
    if status.state.startswith("X"):
        raise TargetError(f"{pid}: the process is exiting")
    stat = _read(f"/proc/{pid}/stat") or ""
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) > 6 and int(fields[6]) & PF_KTHREAD:
        raise UsageError(f"{pid} ({status.name}): a kernel thread; it has no user space to debug")
    if status.tracer_pid:
        raise TargetError(f"{pid} ({status.name}): already traced by {_describe_tracer(status.tracer_pid)}; "
                          "detach that debugger first")
    if os.geteuid() != 0:
        owner = os.stat(f"/proc/{pid}").st_uid
        if owner != os.geteuid():
            raise TargetError(f"{pid} ({status.name}): owned by uid {owner}; attaching needs root")


def _describe_tracer(tid: int) -> str:
    """TracerPid names the tracing *thread*; users know the process."""
    fields = dict(line.split(":", 1) for line in (_read(f"/proc/{tid}/status") or "").splitlines()
                  if ":" in line)
    tgid = fields.get("Tgid", str(tid)).strip()
    name = fields.get("Name", "?").strip()
    return f"pid {tgid} ({name})" if tgid == str(tid) else f"pid {tgid} ({name}, thread {tid})"


def _tids(pid: int) -> set[int]:
    try:
        return {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    except OSError:
        return set()


def _wait_interrupt_stop(tid: int) -> int | None:
    """Wait for the EVENT_STOP that INTERRUPT causes; a signal that arrives
    first is remembered so detach can hand it back. Returns that signal."""
    pending = None
    while True:
        try:
            _, status = ptrace.waitpid(tid)
        except ChildProcessError:
            return pending
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return pending
        if os.WIFSTOPPED(status):
            if (status >> 16) == ptrace.EVENT_STOP:
                return pending
            sig = os.WSTOPSIG(status)
            if (status >> 16) == 0 and sig != (_signal.SIGTRAP | 0x80):
                pending = sig  # a signal-delivery-stop: keep it for later
            try:
                ptrace.cont(tid, 0)
            except ptrace.PtraceError:
                return pending


class AttachedThreads:
    """Every thread of an attached process except the one a Tracee drives."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stopped: dict[int, int] = {}  # tid -> signal to re-deliver on detach

    def seize_all(self) -> None:
        seen: set[int] = set()
        for _ in range(MAX_ROUNDS):
            fresh = _tids(self.pid) - seen
            if not fresh:
                return
            for tid in sorted(fresh):
                seen.add(tid)
                try:
                    ptrace.seize(tid, ATTACH_OPTIONS)
                    ptrace.interrupt(tid)
                except ptrace.PtraceError as err:
                    if err.errno == errno.ESRCH:
                        continue  # the thread exited after we listed it
                    if err.errno == errno.EPERM:
                        raise TargetError(f"{self.pid}: attach refused (EPERM): another tracer, "
                                          "or ptrace restricted") from None
                    raise
                pending = _wait_interrupt_stop(tid)
                self.stopped[tid] = pending or 0
        raise TargetError(f"{self.pid}: threads keep appearing; could not stop them all")

    def detach_all(self, skip: int | None = None) -> None:
        """Let every thread go; threads born while attached (auto-seized by
        TRACECLONE, maybe never waited for) are collected first."""
        for _ in range(3):
            tids = _tids(self.pid) | set(self.stopped)
            if skip is not None:
                tids.discard(skip)
            left = False
            for tid in tids:
                try:
                    ptrace.detach(tid, self.stopped.get(tid, 0))
                    self.stopped.pop(tid, None)
                except ptrace.PtraceError as err:
                    if err.errno != errno.ESRCH:
                        continue
                    # Not in a ptrace-stop yet (a new thread): stop it, then retry.
                    try:
                        wpid, _ = os.waitpid(tid, os.WNOHANG | ptrace.WALL)
                    except ChildProcessError:
                        continue
                    left = left or wpid != 0
            if not left:
                return


def attach(pid: int) -> tuple[Tracee, AttachedThreads]:
    check_attachable(pid)
    threads = AttachedThreads(pid)
    try:
        threads.seize_all()
    except BaseException:
        threads.detach_all()
        raise
    if pid not in threads.stopped:
        threads.detach_all()
        raise TargetError(f"{pid}: the process exited while we attached")
    try:
        tracee = Tracee(pid, launched=False)  # opens /proc/PID/mem
    except OSError:
        threads.detach_all()
        raise TargetError(f"{pid}: the process exited while we attached") from None
    tracee.pending_signal = threads.stopped.pop(pid)
    return tracee, threads
