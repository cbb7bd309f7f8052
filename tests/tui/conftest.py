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
