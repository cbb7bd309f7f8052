"""Attach to a running process: seize every thread, stop them, let go cleanly.

PTRACE_SEIZE (not ATTACH) so no SIGSTOP is injected and group-stop keeps
its meaning; INTERRUPT each thread and wait for its EVENT_STOP. Threads can
be born while we list them (PTRACE_NOTES.md §7): TRACECLONE makes the kernel
seize every thread a seized one creates, and we re-list /proc/PID/task until
every thread listed is stopped; once all are, none can create another.
One event loop answers every stop meanwhile (a clone, a signal, a new
thread's first stop), so no thread waits on us while we wait on another.
It polls, so it can give up: on Ctrl-C, or when a thread does not stop in
ATTACH_SECONDS (a parent blocked in vfork stops only when its child execs
or exits); the threads it stopped are let go, and the ones it could not
stop are released by the kernel when the tracer thread ends.
No EXITKILL: an attached process must outlive us.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import threading
import time
from typing import Callable

from loaderdbg.decode.procstatus import parse_task_status
from loaderdbg.errors import TargetError, UsageError
from loaderdbg.process import ptrace
from loaderdbg.process.tracee import Tracee

ATTACH_OPTIONS = ptrace.O_TRACESYSGOOD | ptrace.O_TRACECLONE | ptrace.O_TRACEEXEC
PF_KTHREAD = 0x00200000
# waitpid: only the tasks this thread traces (and its own children), not
# every child of the process: a TUI's or a test's subprocesses are not ours.
WNOTHREAD = 0x20000000
WAIT_ANY_OURS = os.WNOHANG | ptrace.WALL | WNOTHREAD
ATTACH_SECONDS = 10.0  # for a thread to stop once interrupted
POLL_SECONDS = (0.0002, 0.005)  # first and longest pause between empty polls


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
    tgid = _status_field(status_text, "Tgid")
    if tgid and tgid != str(pid):
        raise UsageError(f"{pid} is a thread of process {tgid} ({status.name}); attach to {tgid}")
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


def _status_field(status_text: str, name: str) -> str | None:
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


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


def _why_not_stopping(tid: int) -> str:
    """What a thread that ignores INTERRUPT is doing, in words."""
    wchan = (_read(f"/proc/{tid}/wchan") or "").strip()
    if wchan == "kernel_clone":
        children = (_read(f"/proc/{tid}/task/{tid}/children") or "").split()
        child = f" {children[0]}" if children else ""
        return f"it is in vfork(), waiting for its child{child} to exec or exit; try again after that"
    state = _status_field(_read(f"/proc/{tid}/status") or "", "State") or "?"
    return f"state {state}" + (f", in {wchan}" if wchan and wchan != "0" else "")


class AttachedThreads:
    """Every thread of an attached process except the one a Tracee drives."""

    def __init__(self, pid: int, cancelled: Callable[[], bool] | None = None) -> None:
        self.pid = pid
        self.cancelled = cancelled or (lambda: False)
        self.stopped: dict[int, int] = {}  # tid -> signal to re-deliver on detach
        self._signals: dict[int, int] = {}  # the same, for a thread not stopped yet

    def seize_all(self, timeout: float | None = None) -> None:
        """Seize and stop every thread. Raises KeyboardInterrupt when
        ``cancelled()`` says so, TargetError when a thread does not stop in
        ``timeout`` s (ATTACH_SECONDS); either way the caller lets go
        (detach_all)."""
        timeout = ATTACH_SECONDS if timeout is None else timeout
        me = threading.get_native_id()  # the tracer thread: a thread it traces says TracerPid: me
        running: set[int] = set()  # seized and interrupted, not stopped yet
        gone: set[int] = set()  # exited (listed once, ESRCH or reaped since)
        waiting_since = time.monotonic()
        pause = POLL_SECONDS[0]
        while True:
            for tid in _tids(self.pid) - running - self.stopped.keys() - gone:
                if self._seize(tid, me):
                    running.add(tid)
                else:
                    gone.add(tid)
            progressed = False
            while True:
                try:
                    tid, status = os.waitpid(-1, WAIT_ANY_OURS)
                except ChildProcessError:
                    tid = 0
                if tid == 0:
                    break
                progressed = True
                self._answer(tid, status, running, gone)
            if not running and not (_tids(self.pid) - self.stopped.keys() - gone):
                return  # every thread stopped: none can make another
            if self.cancelled():
                raise KeyboardInterrupt
            now = time.monotonic()
            if progressed:
                waiting_since, pause = now, POLL_SECONDS[0]
                continue
            if now - waiting_since > timeout:
                stuck = min(running) if running else self.pid
                raise TargetError(f"{self.pid}: thread {stuck} did not stop within {timeout:g} s "
                                  f"({_why_not_stopping(stuck)})")
            time.sleep(pause)
            pause = min(pause * 2, POLL_SECONDS[1])

    def _seize(self, tid: int, me: int) -> bool:
        """SEIZE and INTERRUPT one listed thread. False when it has gone."""
        try:
            ptrace.seize(tid, ATTACH_OPTIONS)
        except ptrace.PtraceError as err:
            if err.errno == errno.ESRCH:
                return False  # exited after we listed it
            if err.errno != errno.EPERM:
                raise
            tracer = _status_field(_read(f"/proc/{tid}/status") or "", "TracerPid")
            if tracer is None:
                return False
            if tracer != str(me):
                raise TargetError(f"{self.pid}: attach refused (EPERM): "
                                  + (f"thread {tid} is traced by {_describe_tracer(int(tracer))}"
                                     if tracer != "0" else "ptrace is restricted here")) from None
            # Ours already: born of a seized thread (TRACECLONE); its first
            # stop is on its way. An INTERRUPT on top of it is harmless.
        try:
            ptrace.interrupt(tid)
        except ptrace.PtraceError as err:
            if err.errno != errno.ESRCH:
                raise
        return True

    def _answer(self, tid: int, status: int, running: set[int], gone: set[int]) -> None:
        """One stop (or death) of a task we trace, during seize_all."""
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            running.discard(tid)
            self.stopped.pop(tid, None)
            self._signals.pop(tid, None)
            gone.add(tid)
            return
        event, sig = status >> 16, os.WSTOPSIG(status)
        if event in (ptrace.EVENT_STOP, ptrace.EVENT_EXEC):
            # INTERRUPT's stop, a new thread's first stop, or a group-stop
            # (a SIGSTOPped process: detach leaves it stopped, as it was).
            running.discard(tid)
            self.stopped[tid] = self._signals.pop(tid, 0)
            return
        if event == ptrace.EVENT_CLONE:
            try:
                born = ptrace.get_event_msg(tid)
            except ptrace.PtraceError:
                born = 0
            # Seized by the kernel; its first stop follows, or (no order is
            # promised) was already collected.
            if born and born not in self.stopped and born not in gone:
                running.add(born)
        elif event == 0 and sig != (_signal.SIGTRAP | 0x80):
            self._signals[tid] = sig  # a signal-delivery-stop: handed back on detach
        # Not the stop we asked for: on its way, and stopped again at once.
        try:
            ptrace.cont(tid, 0)
            ptrace.interrupt(tid)
        except ptrace.PtraceError:
            pass

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


def attach(pid: int, cancelled: Callable[[], bool] | None = None) -> tuple[Tracee, AttachedThreads]:
    """Seize and stop every thread of ``pid``; ``cancelled`` (asked while
    waiting for them) gives up with KeyboardInterrupt."""
    check_attachable(pid)
    threads = AttachedThreads(pid, cancelled)
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
