"""Fixtures for the TUI tests: a live session on the exec-solib demo and on
its rdxbug variant, closed after each test. Helpers are in tuihelp.py."""

from __future__ import annotations

import pytest

from tuihelp import DEMO, RDXBUG, live_session


@pytest.fixture
def demo():
    with live_session(DEMO) as pair:
        yield pair


@pytest.fixture
def rdxbug():
    with live_session(RDXBUG) as pair:
        yield pair


@pytest.fixture(scope="session")
def rdxbug_recording(tmp_path_factory):
    """A recording of the rdxbug demo up to its crash, made once per test
    session: replay tests then do not depend on the committed samples
    (recordings/, regenerated as the format moves) nor on their exact step
    numbers. The recorder leaves no process behind."""
    import os
    from dataclasses import replace

    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.record.recorder import record_program

    from tuihelp import FIXED_ENV, fixture_binary

    path = tmp_path_factory.mktemp("recordings") / "rdxbug-crash.ldbg"
    with open(os.devnull, "wb") as devnull:
        spec = launch_spec(str(fixture_binary(RDXBUG)), [], aslr=False, stdout_fd=devnull.fileno(),
                           stderr_fd=devnull.fileno())
        spec = replace(spec, env=dict(FIXED_ENV))
        summary = record_program(spec, str(path), "signal", progress=False)
    assert summary.stop_reason.signal == "SIGSEGV", summary.stop_reason
    return path
