"""A recording served to gdb: every step can be visited, forwards and
backwards, and watchpoints are answered from the recording's write index.

Positions are ReplaySession's: position N is the state before the
instruction of step N runs. A breakpoint stops at the position whose pc it
is (the instruction not yet run), in either direction. A watchpoint stops
after the writing instruction going forwards and before it going
backwards: exactly the step `monitor who` names ("goto N to stand before
it")."""

from __future__ import annotations

import os
import signal as _signal
from dataclasses import replace
from typing import Mapping

from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.siginfo import signal_name
from loaderdbg.decode.registers import decode_registers
from loaderdbg.decode.stack import decode_initial_stack
from loaderdbg.errors import LoaderdbgError
from loaderdbg.record import index
from loaderdbg.record.replay import ReplaySession
from loaderdbg.serve import monitor
from loaderdbg.serve.target import (DEBUG_DIRECTORY, NO_SIGNALS, SIGINT, BytesFile, Interrupted, ResumeSignals,
                                    ServedFile, Stop, auxv_bytes, linked_path, snapshot_auxv, split_copy_name)
from loaderdbg.snapshot import Snapshot
from loaderdbg.targets import ReasonKind

# A forward watch search asks the write index about this many steps at a
# time, so an interrupt (gdb's Ctrl-C) is noticed between windows.
WATCH_WINDOW = 1 << 16


class SearchInterrupted(Exception):
    """gdb sent Ctrl-C while a continue was looking for its stop."""


