"""The engine's view of one startup: a tracee plus what we learn as it runs.

``Inferior`` owns the step count, the syscall and milestone events, the
internal breakpoints that find ld.so's entry and AT_ENTRY, and the run-to
loop behind every stop target. It runs on the tracer thread only.

How ``ldso-entry`` is found without assuming where ld.so lives: at the first
stop we look at which object the kernel entered. If it is an interpreter
(an ordinary dynamic program) we are already there. Otherwise we keep
watching syscalls; when an mmap maps an interpreter file at offset 0 (the
exec-solib bootstrap maps ld.so by hand) its entry gets a breakpoint, which
fires when the hand-off jump lands. ``entry`` is AT_ENTRY as ld.so will read
it: taken from the stack when ld.so starts, after any auxv rewrite.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal as _signal
import time
from dataclasses import dataclass, field

from loaderdbg.analysis.entry_code import find_main, main_not_found_reason
from loaderdbg.analysis.link_map import NO_LINK_MAP, LinkMapView, link_map_changes, read_link_map
from loaderdbg.analysis.address_space import AddressSpace
from loaderdbg.analysis.objects import ElfCache, MappedObject
from loaderdbg.analysis.symbols import SymbolTable
from loaderdbg.arch import get_arch
from loaderdbg.decode.auxv import parse_auxv
from loaderdbg.decode.disasm import disassemble
from loaderdbg.decode.errors import DecodeError
from loaderdbg.decode.maps import MapEntry, parse_maps
from loaderdbg.decode.procstatus import parse_task_status
from loaderdbg.decode.siginfo import decode_siginfo, describe_siginfo
from loaderdbg.decode.stack import InitialStack, decode_initial_stack
from loaderdbg.decode.syscalls import MAPPING_SYSCALLS, decode_syscall, syscall_string_args
from loaderdbg.errors import TargetError, UsageError
from loaderdbg.process import ptrace
from loaderdbg.process.attach import AttachedThreads
from loaderdbg.process.attach import attach as attach_process
from loaderdbg.process.follow import SpawnCatcher
from loaderdbg.process.stops import Stop, StopKind
from loaderdbg.process.tracee import (CODE_SYSCALL, FAULT_SIGNALS, RIP_OFFSET, LaunchSpec, Tracee,
                                      launch)
from loaderdbg.session import Event, StopReason
from loaderdbg.snapshot import SyscallCall, ThreadState
from loaderdbg import targets as reasons
from loaderdbg.targets import MILESTONE_OF_TARGET, Target

SYSTEM_INTERPRETERS = ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-musl-x86_64.so.1")
STOPPING_SIGNALS = FAULT_SIGNALS | {_signal.SIGABRT}
ROUTINE_EVENTS = frozenset({"syscall", "signal"})
MAX_ROUTINE_EVENTS = 100_000
MAX_STRING = 4096


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


class Inferior:
    def __init__(self, tracee: Tracee, program: str, argv: tuple[str, ...],
                 attached: AttachedThreads | None = None) -> None:
        self.tracee = tracee
        self.program = program
        self.argv = argv
        self.attached = attached
        self.arch = get_arch("x86_64")
        self._return_offset = self.arch.register_offset(self.arch.syscall_return_register)
        self._fs_base = self.arch.register_offset("fs_base")
        self.step_count = 0
        self.step_exact = attached is None
        self.events: list[Event] = []
        self.syscall_count = 0
        self.routine_events = 0  # syscall and signal events, kept up to MAX_ROUTINE_EVENTS
        self._calls: list[SyscallCall] = []  # raw arguments of each syscall, for syscalls[]
        self.snapshot_memo = None  # a live process cannot tell what changed between stops
        self.kernel_sp = tracee.sp if attached is None else self._start_stack()
        self.entry_pc = tracee.pc
        self.kernel_auxv_raw = self._read_proc("auxv") or b""
        self.elf_cache = ElfCache(self._read_mapped_file)
        self._stop_reason: StopReason | None = reasons.launched()
        self.ldso: LdsoInfo | None = None
        self.at_entry: int | None = None
        self.main_address: int | None = None
        self._pending_syscall: _PendingSyscall | None = None
        self._milestone_bps: dict[int, str] = {}
        self._link_map: LinkMapView = NO_LINK_MAP
        self._seen: set[str] = set()
        self._here: set[str] = set()  # milestones reached at the current stop
        self._maps: tuple[MapEntry, ...] | None = None
        self._space: AddressSpace | None = None  # objects and symbols of _maps
        self._kernel_stack = self._decode_stack()
        self._interpreters = self._interpreter_paths()
        self._self_relocator: MappedObject | None = None
        self._startup_checks_done = False
        # Raw bytes behind the last decode of the argv/envp/auxv vectors and
        # of the self-relocator's relocated segments: _startup_checks runs
        # after every syscall, and decoding is only worth it on a change.
        self._stack_seen: bytes | None = None
        self._relocator_seen: bytes | None = None
        self.interrupt_requested = False
        self.statically_linked: str | None = None  # name of a program no ld.so will run
        self.user_breakpoints: set[int] = set()
        if attached is None:
            self._first_stop_analysis()
        else:
            self._attach_analysis()

    # -- construction ------------------------------------------------------
    @classmethod
    def launch(cls, spec: LaunchSpec) -> "Inferior":
        tracee = launch(spec)
        try:
            return cls(tracee, spec.path, spec.argv)
        except BaseException:
            tracee.kill()
            raise

    @classmethod
    def attach(cls, pid: int, cancelled=None) -> "Inferior":
        """``cancelled()``, asked while the threads are being stopped, gives
        up with KeyboardInterrupt (Ctrl-C while attaching)."""
        try:
            tracee, threads = attach_process(pid, cancelled)
        except ptrace.PtraceError as err:
            if err.errno != errno.ESRCH:
                raise
            raise TargetError(f"{pid}: the process exited while we attached") from None
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = f"pid {pid}"
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = tuple(a.decode("utf-8", "surrogateescape") for a in handle.read().split(b"\0")[:-1])
            return cls(tracee, exe, argv, attached=threads)
        except BaseException as err:
            threads.detach_all(skip=pid)
            tracee.detach()
            # Killed while we read it (a SIGKILL needs no permission from us):
            # /proc files vanish, ptrace says ESRCH.
            if isinstance(err, OSError) and not isinstance(err, PermissionError):
                raise TargetError(f"{pid}: the process exited while we attached") from None
            raise

    @classmethod
    def catch_spawn(cls, catcher: "SpawnCatcher") -> "Inferior":
        """The next matching child of a running parent, at its first instruction."""
        tracee = catcher.catch()
        try:
            inferior = cls(tracee, catcher.caught.path, catcher.caught.argv)
        except BaseException:
            tracee.detach()
            raise
        inferior.note_caught(catcher.parent)
        return inferior

    def _start_stack(self) -> int:
        """The kernel's initial stack pointer, from /proc/PID/stat (startstack)."""
        stat = (self._read_proc("stat") or b"").decode("utf-8", "replace")
        fields = stat.rsplit(")", 1)[-1].split()
        try:
            return int(fields[25])
        except (IndexError, ValueError):
            return 0

    def _attach_analysis(self) -> None:
        """Startup is behind an attached process: read what ld.so was given."""
        stack = self._kernel_stack
        auxv = {e.name: e.value for e in (stack.auxv if stack else self.kernel_auxv())}
        base = auxv.get("AT_BASE")
        ldso = next((o for o in self.objects() if base and o.base == base and o.elf_offset == 0), None)
        if ldso is not None:
            self.ldso = LdsoInfo(ldso.path, ldso.base, ldso.base + ldso.info.entry)
        self.at_entry = auxv.get("AT_ENTRY")
        self._seen.update({"kernel-entry", "ldso-entry", "at-entry"})
        self._startup_checks_done = True
        count = 1 + len(self.attached.stopped)
        self.stop_reason = reasons.attached(self.pid, count)
        self._record("milestone", "attach", self.stop_reason.description, address=self.tracee.pc,
                     exact=False)
        self._watch_link_map()

    def _read_proc(self, name: str) -> bytes | None:
        try:
            with open(f"/proc/{self.tracee.pid}/{name}", "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def _read_mapped_file(self, entry: MapEntry) -> bytes | None:
        # map_files works for deleted files and memfds, as long as it is mapped.
        for path in (f"/proc/{self.tracee.pid}/map_files/{entry.start:x}-{entry.end:x}", entry.path):
            try:
                with open(path, "rb") as handle:
                    return handle.read()
            except OSError:
                continue
        return None

    def _interpreter_paths(self) -> frozenset[str]:
        paths = set()
        for candidate in SYSTEM_INTERPRETERS:
            paths.add(os.path.realpath(candidate))
        for obj in self.objects():
            if obj.info.interp:
                paths.add(os.path.realpath(obj.info.interp))
        override = os.environ.get("EXECSOLIB_LDSO")
        if override:
            paths.add(os.path.realpath(override))
        return frozenset(paths)

    def _first_stop_analysis(self) -> None:
        self._record("milestone", "kernel-entry", f"execve → pc {self.tracee.pc:#x}",
                     address=self.tracee.pc)
        entered = self.object_at(self.tracee.pc)
        kernel_auxv = {e.name: e.value for e in self.kernel_auxv()}
        if entered is not None and self._is_interpreter(entered):
            self.ldso = LdsoInfo(entered.path, entered.base, entered.base + entered.info.entry)
            self._record("milestone", "ldso-mapped", f"{entered.path} at {entered.base:#x} (by the kernel)",
                         address=entered.base)
            self._record("milestone", "ldso-entry", f"kernel started in ld.so at {self.tracee.pc:#x}",
                         address=self.tracee.pc)
            self._set_at_entry(kernel_auxv.get("AT_ENTRY"))
        elif entered is not None and entered.info.interp is None:
            # Static, static-pie, or a self-loading object such as exec-solib.
            self._self_relocator = entered if self._has_relative(entered) else None
            if not self._looks_self_loading(entered):
                self.statically_linked = entered.name
                self._set_at_entry(kernel_auxv.get("AT_ENTRY"))
        if self.at_entry == self.tracee.pc:
            self._record("milestone", "at-entry", f"AT_ENTRY {self.at_entry:#x}", address=self.at_entry)

    def _looks_self_loading(self, obj: MappedObject) -> bool:
        """A shared object run directly (ET_DYN, no PT_INTERP, not a
        static-pie): an exec-solib that will set up a program for ld.so
        itself, so AT_ENTRY is only known once it jumps to ld.so."""
        return obj.info.type == "ET_DYN" and not obj.info.is_pie

    def _has_relative(self, obj: MappedObject) -> bool:
        return any(r.type_name.endswith("_RELATIVE") for r in obj.info.relocations)

    def _is_interpreter(self, obj: MappedObject) -> bool:
        return os.path.realpath(obj.path) in self._interpreters and obj.elf_offset == 0

    def _set_at_entry(self, value: int | None) -> None:
        if not value or self.at_entry is not None:
            return
        self.at_entry = value
        if value != self.tracee.pc:
            self._arm(value, "at-entry")

    def _arm(self, addr: int, milestone: str) -> None:
        self._milestone_bps[addr] = milestone
        self.tracee.insert_breakpoint(addr)  # may fail until mapped; revalidated later

    # -- state -------------------------------------------------------------
    @property
    def stop_reason(self) -> StopReason:
        """Why we are stopped. None inside means "a plain step", built only
        when asked: the step loop must not pay for a string per step."""
        reason = self._stop_reason
        if reason is None:
            reason = self._stop_reason = reasons.stepped(self.step_count if self.step_exact else None)
        return reason

    @stop_reason.setter
    def stop_reason(self, value: StopReason) -> None:
        self._stop_reason = value

    @property
    def pid(self) -> int:
        return self.tracee.pid

    @property
    def alive(self) -> bool:
        return self.tracee.alive

    def maps(self) -> tuple[MapEntry, ...]:
        if self._maps is None:
            if not self.alive:
                return ()
            text = (self._read_proc("maps") or b"").decode("utf-8", "surrogateescape")
            try:
                self._maps = parse_maps(text)
            except DecodeError:
                self._maps = ()
        return self._maps

    def maps_text(self) -> str:
        return (self._read_proc("maps") or b"").decode("utf-8", "surrogateescape")

    def address_space(self) -> AddressSpace:
        if self._space is None:
            self._space = AddressSpace(self.maps(), self.elf_cache)
        return self._space

    def objects(self) -> tuple[MappedObject, ...]:
        return self.address_space().objects()

    def object_at(self, addr: int) -> MappedObject | None:
        return self.address_space().object_at(addr)

    def symbols(self) -> SymbolTable:
        return self.address_space().symbols()

    def symbolize(self, addr: int) -> str | None:
        return self.symbols().symbolize(addr)

    def disassemble(self, addr: int, count: int):
        """``count`` instructions from addr as the program sees them (int3s hidden)."""
        code = self.read_memory(addr, count * 15)
        if code is None:
            code = self.tracee.memory.read_prefix(addr, count * 15) if self.alive else b""
            code = self.tracee.original_bytes(addr, code)
        return disassemble(code, addr, self.arch, count=count, symbolize=self.symbolize)

    def add_breakpoint(self, addr: int) -> bool:
        """A user breakpoint: every continue stops there. False if unmapped
        now (it is kept and armed when the address gets mapped)."""
        self.user_breakpoints.add(addr)
        return self.tracee.insert_breakpoint(addr)

    def remove_breakpoint(self, addr: int) -> None:
        self.user_breakpoints.discard(addr)
        if addr not in self._milestone_bps:
            self.tracee.remove_breakpoint(addr)

    def ldso_object(self) -> MappedObject | None:
        return None if self.ldso is None else self.address_space().object_loaded_at(self.ldso.base)

    def program_object(self) -> MappedObject | None:
        return self.address_space().program_object(self.at_entry, self.entry_pc)

    def threads(self) -> tuple[ThreadState, ...]:
        if not self.alive:
            return ()
        out = []
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))
        except OSError:
            return ()
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/status") as handle:
                    status = parse_task_status(handle.read())
            except (OSError, DecodeError):
                continue
            fs_base = None
            if tid == self.pid:
                fs_base = int.from_bytes(self.tracee.regs_raw()[self._fs_base:self._fs_base + 8], "little")
                stop = self.stop_reason.kind
            elif self.attached is not None and tid in self.attached.stopped:
                try:
                    raw = ptrace.RegisterBuffer().fetch(tid)
                    fs_base = int.from_bytes(raw[self._fs_base:self._fs_base + 8], "little")
                except ptrace.PtraceError:
                    pass
                stop = "stopped (attached)"
            else:
                stop = "running (not traced)"
            out.append(ThreadState(tid, status.name, status.state, fs_base, status.sig_blocked,
                                   status.sig_pending, status.shared_pending, stop))
        return tuple(out)

    def invalidate(self) -> None:
        self._maps = None
        self._space = None

    def kernel_auxv(self):
        try:
            return parse_auxv(self.kernel_auxv_raw, self.arch, self.tracee.memory if self.alive else None)
        except DecodeError:
            return ()

    def _decode_stack(self) -> InitialStack | None:
        if not self.alive:
            return None
        try:
            return decode_initial_stack(self.tracee.memory, self.kernel_sp, self.arch)
        except DecodeError:
            return None

    def initial_stack(self) -> InitialStack | None:
        return self._decode_stack()

    def read_memory(self, addr: int, size: int) -> bytes | None:
        if not self.alive:
            return None
        data = self.tracee.memory.read(addr, size)
        return None if data is None else self.tracee.original_bytes(addr, data)

    def registers_raw(self) -> bytes | None:
        return self.tracee.regs_raw() if self.alive else None

    # -- the rest of a StateSource (loaderdbg/snapshot.py) -----------------------
    def syscall_calls(self) -> tuple[SyscallCall, ...]:
        return tuple(self._calls)

    def verification(self) -> tuple[None, None]:
        return None, None  # nothing recorded to check against

    def memory_state(self) -> None:
        return None  # /proc reads show the present only: every stop decodes afresh

    def writes_since(self, state: tuple) -> None:
        return None

    def reads_tracked(self):
        return contextlib.nullcontext([])

    # -- events ------------------------------------------------------------
    def _record(self, kind: str, name: str, detail: str = "", *, address: int | None = None,
                exact: bool | None = None) -> None:
        if kind == "milestone":
            if name in self._seen and name not in ("crash", "exit"):
                return
            self._seen.add(name)
            self._here.add(name)
        elif kind in ROUTINE_EVENTS:
            # A long run (attached, or to the exit of a busy program) makes
            # syscalls and gets signals without end: memory must not follow.
            self.routine_events += 1
            if self.routine_events > MAX_ROUTINE_EVENTS:
                if self.routine_events == MAX_ROUTINE_EVENTS + 1:
                    self.events.append(Event(self.step_count if self.step_exact else -1, "limit", "events",
                                             f"more than {MAX_ROUTINE_EVENTS} syscall and signal events: "
                                             "later ones are counted, not kept", None, False))
                return
        self.events.append(Event(self.step_count if self.step_exact else -1, kind, name, detail,
                                 address, self.step_exact if exact is None else exact))

    def milestone_seen(self, name: str) -> bool:
        return name in self._seen

    @property
    def milestone_addresses(self) -> dict[int, str]:
        """Addresses whose arrival is a milestone (grows as ld.so gets mapped
        and AT_ENTRY becomes known); a stepper that writes no int3s watches pc
        against it. Read-only for callers."""
        return self._milestone_bps

    def observe_arrival(self) -> None:
        """A single step landed on one of milestone_addresses."""
        self._here.clear()
        self.observe_stop(Stop(StopKind.STEP, self.pid, signal=_signal.SIGTRAP), target=None, stepping=True)

    def note_caught(self, parent: int) -> None:
        """This process is a child caught from a running parent at its exec."""
        self.caught_from = parent
        self._record("milestone", "caught", f"child {self.pid} of {parent} caught at exec",
                     address=self.tracee.pc)

    def pending_syscall_text(self) -> str:
        """strace's `name(args)` of the syscall whose entry we are stopped at."""
        pending = self._pending_syscall
        if pending is None:
            return "?"
        return decode_syscall(pending.number, pending.args, None, self.arch, pending.strings).call_text()

    # -- syscalls ----------------------------------------------------------
    def observe_syscall_entry(self, number: int, args: tuple[int, ...]) -> None:
        strings = {}
        for addr in syscall_string_args(number, args, self.arch):
            if addr:
                raw = self.tracee.memory.read_prefix(addr, 256)
                nul = raw.find(b"\0")
                strings[addr] = raw[:nul] if nul >= 0 else raw
        pending = _PendingSyscall(number, args, strings)
        name = self.arch.syscall_names.get(number, "")
        if name in ("mmap",) and 0 <= args[4] < (1 << 31):
            try:
                pending.fd_path = os.readlink(f"/proc/{self.pid}/fd/{args[4]}")
            except OSError:
                pending.fd_path = None
        self._pending_syscall = pending

    def observe_syscall_exit(self, result: int | None) -> None:
        self.tracee.forget_code()  # any syscall may have changed code (see Tracee._code)
        pending = self._pending_syscall
        self._pending_syscall = None
        if pending is None:
            return
        self.syscall_count += 1
        call = decode_syscall(pending.number, pending.args, result, self.arch, pending.strings)
        if self.routine_events < MAX_ROUTINE_EVENTS:  # the event _record keeps next
            self._calls.append(SyscallCall(self.step_count if self.step_exact else -1, call.number,
                                           call.name, tuple(pending.args), call.result, call.errno_name))
        self._record("syscall", call.name, call.format())
        if call.name in MAPPING_SYSCALLS:
            self.invalidate()
            if self.alive:
                self.tracee.revalidate_breakpoints()
                for addr in (*self.user_breakpoints, *self._milestone_bps):
                    if addr not in self.tracee.breakpoints:
                        self.tracee.insert_breakpoint(addr)
        if call.name == "memfd_create" and result is not None and result >= 0:
            label = pending.strings.get(pending.args[0], b"").decode("utf-8", "replace")
            self._record("milestone", "memfd-create", f'memfd "{label}" = fd {result}')
        if call.name == "mmap" and self.ldso is None and pending.fd_path and result is not None \
                and result >= 0 and pending.args[5] == 0:
            self._maybe_ldso_mapped(pending.fd_path, result)
        self._startup_checks()

    def _maybe_ldso_mapped(self, path: str, address: int) -> None:
        if os.path.realpath(path) not in self._interpreters:
            return
        obj = self.object_at(address)
        if obj is None or obj.elf_offset != 0:
            return
        self.ldso = LdsoInfo(obj.path, obj.base, obj.base + obj.info.entry)
        self._record("milestone", "ldso-mapped", f"{obj.path} at {obj.base:#x}", address=obj.base)
        self._arm(self.ldso.entry, "ldso-entry")

    def _startup_checks(self) -> None:
        """Notice in-memory rewrites the bootstrap makes without a syscall.
        Runs after every syscall until AT_ENTRY, so it first compares raw
        bytes with what it saw last time and decodes only on a change."""
        if self._startup_checks_done or not self.alive:
            return
        relocator = self._self_relocator
        if relocator is not None and not self.milestone_seen("self-relocation-done"):
            raw = self._relocated_bytes(relocator)
            if raw is None or raw != self._relocator_seen:
                self._relocator_seen = raw
                states = self.relocation_states(relocator)
                relative = [s for s in states if s.type_name.endswith("_RELATIVE")]
                if relative and all(s.state == "applied" for s in relative):
                    self._record("milestone", "self-relocation-done",
                                 f"{len(relative)} RELATIVE relocations of {relocator.name} applied",
                                 exact=False)
        kernel = self._kernel_stack
        if kernel is not None and not (self.milestone_seen("argv-rewritten")
                                       and self.milestone_seen("auxv-rewritten")):
            raw = self.tracee.memory.read(kernel.argv_address, kernel.end - kernel.argv_address)
            if raw is None or raw != self._stack_seen:
                self._stack_seen = raw
                self._compare_stacks(kernel, self._decode_stack())
        if self.milestone_seen("at-entry"):
            self._startup_checks_done = True

    def _compare_stacks(self, kernel: InitialStack, now: InitialStack | None) -> None:
        if now is None:
            return
        if not self.milestone_seen("argv-rewritten") and \
                [a.pointer for a in kernel.argv] != [a.pointer for a in now.argv]:
            changed = [i for i, (a, b) in enumerate(zip(kernel.argv, now.argv)) if a.pointer != b.pointer]
            detail = ", ".join(f"argv[{i}] → {now.argv[i].text!r}" for i in changed)
            self._record("milestone", "argv-rewritten", detail, exact=False)
        if not self.milestone_seen("auxv-rewritten"):
            before = {e.type: e.value for e in kernel.auxv}
            changed = [e for e in now.auxv if before.get(e.type) != e.value]
            if changed:
                self._record("milestone", "auxv-rewritten",
                             ", ".join(f"{e.name}={e.value:#x}" for e in changed), exact=False)

    def _relocated_bytes(self, obj: MappedObject) -> bytes | None:
        """The segments holding obj's relocation slots, raw: while they are
        unchanged, so is every relocation's state."""
        offsets = [r.offset for r in obj.info.relocations]
        chunks = []
        for seg in obj.info.load_segments():
            if any(seg.contains_vaddr(o) for o in offsets):
                data = self.tracee.memory.read(obj.base + seg.vaddr, seg.memsz)
                if data is None:
                    return None
                chunks.append(data)
        return b"".join(chunks)

    def relocation_states(self, obj: MappedObject):
        return self.address_space().relocation_states(obj, _OriginalBytes(self))

    # -- stepping ----------------------------------------------------------
    def _after_step(self, stop: Stop, syscall_call: tuple | None) -> Stop:
        if stop.kind is StopKind.STEP or stop.kind is StopKind.BREAKPOINT:
            self.step_count += 1
        if syscall_call is not None:
            result = None
            if stop.alive:
                raw = self.tracee.regs_raw()
                result = int.from_bytes(raw[self._return_offset:self._return_offset + self.arch.word_size],
                                        "little", signed=True)
            self.observe_syscall_exit(result)
        return stop

    def _syscall_before_step(self) -> tuple | None:
        tracee = self.tracee
        if tracee.code_kind(tracee.pc) != CODE_SYSCALL:
            return None
        raw = tracee.regs_raw()
        regs = [int.from_bytes(raw[i * 8:i * 8 + 8], "little") for i in range(27)]
        names = self.arch.user_regs_fields
        value = dict(zip(names, regs))
        number = value["rax"]
        args = tuple(value[r] for r in self.arch.syscall_arg_registers)
        self.observe_syscall_entry(number, args)
        return (number, args)

    def step(self) -> Stop:
        """One instruction. A plain step (the common case by far) takes the
        short way: count it, check for a milestone address, and leave the
        stop reason to be built if someone asks."""
        tracee = self.tracee
        if not tracee.alive:
            self._require_alive()
        if self._here:
            self._here.clear()
        try:
            pc = int.from_bytes(tracee.regs_raw()[RIP_OFFSET:RIP_OFFSET + 8], "little")
        except ptrace.PtraceError:
            pc = None  # gone under us; the step reports how
        if pc is not None:
            kind = tracee.code_kind(pc)
            if kind != CODE_SYSCALL:
                stop = tracee.step(pc, kind)
                if stop is tracee.plain_step:
                    self.step_count += 1
                    milestones = self._milestone_bps
                    if milestones and tracee.pc in milestones:  # registers came with the stop
                        self.observe_stop(stop, target=None, stepping=True)
                    self._stop_reason = None
                    return stop
                syscall_call = None
            else:
                syscall_call = self._syscall_before_step()
                stop = tracee.step(pc, kind)
        else:
            syscall_call = None
            stop = tracee.step()
        if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXEC:
            # As at launch: leave execve before the next step, or that step
            # would only finish the syscall and execute nothing.
            self._forget_old_image()
            self.tracee.finish_execve(self.program)
            if syscall_call is not None:
                self.step_count += 1  # the `syscall` instruction ran
            self.observe_syscall_exit(0)  # execve returns 0 into the new image
            syscall_call = None
        stop = self._after_step(stop, syscall_call)
        if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT:
            stop = self._finish_dying(stop)
        _, final = self.observe_stop(stop, target=None, stepping=True)
        if final is None and stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT:
            final = self._exiting_reason()
        if final is not None:
            self.stop_reason = final
        elif stop.alive:
            self._stop_reason = None  # "step N"
        return stop

    def _exiting_reason(self) -> StopReason:
        """A step that ran exit_group stops at the exit event: the process
        is still there to inspect, and one more step ends it."""
        try:
            status = ptrace.get_event_msg(self.pid)
        except ptrace.PtraceError:
            status = None
        code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
        return reasons.about_to_exit(None, code)

    def notice_death(self) -> bool:
        """A SIGKILL from outside takes a stopped tracee down without a word
        to us: nothing waits for it until the next resume. Before reading
        its state (a snapshot), reap it if it is gone, so what we show says
        "killed", not the stale stop. True when it died."""
        if not self.alive:
            return False
        try:
            ptrace.request(ptrace.PEEKUSER, self.pid, RIP_OFFSET)
            gone = False
        except ptrace.PtraceError as err:
            if err.errno != errno.ESRCH:
                raise
            gone = True  # off its stop: behind our back only a SIGKILL does that
        deadline = time.monotonic() + 5
        while True:
            if gone and self.attached is not None:
                self._reap_dead_threads()
            try:
                wpid, status = os.waitpid(self.pid, os.WNOHANG | ptrace.WALL)
            except ChildProcessError:
                return False
            if wpid:
                break
            if not gone or time.monotonic() > deadline:
                return False
            time.sleep(0.005)  # on its way to the exit event or to death
        stop = self.tracee.classify_status(status)
        if stop.kind is StopKind.EVENT and stop.event == ptrace.EVENT_EXIT:
            stop = self._finish_dying(stop)
        _, final = self.observe_stop(stop, target=None, stepping=False, while_stopped=True)
        if final is not None:
            self.stop_reason = final
        return not stop.alive

    def _reap_dead_threads(self) -> None:
        """An attached leader's exit status waits until the threads we trace
        are reaped, by us."""
        tids = set(self.attached.stopped)
        try:
            tids |= {int(t) for t in os.listdir(f"/proc/{self.pid}/task")}
        except OSError:
            pass
        tids.discard(self.pid)
        for tid in tids:
            try:
                wpid, status = os.waitpid(tid, os.WNOHANG | ptrace.WALL)
            except ChildProcessError:
                self.attached.stopped.pop(tid, None)
                continue
            if wpid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                self.attached.stopped.pop(tid, None)

    def _forget_old_image(self) -> None:
        """After an execve: the startup checks compare the old image's stack,
        and milestone addresses belong to the old image; an int3 written
        there now would land in the new program's code."""
        self._startup_checks_done = True
        self._milestone_bps.clear()
        self.invalidate()

    def _finish_dying(self, stop: Stop) -> Stop:
        """At the exit event of a process a signal is killing (the SIGSEGV
        a step delivered, a SIGKILL), let it die: the caller reports
        "killed by SIG… at step N" instead of a step that seems alive."""
        try:
            status = ptrace.get_event_msg(self.pid)
        except ptrace.PtraceError:
            status = None
        if status is None or os.WIFSIGNALED(status):
            if self._pending_syscall is not None:
                self.observe_syscall_exit(None)
            return self.tracee.resume(syscalls=False)
        return stop

    def _died_of(self, stop: Stop, signal: int, stood: tuple[int, int] | None) -> bool:
        """Whether ``stop`` is the process dying of the pending ``signal``
        with nothing run: its exit event at the same pc and sp (``stood``),
        or, once that matched (stood None), the death itself."""
        if stop.kind is StopKind.KILLED:
            return stood is None and stop.signal == signal
        if stop.kind is not StopKind.EVENT or stop.event != ptrace.EVENT_EXIT or stood is None:
            return False
        try:
            status = ptrace.get_event_msg(self.pid)
            here = (self.tracee.pc, self.tracee.sp)
        except ptrace.PtraceError:
            return False
        return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal and here == stood

    def step_many(self, n: int) -> StopReason:
        """Up to n steps; stops early for anything but a plain step."""
        for _ in range(n):
            self.step()
            if self._stop_reason is not None or self.interrupt_requested:
                break
        return self.stop_reason

    def _require_alive(self) -> None:
        if not self.alive:
            raise TargetError(f"the process is gone ({self.stop_reason.description})")

    # -- running -----------------------------------------------------------
    def run_to(self, target: Target) -> StopReason:
        self._require_alive()
        kind = target.kind
        if kind == "first":
            if self.step_count == 0 and self.step_exact:
                self.stop_reason = reasons.at_first(target)
                return self.stop_reason
            raise UsageError("the first instruction is behind us; relaunch (starti) to get there")
        if kind == "step":
            if not self.step_exact:
                raise UsageError("step count unknown after a continue; relaunch to count steps")
            if target.value < self.step_count:
                raise UsageError(f"step {target.value} is behind us (at step {self.step_count})")
            while self.step_count < target.value:
                stop = self.step()
                reason = self._stop_reason  # None: a plain step
                if reason is not None and (self._stopped_for_good(stop) or reason.kind == "interrupted"):
                    return self.stop_reason
            self.stop_reason = reasons.reached_step(target, self.step_count)
            return self.stop_reason
        if kind == "ldso-entry" and self.statically_linked and self.ldso is None:
            self.stop_reason = reasons.statically_linked(target, self.statically_linked)
            return self.stop_reason
        if self._already_at(target):
            self.stop_reason = reasons.already_at(target)
            return self.stop_reason
        if self.attached is not None and kind in MILESTONE_OF_TARGET:
            # Said now rather than after running the process to its exit.
            self.stop_reason = reasons.not_reachable(
                target, f"{target} is part of startup, over before we attached: attach cannot go back "
                        "(loaderdbg run PROG, or attach --follow-exec to its parent, to see it)")
            return self.stop_reason
        if kind == "main" and not self.milestone_seen("main"):
            unreachable = self.main_unreachable()
            if unreachable is not None:
                self.stop_reason = reasons.not_reachable(target, unreachable)
                return self.stop_reason
        user_bp = self._target_breakpoint(target)
        return self._continue(target, user_bp)

    def _already_at(self, target: Target) -> bool:
        wanted = MILESTONE_OF_TARGET.get(target.kind)
        return wanted is not None and wanted in self._here

    def _target_breakpoint(self, target: Target) -> int | None:
        if target.kind == "addr":
            self.tracee.insert_breakpoint(target.value)
            return target.value
        if target.kind == "sym":
            addr = self.symbols().locate(target.name)
            if addr is not None:
                self.tracee.insert_breakpoint(addr)
            return addr
        if target.kind == "main":
            return self.resolve_main()
        if target.kind == "ldso-entry" and self.milestone_seen("ldso-entry") and self.ldso:
            raise UsageError("ld.so's entry is behind us; relaunch (starti) to get there")
        if target.kind == "entry" and self.milestone_seen("at-entry"):
            raise UsageError("AT_ENTRY is behind us; relaunch (starti) to get there")
        return None

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
        data = self.elf_cache.object_bytes(program)
        if data is None:
            return None
        vaddr = find_main(program.info, data, self.arch)
        if vaddr is None:
            return None
        self.main_address = program.runtime(vaddr)
        self._arm(self.main_address, "main")
        return self.main_address

    def _main_program(self) -> MappedObject | None:
        return None if self.at_entry is None else self.object_at(self.at_entry)

    def main_unreachable(self) -> str | None:
        """Before running to main: why it cannot be found, when the program
        is already mapped and its entry code says nothing about main."""
        program = self._main_program()
        data = None if program is None else self.elf_cache.object_bytes(program)
        if program is None or data is None or self.resolve_main() is not None:
            return None
        return main_not_found_reason(program.path, program.info, data, self.arch)

    def _continue(self, target: Target, user_bp: int | None) -> StopReason:
        pending_sym = target.kind == "sym" and user_bp is None
        # Resuming from a fatal signal's stop runs nothing: if the process
        # dies of it right where it stood, the step count is still exact.
        fatal = self.tracee.pending_signal if self.step_exact else 0
        stood = (self.tracee.pc, self.tracee.sp) if fatal else None
        while True:
            syscall_call = None
            self._here.clear()
            if self.tracee.at_breakpoint():
                syscall_call = self._syscall_before_step()
            # Syscalls are watched all the way: every stop must show the
            # maps ([heap], RELRO made read-only…) and events as they are then.
            stop = self.tracee.resume(syscalls=True)
            if stop.kind is StopKind.STEP and syscall_call is not None:
                self._after_step(stop, syscall_call)
            if fatal and self._died_of(stop, fatal, stood):
                stood = None  # the exit event matched; the death report follows
            else:
                fatal = 0
                self.step_exact = False
            reached, reason = self.observe_stop(stop, target=target, stepping=False)
            if reason is not None:
                self.stop_reason = reason
                break
            if pending_sym and stop.kind is StopKind.SYSCALL and self._maps is None:
                user_bp = self.symbols().locate(target.name)
                if user_bp is not None:
                    self.tracee.insert_breakpoint(user_bp)
                    pending_sym = False
            if target.kind == "main" and user_bp is None and self.at_entry is not None:
                user_bp = self.resolve_main()
            if stop.kind is StopKind.BREAKPOINT and self.tracee.pc in self.user_breakpoints \
                    and self.tracee.pc != user_bp:
                self.stop_reason = reasons.breakpoint_hit(target, self.tracee.pc, self.symbolize(self.tracee.pc))
                break
            if user_bp is not None and stop.kind is StopKind.BREAKPOINT and self.tracee.pc == user_bp:
                self.stop_reason = reasons.reached_at(target, user_bp)
                break
            if reached:
                self.stop_reason = reasons.reached_at(target, self.tracee.pc)
                break
        if user_bp is not None and target.kind in ("addr", "sym") and user_bp not in self._milestone_bps \
                and user_bp not in self.user_breakpoints:
            self.tracee.remove_breakpoint(user_bp)
        # Rewrites made without a syscall since the last one (a self-
        # relocation stepped over with F8) are part of where we stopped.
        self._startup_checks()
        return self.stop_reason

    def _stopped_for_good(self, stop: Stop) -> bool:
        return not stop.alive or (stop.kind is StopKind.SIGNAL and stop.signal in STOPPING_SIGNALS)

    def observe_stop(self, stop: Stop, *, target: Target | None, stepping: bool,
                     while_stopped: bool = False) -> tuple[bool, StopReason | None]:
        """Record what a stop means. Returns (target reached, final reason)
        where a final reason ends a run (exit, crash, target syscall…).
        ``while_stopped``: the process died while parked at a stop, not
        during a step or continue."""
        want = target.kind if target else None
        if not stop.alive:
            self.tracee.breakpoints.clear()
            if self._pending_syscall is not None:
                self.observe_syscall_exit(None)
            if stop.kind is StopKind.EXITED:
                self.stop_reason = reasons.exited(target, stop.exit_code)
                self._record("milestone", "exit", self.stop_reason.description)
            else:
                if while_stopped:
                    where = "while stopped" + (f" at step {self.step_count}" if self.step_exact else "")
                else:
                    where = f"at step {self.step_count}" if self.step_exact else "after a continue"
                self.stop_reason = reasons.killed(target, stop.signal_name, where)
                self._record("milestone", "exit", self.stop_reason.description)
            return False, self.stop_reason
        if stop.kind is StopKind.SYSCALL:
            info = ptrace.get_syscall_info(self.pid)
            if info.op == ptrace.SYSCALL_INFO_ENTRY:
                self.observe_syscall_entry(info.number, info.args)
                if want == "syscall":
                    name = self.arch.syscall_names.get(info.number, str(info.number))
                    if target.name in (None, name):
                        return True, reasons.syscall_entry(target, self.pending_syscall_text())
            elif info.op == ptrace.SYSCALL_INFO_EXIT:
                self.observe_syscall_exit(info.return_value)
            return False, None
        if stop.kind is StopKind.EVENT:
            if stop.event == ptrace.EVENT_EXIT:
                status = ptrace.get_event_msg(self.pid)
                if self._pending_syscall is not None:
                    self.observe_syscall_exit(None)
                if want == "exit" and os.WIFEXITED(status):
                    return True, reasons.about_to_exit(target, os.WEXITSTATUS(status))
                # Dying from a signal (SIGKILL included): let it finish dying,
                # the next stop reports how.
            elif stop.event in (ptrace.EVENT_FORK, ptrace.EVENT_VFORK):
                child = ptrace.get_event_msg(self.pid)
                self.tracee.release_child(child, shares_memory=stop.event == ptrace.EVENT_VFORK)
                self._record("fork", stop.event_name, f"child {child} runs on, untraced")
            elif stop.event == ptrace.EVENT_CLONE and self.attached is None:
                thread = ptrace.get_event_msg(self.pid)
                self.tracee.release_child(thread, shares_memory=True)
                self._stop_watching_link_map()
                self._record("thread", "clone", f"thread {thread} runs on, untraced")
            elif stop.event == ptrace.EVENT_EXEC:
                self._forget_old_image()  # invalidates too
                self._record("milestone", "exec", "the process called execve again")
            return False, None
        if stop.kind is StopKind.BREAKPOINT:
            pc = self.tracee.pc
            milestone = self._milestone_bps.get(pc)
            if milestone == LINK_MAP_HOOK:
                self._link_map_hook()
                milestone = None  # stays armed: ld.so calls it around every change
            elif milestone is not None:
                del self._milestone_bps[pc]
            if milestone is None and pc not in self.tracee.breakpoints:
                # The program's own int3: a SIGTRAP it must receive.
                self.tracee.pending_signal = _signal.SIGTRAP
                self._record("signal", "SIGTRAP", f"int3 at {pc - 1:#x}")
                return False, None
            if milestone is not None:
                self._milestone_hit(milestone, pc)
            reached = (want == "ldso-entry" and milestone == "ldso-entry") or \
                      (want == "entry" and milestone == "at-entry") or \
                      (want == "main" and milestone == "main")
            return reached, None
        if stop.kind is StopKind.SIGNAL and stop.signal == _signal.SIGSTOP and self.interrupt_requested:
            self.interrupt_requested = False
            return False, reasons.interrupted(target, self.tracee.pc)
        if stop.kind is StopKind.SIGNAL:
            if stop.signal in STOPPING_SIGNALS:
                # The rdxbug crash comes right after the auxv rewrite with no
                # syscall in between: what the program did comes before the
                # signal that ends it.
                self._startup_checks()
            info = decode_siginfo(stop.siginfo, self.arch) if stop.siginfo else None
            text = describe_siginfo(info) if info else stop.signal_name
            self._record("signal", stop.signal_name, text, address=self.tracee.pc)
            self.tracee.pending_signal = stop.signal
            if stop.signal in STOPPING_SIGNALS:
                self._record("milestone", "crash", f"{text} at pc {self.tracee.pc:#x}",
                             address=self.tracee.pc)
                fault = info.addr if info is not None else None
                reason = reasons.fatal_signal(target, stop.signal_name, self.tracee.pc, fault)
                return want == "signal", reason
            if want == "signal":
                return True, reasons.signal_arrived(target, stop.signal_name)
            return False, None
        if stepping:
            # A plain step may land on a milestone address.
            pc = self.tracee.pc
            milestone = self._milestone_bps.get(pc)
            if milestone == LINK_MAP_HOOK:
                self._link_map_hook()
            elif milestone is not None:
                self._milestone_bps.pop(pc)
                self.tracee.remove_breakpoint(pc)
                self._milestone_hit(milestone, pc)
        return False, None

    # -- the loader's list of objects ------------------------------------------
    def _watch_link_map(self) -> None:
        """Once ld.so has published r_debug (by AT_ENTRY, or long before we
        attached), watch its r_brk hook: ld.so calls it before and after
        every dlopen/dlmopen/dlclose, as gdb's solib tracking relies on."""
        view = read_link_map(self.program_object(), _OriginalBytes(self))
        self._link_map = view
        if self.attached is None and self._thread_count() > 1:
            return  # threads we do not trace would die on the int3
        if view.r_brk and view.r_brk not in self._milestone_bps:
            self._arm(view.r_brk, LINK_MAP_HOOK)

    def _stop_watching_link_map(self) -> None:
        for addr, name in list(self._milestone_bps.items()):
            if name == LINK_MAP_HOOK:
                del self._milestone_bps[addr]
                if addr not in self.user_breakpoints:
                    self.tracee.remove_breakpoint(addr)

    def _thread_count(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/task"))
        except OSError:
            return 1

    def _link_map_hook(self) -> None:
        view = read_link_map(self.program_object(), _OriginalBytes(self))
        if not view.debugs or not view.consistent:
            return  # RT_ADD / RT_DELETE: the change is about to happen
        added, removed = link_map_changes(self._link_map, view)
        self._link_map = view
        for entry in added:
            self._record("link-map", "loaded", f"{entry.name or '(main program)'} in namespace "
                         f"{entry.namespace}, l_addr {entry.l_addr:#x}", address=entry.l_addr)
        for entry in removed:
            self._record("link-map", "unloaded", f"{entry.name} from namespace {entry.namespace}",
                         address=entry.l_addr)

    def _milestone_hit(self, milestone: str, pc: int) -> None:
        if pc in self.tracee.breakpoints and pc not in self._milestone_bps:
            self.tracee.remove_breakpoint(pc)
        if milestone == "ldso-entry":
            self._startup_checks()
            self._record("milestone", "ldso-entry", f"jumped to ld.so's entry {pc:#x}", address=pc)
            stack = self._decode_stack()
            if stack is not None:
                entry = {e.name: e.value for e in stack.auxv}.get("AT_ENTRY")
                self._set_at_entry(entry)
        elif milestone == "at-entry":
            self._startup_checks()
            self._record("milestone", "at-entry", f"AT_ENTRY {pc:#x}", address=pc)
            self._startup_checks_done = True
            self._watch_link_map()
            if self.attached is not None or self._thread_count() == 1:
                self.resolve_main()  # a milestone whatever the target (threads we do not trace would die on it)
        elif milestone == "main":
            self._record("milestone", "main", f"main at {pc:#x}", address=pc)

    # -- step over -----------------------------------------------------------
    def step_over(self) -> Stop:
        self._require_alive()
        code = self.read_memory(self.tracee.pc, 16) or b""
        insns = disassemble(code, self.tracee.pc, self.arch, count=1)
        if not insns or not insns[0].is_call:
            return self.step()
        after = self.tracee.pc + insns[0].size
        self.tracee.insert_breakpoint(after)
        self.run_to(Target("addr", value=after))
        return self.tracee.last_stop

    # -- ending ----------------------------------------------------------------
    def close(self) -> None:
        """Kill what we launched; leave what we attached to running."""
        if self.attached is not None:
            self.attached.detach_all(skip=self.pid)
        self.tracee.close()


# The name r_brk is armed under in the milestone breakpoints: unlike the
# milestones it is not one-shot.
LINK_MAP_HOOK = "r-brk"


class _OriginalBytes:
    """Tracee memory as the program sees it: our int3 bytes hidden."""

    def __init__(self, inferior: Inferior) -> None:
        self._inferior = inferior

    def read(self, addr: int, size: int) -> bytes | None:
        return self._inferior.read_memory(addr, size)
