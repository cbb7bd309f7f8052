"""The startup observer: what stops mean, written once for every source.

A live run (`Inferior`), the recorder (`record/milestones.py`) and any other
target that implements the raw target protocol feed their stops here —
syscall entries and exits, arrival at a pc, breakpoints, signals, exec,
exit — and get back events, milestones and the reason a run ends. The
exec-solib heuristics live here and only here.

How ``ldso-entry`` is found without assuming where ld.so lives: at the first
stop we look at which object the kernel entered. If it is an interpreter
(an ordinary dynamic program) we are already there. Otherwise we keep
watching syscalls; when an mmap maps an interpreter file at offset 0 (the
exec-solib bootstrap maps ld.so by hand) its entry gets a breakpoint, which
fires when the hand-off jump lands. ``entry`` is AT_ENTRY as ld.so will read
it: taken from the stack when ld.so starts, after any auxv rewrite.

The observer reads the program through two collaborators:
- the raw target (`process/raw_target.py`, plus `ObservedTarget` below):
  registers, breakpoints, the signal to deliver, what the kernel said about
  a syscall or event stop;
- the stop state (`ProcessView` below): memory as the program sees it, maps,
  objects, symbols and relocation states at this stop.
"""

from __future__ import annotations

import functools
import os
import signal as _signal
from dataclasses import dataclass, field
from typing import Protocol

from loaderdbg.analysis.address_space import AddressSpace
from loaderdbg.analysis.link_map import NO_LINK_MAP, LinkMapView, link_map_changes, read_link_map
from loaderdbg.analysis.objects import ElfCache, MappedObject
from loaderdbg.arch import ArchTables
from loaderdbg.decode.auxv import AuxvEntry
from loaderdbg.decode.siginfo import decode_siginfo, describe_siginfo
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import MapEntry
from loaderdbg.decode.stack import InitialStack, decode_initial_stack
from loaderdbg.decode.syscalls import MAPPING_SYSCALLS, decode_syscall, syscall_string_args
from loaderdbg.process.ptrace import SYSCALL_INFO_ENTRY, SYSCALL_INFO_EXIT, SyscallInfo
from loaderdbg.process.stops import Stop, StopKind
from loaderdbg.process.tracee import FAULT_SIGNALS
from loaderdbg.session import Event, StopReason
from loaderdbg.snapshot import SyscallCall
from loaderdbg import targets as reasons
from loaderdbg.targets import Target

SYSTEM_INTERPRETERS = ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-musl-x86_64.so.1",
                       "/lib/ld-linux-aarch64.so.1", "/lib/ld-musl-aarch64.so.1")
STOPPING_SIGNALS = FAULT_SIGNALS | {_signal.SIGABRT}
ROUTINE_EVENTS = frozenset({"syscall", "signal"})
MAX_ROUTINE_EVENTS = 100_000

# The name r_brk is armed under in the milestone breakpoints: unlike the
# milestones it is not one-shot.
LINK_MAP_HOOK = "r-brk"


@dataclass
class LdsoInfo:
    path: str
    base: int
    entry: int


@dataclass
class _PendingSyscall:
    number: int
    args: tuple[int, ...]
    strings: dict[int, bytes] = field(default_factory=dict)
    fd_path: str | None = None


class ObservedTarget(Protocol):
    """What the observer asks of the raw target beyond registers and memory."""

    @property
    def pid(self) -> int: ...

    @property
    def pc(self) -> int: ...

    breakpoints: dict[int, int]  # address -> original byte (or only remembered)
    pending_signal: int  # delivered on the next resume
    exit_event: bool  # whether an exit event stops the process before it ends
    sysroot: str  # prefix under which the program's absolute paths are found here ("" but for qemu-user)

    def insert_breakpoint(self, addr: int) -> bool: ...

    def remove_breakpoint(self, addr: int) -> None: ...

    def syscall_info(self) -> SyscallInfo: ...  # the kernel's view of a syscall stop

    def event_message(self) -> int | None: ...  # PTRACE_GETEVENTMSG at an event stop

    def release_child(self, child: int, *, shares_memory: bool) -> None: ...

    def fd_path(self, fd: int) -> str | None: ...  # what the program's fd names

    def thread_count(self) -> int: ...

    def untraced_threads(self) -> int: ...  # threads an int3 we plant could kill

    def catches(self, signal: int, tid: int) -> bool | None: ...  # a handler of the program's runs (None: unknown)