class ReplayTarget:
    reversible = True
    attached = True  # gdb detaches from a recording on quit: there is nothing to kill

    def __init__(self, session: ReplaySession) -> None:
        self.session = session
        self.rec = session.recording
        self.arch = session.arch
        self._breakpoints: set[int] = set()
        self._watches: dict[tuple[int, int], int] = {}  # (addr, size) -> how many times inserted
        self._signals = {row["step"]: row["signo"] for row in self.rec.signals()}
        self._stop = Stop()
        self._snapshot: tuple[int, Snapshot] | None = None
        self._selected: int | None = None  # the thread gdb selected (Hg) since the last motion

    # -- state -------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.session.pid or 1

    @property
    def stop(self) -> Stop:
        return self._stop

    @property
    def position(self) -> int:
        return self.session.position

    def registers(self) -> Mapping[str, int] | None:
        raw = self.session.registers_raw()
        if self._selected is not None:
            raw = self.session.thread_registers().get(self._selected, raw)
        try:
            return decode_registers(raw, self.arch).values
        except DecodeError:
            return None

    def read_memory(self, addr: int, size: int) -> bytes | None:
        return self.session.read_memory(addr, size)

    def pass_signals(self, signals: frozenset[int]) -> None:
        """A recording's signals were delivered when it was made: nothing to pass."""

    def program_signals(self, signals: frozenset[int]) -> None:
        """Nor to withhold: what the program received is history."""

    # -- threads: those alive at the step; the current one is the thread that
    # steps there (the recording's schedule) until gdb selects another, and
    # every motion makes it that one again.
    def thread_ids(self) -> tuple[int, ...]:
        if not self.rec.threaded:
            return (self.pid,)
        tids = self.session.thread_registers()
        return tuple(sorted(tids, key=lambda tid: tid != self.pid)) or (self.pid,)

    @property
    def current_thread(self) -> int:
        if self._selected is not None:
            return self._selected
        return self.session.stepping_thread if self.rec.threaded else self.pid

    def thread_name(self, tid: int) -> str | None:
        return None  # the recording keeps no thread names

    def select_thread(self, tid: int) -> bool:
        if tid == self.current_thread:
            return True
        if tid not in self.thread_ids():
            return False
        self._selected = tid
        return True

    def snapshot(self) -> Snapshot:
        position = self.session.position
        if self._snapshot is None or self._snapshot[0] != position:
            self._snapshot = (position, self.session.snapshot())
        return self._snapshot[1]

    def auxv(self) -> bytes:
        """The auxv on the stack at this step, decoded from the kernel's
        stack pointer alone (gdb asks while connecting: no full snapshot)."""
        try:
            stack = decode_initial_stack(self, self.rec.meta["kernel_sp"], self.arch)
        except DecodeError:
            return snapshot_auxv(self.snapshot())
        return auxv_bytes(stack.auxv)

    def read(self, addr: int, size: int) -> bytes | None:  # a MemoryReader, for the decoders
        return self.session.read_memory(addr, size)

    def exec_path(self) -> str:
        return self.session.program

    def maps_text(self) -> str:
        return self.rec.maps_text(self.session.position)

    def open_file(self, path: str) -> ServedFile | None:
        """A file the recording stored, by the path gdb asks for: the one
        mapped now under that path, else any stored under it, else one
        stored under the same file name (ld.so's link_map names
        /lib/x86_64-linux-gnu/libc.so.6 where maps say /usr/lib/...); and
        PATH@0xOFFSET, the ELF image inside a file (target.copy_name); and
        /proc/PID/maps and /proc/PID/cmdline of this step."""
        if path in (f"/proc/{self.pid}/maps", f"/proc/{self.pid}/task/{self.pid}/maps", "/proc/self/maps"):
            return BytesFile(self.maps_text().encode())
        if path in (f"/proc/{self.pid}/cmdline", "/proc/self/cmdline"):
            return BytesFile(self._cmdline())
        path, offset = split_copy_name(path)
        stored = [f for f in self.rec.files() if f[5]]  # (id, dev, inode, path, size, stored)
        mapped = {(m.dev, m.inode) for m in self.session.maps()}
        name = os.path.basename(path)
        # gdb asks for separate debug files under the debug directory by the
        # library's own name: a name match there is not the file it wants.
        by_name = not path.startswith(DEBUG_DIRECTORY)
        linked = linked_path(self.snapshot(), path) if not any(f[3] == path for f in stored) else None
        for matches in (lambda f: f[3] == path, lambda f: f[3] == linked,
                        lambda f: by_name and os.path.basename(f[3]) == name):
            found = [f for f in stored if matches(f)]
            found.sort(key=lambda f: (f[1], f[2]) not in mapped)
            if found and offset < found[0][4]:
                return _StoredFile(self.rec, found[0][0], found[0][4], offset)
        return None

    def _cmdline(self) -> bytes:
        """argv as /proc/PID/cmdline has it (NUL after each), from the
        strings the kernel's argv points at in this step's memory."""
        try:
            stack = decode_initial_stack(self, self.rec.meta["kernel_sp"], self.arch)
        except DecodeError:
            return b""
        return b"".join(arg.raw + b"\0" for arg in stack.argv if arg.raw is not None)

    # -- breakpoints and watchpoints --------------------------------------------------
    def add_breakpoint(self, addr: int) -> bool:
        self._breakpoints.add(addr)
        return True

    def remove_breakpoint(self, addr: int) -> None:
        self._breakpoints.discard(addr)

    watch_accesses = frozenset({"write"})  # the write index knows writes, not reads

    def add_watchpoint(self, addr: int, size: int, access: str = "write") -> bool:
        if size <= 0:
            return False
        self._watches[(addr, size)] = self._watches.get((addr, size), 0) + 1
        return True

    def remove_watchpoint(self, addr: int, size: int, access: str = "write") -> None:
        count = self._watches.get((addr, size), 0)
        if count <= 1:
            self._watches.pop((addr, size), None)
        else:
            self._watches[(addr, size)] = count - 1

    # -- motion --------------------------------------------------------------------
    def resume(self, step: bool, reverse: bool, interrupted: Interrupted,
               signals: ResumeSignals = NO_SIGNALS) -> Stop:
        """A motion through the recording. The program receives the signals
        it received when recorded, whatever gdb asks (`signal 0`, `signal
        SIG`, `handle SIG nopass`): history cannot change, as under gdb's own
        `record full` replay; unlike it, gdb's console is told so."""
        asked = 0 if reverse else next((signal for signal in signals.values() if signal), 0)
        recorded = 0 if reverse else self._recorded_signal()
        self._selected = None
        try:
            if step:
                stop = self._step_back() if reverse else self._step()
            else:
                stop = self._continue(reverse, interrupted)
        except SearchInterrupted:
            stop = Stop(signal=SIGINT)
        if asked != recorded:
            stop = replace(stop, console=_signal_kept(recorded, asked))
        self._stop = stop
        return stop

    def _recorded_signal(self) -> int:
        """The signal the program received leaving this position when
        recorded (0: none): the one gdb was told of, at a recorded signal
        (or the crash the recording ends with)."""
        stop = self._stop
        if stop.kind != "signal" or stop.no_history is not None:
            return 0
        position = self.session.position
        if position >= self.session.last_step:
            end = self.session.end_reason
            ended = end.kind in (ReasonKind.SIGNAL, ReasonKind.KILLED) and end.signal
            return _signal_number(end.signal) if ended and _signal_number(end.signal) == stop.signal else 0
        return stop.signal if self._signals.get(position) == stop.signal else 0

    def goto(self, position: int) -> Stop:
        """`monitor goto`: the stop gdb will be told of next."""
        self._selected = None
        self.session.goto(position)
        self._stop = self._placed()
        return self._stop

    def run_until(self, until: str):
        """`monitor until T`: the session's own stop-target search."""
        self._selected = None
        reason = self.session.cont(until)
        self._stop = self._placed()
        return reason

    def _placed(self) -> Stop:
        """The stop after a monitor command (or --at) put us somewhere: what
        is there, but not "no more history" (nothing ran into an end)."""
        stop = self._arrived()
        return Stop(signal=stop.signal) if stop.no_history else stop

    def explain(self) -> str:
        from loaderdbg.explain import explain_recording
        return explain_recording(self.session)

    def _step(self) -> Stop:
        if self.session.position >= self.session.last_step:
            return self._beyond_end()
        self.session.step(1)
        return self._arrived()

    def _step_back(self) -> Stop:
        if self.session.position == 0:
            return Stop(no_history="begin")
        self.session.step_back(1)
        return Stop()

    def _arrived(self) -> Stop:
        """The stop at the position just reached going forwards."""
        position = self.session.position
        if position >= self.session.last_step and position > 0:
            return self._end_stop()
        signo = self._signals.get(position)
        return Stop(signal=signo) if signo else Stop()

    def _end_stop(self) -> Stop:
        """At the last position: a crash is its signal (the process is still
        there to look at, and to reverse from); any other end says there is
        no more history."""
        end = self.session.end_reason
        if end.kind in (ReasonKind.SIGNAL, ReasonKind.KILLED) and end.signal:
            return Stop(signal=_signal_number(end.signal))
        return Stop(no_history="end")

    def _beyond_end(self) -> Stop:
        """Going on from the last position: how the process ended."""
        end = self.session.end_reason
        if end.kind in (ReasonKind.EXITED, ReasonKind.EXITING) and end.exit_code is not None:
            return Stop(kind="exited", exit_code=end.exit_code & 0xFF)
        if end.kind in (ReasonKind.SIGNAL, ReasonKind.KILLED) and end.signal:
            return Stop(kind="killed", signal=_signal_number(end.signal))
        return Stop(no_history="end")

    def _continue(self, reverse: bool, interrupted: Interrupted) -> Stop:
        here = self.session.position
        last = self.session.last_step
        if not reverse and here >= last:
            return self._beyond_end()
        if reverse and here == 0:
            return Stop(no_history="begin")
        # (position, stop) candidates; the nearest wins.
        candidates: list[tuple[int, Stop]] = []
        found = self._breakpoint_position(here, reverse, interrupted)
        if found is not None:
            candidates.append((found, Stop(swbreak=True)))
        watched = self._watch_position(here, reverse, interrupted)
        if watched is not None:
            candidates.append(watched)
        if not reverse:
            signalled = min((s for s in self._signals if here < s < last), default=None)
            if signalled is not None:
                candidates.append((signalled, Stop(signal=self._signals[signalled])))
        if not candidates:
            self.session.goto(0 if reverse else last)
            return Stop(no_history="begin") if reverse else self._end_stop()
        position, stop = (max if reverse else min)(candidates, key=lambda c: c[0])
        self.session.goto(position)
        if not reverse and position >= last:
            return self._end_stop()
        return stop

    def _breakpoint_position(self, here: int, reverse: bool, interrupted: Interrupted) -> int | None:
        """The next (previous) position whose pc is a breakpoint. Chunks
        whose pcs miss every breakpoint are passed over one at a time, with
        gdb's Ctrl-C looked at between them; the index search starts at the
        first chunk that has one."""
        addresses = frozenset(self._breakpoints)
        if not addresses:
            return None
        rec = self.rec
        first = rec.chunk_of(here)
        chunks = range(first, -1, -1) if reverse else range(first, len(rec.chunks))
        for chunk in chunks:
            if interrupted():
                raise SearchInterrupted
            if not rec.chunk_pcs(chunk).isdisjoint(addresses):
                return index.find_pc(rec, addresses, before=here) if reverse else \
                    index.find_pc(rec, addresses, after=here)
        return None

    def _watch_position(self, here: int, reverse: bool, interrupted: Interrupted) -> tuple[int, Stop] | None:
        if not self._watches:
            return None
        best: tuple[int, Stop] | None = None
        if reverse:
            for addr, size in self._watches:
                if interrupted():
                    raise SearchInterrupted
                write = index.last_write(self.rec, addr, size, here)
                if write is not None and (best is None or write.step > best[0]):
                    best = (write.step, Stop(watch=addr))
            return best
        last = self.session.last_step
        for start in range(here, last, WATCH_WINDOW):
            if interrupted():
                raise SearchInterrupted
            stop = min(start + WATCH_WINDOW, last)
            for addr, size in self._watches:
                write = next(index.writes_from(self.rec, addr, size, start, stop), None)
                if write is not None and (best is None or write.step + 1 < best[0]):
                    best = (write.step + 1, Stop(watch=addr))
            if best is not None:
                return best
        return None

    # -- monitor ---------------------------------------------------------------------
    def monitor(self, command: str, interrupted: Interrupted = lambda: False) -> str:
        """A monitor command's answer, opened by the divergence headline
        once the replay was found not to match its recording."""
        text = monitor.run(self, command)
        divergence = self.session.divergence
        return text if divergence is None else f"{divergence.headline}\n{text}"

    def kill(self) -> None:
        return None  # a recording has no process to end

    def detach(self) -> None:
        return None  # nor one to let go

    def close(self) -> None:
        self.session.close()


class _StoredFile:
    """A stored file, or the part of it from ``start`` on."""

    def __init__(self, rec, file_id: int, size: int, start: int = 0) -> None:
        self._rec = rec
        self._id = file_id
        self._start = start
        self.size = size - start

    def read(self, offset: int, length: int) -> bytes:
        try:
            return self._rec.file_range(self._id, self._start + offset, min(length, self.size - offset)) or b""
        except LoaderdbgError:
            return b""


def _signal_kept(recorded: int, asked: int) -> str:
    """gdb's console line when gdb asked for another signal than the recording has."""
    had = f"{signal_name(recorded)} was delivered here" if recorded else "no signal was delivered here"
    wanted = (f"deliver {signal_name(asked)}{' instead' if recorded else ''}" if asked
              else f"withhold {signal_name(recorded)}")
    return (f"loaderdbg: a recording replays as recorded: {had}, and the replay cannot {wanted} "
            "(run the program live, loaderdbg serve --live, to change its signals)")


def _signal_number(name: str) -> int:
    try:
        return int(_signal.Signals[name])
    except KeyError:
        return 5
