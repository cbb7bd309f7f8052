"""What qemu-user says about its guest's memory, read from its own log.

qemu-user runs the guest in its own address space at the guest's addresses
(no guest base on a 64-bit host), so /proc/<qemu>/maps shows the guest's
mappings beside qemu's own binary, host libraries, heap and code buffer,
and with the host's protections (qemu maps guest code r--: it never
executes it natively). Which pages are the guest's, and with which
protections, only qemu knows: it keeps a page-flags table, the one it
answers the guest's own /proc/self/maps from.

Launched with ``-d page,strace,tid -D DIR/log.%d``, qemu 7.2 writes that
table to the thread's log after loading the program and after every guest
mmap (brk growth included) — "page layout changed following ..." and one
``start-end size prot`` row per run of pages — and every guest syscall with
its result. munmap, mprotect and mremap print no table: their strace lines
are applied to the last one here, the way qemu applies them to its own.

The rule for maps_text, then: a host mapping is shown where, and as far as,
it overlaps guest pages, with the guest's protections (split where they
differ) and the host's offset, device, inode and path; the guest stack is
the mapping holding the loader's start_stack, named [stack] as qemu names it
for the guest. What this cannot see: shmat/shmdt segments, and mappings a
second guest thread makes (each thread logs to its own file; startup runs
on one thread).
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from dataclasses import dataclass

from loaderdbg.decode.maps import parse_maps

LAYOUT_MARKER = "page layout changed following"
_ROW = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16}) [0-9a-f]{16} ([r-][w-][x-])$")
_STRACE = re.compile(r"^(\d+) (\w+)\((.*)\) = (.*)$")
_START_STACK = re.compile(r"^start_stack +0x([0-9a-f]+)$")
_PROT_BITS = {"PROT_READ": "r", "PROT_WRITE": "w", "PROT_EXEC": "x"}
# Log bytes read and kept on disk before the file is emptied.
_KEEP_AT_MOST = 1 << 20
# Path column of a maps line: the kernel (and qemu's guest view) pad to 73.
_PATH_COLUMN = 73


@dataclass(frozen=True)
class PageRun:
    """Guest pages [start, end) with one protection, as ``rwx``/``---``."""

    start: int
    end: int
    prot: str


class GuestPages:
    """The guest's valid pages: sorted, disjoint runs of one protection."""

    def __init__(self) -> None:
        self.runs: list[PageRun] = []
        self._starts: list[int] = []

    def replace(self, runs: list[PageRun]) -> None:
        self.runs = sorted(runs, key=lambda run: run.start)
        self._starts = [run.start for run in self.runs]

    def set_range(self, start: int, end: int, prot: str | None) -> None:
        """Give [start, end) one protection, or take it out (None)."""
        kept: list[PageRun] = []
        for run in self.runs:
            if run.end <= start or run.start >= end:
                kept.append(run)
                continue
            if run.start < start:
                kept.append(PageRun(run.start, start, run.prot))
            if run.end > end:
                kept.append(PageRun(end, run.end, run.prot))
        if prot is not None and end > start:
            kept.append(PageRun(start, end, prot))
        kept.sort(key=lambda run: run.start)
        merged: list[PageRun] = []
        for run in kept:
            if merged and merged[-1].end == run.start and merged[-1].prot == run.prot:
                merged[-1] = PageRun(merged[-1].start, run.end, run.prot)
            else:
                merged.append(run)
        self.replace(merged)

    def prot_at(self, addr: int) -> str | None:
        index = bisect.bisect_right(self._starts, addr) - 1
        if index >= 0 and addr < self.runs[index].end:
            return self.runs[index].prot
        return None

    def covers(self, addr: int, size: int) -> bool:
        """Whether every byte of [addr, addr+size) is on a guest page."""
        end = addr + size
        index = bisect.bisect_right(self._starts, addr) - 1
        if index < 0:
            return False
        cursor = addr
        while index < len(self.runs):
            run = self.runs[index]
            if run.start > cursor or run.end <= cursor:
                return False
            cursor = run.end
            if cursor >= end:
                return True
            index += 1
        return False

    def executable(self) -> list[PageRun]:
        return [run for run in self.runs if run.prot[2] == "x"]


