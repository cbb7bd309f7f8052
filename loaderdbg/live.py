"""LiveSession: the Session interface over a real process (DESIGN.md §2).

Every call is carried out on the tracer thread; the caller (the CLI's main
thread, or the TUI) only waits for results. ``interrupt`` may be called from
any thread: it stops a long continue by sending the tracee SIGSTOP, which the
run loop swallows.
"""

from __future__ import annotations

import os
import signal as _signal
from typing import Sequence

from loaderdbg.process.inferior import Inferior
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.process.tracer_thread import TracerThread
from loaderdbg.session import Event, StopReason
from loaderdbg.snapshot import Snapshot, build_snapshot
from loaderdbg.targets import parse_target


class LiveSession:
    capabilities = frozenset({"live"})

    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        self._tracer = TracerThread()
        try:
            self._inferior: Inferior = self._tracer.call(Inferior.launch, spec)
        except BaseException:
            self._tracer.stop()
            raise

    # -- state ---------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._inferior.pid

    @property
    def position(self) -> int:
        return self._inferior.step_count

    @property
    def position_exact(self) -> bool:
        return self._inferior.step_exact

    @property
    def stop_reason(self) -> StopReason:
        return self._inferior.stop_reason

    @property
    def alive(self) -> bool:
        return self._inferior.alive

    def snapshot(self) -> Snapshot:
        return self._tracer.call(build_snapshot, self._inferior)

    def read_memory(self, addr: int, size: int) -> bytes | None:
        return self._tracer.call(self._inferior.read_memory, addr, size)

    def maps(self) -> Sequence:
        return self._tracer.call(self._inferior.maps)

    def threads(self) -> Sequence:
        return self._tracer.call(self._inferior.threads)

    def events(self) -> Sequence[Event]:
        return tuple(self._inferior.events)

    # -- motion --------------------------------------------------------------
    def step(self, n: int = 1) -> StopReason:
        def run() -> StopReason:
            for _ in range(n):
                self._inferior.step()
                if not self._inferior.alive or self._inferior.stop_reason.kind == "signal":
                    break
            if self._inferior.alive and self._inferior.stop_reason.kind != "signal":
                self._inferior.stop_reason = StopReason("step", f"stepped to step {self.position}")
            return self._inferior.stop_reason
        return self._tracer.call(run)

    def step_over(self) -> StopReason:
        def run() -> StopReason:
            self._inferior.step_over()
            return self._inferior.stop_reason
        return self._tracer.call(run)

    def cont(self, until: str | None = None) -> StopReason:
        target = parse_target(until or "exit")
        return self._tracer.call(self._inferior.run_to, target)

    def goto(self, step: int) -> StopReason:
        return self.cont(f"step:{step}")

    def step_back(self, n: int = 1) -> StopReason:
        raise NotImplementedError("reverse execution needs a recording (loaderdbg record)")

    def reverse_cont(self, until: str | None = None) -> StopReason:
        raise NotImplementedError("reverse execution needs a recording (loaderdbg record)")

    def interrupt(self) -> None:
        """Stop a running continue from any thread."""
        self._inferior.interrupt_requested = True
        try:
            os.kill(self.pid, _signal.SIGSTOP)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        try:
            self._tracer.call(self._inferior.close)
        finally:
            self._tracer.stop()

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
