"""A recording as a raw target (process/raw_target.py), at one position.

What a stop state reads of a live program — registers in the arch's
NT_PRSTATUS layout, memory, the maps text, /proc's auxv, the bytes of a
mapped file — comes here from the recording at the replay session's
position, so the one StopState decodes a replayed stop exactly as it does
a live one. A recording cannot run: it is moved by its session (goto, step,
reverse), so the target's own motion and breakpoints refuse or do nothing.
"""

from __future__ import annotations

import bisect
from typing import NoReturn

from loaderdbg.arch import ArchTables
from loaderdbg.decode.maps import MapEntry
from loaderdbg.errors import UsageError
from loaderdbg.record.format import Recording
from loaderdbg.stop_state import KernelImage


class RecordedTarget:
    """``memory`` is the session's ReplayMemory (seeked with the session);
    ``registers`` returns the registers at the session's position."""

    def __init__(self, recording: Recording, arch: ArchTables, memory, registers, position, pid: int | None,
                 images: list[tuple[int, KernelImage]]) -> None:
        """``images``: (position, KernelImage) of each image the recording
        runs, in order: the first at 0, then one at each exec."""
        self.recording = recording
        self._arch = arch
        self._memory = memory
        self._registers = registers
        self._position = position
        self._pid = pid
        self._images = images
        self._image_starts = [start for start, _ in images]
        self.breakpoints: dict[int, int] = {}  # a recording's bytes are never patched

    @property
    def arch(self) -> ArchTables:
        return self._arch

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def current_tid(self) -> int | None:
        return self._pid

    @property
    def maps_pid(self) -> None:
        return None  # no process: every read comes from the recording

    @property
    def alive(self) -> bool:
        return True  # the recording holds a state at every position, its last included

    def registers_raw(self) -> bytes:
        return self._registers()

    def read_memory(self, addr: int, size: int) -> bytes | None:
        return self._memory.read(addr, size)

    def maps_text(self) -> str:
        return self.recording.maps_text(self._position())

    def maps_version(self) -> int:
        """Equal at two positions whose maps are the same."""
        return self.recording.maps_version(self._position())

    def kernel_image(self) -> KernelImage:
        """The image the process runs at the position."""
        index = bisect.bisect_right(self._image_starts, self._position()) - 1
        return self._images[max(index, 0)][1]

    def read_proc(self, name: str) -> bytes | None:
        return self.kernel_image().auxv if name == "auxv" else None

    def mapped_file(self, entry: MapEntry) -> bytes | None:
        return self.recording.file_bytes(entry.dev, entry.inode, entry.path)

    # -- a recording does not run or change -------------------------------------
    def set_registers_raw(self, raw: bytes) -> None:
        raise UsageError("a recording cannot be changed: it is what the program did")

    def write_memory(self, addr: int, data: bytes) -> None:
        raise UsageError("a recording cannot be changed: it is what the program did")

    def insert_breakpoint(self, addr: int) -> bool:
        return True  # a replay stops at an address by searching the recorded pcs

    def remove_breakpoint(self, addr: int) -> None:
        return None

    def revalidate_breakpoints(self) -> None:
        return None

    def step(self) -> NoReturn:
        raise UsageError("a recording is moved by its replay session (goto, step, reverse-step)")

    def resume(self, *, syscalls: bool) -> NoReturn:
        raise UsageError("a recording is moved by its replay session (continue, reverse-continue)")

    def kill(self) -> None:
        return None

    def close(self) -> None:
        return None
