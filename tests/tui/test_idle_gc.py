"""The TUI's IdleCollector (tui/idle_gc.py): CPython's automatic collection
is held back while the app runs and the collection due is run between keys;
the thresholds are put back afterwards."""

from __future__ import annotations

import gc

import pytest

from loaderdbg_tui.idle_gc import FULL_EVERY, SAFETY_NET_THRESHOLD, IdleCollector


@pytest.fixture
def collector():
    saved = gc.get_threshold()
    gc.collect()
    idle = IdleCollector()
    idle.install()
    yield idle, saved
    idle.uninstall()
    assert gc.get_threshold() == saved


def test_install_raises_the_threshold_and_uninstall_restores_it(collector):
    idle, saved = collector
    assert gc.get_threshold() == (SAFETY_NET_THRESHOLD, *saved[1:])


def test_collects_only_when_due_and_the_generation_cpython_would(collector):
    idle, saved = collector
    young, middle, _old = saved
    gc.collect()
    assert idle.collect() is None  # nothing allocated since
    make_garbage(young + 100)
    assert idle.collect() == 0
    assert gc.get_count()[0] < young
    # After as many young collections as the middle threshold, the middle
    # generation is collected too.
    for _ in range(middle):
        gc.collect(0)
    make_garbage(young + 100)
    assert idle.collect() == 1


def test_a_full_collection_only_every_few_times_the_counts_say(collector):
    idle, saved = collector
    young, middle, old = saved
    gc.collect()
    for _ in range(old * FULL_EVERY - 1):  # middle collections, each after `middle` young ones
        for _ in range(middle):
            gc.collect(0)
        gc.collect(1)
    for _ in range(middle):
        gc.collect(0)
    make_garbage(young + 100)
    assert idle.collect() == 1
    for _ in range(middle):
        gc.collect(0)
    make_garbage(young + 100)
    assert idle.collect() == 2


def test_leaves_automatic_collection_off_if_it_was():
    saved = gc.get_threshold()
    gc.set_threshold(0)
    try:
        idle = IdleCollector()
        idle.install()
        assert gc.get_threshold()[0] == 0
        assert idle.collect() is None
        idle.uninstall()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*saved)


def test_does_nothing_when_not_installed():
    make_garbage(gc.get_threshold()[0] + 100)
    assert IdleCollector().collect() is None


def make_garbage(cycles: int) -> None:
    """Reference cycles that only the collector can free."""
    for _ in range(cycles):
        cycle: list = []
        cycle.append(cycle)


def test_the_app_holds_automatic_collection_back_while_it_runs(rdxbug_recording):
    from loaderdbg.record.replay import ReplaySession
    from loaderdbg_tui.app import LoaderdbgApp
    from tuihelp import run_pilot, settle

    saved = gc.get_threshold()
    session = ReplaySession(str(rdxbug_recording))
    try:
        async def scenario(pilot):
            assert gc.get_threshold()[0] == SAFETY_NET_THRESHOLD
            await pilot.press("f7", "f7", "f7")
            await settle(pilot)
            assert pilot.app.view.position == 3
        run_pilot(LoaderdbgApp(session), scenario)
    finally:
        session.close()
    assert gc.get_threshold() == saved
