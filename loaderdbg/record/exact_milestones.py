"""Exact steps for the milestones a live run can only notice late.

The startup observer sees in-memory rewrites (argv pointed at the memfd,
auxv rewritten for ld.so, the bootstrap's self-relocation) at the next
syscall stop, so those milestones are inexact. A recording knows every
write: the milestone happened right after the last write to the memory it
is about, before the step where it was noticed. The replay moves them
there, so its timeline agrees with its stack and relocation views at every
step (issue 17, "milestones agree with the screen").
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from loaderdbg.decode.stack import InitialStack
from loaderdbg.record import index
from loaderdbg.record.format import Recording
from loaderdbg.session import Event

WORD = 8
AUXV_ENTRY = 2 * WORD


def exact_milestones(rec: Recording, events: Sequence[Event], kernel_stack: InitialStack | None,
                     relocation_slots: Iterable[int]) -> tuple[Event, ...]:
    """``events`` with the late-noticed milestones moved to the step after
    the last write that made them true, marked exact; in step order."""
    ranges = {"self-relocation-done": [(slot, WORD) for slot in relocation_slots]}
    if kernel_stack is not None:
        ranges["argv-rewritten"] = [(kernel_stack.argv_address, WORD * kernel_stack.argc)]
        ranges["auxv-rewritten"] = [(kernel_stack.auxv_address, AUXV_ENTRY * len(kernel_stack.auxv))]
    out = []
    for event in events:
        spans = ranges.get(event.name) if event.kind == "milestone" and not event.exact else None
        if spans:
            step = _after_last_write(rec, spans, event.step)
            if step is not None:
                event = dataclasses.replace(event, step=step, exact=True)
        out.append(event)
    return tuple(sorted(out, key=lambda e: e.step))


def _after_last_write(rec: Recording, spans: list[tuple[int, int]], noticed: int) -> int | None:
    """The position right after the newest transition before ``noticed``
    that wrote any of ``spans``."""
    newest = None
    for start, size in _merged(spans):
        write = index.last_write(rec, start, size, noticed)
        if write is not None and (newest is None or write.step > newest):
            newest = write.step
    return None if newest is None else newest + 1


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent or overlapping spans as one (121 relocation slots are a few
    runs of consecutive words): fewer index questions."""
    merged: list[list[int]] = []
    for start, size in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], start + size)
        else:
            merged.append([start, start + size])
    return [(start, end - start) for start, end in merged]