class QemuLog:
    """One qemu thread's log file, followed as it grows."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pages = GuestPages()
        self.generation = 0  # bumped whenever the guest's pages change
        self.start_stack: int | None = None
        self.syscall_lines: list[str] = []  # strace lines not yet taken
        self._fd = -1
        self._partial = b""
        self._rows: list[PageRun] | None = None  # a table being read
        self._interrupted = ""  # a syscall line a table cut in two
        # Memory may be read from another thread than the one driving the
        # stub (a TUI's, while the tracer thread is parked at a stop).
        self._lock = threading.Lock()

    def poll(self) -> None:
        """Read what qemu has written since the last poll."""
        with self._lock:
            self._poll()

    def _poll(self) -> None:
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                return
        if os.fstat(self._fd).st_size < os.lseek(self._fd, 0, os.SEEK_CUR):
            os.lseek(self._fd, 0, os.SEEK_SET)  # a writer that appends wrote anew from 0
        chunks = [self._partial]
        while True:
            data = os.read(self._fd, 1 << 20)
            if not data:
                break
            chunks.append(data)
        if os.lseek(self._fd, 0, os.SEEK_CUR) >= _KEEP_AT_MOST:
            # Everything up to here is read: give its blocks back. qemu logs
            # every single step (a SIGTRAP line, ~70 bytes), gigabytes over a
            # long recording; it writes on at its own offset into a sparse file.
            os.ftruncate(self._fd, 0)
        text = b"".join(chunks)
        cut = text.rfind(b"\n") + 1
        self._partial = text[cut:]
        for line in text[:cut].decode("utf-8", "replace").splitlines():
            self._line(line)

    def take_syscall_lines(self) -> list[str]:
        lines, self.syscall_lines = self.syscall_lines, []
        return lines

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _line(self, line: str) -> None:
        if line.startswith("--- ") and self._rows is None:
            return  # a signal taken: qemu logs one per single step (SIGTRAP)
        if self._rows is not None:
            row = _ROW.match(line)
            if row:
                self._rows.append(PageRun(int(row[1], 16), int(row[2], 16), row[3]))
                return
            if line.startswith("start "):
                return  # the table's header
            self.pages.replace(self._rows)
            self.generation += 1
            self._rows = None
        marker = line.find(LAYOUT_MARKER)
        if marker >= 0:
            # A table interrupts the strace line of the mmap (or brk) that
            # caused it: "N mmap(...)page layout changed ...", the table,
            # then " = result" on a line of its own.
            self._interrupted = line[:marker]
            self._rows = []
            return
        if self._interrupted:
            if line.startswith(" = "):
                line = self._interrupted + line
            self._interrupted = ""
        start_stack = _START_STACK.match(line)
        if start_stack:
            self.start_stack = int(start_stack[1], 16)
            return
        call = _STRACE.match(line)
        if call:
            self.syscall_lines.append(line)
            self._syscall(call[2], _split_args(call[3]), call[4])
        elif line[:1].isdigit():
            self.syscall_lines.append(line)  # a call whose result follows a table, a signal…

    def _syscall(self, name: str, args: list[str], result: str) -> None:
        if result.startswith("-"):
            return  # failed: nothing changed
        try:
            if name == "munmap":
                start, length = _number(args[0]), _number(args[1])
                self.pages.set_range(start, start + _page_up(length), None)
            elif name == "mprotect":
                start, length = _number(args[0]), _number(args[1])
                self.pages.set_range(start, start + _page_up(length), _prot(args[2]))
            elif name == "mremap":
                old, old_size, new_size = _number(args[0]), _number(args[1]), _number(args[2])
                prot = self.pages.prot_at(old) or "---"
                new = _number(result.split()[0])
                self.pages.set_range(old, old + _page_up(old_size), None)
                self.pages.set_range(new, new + _page_up(new_size), prot)
            else:
                return
        except (IndexError, ValueError):
            return  # a line we cannot read changes nothing we can tell
        self.generation += 1


def _split_args(text: str) -> list[str]:
    return [arg.strip() for arg in text.split(",")]


def _number(text: str) -> int:
    return int(text, 0)


def _page_up(length: int) -> int:
    return (length + 0xFFF) & ~0xFFF


def _prot(text: str) -> str:
    bits = {_PROT_BITS[name] for name in text.split("|") if name in _PROT_BITS}
    if not bits and text != "PROT_NONE":
        value = _number(text)
        bits = {letter for mask, letter in ((1, "r"), (2, "w"), (4, "x")) if value & mask}
    return "".join(letter if letter in bits else "-" for letter in "rwx")


def guest_maps_text(host_maps: str, pages: GuestPages, start_stack: int | None) -> str:
    """The guest's /proc/self/maps as an aarch64 kernel would print it,
    from qemu's /proc/PID/maps and the guest page table (module docstring)."""
    lines = []
    runs = pages.runs
    starts = [run.start for run in runs]
    for entry in parse_maps(host_maps):
        index = max(bisect.bisect_right(starts, entry.start) - 1, 0)
        while index < len(runs) and runs[index].start < entry.end:
            run = runs[index]
            index += 1
            start, end = max(run.start, entry.start), min(run.end, entry.end)
            if start >= end:
                continue
            path = entry.path
            if start_stack is not None and start <= start_stack < end and not path:
                path = "[stack]"
            offset = entry.offset + (start - entry.start) if entry.inode else 0
            head = (f"{start:08x}-{end:08x} {run.prot}{entry.perms[3]} {offset:08x} "
                    f"{entry.dev} {entry.inode}")
            lines.append(f"{head}{' ' * max(_PATH_COLUMN - len(head), 1)}{path}" if path else f"{head} ")
    return "".join(line + "\n" for line in lines)
