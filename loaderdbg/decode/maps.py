"""/proc/PID/maps text -> MapEntry rows.

The text is read by the process layer (or stored in a recording); this module
only parses it.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Sequence

from loaderdbg.decode.errors import DecodeError

DELETED_SUFFIX = " (deleted)"
MEMFD_PREFIX = "/memfd:"

# Paths the kernel names itself, exactly.
NAMED_REGIONS = {
    "": "anon",
    "[stack]": "stack",
    "[heap]": "heap",
    "[vdso]": "vdso",
    "[vvar]": "vvar",
    "[vvar_vclock]": "vvar",
    "[vsyscall]": "vsyscall",
}
# Checked in order after the exact names; first match wins. memfd comes
# before the "(deleted)" rule because a memfd is always shown as deleted.
PATH_PREFIX_KINDS = (
    (MEMFD_PREFIX, "memfd"),
    ("[stack:", "stack"),        # per-thread stacks, kernels before 4.5
    ("[anon:", "anon"),          # prctl(PR_SET_VMA_ANON_NAME)
    ("[anon_shmem:", "anon"),
    ("[", "special"),            # [uprobes], [sigpage], [vectors], ...
)

_LINE = re.compile(
    # Widths are the kernel's (%lx of a 64-bit word, %lu inode): a longer
    # field is not a maps line, and would make int() slow or refuse it.
    r"(?P<start>[0-9a-fA-F]{1,16})-(?P<end>[0-9a-fA-F]{1,16})\s+"
    r"(?P<perms>[r-][w-][x-][ps])\s+"
    r"(?P<offset>[0-9a-fA-F]{1,16})\s+"
    r"(?P<dev>[0-9a-fA-F]{1,8}:[0-9a-fA-F]{1,8})\s+"
    r"(?P<inode>[0-9]{1,20})"
    r"(?:[ \t]+(?P<path>.*))?"
)


@dataclass(frozen=True)
class MapEntry:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def readable(self) -> bool:
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"

    @property
    def executable(self) -> bool:
        return self.perms[2] == "x"

    @property
    def is_private(self) -> bool:
        return self.perms[3] == "p"

    @property
    def is_deleted(self) -> bool:
        return self.path.endswith(DELETED_SUFFIX)

    @property
    def kind(self) -> str:
        """file, memfd, deleted, stack, heap, vdso, vvar, vsyscall, anon or special."""
        return map_kind(self.path)

    @property
    def memfd_name(self) -> str | None:
        """NAME of a "/memfd:NAME (deleted)" mapping (memfd_create's name)."""
        if not self.path.startswith(MEMFD_PREFIX):
            return None
        name = self.path[len(MEMFD_PREFIX):]
        return name[:-len(DELETED_SUFFIX)] if name.endswith(DELETED_SUFFIX) else name

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def format_line(self) -> str:
        """The entry exactly as /proc/PID/maps prints it (fs/proc/task_mmu.c)."""
        # show_vma_header_prefix, then seq_pad to 25 + 6 * sizeof(void *) - 1.
        head = f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} {self.dev} {self.inode} "
        return f"{head:<72} {self.path}" if self.path else head


def map_kind(path: str) -> str:
    kind = NAMED_REGIONS.get(path)
    if kind is not None:
        return kind
    for prefix, prefix_kind in PATH_PREFIX_KINDS:
        if path.startswith(prefix):
            return prefix_kind
    if path.endswith(DELETED_SUFFIX):
        return "deleted"
    if path.startswith("/"):
        return "file"
    return "special"  # anon_inode:[...], and anything newer kernels invent


def parse_maps(text: str) -> tuple[MapEntry, ...]:
    """Every line of /proc/PID/maps. Blank lines are skipped; a malformed one
    raises DecodeError naming its 1-based line number."""
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise DecodeError(f"maps line {number}: cannot parse {line[:120]!r}")
        start, end = int(match["start"], 16), int(match["end"], 16)
        if end < start:
            raise DecodeError(f"maps line {number}: end {end:#x} below start {start:#x}")
        entries.append(MapEntry(
            start=start,
            end=end,
            perms=match["perms"],
            offset=int(match["offset"], 16),
            dev=match["dev"],
            inode=int(match["inode"]),
            path=match["path"] or "",
        ))
    return tuple(entries)


def find_mapping(maps: Sequence[MapEntry], addr: int) -> MapEntry | None:
    """The mapping containing addr. maps must be sorted by start, as the
    kernel prints them and parse_maps returns them."""
    index = bisect.bisect_right(maps, addr, key=lambda entry: entry.start) - 1
    if index >= 0 and maps[index].contains(addr):
        return maps[index]
    return None
