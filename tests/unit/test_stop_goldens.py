"""What a stop means in a replay, pinned before the stop logic is moved.

Issue 18 ("One engine, three fronts") moves the stop-target code of the live
session, the recorder and the replay into one place. These goldens hold what
every sample recording answers at every stop target (step, stop reason and
text, events, threads), so a move that changes any of it shows here; a change
of wording made on purpose regenerates them:

    LOADERDBG_REGEN_GOLDENS=1 .venv/bin/python -m pytest tests/unit/test_stop_goldens.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loaderdbg.errors import LoaderdbgError
from loaderdbg.record.replay import ReplaySession
from loaderdbg.snapshot_json import snapshot_to_json

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = sorted((ROOT / "recordings").glob("*.ldbg"))
GOLDEN = ROOT / "tests" / "golden" / "replay_stops.json"
TARGETS = ("first", "step:1000", "ldso-entry", "entry", "main", "syscall", "syscall:mmap",
           "sym:main", "sym:execsolib_handoff", "signal", "exit")
KEPT = ("step", "step_exact", "stop", "events", "threads")


def answer(path: Path, target: str) -> dict:
    with ReplaySession(str(path)) as session:
        try:
            session.cont(target) if target != "first" else session.goto(0)
        except LoaderdbgError as err:
            return {"error": f"{type(err).__name__}: {err}"}
        shown = snapshot_to_json(session.snapshot())
    return {key: shown[key] for key in KEPT}


def all_answers() -> dict:
    return {f"{path.name} {target}": answer(path, target) for path in RECORDINGS for target in TARGETS}


@pytest.fixture(scope="module")
def golden() -> dict:
    if os.environ.get("LOADERDBG_REGEN_GOLDENS"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(all_answers(), indent=1, sort_keys=True) + "\n")
    return json.loads(GOLDEN.read_text())


def test_every_sample_recording_is_covered(golden):
    assert RECORDINGS, "no sample recordings"
    assert sorted(golden) == sorted(f"{p.name} {t}" for p in RECORDINGS for t in TARGETS)


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
@pytest.mark.parametrize("target", TARGETS)
def test_stop_matches_golden(golden, path, target):
    assert answer(path, target) == golden[f"{path.name} {target}"]
