"""A replay reads a stored file from this machine's copy when it is the same
file (path, device, inode, size and every xz block's CRC32): the bytes must
be exactly the ones the recording stores, and a file that differs is
inflated from the recording."""

from __future__ import annotations

import lzma
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from loaderdbg.record.format import MAX_FILE_SIZE, open_recording

SAMPLE = Path(__file__).resolve().parents[2] / "recordings" / "execsolib-glibc-entry.ldbg"


def _stored_bytes(path: Path, file_id: int) -> bytes:
    with sqlite3.connect(path) as db:
        return b"".join(lzma.decompress(blob) for (blob,) in
                        db.execute("SELECT data FROM file_blocks WHERE file = ? ORDER BY block", (file_id,)))


def test_every_file_reads_as_stored():
    rec = open_recording(str(SAMPLE))
    try:
        for file_id, *_ in rec.files():
            assert rec.file_by_id(file_id) == _stored_bytes(SAMPLE, file_id)
    finally:
        rec.close()


def test_a_changed_local_copy_is_not_used(tmp_path):
    """The recording names a file on this machine whose bytes differ (same
    size, device and inode): the stored bytes win."""
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    if not os.path.isfile(libc):
        pytest.skip("no libc.so.6 at the recorded path")
    changed = tmp_path / "libc.so.6"
    shutil.copyfile(libc, changed)
    with open(changed, "r+b") as f:
        f.seek(os.path.getsize(changed) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    st = os.stat(changed)
    copy = tmp_path / "sample.ldbg"
    shutil.copyfile(SAMPLE, copy)
    with sqlite3.connect(copy) as db:
        (file_id,) = db.execute("SELECT id FROM files WHERE path = ?", (libc,)).fetchone()
        db.execute("UPDATE files SET path = ?, dev = ?, inode = ? WHERE id = ?",
                   (str(changed), f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}", st.st_ino, file_id))
    rec = open_recording(str(copy))
    try:
        content = rec.file_by_id(file_id)
        assert content == _stored_bytes(copy, file_id) == rec.file_range(file_id, 0, MAX_FILE_SIZE)
        assert content != changed.read_bytes()
    finally:
        rec.close()
