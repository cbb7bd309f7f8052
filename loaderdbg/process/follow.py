"""Catch a spawn: attach to a running parent, stop its next exec'd child at
the child's first instruction, and let the parent go.

A host such as a PHP worker starts its helper by fork + execve of the
exec-solib .so; nobody can start that child under a debugger. We seize the
parent's threads with TRACEFORK/VFORK/CLONE/EXEC (no EXITKILL: the parent
must survive us), so the kernel auto-attaches each new child; the child's
PTRACE_EVENT_EXEC stop is its first instruction. Children that exec
something else are detached at that stop, untouched.

Stops from pids we have not heard of yet are expected: ptrace promises no
order between the parent's fork event and the child's first stop
(PTRACE_NOTES.md §8), so any unknown pid is taken to be a new child.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal as _signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from loaderdbg.errors import TargetError
from loaderdbg.process import ptrace
from loaderdbg.process.attach import WAIT_ANY_OURS, _tids, check_attachable
from loaderdbg.process.stops import Stop, StopKind
from loaderdbg.process.tracee import Tracee, finish_execve

FOLLOW_OPTIONS = (ptrace.O_TRACESYSGOOD | ptrace.O_TRACEFORK | ptrace.O_TRACEVFORK
                  | ptrace.O_TRACECLONE | ptrace.O_TRACEEXEC)
CHILD_OPTIONS = ptrace.O_TRACESYSGOOD | ptrace.O_TRACEEXEC | ptrace.O_TRACEEXIT | ptrace.O_TRACECLONE
POLL_SECONDS = 0.002
# A group-stop (the user's SIGSTOP, a terminal's SIGTSTP…) is reported as
# EVENT_STOP with the stop signal; INTERRUPT's and a new task's as SIGTRAP.
GROUP_STOP_SIGNALS = frozenset({_signal.SIGSTOP, _signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU})
IGNORED_KEPT = 100  # the most recent children we let go, for the report


@dataclass(frozen=True)
class CaughtChild:
    pid: int
    path: str
    argv: tuple[str, ...]


def _cmdline(pid: int) -> tuple[str, ...]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return tuple(a.decode("utf-8", "surrogateescape") for a in handle.read().split(b"\0")[:-1])
    except OSError:
        return ()


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def matches(pattern: str | None, path: str, argv: tuple[str, ...]) -> bool:
    if pattern is None:
        return True
    candidates = [path, os.path.basename(path)]
    if argv:
        candidates += [argv[0], os.path.basename(argv[0])]
    return any(fnmatch.fnmatch(c, pattern) for c in candidates if c)


class SpawnCatcher:
    """Runs on the tracer thread. ``cancelled`` may be set from any thread."""

    def __init__(self, parent: int, pattern: str | None, timeout: float | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.parent = parent
        self.on_ready = on_ready  # called once the parent is seized: spawns are caught from then on
        self.pattern = pattern
        self.timeout = timeout
        self.cancelled = False
        self.parent_threads: set[int] = set()
        self.children: set[int] = set()  # traced tasks that are not the parent's threads
        self.ignored: deque[CaughtChild] = deque(maxlen=IGNORED_KEPT)

    # -- attach to the parent without stopping it ---------------------------
    def _seize_parent(self) -> None:
        for _ in range(50):
            fresh = _tids(self.parent) - self.parent_threads
            if not fresh:
                return
            for tid in fresh:
                try:
                    ptrace.seize(tid, FOLLOW_OPTIONS)
                except ptrace.PtraceError as err:
                    if err.errno == errno.ESRCH:
                        continue
                    raise TargetError(f"{self.parent}: cannot attach ({err.strerror})") from None
                self.parent_threads.add(tid)
        raise TargetError(f"{self.parent}: threads keep appearing; could not attach to them all")

    def catch(self) -> Tracee:
        check_attachable(self.parent)
        self._seize_parent()
        if self.parent not in self.parent_threads:
            raise TargetError(f"{self.parent}: the process exited while we attached")
        try:
            if self.on_ready is not None:
                self.on_ready()
            caught = self._wait_for_exec()
        except BaseException:
            self._release_all(keep=None)
            raise
        self._release_all(keep=caught.pid)
        ptrace.set_options(caught.pid, CHILD_OPTIONS)
        finish_execve(caught.pid, caught.path)
        tracee = Tracee(caught.pid, launched=False)
        tracee.last_stop = Stop(StopKind.EVENT, caught.pid, signal=_signal.SIGTRAP, event=ptrace.EVENT_EXEC)
        self.caught = caught
        return tracee

    # -- the event loop ------------------------------------------------------
    def _wait_for_exec(self) -> CaughtChild:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            if self.cancelled:
                raise KeyboardInterrupt
            if deadline is not None and time.monotonic() > deadline:
                raise TargetError(f"{self.parent}: no matching exec within {self.timeout:g} s")
            if not os.path.exists(f"/proc/{self.parent}") and not self.children:
                raise TargetError(f"{self.parent}: the process exited before spawning a match")
            try:
                pid, status = os.waitpid(-1, WAIT_ANY_OURS)
            except ChildProcessError:
                raise TargetError(f"{self.parent}: nothing left to follow") from None
            if pid == 0:
                time.sleep(POLL_SECONDS)
                continue
            caught = self._handle(pid, status)
            if caught is not None:
                return caught

    def _handle(self, pid: int, status: int) -> CaughtChild | None:
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.parent_threads.discard(pid)
            self.children.discard(pid)
            return None
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if pid not in self.parent_threads:
            self.children.add(pid)
        if event in (ptrace.EVENT_FORK, ptrace.EVENT_VFORK, ptrace.EVENT_CLONE):
            new = ptrace.get_event_msg(pid)
            if event == ptrace.EVENT_CLONE and pid in self.parent_threads and self._is_thread_of_parent(new):
                self.parent_threads.add(new)
            else:
                self.children.add(new)
            self._resume(pid)
            return None
        if event == ptrace.EVENT_EXEC and pid in self.children:
            child = CaughtChild(pid, _exe(pid), _cmdline(pid))
            if matches(self.pattern, child.path, child.argv):
                return child
            self.ignored.append(child)
            self._detach(pid)  # not ours: let it run untouched
            self.children.discard(pid)
            return None
        if event == ptrace.EVENT_STOP and sig in GROUP_STOP_SIGNALS:
            # Stopped by its user: it stays stopped (LISTEN, not CONT),
            # and we hear when SIGCONT or a signal wakes it.
            try:
                ptrace.listen(pid)
            except ptrace.PtraceError:
                pass
            return None
        if event:
            self._resume(pid)  # new task's first stop, exec in a parent thread…
            return None
        if sig == (_signal.SIGTRAP | 0x80):
            self._resume(pid)
            return None
        # A signal for the task: hand it over as if we were not here.
        self._resume(pid, sig)
        return None

    def _is_thread_of_parent(self, tid: int) -> bool:
        return os.path.exists(f"/proc/{self.parent}/task/{tid}")

    @staticmethod
    def _resume(pid: int, sig: int = 0) -> None:
        try:
            ptrace.cont(pid, sig)
        except ptrace.PtraceError:
            pass

    @staticmethod
    def _detach(pid: int, sig: int = 0) -> None:
        try:
            ptrace.detach(pid, sig)
        except ptrace.PtraceError:
            pass

    # -- letting go ----------------------------------------------------------
    def _release_all(self, keep: int | None) -> None:
        """Detach from every task but ``keep``. Running tasks must be
        interrupted into a ptrace-stop first; events that arrive meanwhile
        are answered so no task is left stopped."""
        others = (self.parent_threads | self.children) - {keep}
        for tid in list(others):
            try:
                ptrace.interrupt(tid)
            except ptrace.PtraceError:
                others.discard(tid)
        deadline = time.monotonic() + 5.0
        while others and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, WAIT_ANY_OURS)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(POLL_SECONDS)
                continue
            if pid == keep:
                continue  # cannot happen while it sits in its exec stop
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                others.discard(pid)
                continue
            event = status >> 16
            sig = os.WSTOPSIG(status)
            if event in (ptrace.EVENT_FORK, ptrace.EVENT_VFORK, ptrace.EVENT_CLONE):
                # A child born while we let go: it is auto-attached; free it too.
                # Not the one we keep: ptrace promises no order, so its exec
                # may have come before this fork event, and it reports
                # nothing more from its exec stop (waiting for it would end
                # only at the deadline).
                new = ptrace.get_event_msg(pid)
                if new != keep:
                    others.add(new)
            pending = 0 if event or sig in (_signal.SIGTRAP | 0x80, _signal.SIGTRAP) else sig
            if pid in others:
                self._detach(pid, pending)
                others.discard(pid)
            else:
                self._detach(pid, pending)
