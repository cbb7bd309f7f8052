"""A recording's timeline agrees with its own views (issue 17.4): the
milestones a live run notices late sit exactly where the memory they are
about changed for the last time, on the sample recordings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from loaderdbg.record.replay import ReplaySession

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = [ROOT / "recordings" / name for name in ("execsolib-glibc-entry.ldbg", "execsolib-musl-entry.ldbg")]


def milestone_step(session: ReplaySession, name: str) -> int:
    found = [e for e in session.events() if e.kind == "milestone" and e.name == name]
    assert len(found) == 1 and found[0].exact, found
    return found[0].step


def at(session: ReplaySession, step: int):
    session.goto(step)
    return session.snapshot()


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_rewrites_happen_exactly_at_their_milestones(path):
    with ReplaySession(str(path)) as session:
        step = milestone_step(session, "auxv-rewritten")
        before, after = at(session, step - 1), at(session, step)
        assert before.auxv_changed < after.auxv_changed  # the last rewrite lands at the milestone

        step = milestone_step(session, "argv-rewritten")
        before, after = at(session, step - 1), at(session, step)
        assert [s.text for s in before.stack.argv] != [s.text for s in after.stack.argv]
        assert after.stack.argv[0].text.startswith("/proc/self/fd/")

        step = milestone_step(session, "self-relocation-done")
        relative = lambda snap: Counter(r.state for r in snap.relocations
                                        if r.object.endswith("libexecsolib.so") and r.type_name.endswith("RELATIVE"))
        assert relative(at(session, step - 1))["pending"] >= 1
        assert set(relative(at(session, step))) == {"applied"}


def test_events_stay_in_step_order():
    with ReplaySession(str(SAMPLES[0])) as session:
        steps = [e.step for e in session.events()]
    assert steps == sorted(steps)
