"""snapshot.collector_paused: the cyclic collector is off while any
snapshot is being built (from any thread, nested or overlapping) and back
as it was once the last one ends; a collector already off stays off."""

from __future__ import annotations

import gc
import threading

import pytest

from loaderdbg.snapshot import collector_paused


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
