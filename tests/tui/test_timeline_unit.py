"""Timeline markers from events: live shows what a run can reach next, a
recording shows everything it holds, ahead of the position too."""

from loaderdbg.session import Event
from loaderdbg_tui.describe import timeline_markers

RECORDED = (
    Event(0, "milestone", "kernel-entry"),
    Event(37215, "milestone", "memfd-create"),
    Event(44244, "milestone", "ldso-mapped"),
    Event(69005, "milestone", "auxv-rewritten", exact=False),
    Event(69005, "milestone", "crash"),
)


def test_live_markers_offer_the_run_to_targets_ahead():
    markers = timeline_markers(RECORDED[:2], None)
    assert [m.name for m in markers] == ["kernel-entry", "memfd-create", "ldso-entry", "at-entry", "main"]
    assert [m.reached for m in markers] == [True, True, False, False, False]


def test_replay_markers_show_the_recorded_milestones_ahead():
    markers = timeline_markers(RECORDED[:2], None, RECORDED, position=40000)
    assert [m.name for m in markers] == ["kernel-entry", "memfd-create", "ldso-mapped", "auxv-rewritten", "crash"]
    assert [m.reached for m in markers] == [True, True, False, False, False]
    # Ahead markers keep their event, so selecting one can goto its step.
    assert markers[2].event.step == 44244
    assert not any(m.name == "at-entry" for m in markers)  # never happened in this recording
