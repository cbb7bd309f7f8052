"""Damaged copies of the sample recording, shared by the format's unit tests
and the CLI's integration tests. A plain module: tests/ is on sys.path
because tests/conftest.py sits there (pytest's default import mode)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "recordings" / "execsolib-rdxbug-crash.ldbg"


def copy_of_sample(path: Path) -> Path:
    if not SAMPLE.is_file():
        pytest.fail(f"{SAMPLE} is missing: run `make recordings`", pytrace=False)
    shutil.copy(SAMPLE, path)
    return path


def edit(path: Path, *statements: str, args=()) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement, args)
    db.commit()
    db.close()


def corrupt_chunk(path: Path) -> None:
    """Flip bytes inside chunk 3's compressed data, leaving its checksum stale."""
    db = sqlite3.connect(path)
    (blob,) = db.execute("SELECT data FROM chunks WHERE chunk = 3").fetchone()
    damaged = bytearray(blob)
    for i in range(40, len(damaged), 97):
        damaged[i] ^= 0x5A
    db.execute("UPDATE chunks SET data = ? WHERE chunk = 3", (bytes(damaged),))
    db.commit()
    db.close()
