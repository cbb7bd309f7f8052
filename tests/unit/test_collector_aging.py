"""snapshot.collector_paused, as the collector comes back on: what was
made while it was paused goes straight to the oldest generation (no young
collection walks a big snapshot's objects right after it), cyclic garbage
among it is still collected by the next full collection, and what someone
else froze stays frozen."""

from __future__ import annotations

import gc
import weakref

import pytest

from loaderdbg.snapshot import AGE_AFTER, collector_paused


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_made_while_paused_is_old_and_still_collected():
    if gc.get_freeze_count():
        gc.unfreeze()  # (into the oldest generation: nothing is lost)
    with collector_paused():
        kept = [Node() for _ in range(AGE_AFTER)]
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle, garbage once dropped
        gone = weakref.ref(a)
        del a, b
    assert gc.get_freeze_count() == 0
    assert gc.get_count()[0] < 100  # no young collection is due
    young = {id(o) for o in gc.get_objects(generation=0)} | {id(o) for o in gc.get_objects(generation=1)}
    assert not young & {id(o) for o in kept[::5000]}
    assert any(o is kept[0] for o in gc.get_objects(generation=2))
    assert gone() is not None  # a young collection would have freed it; no full one has run
    gc.collect()
    assert gone() is None


def test_a_small_snapshot_leaves_the_young_young():
    if gc.get_freeze_count():
        gc.unfreeze()
    gc.collect()
    with collector_paused():
        made = [Node() for _ in range(100)]
    assert any(o is made[0] for o in gc.get_objects(generation=0))


def test_what_someone_froze_stays_frozen():
    frozen = Node()
    gc.freeze()
    try:
        with collector_paused():
            many = [Node() for _ in range(AGE_AFTER)]
        # Still frozen (the count itself moves as frozen objects die).
        assert many and gc.get_freeze_count() and not any(o is frozen for o in gc.get_objects())
    finally:
        gc.unfreeze()
