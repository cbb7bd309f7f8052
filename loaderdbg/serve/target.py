"""What the gdb server needs from whatever it serves (a recording or a live
process), and the views both derive the same way from a Snapshot: the auxv
as ld.so sees it, the library list from our link_map walk."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence
from xml.sax.saxutils import quoteattr

from loaderdbg.decode.auxv import AuxvEntry
from loaderdbg.snapshot import Snapshot

SIGINT, SIGTRAP = 2, 5
AT_PHDR, AT_ENTRY = 3, 9
DEBUG_DIRECTORY = "/usr/lib/debug/"
# The widest watchpoint (and `monitor who`) range: the write index is asked
# about every page it covers. A wider one is refused (gdb: cannot insert it).
MAX_WATCHED = 1 << 20
ADDRESS_END = 1 << 64


@dataclass(frozen=True)
class Stop:
    """Why the target is stopped, as a stop reply says it.

    kind: ``signal`` (T packet), ``exited`` (W), ``killed`` (X). ``signal``
    is the Linux number of the signal reported (SIGTRAP for steps and
    breakpoints; the server says it in gdb's numbering); the flags
    add swbreak:/hwbreak:, watch:ADDR and replaylog: to a T reply."""

    kind: str = "signal"
    signal: int = SIGTRAP
    exit_code: int = 0
    swbreak: bool = False
    hwbreak: bool = False
    watch: int | None = None
    no_history: str | None = None  # "begin" | "end": a replay reached an end of its recording
    # A line for gdb's console, sent before the stop reply (an O packet):
    # what the motion did other than gdb asked (a replay's signals).
    console: str | None = None


Interrupted = Callable[[], bool]
# What gdb's resume packet asks each thread it names to receive as it runs
# (C/S, vCont's C/S:TID actions): Linux signal numbers, 0 for none. A
# thread it does not name gets none (gdb's default action is c).
ResumeSignals = Mapping[int, int]
NO_SIGNALS: ResumeSignals = {}


class ServedTarget(Protocol):
    reversible: bool
    attached: bool  # gdb detaches (never kills) on quit
    session: object  # the Session underneath (monitor commands ask it)

    @property
    def pid(self) -> int: ...

    @property
    def position(self) -> int: ...

    @property
    def stop(self) -> Stop: ...

    def registers(self) -> Mapping[str, int] | None: ...  # the current thread's

    def thread_ids(self) -> tuple[int, ...]: ...  # the main thread first

    def thread_name(self, tid: int) -> str | None: ...  # its comm, when known

    def pass_signals(self, signals: frozenset[int]) -> None:
        """The Linux signals a continue delivers without stopping (gdb's QPassSignals)."""

    def program_signals(self, signals: frozenset[int]) -> None:
        """The Linux signals the program may receive when gdb has no say
        (gdb's QProgramSignals): a detach hands on the signal a thread
        stopped with only if it is one of them."""

    @property
    def current_thread(self) -> int: ...

    def select_thread(self, tid: int) -> bool:
        """False: no such thread, or it cannot be made current."""

    def read_memory(self, addr: int, size: int) -> bytes | None: ...

    def add_breakpoint(self, addr: int) -> bool: ...

    def remove_breakpoint(self, addr: int) -> None: ...

    watch_accesses: frozenset[str]  # which of "write", "read", "access" it can watch

    @property
    def arch(self): ...  # the program's ArchTables: which registers gdb is told of

    def add_watchpoint(self, addr: int, size: int, access: str = "write") -> bool:
        """False: it cannot be set (gdb is told E01)."""

    def remove_watchpoint(self, addr: int, size: int, access: str = "write") -> None: ...

    def resume(self, step: bool, reverse: bool, interrupted: Interrupted,
               signals: ResumeSignals = NO_SIGNALS) -> Stop:
        """gdb's step or continue; ``signals``: what the threads gdb names
        receive as they run (the signal a thread stopped with is delivered
        only if gdb asks for it again, as gdbserver does)."""

    def snapshot(self) -> Snapshot: ...

    def auxv(self) -> bytes: ...

    def exec_path(self) -> str: ...

    def maps_text(self) -> str: ...

    def open_file(self, path: str) -> "ServedFile | None": ...

    def monitor(self, command: str, interrupted: Interrupted) -> str: ...  # goto/until look at interrupted()

    def goto(self, step: int) -> Stop: ...

    def run_until(self, until: str): ...  # the StopReason

    def explain(self) -> str: ...

    def kill(self) -> None: ...  # gdb's kill: the process ends, attached or not

    def detach(self) -> None: ...  # gdb's detach, before close: what the program is to receive

    def close(self) -> None: ...


class ServedFile(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


@dataclass(frozen=True)
class BytesFile:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


# -- views from a snapshot -------------------------------------------------------

def auxv_bytes(entries: Sequence[AuxvEntry]) -> bytes:
    """An auxiliary vector as (type, value) words up to and with AT_NULL."""
    out = bytearray()
    for entry in entries:
        out += struct.pack("<QQ", entry.type, entry.value & 0xFFFF_FFFF_FFFF_FFFF)
        if entry.type == 0:
            return bytes(out)
    return bytes(out) + struct.pack("<QQ", 0, 0)


def snapshot_auxv(snapshot: Snapshot) -> bytes:
    """The auxv as it sits on the stack now (after an exec-solib rewrite,
    the one ld.so reads); the kernel's own when the stack cannot be decoded."""
    return auxv_bytes(snapshot.stack.auxv if snapshot.stack is not None else snapshot.auxv_kernel)


def _parse_annex(annex: str) -> dict[str, int]:
    out = {}
    for part in annex.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            try:
                out[key] = int(value, 16)
            except ValueError:
                continue
    return out


def copy_name(path: str, offset: int) -> str:
    """The name gdb gets for an ELF image inside a file at ``offset`` (an
    exec-solib payload): ``PATH@0xOFFSET``, which vFile:open serves."""
    return f"{path}@{offset:#x}" if offset else path


def split_copy_name(name: str) -> tuple[str, int]:
    path, sep, offset = name.rpartition("@0x")
    if sep and path:
        try:
            return path, int(offset, 16)
        except ValueError:
            pass
    return name, 0


def linked_path(snapshot: Snapshot, name: str) -> str | None:
    """The mapped path of the object a link_map entry names (ld.so's
    l_name is what it opened: /lib/x86_64-linux-gnu/libtinfo.so.6, a
    symlink to /usr/lib/x86_64-linux-gnu/libtinfo.so.6.4)."""
    entry = next((e for e in snapshot.link_map if e.name == name), None)
    if entry is None:
        return None
    found = next((o for o in snapshot.objects if o.base == entry.l_addr and o.elf_offset == 0), None)
    return found.path if found is not None else None


def libraries_svr4_xml(snapshot: Snapshot, exec_path: str, annex: str = "") -> bytes:
    """gdb's library-list-svr4 document from our link_map walk, every
    namespace with its ``lmid``.

    The main program's entry is left out, as gdbserver does, when it is the
    file gdb already has (the exec file where the kernel mapped it). When
    ld.so's main program is another image (an exec-solib payload, loaded
    from a memfd or from inside the launcher file), it is listed as a
    library under the name of its bytes (copy_name), so gdb loads its
    symbols at its own address. An annex ``start=LM`` (gdb's incremental
    update at a probe stop) lists the chain from that link_map on, without
    main-lm, as gdbserver does."""
    wanted = _parse_annex(annex)
    start = wanted.get("start", 0)
    entries = list(snapshot.link_map)
    main = next((e for e in entries if e.kind == "main" and e.namespace == 0), None)
    main_is_exec = main is not None and main.l_addr == program_bias(snapshot, exec_path)
    if start:
        at = next((i for i, e in enumerate(entries) if e.address == start), None)
        if at is None:
            entries = []
        else:
            namespace = entries[at].namespace
            entries = [e for e in entries[at:] if e.namespace == namespace]
    head = '<library-list-svr4 version="1.0"'
    if main is not None and main_is_exec and not start:
        head += f' main-lm="{main.address:#x}"'
    lines = [head + ">"]
    for entry in entries:
        name = entry.name
        if entry is main or (main is not None and entry.address == main.address and entry.namespace == 0):
            if main_is_exec:
                continue
            image = next((o for o in snapshot.objects if o.base == entry.l_addr), None)
            if image is None:
                continue
            name = copy_name(image.path, image.elf_offset)
        lines.append(f"<library name={quoteattr(name)} lm=\"{entry.address:#x}\" "
                     f"l_addr=\"{entry.l_addr:#x}\" l_ld=\"{entry.l_ld:#x}\" lmid=\"{entry.namespace:#x}\"/>")
    lines.append("</library-list-svr4>")
    return "\n".join(lines).encode()


def program_bias(snapshot: Snapshot, exec_path: str) -> int:
    """The load bias of the program as the kernel mapped it (0 for a
    fixed-address one): the object holding the kernel's AT_PHDR (AT_ENTRY
    for a program without one), found through the maps' annotations; by
    the exec file's path when the kernel's auxv is not known."""
    kernel = {entry.type: entry.value for entry in snapshot.auxv_kernel}
    address = kernel.get(AT_PHDR) or kernel.get(AT_ENTRY)
    if address is not None:
        name = next((m.object for m in snapshot.maps if m.entry.start <= address < m.entry.end), None)
        found = next((obj for obj in snapshot.objects if obj.name == name), None)
        if found is not None:
            return found.base
    biases = [obj.base for obj in snapshot.objects if obj.path == exec_path and obj.elf_offset == 0]
    return max(biases, default=0)
