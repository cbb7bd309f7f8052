"""Separate debug files, found where gdb looks for them (gdb manual,
"Debugging Information in Separate Files"):

1. by build-id: ``<dir>/.build-id/xx/yyyy….debug`` for each debug directory,
   taken when the file's own build-id note is the object's;
2. by ``.gnu_debuglink`` NAME: ``<objdir>/NAME``, ``<objdir>/.debug/NAME``,
   then ``<dir>/<objdir>/NAME`` for each debug directory, taken when the
   CRC-32 of the file's bytes is the one the link records.

Debian's libc6-dbg puts ld.so's and libc's under
``/usr/lib/debug/.build-id/``. A found file is read once per process and
shared by every session (its symbols are parsed once, on first use), so live
and replay sessions name addresses alike; the object's path may come from a
recording, which is why a debug file is only ever taken on a matching
build-id or CRC.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import zlib
from typing import Sequence

from loaderdbg.decode.elf import DebugFile, ElfInfo

DEBUG_DIRECTORIES: tuple[str, ...] = ("/usr/lib/debug",)
# Larger debug files (a browser's) are not worth holding in memory for names.
_MAX_DEBUG_FILE_BYTES = 1 << 30

_BUILD_ID = re.compile(r"[0-9a-f]{4,}")
_lock = threading.Lock()
_found: dict[tuple, DebugFile | None] = {}
_by_path: dict[tuple, DebugFile] = {}


def find_debug_file(path: str, info: ElfInfo,
                    directories: Sequence[str] = DEBUG_DIRECTORIES) -> DebugFile | None:
    """The separate debug file of the object at path (as the maps name it),
    or None. Cached per build-id (else per debug link) for the process."""
    # The build-id alone keys the cache: reading the debug link costs a
    # parse of the object's section headers, worth paying once.
    if info.build_id is not None:
        key: tuple = (info.build_id, tuple(directories))
    else:
        link = info.debuglink
        if link is None:
            return None
        key = (os.path.dirname(path), link.name, link.crc, tuple(directories))
    with _lock:
        if key in _found:
            return _found[key]
    link = info.debuglink
    found = _by_build_id(info.build_id, directories) if info.build_id else None
    if found is None and link is not None:
        found = _by_debuglink(path, link.name, link.crc, directories)
    with _lock:
        return _found.setdefault(key, found)


def build_id_path(build_id: str, directory: str) -> str:
    return os.path.join(directory, ".build-id", build_id[:2], build_id[2:] + ".debug")


def debuglink_paths(path: str, name: str, directories: Sequence[str]) -> tuple[str, ...]:
    """Where gdb looks for a debug link's file, in its order."""
    objdir = os.path.dirname(path)
    if not objdir.startswith("/"):
        return ()
    candidates = [os.path.join(objdir, name), os.path.join(objdir, ".debug", name)]
    candidates += [os.path.join(directory + objdir, name) for directory in directories]
    return tuple(candidates)


def _by_build_id(build_id: str, directories: Sequence[str]) -> DebugFile | None:
    if not _BUILD_ID.fullmatch(build_id):
        return None
    for directory in directories:
        candidate = build_id_path(build_id, directory)
        read = _read(candidate)
        if read is None:
            continue
        debug_file = _shared(candidate, *read)
        if debug_file.build_id == build_id:
            return debug_file
    return None


def _by_debuglink(path: str, name: str, crc: int, directories: Sequence[str]) -> DebugFile | None:
    # A plain file name: a link naming ../something is not followed.
    if not name or "/" in name or name in (".", ".."):
        return None
    for candidate in debuglink_paths(path, name, directories):
        # Most candidates are not there: one stat, before two realpath walks.
        if not os.path.exists(candidate) or os.path.realpath(candidate) == os.path.realpath(path):
            continue
        read = _read(candidate)
        if read is not None and zlib.crc32(read[0]) == crc:
            return _shared(candidate, *read)
    return None


def _read(path: str) -> tuple[bytes, tuple] | None:
    """A regular file's bytes (a FIFO or device under a guessed name must
    not block or flood us), and what tells this version of the file from
    another: device, inode, size and modification time, as Python's own
    bytecode cache tells a source file's versions apart."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with open(fd, "rb", closefd=True) as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_DEBUG_FILE_BYTES:
                return None
            return handle.read(), (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    except OSError:
        return None


def _shared(path: str, data: bytes, version: tuple) -> DebugFile:
    """One DebugFile per file and version, so its parsed symbols are shared.
    (A checksum of the bytes took 3 ms of gdb's start for its 5 MB of
    libc6-dbg files, issue 19.)"""
    key = (path, version)
    with _lock:
        return _by_path.setdefault(key, DebugFile(path, data))
