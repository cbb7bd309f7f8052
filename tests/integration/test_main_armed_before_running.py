"""A live session arms main's breakpoint when the program runs on from
AT_ENTRY, not at AT_ENTRY itself (a snapshot there does not need main's
symbol): whichever way it runs on, stepping or continuing, main is still a
milestone, at the same step as when it was armed at once."""

from __future__ import annotations

import os

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession


@pytest.fixture
def session(fixtures_dir):
    with open(os.devnull, "w") as sink:
        spec = launch_spec(str(fixtures_dir / "zoo" / "hello-musl"), [], aslr=False,
                           stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as live:
            yield live


def milestones(session: LiveSession) -> list[str]:
    return [e.name for e in session.events() if e.kind == "milestone"]


def test_continuing_from_entry_reaches_main(session):
    assert session.cont("entry").reached
    assert "main" not in milestones(session)
    reason = session.cont("main")
    assert reason.reached and milestones(session)[-2:] == ["at-entry", "main"]


def test_stepping_from_entry_meets_main(session):
    assert session.cont("entry").reached
    session.step(100_000)  # to the exit: milestones do not end a step run
    assert milestones(session)[-2:] == ["at-entry", "main"]


def test_stepping_through_entry_meets_main_at_its_step(session):
    session.step(100_000)
    steps = {e.name: e.step for e in session.events() if e.kind == "milestone"}
    # main is where the entry code calls it, a few thousand steps after AT_ENTRY.
    assert 0 < steps["at-entry"] < steps["main"] < steps["at-entry"] + 10_000