class ProcessView(Protocol):
    """The stop state the observer reads (Inferior's, or the recorder's)."""

    arch: ArchTables
    elf_cache: ElfCache
    step_count: int
    step_exact: bool

    @property
    def alive(self) -> bool: ...

    def read_memory(self, addr: int, size: int) -> bytes | None: ...

    def read_prefix(self, addr: int, size: int) -> bytes: ...

    def address_space(self) -> AddressSpace: ...

    def object_at(self, addr: int) -> MappedObject | None: ...

    def objects(self) -> tuple[MappedObject, ...]: ...

    def relocation_states(self, obj: MappedObject): ...

    def initial_stack(self) -> InitialStack | None: ...

    def maps(self) -> tuple[MapEntry, ...]: ...

    def kernel_auxv(self) -> tuple[AuxvEntry, ...]: ...

    def mappings_changed(self) -> None: ...  # maps are stale; breakpoints may need arming

    def invalidate(self) -> None: ...  # maps are stale

    # The new image's kernel stack pointer, auxv and entry pc (kernel_sp,
    # entry_pc), read at its exec stop.
    kernel_sp: int
    entry_pc: int

    def exec_landed(self) -> None: ...

    def release_breakpoint(self, addr: int) -> None: ...  # ours is done there (a user's may stay)


@functools.lru_cache(maxsize=4)
def _system_interpreters(sysroot: str | None) -> frozenset[str]:
    """The system's ld.so files, as real paths: the same for every launch in
    a process (26 lstat calls, 0.2 ms, each time; issue 19)."""
    paths = set()
    for candidate in SYSTEM_INTERPRETERS:
        paths.add(os.path.realpath(candidate))
        if sysroot:
            paths.add(os.path.realpath(sysroot + candidate))
    return frozenset(paths)


