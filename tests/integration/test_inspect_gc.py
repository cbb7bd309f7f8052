"""inspect runs with the cyclic garbage collector off (issue 19: its passes
over a big program's relocation states were a quarter of the CPU), and an
in-process caller gets it back on afterwards, whatever the command's end."""

from __future__ import annotations

import gc
import sys
import threading
from pathlib import Path

import pytest

from loaderdbg.cli import main

DEMO = Path(__file__).resolve().parents[2] / "build" / "fixtures" / "execsolib" / "glibc-O2" / "libexecsolib.so"


def in_inspect() -> bool:
    """Whether the main thread is inside the inspect command (a collection
    may start on any thread: the tracer thread allocates too)."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        if frame.f_code.co_name == "cmd_inspect":
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def collections():
    """(generation, during inspect) of each collection the test sees."""
    started = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            started.append((info["generation"], in_inspect()))
    gc.callbacks.append(count)
    yield started
    gc.callbacks.remove(count)


def test_no_collection_while_inspecting_and_back_on_after(collections, capsys):
    if not DEMO.is_file():
        pytest.fail("fixtures missing: run `make fixtures`", pytrace=False)
    assert gc.isenabled()
    assert main(["inspect", "--json", "--at", "entry", str(DEMO), "a", "b"]) == 0
    assert '"format": "loaderdbg.snapshot/1"' in capsys.readouterr().out
    assert [during for _, during in collections if during] == []
    assert gc.isenabled()
    # The control: allocation with the collector on collects.
    junk = [[i] for i in range(100_000)]
    assert collections and junk


def test_back_on_after_a_failed_inspect(capsys):
    assert main(["inspect", "/nonexistent/program"]) != 0
    assert gc.isenabled()
