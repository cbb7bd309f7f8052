"""Source lines beside instructions: which file and line a runtime address
came from (DWARF of the object or of its separate debug file), and that
line's text when the source file is on this machine.

Where a source file is looked for, as gdb does with its default source path
($cdir:$cwd) plus the directories the user names: the recorded path itself
when absolute, the compilation directory joined with it, then each given
directory joined with the path, with the compilation directory and the
path, and with each tail of the path, longest first (gdb's substitute-path
idea: /build/glibc/elf/rtld.c is found as elf/rtld.c under a glibc checkout
given as the directory).
"""

from __future__ import annotations

import functools
import os
import posixpath
from dataclasses import dataclass
from typing import Sequence

from loaderdbg.analysis.symbols import SymbolTable
from loaderdbg.decode.dwarf_lines import SourceLine

# A source file bigger than this is not a source file worth showing.
_MAX_SOURCE_BYTES = 16 << 20


def line_at(symbols: SymbolTable, addr: int) -> SourceLine | None:
    """file:line of a runtime code address, or None (no object there, or no
    line information for it)."""
    obj = symbols.object_at(addr)
    if obj is None:
        return None
    return obj.info.line_for(obj.link(addr))


def source_candidates(line: SourceLine, directories: Sequence[str] = ()) -> tuple[str, ...]:
    """Paths where line's file may be, in the order they are tried."""
    file, comp_dir = line.file, line.comp_dir or ""
    out: list[str] = []
    if file.startswith("/"):
        out.append(file)
    elif comp_dir.startswith("/"):
        out.append(posixpath.join(comp_dir, file))
    searched = [*directories, os.getcwd()]
    for directory in searched:
        if not file.startswith("/"):
            out.append(posixpath.join(directory, file))
            if comp_dir and not comp_dir.startswith("/"):
                out.append(posixpath.join(directory, comp_dir, file))
        parts = [part for part in file.split("/") if part not in ("", ".")]
        for start in range(len(parts)):
            out.append(posixpath.join(directory, *parts[start:]))
    seen: dict[str, None] = {}
    for path in out:
        seen.setdefault(posixpath.normpath(path), None)
    return tuple(seen)


def find_source(line: SourceLine, directories: Sequence[str] = ()) -> str | None:
    """The first existing regular file among source_candidates."""
    for path in source_candidates(line, directories):
        if os.path.isfile(path):
            return path
    return None


@dataclass(frozen=True)
class SourceFile:
    """A found source file: where, and its lines (without newlines, decoded
    as UTF-8 with undecodable bytes replaced; not yet escaped for a
    terminal)."""

    path: str
    lines: tuple[str, ...]

    def line(self, number: int) -> str | None:
        """Line ``number`` (1-based), or None past the file's end."""
        return self.lines[number - 1] if 0 < number <= len(self.lines) else None


def source_file(line: SourceLine, directories: Sequence[str] = ()) -> SourceFile | None:
    """The file line came from, read (cached while unchanged), or None when
    it is not found, unreadable or too big to be a source file."""
    path = find_source(line, directories)
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    lines = _file_lines(path, stat.st_mtime_ns, stat.st_size)
    return None if lines is None else SourceFile(path, lines)


def source_text(line: SourceLine, directories: Sequence[str] = ()) -> str | None:
    """The text of the line (without its newline), when its file is found
    and has that many lines."""
    found = source_file(line, directories)
    return None if found is None else found.line(line.line)


@functools.lru_cache(maxsize=64)
def _file_lines(path: str, mtime_ns: int, size: int) -> tuple[str, ...] | None:
    """A source file's lines, cached while it is unchanged (mtime, size)."""
    if size > _MAX_SOURCE_BYTES:
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_SOURCE_BYTES + 1)
    except OSError:
        return None
    return tuple(data.decode("utf-8", "replace").splitlines())
