"""Writing a `.ldbg` recording, one committed chunk at a time.

The database runs in WAL mode while recording: every chunk is its own
transaction, so a recorder that is killed leaves a file whose committed
prefix opens normally. ``finish`` checkpoints the WAL back into the main
file and switches to a rollback journal, so the finished recording is one
self-contained file.

The output path is the user's: nothing that is not a loaderdbg recording is
ever written over (a device, a FIFO, a symlink, a program, any other file),
and a recording only when the caller says so (``record --force``). Every
recording starts as a new file beside the target, ``PATH.partial-XXXXXXXX``,
holding the schema. Then:

- nothing at PATH: the new file is hard-linked to PATH at once (link fails
  if anything got there meanwhile), and the recording is written there. A
  recorder killed mid-run leaves PATH as a readable prefix, as before.
- an old recording at PATH (replace allowed): the recording is written in
  the partial file, which is renamed over PATH when it is finished. A
  recorder killed mid-run leaves the old recording whole and the partial
  file as the readable prefix; its name is given when recording starts.

A recorder holds an flock on the file it writes (and on the recording it
will replace), so a second recorder on the same path refuses at once
instead of deleting the first one's files under it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import os
import queue
import secrets
import signal
import sqlite3
import stat
import struct
import threading
import zlib
from typing import Iterable

import zstandard

from loaderdbg.errors import UsageError
from loaderdbg.printable import printable
from loaderdbg.record.format import (
    FILE_BLOCK, FILE_XZ, FILE_ZSTD, FORMAT_NAME, FORMAT_VERSION, PAGE_FILE, PAGE_SIZE, PAGE_ZERO, PAGE_ZSTD, SCHEMA,
    THREAD_SCHEMA, file_type_name, is_loaderdbg_recording, pack_chunk_data, to_sql,
)
from loaderdbg.session import Event

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
NAME_MAX = 255  # bytes in a file name (Linux)

ZERO_PAGE = bytes(PAGE_SIZE)


def page_hash(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


ZERO_HASH = page_hash(ZERO_PAGE)


QUICK_FILE_LEVEL = 3
ASYNC_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD,
                 signal.SIGWINCH, signal.SIGPIPE, signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2}
# Stored files are executables: xz with the x86 branch filter packs them
# ~10% tighter than zstd -19 (libc.so.6: 672 kB against 750 kB).
# Preset 6 runs at ~3 MB/s; big files (a 7 MB python3) get preset 1, which
# is 5x faster and ~10% bigger. Files are cut into FILE_BLOCK-sized blocks,
# each compressed on its own, so reading one page of a stored file (a page
# of the memory image that equals the file) decompresses 256 kB, not 7 MB.
BIG_FILE = 4 << 20


def compress_blocks(content: bytes) -> tuple[int, list[bytes]]:
    preset = 1 if len(content) > BIG_FILE else 6
    filters = [{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": preset}]
    return FILE_XZ, [lzma.compress(content[i:i + FILE_BLOCK], format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                                   filters=filters) for i in range(0, len(content), FILE_BLOCK)]


class _FileCompressor(threading.Thread):
    """Recompresses stored files at a high level off the step loop's CPU
    (python-zstandard releases the GIL while it compresses). Until a file's
    better blob is swapped in at a commit, the quick one is in the file, so
    a recorder killed meanwhile still leaves a complete recording."""

    def __init__(self, cpus: set[int] | None) -> None:
        super().__init__(name="loaderdbg-file-compressor", daemon=True)
        self._cpus = cpus
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()

    def run(self) -> None:
        # Ctrl-C and friends must reach the recorder's thread, which may be
        # blocked in waitpid: a process-directed signal goes to any thread
        # that does not block it.
        signal.pthread_sigmask(signal.SIG_BLOCK, ASYNC_SIGNALS)
        if self._cpus:
            try:
                os.sched_setaffinity(0, self._cpus)
            except OSError:
                pass
        while True:
            job = self.jobs.get()
            if job is None:
                return
            file_id, content = job
            self.done.put((file_id, compress_blocks(content)))


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _same_file(path: str, fd: int | None) -> bool:
    if fd is None:
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (info.st_dev, info.st_ino) == (mine.st_dev, mine.st_ino)


class OutputFile:
    """The checks and the file moves of the module docstring: where a
    recording is written (``writing``) and how it reaches ``path``."""

    def __init__(self, path: str, replace: bool) -> None:
        if not path:
            raise UsageError("record -o: the output path is empty")
        self.path = path
        self.shown = printable(path)
        self._replaced_fd: int | None = None  # the old recording at path, locked
        self._partial_fd: int | None = None  # the file we write, locked
        self.partial = ""
        self._replaced_fd = self._check_existing(replace)
        try:
            self.partial, self._partial_fd = self._new_partial()
        except BaseException:
            self.close()
            raise
        self.writing = self.partial

    def _refuse(self, why: str) -> UsageError:
        return UsageError(f"{self.shown}: {why}")

    def _check_existing(self, replace: bool) -> int | None:
        if os.path.basename(self.path) in ("", ".", ".."):
            raise self._refuse("is a directory")
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._refuse(f"cannot write a recording there ({err.strerror})") from None
        if stat.S_ISLNK(info.st_mode):
            raise self._refuse("is a symbolic link; a recording is never written through one "
                               "(give the path it points to)")
        if not stat.S_ISREG(info.st_mode):
            raise self._refuse(f"is {file_type_name(info.st_mode)}; a recording is never written over it")
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            raise self._refuse(f"cannot write a recording there ({err.strerror})") from None
        try:
            if not _same_file(self.path, fd):
                raise self._refuse("changed while it was checked; not writing over it")
            if not _try_lock(fd):
                raise self._refuse("another loaderdbg is recording to it")
            if not is_loaderdbg_recording(self.path):
                raise self._refuse("exists and is not a loaderdbg recording; not writing over it")
            if not replace:
                raise self._refuse("a recording is already there (--force replaces it)")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _new_partial(self) -> tuple[str, int]:
        directory, name = os.path.split(self.path)
        room = NAME_MAX - len(".partial-01234567-journal")  # SQLite adds its own suffixes
        if len(os.fsencode(name)) > room:
            name = os.fsdecode(os.fsencode(name)[:room])
        while True:
            partial = os.path.join(directory, f"{name}.partial-{secrets.token_hex(4)}")
            try:
                fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                continue
            except OSError as err:
                raise self._refuse(f"cannot write a recording there ({err.strerror})") from None
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else holds it
            return partial, fd

    @property
    def replacing(self) -> bool:
        return self._replaced_fd is not None

    def _side_files(self) -> list[str]:
        """PATH-wal, -shm and -journal where they exist. SQLite takes them
        for PATH's own and would apply a WAL or a journal to the new file:
        those left by a killed recorder (of the recording being replaced,
        or of one since deleted) must go. Anything but a regular file there
        is refused."""
        found = []
        for suffix in SQLITE_SIDE_FILES:
            side = self.path + suffix
            try:
                info = os.lstat(side)
            except FileNotFoundError:
                continue
            except OSError as err:  # ENAMETOOLONG: SQLite could not make its journal either
                raise self._refuse(f"cannot write a recording there ({printable(side)}: {err.strerror})") from None
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{printable(side)}: is {file_type_name(info.st_mode)}; SQLite would take it "
                                 f"for {self.shown}'s journal")
            found.append(side)
        return found

    def publish_fresh(self) -> None:
        """Nothing was at PATH: put the partial file there now."""
        self._side_files()
        try:
            os.link(self.partial, self.path)
        except FileExistsError:
            raise self._refuse("appeared while the recording was starting; not writing over it") from None
        except OSError:
            # No hard links on this filesystem: claim the name, then move
            # the partial file onto the claim.
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
            except FileExistsError:
                raise self._refuse("appeared while the recording was starting; not writing over it") from None
            except OSError as err:
                raise self._refuse(f"cannot write a recording there ({err.strerror})") from None
            os.rename(self.partial, self.path)
        else:
            os.unlink(self.partial)
        self.writing = self.path
        try:
            for side in self._side_files():
                os.unlink(side)
        except BaseException:
            self.remove()
            raise

    def publish_replacement(self) -> None:
        """The finished partial file replaces the old recording, unless
        something else has taken PATH since it was checked."""
        if os.path.lexists(self.path) and not _same_file(self.path, self._replaced_fd):
            raise self._refuse(f"was replaced while recording; the recording is {printable(self.partial)}")
        for side in self._side_files():
            os.unlink(side)
        os.replace(self.partial, self.path)
        self.writing = self.path

    def remove(self) -> None:
        """Delete what we wrote (never a file someone put in its place)."""
        if _same_file(self.writing, self._partial_fd):
            os.unlink(self.writing)
            for suffix in SQLITE_SIDE_FILES:
                side = self.writing + suffix
                if os.path.isfile(side) and not os.path.islink(side):
                    os.unlink(side)
        self.close()

    def close(self) -> None:
        for fd in (self._partial_fd, self._replaced_fd):
            if fd is not None:
                os.close(fd)
        self._partial_fd = self._replaced_fd = None


class RecordingWriter:
    def __init__(self, path: str, *, replace: bool = True, level: int = 3, file_level: int = 9,
                 background_cpus: set[int] | None = None) -> None:
        """``replace``: an existing loaderdbg recording at ``path`` may be
        replaced (only once this one is finished). Anything else at ``path``
        is refused with a UsageError, before anything is recorded."""
        self.path = path
        self.output = OutputFile(path, replace)
        # One line for the user when the recording is not at path until the end.
        self.notice = (f"recording to {printable(self.output.partial)}; it replaces {self.output.shown} "
                       "when the recording ends") if self.output.replacing else None
        self._db = None
        try:
            self._open()
        except BaseException:
            if self._db is not None:
                self._db.close()
            self.output.remove()
            raise
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._fctx = zstandard.ZstdCompressor(level=QUICK_FILE_LEVEL, write_checksum=True)
        self._compressor = None
        self._pack_files = file_level > QUICK_FILE_LEVEL
        if self._pack_files and background_cpus is not None:
            self._compressor = _FileCompressor(background_cpus)
            self._compressor.start()
        self.known_pages: set[bytes] = set()
        self.known_files: dict[tuple[str, int, str], int] = {}
        self.file_contents: dict[int, bytes] = {}

    def _open(self) -> None:
        """The schema, committed in the partial file; then (at PATH when
        nothing was there) WAL mode and the first transaction."""
        self._db = sqlite3.connect(self.output.partial, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA page_size = 4096")
        # No fsync for the schema (nor was there when it went to the WAL):
        # the recording's first commit in WAL mode follows at once.
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("BEGIN")
        for statement in SCHEMA:
            self._db.execute(statement)
        # Marked ours from the start: a killed recorder's file is a recording
        # that --force may replace.
        self.put_meta("format", FORMAT_NAME)
        self.put_meta("format_version", FORMAT_VERSION)
        self.put_meta("complete", False)
        self._db.execute("COMMIT")
        if not self.output.replacing:
            self._db.close()
            self._db = None
            self.output.publish_fresh()
            self._db = sqlite3.connect(self.output.writing, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("BEGIN")

    # -- transactions -------------------------------------------------------
    def _swap_compressed_files(self, wait: bool, drop: bool = False) -> None:
        compressor = self._compressor
        if compressor is None:
            return
        if drop:
            # Keep the quick blobs of files still waiting (an interrupted
            # recording should end now, not after the compression).
            while True:
                try:
                    compressor.jobs.get_nowait()
                except queue.Empty:
                    break
        if wait:
            compressor.jobs.put(None)
            compressor.join()
            self._compressor = None
        while True:
            try:
                file_id, (codec, blocks) = compressor.done.get_nowait()
            except queue.Empty:
                break
            self._db.execute("UPDATE files SET codec = ? WHERE id = ?", (codec, file_id))
            self._db.executemany("UPDATE file_blocks SET data = ? WHERE file = ? AND block = ?",
                                 ((blob, file_id, i) for i, blob in enumerate(blocks)))

    def commit(self) -> None:
        self._swap_compressed_files(wait=False)
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def finish(self, hurry: bool = False) -> None:
        self._swap_compressed_files(wait=True, drop=hurry)
        self._db.execute("COMMIT")
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        total = self._db.execute("PRAGMA page_count").fetchone()[0]
        if free > total // 20:
            self._db.execute("VACUUM")  # drop the pages the quick file blobs used
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("PRAGMA journal_mode = DELETE")
        self._db.close()
        try:
            if self.output.replacing:
                self.output.publish_replacement()
        finally:
            self.output.close()

    def discard(self) -> None:
        """Close and delete: nothing was recorded (the launch failed)."""
        self._close_db()
        self.output.remove()

    def abandon(self) -> None:
        """Close after an error: keep what was committed (where it is: an
        old recording is not replaced by a failed one)."""
        self._close_db()
        self.output.close()

    def _close_db(self) -> None:
        if self._compressor is not None:
            self._compressor.jobs.put(None)
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
        sorted_pcs = sorted(pcs)
        blob = pack_chunk_data(self._cctx.compress(bytes(regs_data)), self._cctx.compress(bytes(writes)),
                               self._cctx.compress(struct.pack(f"<{len(sorted_pcs)}Q", *sorted_pcs)))
        self._db.execute(
            "INSERT INTO chunks (chunk, first_step, steps, regs, regs_written, nwrites, crc, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (chunk, first_step, steps, bytes(regs), regs_written, nwrites, zlib.crc32(blob), blob))
        self._db.executemany("INSERT OR IGNORE INTO write_index (page, chunk) VALUES (?, ?)",
                             ((page, chunk) for page in pages_written))
        return len(blob)

    def add_keyframe(self, step: int, checksum: bytes, page_sums: list[tuple[int, int]], fixups: int) -> None:
        raw = b"".join(struct.pack("<QI", page, crc) for page, crc in page_sums)
        self._db.execute("INSERT OR REPLACE INTO keyframes (step, checksum, page_sums, fixups) "
                         "VALUES (?, ?, ?, ?)", (step, checksum, self._cctx.compress(raw), fixups))

    def add_maps(self, step: int, text: str) -> None:
        blob = self._cctx.compress(text.encode("utf-8", "surrogateescape"))
        self._db.execute("INSERT OR REPLACE INTO maps (step, text) VALUES (?, ?)", (step, blob))

    def add_threads(self, step: int, data: list[dict]) -> None:
        self._db.execute("INSERT OR REPLACE INTO threads (step, data) VALUES (?, ?)",
                         (step, json.dumps(data, sort_keys=True)))

    def add_thread_tables(self) -> None:
        """The tables of a recording with more than one thread (format.THREAD_SCHEMA)."""
        for statement in THREAD_SCHEMA:
            self._db.execute(statement)

    def add_schedule(self, step: int, tid: int) -> None:
        """Thread ``tid`` executes the transitions from position ``step`` on."""
        self._db.execute("INSERT OR REPLACE INTO schedule (step, tid) VALUES (?, ?)", (step, tid))

    def add_thread_regs(self, step: int, tid: int, regs: bytes | None) -> None:
        """Thread ``tid``'s registers from position ``step`` on, while it
        waits (None: it is gone)."""
        self._db.execute("INSERT OR REPLACE INTO thread_regs (step, tid, regs) VALUES (?, ?, ?)",
                         (step, tid, regs))

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
        codec, blocks = FILE_ZSTD, []
        if content is not None:
            if self._pack_files and self._compressor is None:
                codec, blocks = compress_blocks(content)
            else:
                blocks = [self._fctx.compress(content[i:i + FILE_BLOCK])
                          for i in range(0, len(content), FILE_BLOCK)]
        cursor = self._db.execute(
            "INSERT INTO files (dev, inode, path, size, stored, block_size, codec) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (dev, inode, path, len(content or b""), int(content is not None), FILE_BLOCK, codec))
        file_id = cursor.lastrowid
        self._db.executemany("INSERT INTO file_blocks (file, block, data) VALUES (?, ?, ?)",
                             ((file_id, i, blob) for i, blob in enumerate(blocks)))
        self.known_files[key] = file_id
        if content is not None:
            self.file_contents[file_id] = content
            if self._compressor is not None:
                self._compressor.jobs.put((file_id, content))
        return file_id

    def file_size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.output.writing + suffix)
            except OSError:
                pass
        return total
