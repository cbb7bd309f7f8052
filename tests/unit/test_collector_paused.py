"""snapshot.collector_paused: the cyclic collector is off while any
snapshot is being built (from any thread, nested or overlapping) and back
as it was once the last one ends; a collector already off stays off.

As it comes back on, what a big snapshot made while it was paused goes
straight to the oldest generation (no young collection walks it right
after), cyclic garbage among it is still collected by the next full
collection, and what someone else froze stays frozen."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from loaderdbg.snapshot import AGE_AFTER, collector_paused


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_nested_and_restored():
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_restored_after_an_exception():
    with pytest.raises(RuntimeError):
        with collector_paused():
            raise RuntimeError("snapshot failed")
    assert gc.isenabled()


def test_overlapping_threads_keep_it_off_until_the_last_ends():
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the other thread's snapshot is still being built
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_off_stays_off():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


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