class StartupObserver:
    def __init__(self, target: ObservedTarget, view: ProcessView, *, attached: bool = False,
                 kernel_stack: InitialStack | None, arms_main_before_running: bool = False) -> None:
        """``arms_main_before_running``: the driver calls before_running()
        before the program runs again, and main's breakpoint and the link
        map's r_brk hook are armed then rather than at AT_ENTRY (a stop at
        AT_ENTRY needs neither: ~1 ms of the demo's run to entry was finding
        main, ~1.4 ms parsing the program to find r_debug; issue 19)."""
        self.target = target
        self.view = view
        self.arch = view.arch
        self.attached = attached
        self.events: list[Event] = []
        self.syscall_count = 0
        self.routine_events = 0  # syscall and signal events, kept up to MAX_ROUTINE_EVENTS
        self.calls: list[SyscallCall] = []  # raw arguments of each syscall, for syscalls[]
        self.ldso: LdsoInfo | None = None
        self.at_entry: int | None = None
        self.main_address: int | None = None
        self.statically_linked: str | None = None  # name of a program no ld.so will run
        self.caught_from: int | None = None
        # The syscall each thread is inside (entered, not yet returned), by
        # tid: threads make syscalls at the same time.
        self._pending_syscalls: dict[int, _PendingSyscall] = {}
        self._milestone_bps: dict[int, str] = {}
        self._link_map: LinkMapView = NO_LINK_MAP
        self._arms_main_before_running = arms_main_before_running
        self._main_due = False  # AT_ENTRY reached, main's breakpoint not armed yet
        self._link_map_due = False  # AT_ENTRY reached, r_brk not watched yet
        self._seen: set[str] = set()
        self.here: set[str] = set()  # milestones reached at the current stop
        self._kernel_stack = kernel_stack
        self._interpreters = self._interpreter_paths()
        self._self_relocator: MappedObject | None = None
        self._startup_checks_done = False
        # Raw bytes behind the last decode of the argv/envp/auxv vectors and
        # of the self-relocator's relocated segments: startup_checks runs
        # after every syscall, and decoding is only worth it on a change.
        self._stack_seen: bytes | None = None
        # The kernel's stack area, pointers and the strings above them, as
        # kernel_stack was decoded from it: read whole at each check.
        self._stack_top = None if kernel_stack is None else _strings_top(kernel_stack)
        self._kernel_stack_raw = self._read_stack_area()
        self._relocator_seen: bytes | None = None
        self._relocated_ranges: tuple[tuple[int, int], ...] | None = None  # the relocator's, once known
        self._checked_stack: InitialStack | None = None  # decoded by the last startup_checks, at its stop

    # -- the first stop ------------------------------------------------------------
    def _interpreter_paths(self) -> frozenset[str]:
        # A qemu-user guest's /lib is the target's sysroot on this machine
        # where the file is there, else the host's (qemu's -L rule): ld.so
        # is mapped (and opened) from there, PT_INTERP names /lib.
        sysroot = self.target.sysroot
        paths = set(_system_interpreters(sysroot))
        for obj in self.view.objects():
            if obj.info.interp:
                paths.add(os.path.realpath(obj.info.interp))
                if sysroot:
                    paths.add(os.path.realpath(sysroot + obj.info.interp))
        override = os.environ.get("EXECSOLIB_LDSO")
        if override:
            paths.add(os.path.realpath(override))
        return frozenset(paths)

    def first_stop(self) -> None:
        """The program at its first instruction: which object the kernel
        entered tells where ld.so's entry and AT_ENTRY will come from."""
        pc = self.target.pc
        self.record("milestone", "kernel-entry", f"execve → pc {pc:#x}", address=pc)
        entered = self.view.object_at(pc)
        kernel_auxv = {e.name: e.value for e in self.view.kernel_auxv()}
        if entered is not None and self._is_interpreter(entered):
            self.ldso = LdsoInfo(entered.path, entered.base, entered.base + entered.info.entry)
            self.record("milestone", "ldso-mapped", f"{entered.path} at {entered.base:#x} (by the kernel)",
                        address=entered.base)
            self.record("milestone", "ldso-entry", f"kernel started in ld.so at {pc:#x}", address=pc)
            self._set_at_entry(kernel_auxv.get("AT_ENTRY"))
        elif entered is not None and entered.info.interp is None:
            # Static, static-pie, or a self-loading object such as exec-solib.
            self._self_relocator = entered if self._has_relative(entered) else None
            if not self._looks_self_loading(entered):
                self.statically_linked = entered.name
                self._set_at_entry(kernel_auxv.get("AT_ENTRY"))
        if self.at_entry == pc:
            self.record("milestone", "at-entry", f"AT_ENTRY {self.at_entry:#x}", address=self.at_entry)
            # A static program starts at AT_ENTRY: main is armed now, as at
            # a dynamic program's AT_ENTRY (_milestone_hit), or a continue
            # past it would never note it.
            self._arm_main_at_entry()

    def attached_late(self, reason: StopReason) -> None:
        """Startup is behind an attached process: read what ld.so was given."""
        stack = self._kernel_stack
        auxv = {e.name: e.value for e in (stack.auxv if stack else self.view.kernel_auxv())}
        base = auxv.get("AT_BASE")
        ldso = next((o for o in self.view.objects() if base and o.base == base and o.elf_offset == 0), None)
        if ldso is not None:
            self.ldso = LdsoInfo(ldso.path, ldso.base, ldso.base + ldso.info.entry)
        self.at_entry = auxv.get("AT_ENTRY")
        self._seen.update({"kernel-entry", "ldso-entry", "at-entry"})
        self._startup_checks_done = True
        self.record("milestone", "attach", reason.description, address=self.target.pc, exact=False)
        self._watch_link_map()

    def caught(self, parent: int) -> None:
        """This process is a child caught from a running parent at its exec."""
        self.caught_from = parent
        self.record("milestone", "caught", f"child {self.target.pid} of {parent} caught at exec",
                    address=self.target.pc)

    def _looks_self_loading(self, obj: MappedObject) -> bool:
        """A shared object run directly (ET_DYN, no PT_INTERP, not a
        static-pie): an exec-solib that will set up a program for ld.so
        itself, so AT_ENTRY is only known once it jumps to ld.so."""
        return obj.info.type == "ET_DYN" and not obj.info.is_pie

    def _has_relative(self, obj: MappedObject) -> bool:
        return any(name.endswith("_RELATIVE") for name in obj.info.relocation_columns.type_names)

    def _is_interpreter(self, obj: MappedObject) -> bool:
        return os.path.realpath(obj.path) in self._interpreters and obj.elf_offset == 0

    def _set_at_entry(self, value: int | None) -> None:
        if not value or self.at_entry is not None:
            return
        self.at_entry = value
        if value != self.target.pc:
            self.arm(value, "at-entry")

    def arm(self, addr: int, milestone: str) -> None:
        self._milestone_bps[addr] = milestone
        self.target.insert_breakpoint(addr)  # may fail until mapped; re-armed after mapping syscalls

    # -- events --------------------------------------------------------------
    def record(self, kind: str, name: str, detail: str = "", *, address: int | None = None,
               exact: bool | None = None) -> None:
        view = self.view
        if kind == "milestone":
            if name in self._seen and name not in ("crash", "exit"):
                return
            self._seen.add(name)
            self.here.add(name)
        elif kind in ROUTINE_EVENTS:
            # A long run (attached, or to the exit of a busy program) makes
            # syscalls and gets signals without end: memory must not follow.
            self.routine_events += 1
            if self.routine_events > MAX_ROUTINE_EVENTS:
                if self.routine_events == MAX_ROUTINE_EVENTS + 1:
                    self.events.append(Event(view.step_count if view.step_exact else -1, "limit", "events",
                                             f"more than {MAX_ROUTINE_EVENTS} syscall and signal events: "
                                             "later ones are counted, not kept", None, False))
                return
        self.events.append(Event(view.step_count if view.step_exact else -1, kind, name, detail,
                                 address, view.step_exact if exact is None else exact))

    def milestone_seen(self, name: str) -> bool:
        return name in self._seen

    @property
    def milestone_addresses(self) -> dict[int, str]:
        """Addresses whose arrival is a milestone (grows as ld.so gets mapped
        and AT_ENTRY becomes known); a stepper that writes no int3s watches pc
        against it. Read-only for callers."""
        return self._milestone_bps

    def pending_syscall_text(self, tid: int | None = None) -> str:
        """strace's `name(args)` of the syscall whose entry thread ``tid``
        (default: the current one) is stopped at."""
        pending = self._pending_syscalls.get(self._thread(tid))
        if pending is None:
            return "?"
        return decode_syscall(pending.number, pending.args, None, self.arch, pending.strings).call_text()

    def _thread(self, tid: int | None) -> int:
        return self.target.current_tid if tid is None else tid

    def in_syscall(self, tid: int | None = None) -> bool:
        """Whether thread ``tid`` (default: the current one) is inside a
        syscall whose entry was seen and whose return was not yet."""
        pending = self._pending_syscalls
        return bool(pending) and self._thread(tid) in pending

    def syscalls_cut_short(self) -> None:
        """The process is ending: each syscall a thread is inside never
        returns (strace's `= ?`)."""
        for tid in list(self._pending_syscalls):
            self.syscall_exit(None, tid)

    # -- syscalls ----------------------------------------------------------
    def syscall_entry(self, number: int, args: tuple[int, ...], tid: int | None = None) -> None:
        """Thread ``tid`` (default: the current one) enters a syscall."""
        strings = {}
        for addr in syscall_string_args(number, args, self.arch):
            if addr:
                raw = self.view.read_prefix(addr, 256)
                nul = raw.find(b"\0")
                strings[addr] = raw[:nul] if nul >= 0 else raw
        pending = _PendingSyscall(number, args, strings)
        name = self.arch.syscall_names.get(number, "")
        if name == "mmap" and self.ldso is None and args[5] == 0 and 0 <= args[4] < (1 << 31):
            # Only a file mapped from its start may be ld.so mapped by hand
            # (syscall_exit), and only until ld.so is known: a readlink of
            # /proc/PID/fd/N for every other mmap was wasted.
            pending.fd_path = self.target.fd_path(args[4])
        self._pending_syscalls[self._thread(tid)] = pending

    def syscall_exit(self, result: int | None, tid: int | None = None) -> None:
        """Thread ``tid``'s (default: the current one's) syscall returns
        ``result`` (None: it never does)."""
        pending = self._pending_syscalls.pop(self._thread(tid), None)
        if pending is None:
            return
        self.syscall_count += 1
        view = self.view
        call = decode_syscall(pending.number, pending.args, result, self.arch, pending.strings)
        if self.routine_events < MAX_ROUTINE_EVENTS:  # the event record keeps next
            self.calls.append(SyscallCall(view.step_count if view.step_exact else -1, call.number,
                                          call.name, tuple(pending.args), call.result, call.errno_name))
        self.record("syscall", call.name, call.format())
        if call.name in MAPPING_SYSCALLS:
            view.mappings_changed()
        if call.name == "memfd_create" and result is not None and result >= 0:
            label = pending.strings.get(pending.args[0], b"").decode("utf-8", "replace")
            self.record("milestone", "memfd-create", f'memfd "{label}" = fd {result}')
        if call.name == "mmap" and self.ldso is None and pending.fd_path and result is not None \
                and result >= 0 and pending.args[5] == 0:
            self._maybe_ldso_mapped(pending.fd_path, result)
        self.startup_checks()

    def _maybe_ldso_mapped(self, path: str, address: int) -> None:
        if os.path.realpath(path) not in self._interpreters:
            return
        obj = self.view.object_at(address)
        if obj is None or obj.elf_offset != 0:
            return
        self.ldso = LdsoInfo(obj.path, obj.base, obj.base + obj.info.entry)
        self.record("milestone", "ldso-mapped", f"{obj.path} at {obj.base:#x}", address=obj.base)
        self.arm(self.ldso.entry, "ldso-entry")

    # -- rewrites made without a syscall ------------------------------------------
    def startup_checks(self) -> None:
        """Notice in-memory rewrites the bootstrap makes without a syscall.
        Runs after every syscall until AT_ENTRY, so it first compares raw
        bytes with what it saw last time and decodes only on a change."""
        self._checked_stack = None
        if self._startup_checks_done or not self.view.alive:
            return
        relocator = self._self_relocator
        if relocator is not None and not self.milestone_seen("self-relocation-done"):
            raw = self._relocated_bytes(relocator)
            if raw is None or raw != self._relocator_seen:
                self._relocator_seen = raw
                states = self.view.relocation_states(relocator)
                relative = [s for s in states if s.type_name.endswith("_RELATIVE")]
                if relative and all(s.state == "applied" for s in relative):
                    self.record("milestone", "self-relocation-done",
                                f"{len(relative)} RELATIVE relocations of {relocator.name} applied",
                                exact=False)
        kernel = self._kernel_stack
        if kernel is not None and not (self.milestone_seen("argv-rewritten")
                                       and self.milestone_seen("auxv-rewritten")):
            whole = self._read_stack_area()
            pointers = kernel.end - kernel.sp
            raw = whole[kernel.argv_address - kernel.sp:pointers] if whole is not None else \
                self.view.read_memory(kernel.argv_address, kernel.end - kernel.argv_address)
            if raw is None or raw != self._stack_seen:
                first, self._stack_seen = self._stack_seen is None, raw
                if not (first and whole is not None and self._kernel_stack_raw is not None
                        and whole[:pointers] == self._kernel_stack_raw[:pointers]):
                    # (argc and the vectors as the kernel left them: the
                    # comparison of pointers and auxv values finds nothing.)
                    self._checked_stack = self._stack_now(whole)
                    self._compare_stacks(kernel, self._checked_stack)
        if self.milestone_seen("at-entry"):
            self._startup_checks_done = True

    def _compare_stacks(self, kernel: InitialStack, now: InitialStack | None) -> None:
        if now is None:
            return
        if not self.milestone_seen("argv-rewritten") and \
                [a.pointer for a in kernel.argv] != [a.pointer for a in now.argv]:
            changed = [i for i, (a, b) in enumerate(zip(kernel.argv, now.argv)) if a.pointer != b.pointer]
            detail = ", ".join(f"argv[{i}] → {now.argv[i].text!r}" for i in changed)
            self.record("milestone", "argv-rewritten", detail, exact=False)
        if not self.milestone_seen("auxv-rewritten"):
            before = {e.type: e.value for e in kernel.auxv}
            changed = [e for e in now.auxv if before.get(e.type) != e.value]
            if changed:
                self.record("milestone", "auxv-rewritten",
                            ", ".join(f"{e.name}={e.value:#x}" for e in changed), exact=False)

    def _stack_now(self, whole: bytes | None = None) -> InitialStack | None:
        """The view's initial_stack(), decoded from one read of the kernel's
        stack area (``whole``, read just now, or read here) instead of a
        read per pointer and per string chunk; what lies outside it (a
        pointer rewritten elsewhere) is read from the view as before."""
        kernel = self._kernel_stack
        if kernel is None:
            return self.view.initial_stack()
        if whole is None and self.view.alive:
            whole = self._read_stack_area()
        return _decode_stack(self.view, kernel.sp, whole)

    def _read_stack_area(self) -> bytes | None:
        """[sp, top of the strings) of the kernel's stack area, else the
        pointer block alone, else None."""
        kernel = self._kernel_stack
        if kernel is None:
            return None
        return self.view.read_memory(kernel.sp, self._stack_top - kernel.sp) or \
            self.view.read_memory(kernel.sp, kernel.end - kernel.sp)

    def _relocated_bytes(self, obj: MappedObject) -> bytes | None:
        """The segments holding obj's relocation slots, raw: while they are
        unchanged, so is every relocation's state."""
        ranges = self._relocated_ranges
        if ranges is None:
            # Which segments hold slots is the file's: worked out once, not
            # at every syscall (a walk over every relocation per segment).
            offsets = obj.info.relocation_columns.offsets
            ranges = self._relocated_ranges = tuple(
                (obj.base + seg.vaddr, seg.memsz) for seg in obj.info.load_segments()
                if any(seg.contains_vaddr(o) for o in offsets))
        chunks = []
        for addr, size in ranges:
            data = self.view.read_memory(addr, size)
            if data is None:
                return None
            chunks.append(data)
        return b"".join(chunks)

    def exec_happened(self, former_tid: int | None = None) -> None:
        """After an execve: the startup checks compare the old image's stack,
        and milestone addresses belong to the old image; an int3 written
        there now would land in the new program's code. The thread whose
        execve succeeded (``former_tid``, the exec event's message) runs on
        as the process (its tid is the pid now); every other thread is gone,
        its syscall unfinished, another execve racing it included."""
        pending = self._pending_syscalls
        names = self.arch.syscall_names
        execer = former_tid if former_tid in pending else \
            next((tid for tid, call in pending.items() if names.get(call.number) in ("execve", "execveat")), None)
        exec_call = pending.pop(execer) if execer is not None else None
        self.syscalls_cut_short()
        if exec_call is not None:
            pending[self.target.pid] = exec_call
        self._startup_checks_done = True
        self._milestone_bps.clear()
        # Nothing to re-arm: the old image's addresses mean nothing now. Its
        # stack, auxv and entry are the new image's (argv, envp, auxv views).
        self.view.exec_landed()
        self._kernel_stack = kernel_stack(self.view, self.view.kernel_sp)

    # -- main ------------------------------------------------------------------
    def program_object(self) -> MappedObject | None:
        return self.view.address_space().program_object(self.at_entry, self.view.entry_pc)

    def ldso_object(self) -> MappedObject | None:
        return None if self.ldso is None else self.view.address_space().object_loaded_at(self.ldso.base)

    def resolve_main(self) -> int | None:
        """Where main is (its symbol, else what the entry code passes to
        __libc_start_main, as gdb finds it in a stripped program), armed as
        the `main` milestone; None until the program is mapped and AT_ENTRY
        known, or when its code says nothing about main."""
        if self.main_address is not None:
            return self.main_address
        program = self._main_program()
        if program is None:
            return None
        data = self.view.elf_cache.object_bytes(program)
        if data is None:
            return None
        from loaderdbg.analysis.entry_code import find_main  # not at import: `inspect --at entry` never asks
        vaddr = find_main(program.info, data, self.arch)
        if vaddr is None:
            return None
        self.main_address = program.runtime(vaddr)
        self.arm(self.main_address, "main")
        return self.main_address

    def _arm_main_at_entry(self) -> None:
        """At AT_ENTRY: main becomes a milestone whatever the target (not
        while threads we do not trace run: they would die on its int3)."""
        if self.attached or not self.target.untraced_threads():
            if self._arms_main_before_running:
                self._main_due = True
            else:
                self.resolve_main()

    def before_running(self) -> None:
        """The program is about to run again (step or continue): what waits
        for that is armed now."""
        if self._link_map_due:
            self._link_map_due = False
            self._watch_link_map()
        if self._main_due:
            self._main_due = False
            self.resolve_main()

    def _main_program(self) -> MappedObject | None:
        return None if self.at_entry is None else self.view.object_at(self.at_entry)

    def main_unreachable(self) -> str | None:
        """Before running to main: why it cannot be found, when the program
        is already mapped and its entry code says nothing about main."""
        program = self._main_program()
        data = None if program is None else self.view.elf_cache.object_bytes(program)
        if program is None or data is None or self.resolve_main() is not None:
            return None
        from loaderdbg.analysis.entry_code import main_not_found_reason
        return main_not_found_reason(program.path, program.info, data, self.arch)

    # -- stops -------------------------------------------------------------------
    def observe(self, stop: Stop, *, target: Target | None, stepping: bool,
                while_stopped: bool = False) -> tuple[bool, StopReason | None]:
        """Record what a stop means. Returns (target reached, final reason)
        where a final reason ends a run (exit, crash, target syscall…).
        ``while_stopped``: the process died while parked at a stop, not
        during a step or continue."""
        want = target.kind if target else None
        raw = self.target
        view = self.view
        if not stop.alive:
            raw.breakpoints.clear()
            self.syscalls_cut_short()
            if stop.kind is StopKind.EXITED:
                reason = reasons.exited(target, stop.exit_code)
            else:
                if while_stopped:
                    where = "while stopped" + (f" at step {view.step_count}" if view.step_exact else "")
                else:
                    where = f"at step {view.step_count}" if view.step_exact else "after a continue"
                reason = reasons.killed(target, stop.signal_name, where)
            self.record("milestone", "exit", reason.description)
            return False, reason
        if stop.kind is StopKind.SYSCALL:
            info = raw.syscall_info()
            if info.op == SYSCALL_INFO_ENTRY:
                self.syscall_entry(info.number, info.args, stop.pid)
                if want == "syscall":
                    name = self.arch.syscall_names.get(info.number, str(info.number))
                    if target.name in (None, name):
                        return True, reasons.syscall_entry(target, self.pending_syscall_text(stop.pid))
                if want == "exit" and not raw.exit_event \
                        and self.arch.syscall_names.get(info.number) == "exit_group":
                    # No exit event to stop at: the process is still here now.
                    return True, reasons.about_to_exit(target, info.args[0] & 0xFF)
            elif info.op == SYSCALL_INFO_EXIT:
                self.syscall_exit(info.return_value, stop.pid)
            return False, None
        if stop.kind is StopKind.EVENT:
            name = stop.event_name
            if name == "exit":
                status = raw.event_message()
                self.syscall_exit(None, stop.pid)  # this thread's syscall never returns
                if want == "exit" and status is not None and os.WIFEXITED(status):
                    return True, reasons.about_to_exit(target, os.WEXITSTATUS(status))
                # Dying from a signal (SIGKILL included): let it finish dying,
                # the next stop reports how.
            elif name in ("fork", "vfork"):
                child = raw.event_message()
                raw.release_child(child, shares_memory=name == "vfork")
                self.record("fork", name, f"child {child} runs on, untraced")
            elif name == "clone" and not self.attached:
                thread = raw.event_message()
                raw.release_child(thread, shares_memory=True)
                self._stop_watching_link_map()
                self.record("thread", "clone", f"thread {thread} runs on, untraced")
            elif name == "exec":
                self.exec_happened(raw.event_message())
                self.record("milestone", "exec", "the process called execve again")
            return False, None
        if stop.kind is StopKind.BREAKPOINT:
            pc = raw.pc
            milestone = self._milestone_bps.get(pc)
            if milestone == LINK_MAP_HOOK:
                self._link_map_hook()
                milestone = None  # stays armed: ld.so calls it around every change
            elif milestone is not None:
                del self._milestone_bps[pc]
            if milestone is None and pc not in raw.breakpoints:
                # The program's own int3: a SIGTRAP it must receive.
                raw.pending_signal = _signal.SIGTRAP
                self.record("signal", "SIGTRAP", f"int3 at {pc - 1:#x}")
                return False, None
            if milestone is not None:
                self._milestone_hit(milestone, pc)
            return reached_milestone(want, milestone), None
        if stop.kind is StopKind.SIGNAL:
            pc = raw.pc
            # A fault the program handles (a runtime's guard page, a JIT's
            # trap) is part of its run, not a crash: delivered, it goes on.
            crash = stop.signal in STOPPING_SIGNALS and raw.catches(stop.signal, stop.pid) is not True
            if crash:
                # The rdxbug crash comes right after the auxv rewrite with no
                # syscall in between: what the program did comes before the
                # signal that ends it.
                self.startup_checks()
            info = decode_siginfo(stop.siginfo, self.arch) if stop.siginfo else None
            text = describe_siginfo(info) if info else stop.signal_name
            self.record("signal", stop.signal_name, text, address=pc)
            raw.pending_signal = stop.signal
            if crash:
                self.record("milestone", "crash", f"{text} at pc {pc:#x}", address=pc)
                fault = info.addr if info is not None else None
                if fault is None and stop.signal in (_signal.SIGSEGV, _signal.SIGBUS) \
                        and view.read_memory(pc, 4) is None:
                    # No siginfo (qemu's stub sends none): a pc with no code
                    # under it faulted fetching its instruction, at pc.
                    fault = pc
                return want == "signal", reasons.fatal_signal(target, stop.signal_name, pc, fault)
            if want == "signal":
                return True, reasons.signal_arrived(target, stop.signal_name)
            return False, None
        if stepping:
            self.arrived(raw.pc)
        return False, None

    def arrived(self, pc: int) -> None:
        """A single step landed on pc (a milestone address or not)."""
        milestone = self._milestone_bps.get(pc)
        if milestone == LINK_MAP_HOOK:
            self._link_map_hook()
        elif milestone is not None:
            self._milestone_bps.pop(pc)
            self.view.release_breakpoint(pc)
            self._milestone_hit(milestone, pc)

    # -- the loader's list of objects ------------------------------------------
    def _watch_link_map(self) -> None:
        """Once ld.so has published r_debug (by AT_ENTRY, or long before we
        attached), watch its r_brk hook: ld.so calls it before and after
        every dlopen/dlmopen/dlclose, as gdb's solib tracking relies on."""
        view = read_link_map(self.program_object(), _ProgramMemory(self.view))
        self._link_map = view
        if not self.attached and self.target.untraced_threads():
            return  # threads we do not trace would die on the int3
        if view.r_brk and view.r_brk not in self._milestone_bps:
            self.arm(view.r_brk, LINK_MAP_HOOK)

    def _stop_watching_link_map(self) -> None:
        for addr, name in list(self._milestone_bps.items()):
            if name == LINK_MAP_HOOK:
                del self._milestone_bps[addr]
                self.view.release_breakpoint(addr)

    def _link_map_hook(self) -> None:
        view = read_link_map(self.program_object(), _ProgramMemory(self.view))
        if not view.debugs or not view.consistent:
            return  # RT_ADD / RT_DELETE: the change is about to happen
        added, removed = link_map_changes(self._link_map, view)
        self._link_map = view
        for entry in added:
            self.record("link-map", "loaded", f"{entry.name or '(main program)'} in namespace "
                        f"{entry.namespace}, l_addr {entry.l_addr:#x}", address=entry.l_addr)
        for entry in removed:
            self.record("link-map", "unloaded", f"{entry.name} from namespace {entry.namespace}",
                        address=entry.l_addr)

    def _milestone_hit(self, milestone: str, pc: int) -> None:
        if pc in self.target.breakpoints and pc not in self._milestone_bps:
            self.view.release_breakpoint(pc)
        if milestone == "ldso-entry":
            self.startup_checks()
            self.record("milestone", "ldso-entry", f"jumped to ld.so's entry {pc:#x}", address=pc)
            # The checks just now, at this stop, may have decoded the stack already.
            stack = self._checked_stack if self._checked_stack is not None else self._stack_now()
            if stack is not None:
                entry = {e.name: e.value for e in stack.auxv}.get("AT_ENTRY")
                self._set_at_entry(entry)
        elif milestone == "at-entry":
            self.startup_checks()
            self.record("milestone", "at-entry", f"AT_ENTRY {pc:#x}", address=pc)
            self._startup_checks_done = True
            if self._arms_main_before_running:
                self._link_map_due = True
            else:
                self._watch_link_map()
            self._arm_main_at_entry()
        elif milestone == "main":
            self.record("milestone", "main", f"main at {pc:#x}", address=pc)


