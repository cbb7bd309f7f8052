"""/proc/PID/task/TID/status: the fields a loader debugger cares about.

Signal sets are hex masks where bit N-1 stands for signal N.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass

from loaderdbg.decode.errors import DecodeError


@dataclass(frozen=True)
class TaskStatus:
    """What /proc/PID/task/TID/status says of a thread's state and signals."""

    name: str
    state: str
    tracer_pid: int
    sig_pending: tuple[str, ...]  # SigPnd: pending for this thread
    shared_pending: tuple[str, ...]  # ShdPnd: pending for the whole process
    sig_blocked: tuple[str, ...]  # SigBlk
    sig_ignored: tuple[str, ...]  # SigIgn
    sig_caught: tuple[str, ...] = ()  # SigCgt: those with a handler of the program's


def signal_set(mask: int) -> tuple[str, ...]:
    names = []
    for number in range(1, 65):
        if mask >> (number - 1) & 1:
            try:
                names.append(_signal.Signals(number).name)
            except ValueError:
                rt = number - _signal.SIGRTMIN
                names.append(f"SIGRTMIN+{rt}" if rt >= 0 else f"SIG{number}")
    return tuple(names)


def parse_task_status(text: str) -> TaskStatus:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        def mask(key: str) -> tuple[str, ...]:
            return signal_set(int(fields.get(key, "0") or "0", 16))

        return TaskStatus(
            name=fields.get("Name", ""),
            state=fields.get("State", ""),
            tracer_pid=int(fields.get("TracerPid", "0") or 0),
            sig_pending=mask("SigPnd"),
            shared_pending=mask("ShdPnd"),
            sig_blocked=mask("SigBlk"),
            sig_ignored=mask("SigIgn"),
            sig_caught=mask("SigCgt"),
        )
    except ValueError as err:
        raise DecodeError(f"bad /proc status: {err}") from None
