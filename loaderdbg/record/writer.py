"""Writing a `.ldbg` recording, one committed chunk at a time.

The database runs in WAL mode while recording: every chunk is its own
transaction, so a recorder that is killed leaves a file whose committed
prefix opens normally. ``finish`` checkpoints the WAL back into the main
file and switches to a rollback journal, so the finished recording is one
self-contained file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
from typing import Iterable

import zstandard

from loaderdbg.record.format import (
    FORMAT_NAME, FORMAT_VERSION, PAGE_FILE, PAGE_SIZE, PAGE_ZERO, PAGE_ZSTD, SCHEMA, chunk_crc, to_sql,
)
from loaderdbg.session import Event

ZERO_PAGE = bytes(PAGE_SIZE)


def page_hash(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


ZERO_HASH = page_hash(ZERO_PAGE)


class RecordingWriter:
    def __init__(self, path: str, *, level: int = 3, file_level: int = 9) -> None:
        self.path = path
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA page_size = 16384")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("BEGIN")
        for statement in SCHEMA:
            self._db.execute(statement)
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._fctx = zstandard.ZstdCompressor(level=file_level, write_checksum=True,
                                              threads=0)
        self.known_pages: set[bytes] = set()
        self.known_files: dict[tuple[str, int, str], int] = {}
        self.file_contents: dict[int, bytes] = {}

    # -- transactions -------------------------------------------------------
    def commit(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def finish(self) -> None:
        self._db.execute("COMMIT")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("PRAGMA journal_mode = DELETE")
        self._db.close()

    def abandon(self) -> None:
        """Close after an error: keep what was committed."""
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            pass
        try:
            self._db.close()
        except sqlite3.Error:
            pass

    # -- rows ---------------------------------------------------------------
    def put_meta(self, key: str, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         (key, json.dumps(value, sort_keys=True)))

    def compress(self, data: bytes | bytearray) -> bytes:
        return self._cctx.compress(bytes(data))

    def store_page(self, data: bytes | bytearray | memoryview, file_id: int | None = None,
                   file_offset: int | None = None) -> bytes:
        """Store a page once by content; returns its hash. A page equal to a
        stored file's bytes at file_offset is kept as a reference."""
        digest = page_hash(data)
        if digest in self.known_pages:
            return digest
        self.known_pages.add(digest)
        if digest == ZERO_HASH:
            row = (digest, PAGE_ZERO, None, None, None)
        else:
            content = self.file_contents.get(file_id) if file_id is not None else None
            if content is not None and file_offset is not None and 0 <= file_offset <= len(content):
                slice_ = content[file_offset:file_offset + PAGE_SIZE]
                if len(slice_) < PAGE_SIZE:
                    slice_ += bytes(PAGE_SIZE - len(slice_))
                if slice_ == bytes(data):
                    row = (digest, PAGE_FILE, None, file_id, file_offset)
                else:
                    row = (digest, PAGE_ZSTD, self._cctx.compress(bytes(data)), None, None)
            else:
                row = (digest, PAGE_ZSTD, self._cctx.compress(bytes(data)), None, None)
        self._db.execute("INSERT OR IGNORE INTO pages (hash, codec, data, file, file_offset) "
                         "VALUES (?, ?, ?, ?, ?)", row)
        return digest

    def add_images(self, step: int, rows: Iterable[tuple[int, bytes | None]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO images (page, step, hash) VALUES (?, ?, ?)",
                             ((page, step, digest) for page, digest in rows))

    def add_chunk(self, chunk: int, first_step: int, steps: int, regs: bytes, regs_written: int,
                  nwrites: int, regs_data: bytes, writes: bytes, pcs: Iterable[int],
                  pages_written: Iterable[int]) -> int:
        """Compress and store one chunk; returns the stored size in bytes."""
        regs_blob = self._cctx.compress(bytes(regs_data))
        writes_blob = self._cctx.compress(bytes(writes))
        sorted_pcs = sorted(pcs)
        pcs_blob = self._cctx.compress(struct.pack(f"<{len(sorted_pcs)}Q", *sorted_pcs))
        crc = chunk_crc(regs_blob, writes_blob, pcs_blob)
        self._db.execute(
            "INSERT INTO chunks (chunk, first_step, steps, regs, regs_written, nwrites, crc, regs_data, "
            "writes, pcs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chunk, first_step, steps, bytes(regs), regs_written, nwrites, crc, regs_blob, writes_blob,
             pcs_blob))
        self._db.executemany("INSERT OR IGNORE INTO write_index (page, chunk) VALUES (?, ?)",
                             ((page, chunk) for page in pages_written))
        return len(regs_blob) + len(writes_blob) + len(pcs_blob)

    def add_keyframe(self, step: int, checksum: bytes, page_sums: list[tuple[int, int]], fixups: int) -> None:
        raw = b"".join(struct.pack("<QI", page, crc) for page, crc in page_sums)
        self._db.execute("INSERT OR REPLACE INTO keyframes (step, checksum, page_sums, fixups) "
                         "VALUES (?, ?, ?, ?)", (step, checksum, self._cctx.compress(raw), fixups))

    def add_maps(self, step: int, text: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO maps (step, text) VALUES (?, ?)", (step, text))

    def add_threads(self, step: int, data: list[dict]) -> None:
        self._db.execute("INSERT OR REPLACE INTO threads (step, data) VALUES (?, ?)",
                         (step, json.dumps(data, sort_keys=True)))

    def add_event(self, event: Event) -> None:
        self._db.execute("INSERT INTO events (step, kind, name, detail, address, exact) VALUES (?, ?, ?, ?, ?, ?)",
                         (event.step, event.kind, event.name, event.detail, to_sql(event.address),
                          int(event.exact)))

    def add_syscall(self, step: int, number: int, name: str, args: tuple[int, ...], result: int | None,
                    text: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO syscalls (step, number, name, args, result, text) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (step, number, name, json.dumps([f"{a:#x}" for a in args]), result, text))

    def add_signal(self, step: int, signo: int, siginfo: bytes | None, detail: str) -> None:
        self._db.execute("INSERT INTO signals (step, signo, siginfo, detail) VALUES (?, ?, ?, ?)",
                         (step, signo, siginfo, detail))

    def add_file(self, dev: str, inode: int, path: str, content: bytes | None) -> int:
        key = (dev, inode, path)
        found = self.known_files.get(key)
        if found is not None:
            return found
        blob = None if content is None else self._fctx.compress(content)
        cursor = self._db.execute("INSERT INTO files (dev, inode, path, size, data) VALUES (?, ?, ?, ?, ?)",
                                  (dev, inode, path, len(content or b""), blob))
        file_id = cursor.lastrowid
        self.known_files[key] = file_id
        if content is not None:
            self.file_contents[file_id] = content
        return file_id

    def file_size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total