def reached_milestone(want: str | None, milestone: str | None) -> bool:
    """Whether a run to the stop target ``want`` ends at ``milestone``."""
    return milestone is not None and reasons.MILESTONE_OF_TARGET.get(want) == milestone


def kernel_stack(view: ProcessView, sp: int) -> InitialStack | None:
    """view.initial_stack() for the stack at ``sp`` (the kernel's, at the
    first stop), decoded from one read of its mapping from sp up (the
    vectors, the strings, the file name at the top) rather than a read per
    pointer and per string chunk."""
    if not view.alive:
        return None
    top = next((m.end for m in view.maps() if m.start <= sp < m.end), None)
    area = None if top is None else view.read_memory(sp, min(top - sp, _STACK_AREA_LIMIT))
    return _decode_stack(view, sp, area)


# More than exec ever puts above sp at the start (MAX_ARG_STRLEN strings
# aside): a larger area is decoded with reads of its own beyond this.
_STACK_AREA_LIMIT = 1 << 16


def _decode_stack(view: ProcessView, sp: int, area: bytes | None) -> InitialStack | None:
    """The initial stack at sp, read from ``area`` (bytes at sp read at this
    stop) where it lies inside, else from the view."""
    if not view.alive:
        return None
    memory = _ProgramMemory(view) if area is None else _ReadFirst(sp, area, view)
    try:
        return decode_initial_stack(memory, sp, view.arch)
    except DecodeError:
        return None


def _strings_top(stack: InitialStack, page: int = 4096) -> int:
    """The page boundary above the kernel's argv and envp strings (the
    stack's top, where exec put them and the file name)."""
    ends = [s.pointer + len(s.raw) + 1 for s in (*stack.argv, *stack.envp) if s.raw is not None]
    top = max([stack.end, *ends])
    return (top + page - 1) // page * page


class _ReadFirst:
    """A MemoryReader answering from bytes read at ``start`` this stop, and
    from the view for anything not wholly inside them."""

    def __init__(self, start: int, data: bytes, view: ProcessView) -> None:
        self._start = start
        self._data = data
        self._view = view

    def read(self, addr: int, size: int) -> bytes | None:
        offset = addr - self._start
        if offset >= 0 and size >= 0 and offset + size <= len(self._data):
            return self._data[offset:offset + size]
        return self._view.read_memory(addr, size)


class _ProgramMemory:
    """The view's memory as a MemoryReader (``read``), for the link_map walk."""

    def __init__(self, view: ProcessView) -> None:
        self._view = view

    def read(self, addr: int, size: int) -> bytes | None:
        return self._view.read_memory(addr, size)
