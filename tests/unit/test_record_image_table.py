"""Recording.image_hash answers from the images table read into memory: the
same answer SQLite gives for the newest row at or before a step, for every
page at and between the keyframes of a sample recording."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from loaderdbg.record.format import open_recording

SAMPLE = Path(__file__).resolve().parents[2] / "recordings" / "execsolib-musl-entry.ldbg"


def test_image_hash_is_the_newest_row_at_or_before_the_step():
    rec = open_recording(str(SAMPLE))
    try:
        with sqlite3.connect(SAMPLE) as db:
            pages = [page for (page,) in db.execute("SELECT DISTINCT page FROM images")]
            steps = sorted({0, rec.last_step, *rec.keyframes, *(k + 1 for k in rec.keyframes),
                            *(k - 1 for k in rec.keyframes if k)})
            assert len(pages) > 100 and len(rec.keyframes) > 2
            for step in steps:
                for page in pages + [max(pages) + 1]:
                    row = db.execute("SELECT hash FROM images WHERE page = ? AND step <= ? "
                                     "ORDER BY step DESC LIMIT 1", (page, step)).fetchone()
                    assert rec.image_hash(page, step) == (row[0] if row else None), (page, step)
    finally:
        rec.close()
