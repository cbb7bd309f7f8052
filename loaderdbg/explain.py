"""`loaderdbg explain`: the startup story of a recording, in plain language,
and for a run that died of a fault, its root cause found by walking the data
flow backwards from the faulting instruction.

The root-cause walk: the last position is where the signal arrived. If the
pc there is not code (a jump into nowhere), the previous step was the branch
that took us there; its target came from a register, a memory slot or the
stack (ret). We ask the recording who last wrote that register or slot, what
it held before, and where *that* came from, for a few hops, and say what the
values were (ld.so's entry, AT_ENTRY, a symbol). A data fault is traced the
same way from the registers that formed the faulting address.
"""

from __future__ import annotations

from dataclasses import dataclass

from loaderdbg.record.dataflow import RegisterWrite, StepInstruction, Tracer
from loaderdbg.decode.disasm import memory_operands
from loaderdbg.decode.maps import find_mapping
from loaderdbg.printable import printable
from loaderdbg.record import capture_aarch64
from loaderdbg.record.replay import ReplaySession
from loaderdbg.session import MILESTONE_TITLES, StopReason

CRASH_SIGNALS = ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGTRAP", "SIGABRT")
MAX_HOPS = 4
# The hand-off to a program's entry (x86-64 psABI §3.4.1): rdx holds the
# atexit function, 0 when there is none, so hand-off code zeroes it.
# register -> (what it is at the hand-off, the advice).
HANDOFF_ZEROED = {"rdx": ("the psABI's atexit pointer, which the hand-off sets to 0",
                          "Keep the target in another register (e.g. \"r\" inputs other than rdx, "
                          "or jump through rax/rcx)")}
# The same, per recorded arch (aarch64's: x0, in its capture module).
HANDOFF_ZEROED_BY_ARCH = {"x86_64": HANDOFF_ZEROED, "aarch64": capture_aarch64.HANDOFF_ZEROED}
# Instructions that copy a value into a register (from a register or
# memory; lea an address), and stores whose value register is operand 0
# or 1, per arch: what the root-cause walk follows back.
VALUE_MOVES = {"x86_64": frozenset({"mov", "movabs", "lea", "movq"}), "aarch64": capture_aarch64.VALUE_MOVES}
VALUE_STORES = {"x86_64": {"mov": 1, "movq": 1}, "aarch64": capture_aarch64.VALUE_STORES}


@dataclass(frozen=True)
class Explanation:
    text: str
    diverged: bool  # the replay did not reproduce the recording (its text opens with DIVERGENCE)


def explain_program(spec, until: str = "exit", progress: bool | None = None) -> Explanation:
    """`loaderdbg explain PROG`: record ``spec`` (a LaunchSpec) to a
    temporary file, explain it, delete it."""
    import os
    import shutil
    import tempfile

    from loaderdbg.record.guest_recorder import record_any_program

    # A fresh path in a private directory: the recorder never writes over a
    # file that is not a recording (an empty mkstemp file is not one).
    directory = tempfile.mkdtemp(prefix="loaderdbg-explain-")
    path = os.path.join(directory, "explain.ldbg")
    try:
        record_any_program(spec, path, until, progress=progress)
        with ReplaySession(path) as replay:
            text = explain_recording(replay)
            return Explanation(text, replay.divergence is not None)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def explain_recording(replay: ReplaySession) -> str:
    """A plain-language report of a recording (see the module docstring).
    Leaves the session at the position it was in."""
    saved = replay.position
    try:
        # The story spans the whole recording: pass every keyframe, so the
        # replay checks all of it (ReplaySession.divergence).
        replay.goto(replay.last_step)
        return _Explainer(replay).report()
    finally:
        replay.goto(saved)


class _Explainer:
    def __init__(self, replay: ReplaySession) -> None:
        self.replay = replay
        self.rec = replay.recording
        self.meta = self.rec.meta
        self.tracer = Tracer(replay)
        self.arch = replay.arch
        self.full_register = self.tracer.full_register
        self.lines: list[str] = []
        ldso = self.meta.get("ldso")
        self.ldso = ldso if isinstance(ldso, dict) else None
        at_entry = self.meta.get("at_entry")
        self.at_entry = at_entry.get("value") if isinstance(at_entry, dict) else None

    def say(self, text: str = "") -> None:
        # Paths, symbol names and descriptions come from the recording.
        self.lines.append(printable(text))

    def report(self) -> str:
        rec = self.rec
        argv = " ".join(str(a) for a in self.meta.get("argv", []))
        self.say(f"{self.replay.program}: {rec.last_step:,} steps recorded ({argv})")
        self.say(f"recorded {self.meta.get('created', '?')} on {self.meta.get('kernel', '?')}")
        self.say()
        self._milestones()
        self._handoff()
        self._relocations()
        self._outcome()
        if self.replay.divergence is not None:
            self.lines.insert(0, printable(self.replay.divergence.headline))
        return "\n".join(self.lines).rstrip() + "\n"

    # -- the story ----------------------------------------------------------------
    def _milestones(self) -> None:
        self.say("Milestones:")
        for event in self.replay.events():
            if event.kind not in ("milestone",):
                continue
            title = MILESTONE_TITLES.get(event.name, event.name)
            where = f"step {event.step:>9,}" if event.exact else f"by step {event.step:>6,}"
            self.say(f"  {where}  {title}: {event.detail}")
        syscalls = self.rec.syscalls()
        signals = self.rec.signals()
        self.say(f"  {len(syscalls)} syscalls, {len(signals)} signal(s)")
        self.say()

    def _milestone_step(self, name: str) -> int | None:
        return next((e.step for e in self.replay.events()
                     if e.kind == "milestone" and e.name == name and e.exact), None)

    def _handoff(self) -> None:
        step = self._milestone_step("ldso-entry")
        if step is None:
            self.say("Hand-off to ld.so: never reached in this recording.")
            self.say()
            return
        self.replay.goto(step)
        report = self.replay.snapshot().handoff
        if not report.checked:
            self.say(f"Hand-off to ld.so at step {step:,}: not checked.")
        else:
            verdict = "passes" if report.ok else "FAILS"
            self.say(f"Hand-off to ld.so at step {step:,} (pc {report.at:#x}): {verdict}")
            for finding in report.violations:
                self.say(f"  {finding.severity}: {finding.message}")
            if report.ok and not report.violations:
                self.say(f"  {self.arch.sp_register} aligned, argc/argv/envp/auxv intact, "
                         "AT_PHDR/AT_ENTRY/AT_BASE consistent")
        self.say()

    def _relocations(self) -> None:
        step = self._milestone_step("at-entry")
        where = "at AT_ENTRY" if step is not None else "at the end of the recording"
        step = self.rec.last_step if step is None else step
        self.replay.goto(step)
        snapshot = self.replay.snapshot()
        self.say(f"Relocations {where} (step {step:,}):")
        if not snapshot.objects:
            self.say("  no ELF objects mapped")
        for obj in snapshot.objects:
            t = obj.totals
            if not t.total:
                continue
            extra = "".join(f", {n} {label}" for n, label in ((t.lazy, "lazy"), (t.unknown, "unknown")) if n)
            self.say(f"  {obj.name}{' (ld.so)' if obj.is_ldso else ''}: {t.applied}/{t.total} applied, "
                     f"{t.pending} pending{extra}")
        self.say()

    def _outcome(self) -> None:
        end = self.replay.end_reason
        self.say(f"Outcome: {end.description}")
        crashed = end.kind == "signal" and end.signal in CRASH_SIGNALS or \
            end.kind == "killed" and end.signal in CRASH_SIGNALS
        if crashed:
            self.say()
            self._root_cause(end)

    # -- root cause ------------------------------------------------------------------
    def name(self, value: int) -> str:
        """What a value is, when we can tell."""
        if value == 0:
            return "NULL"
        notes = []
        if self.ldso is not None and value == self.ldso.get("entry"):
            notes.append("ld.so's entry point")
        if self.at_entry is not None and value == self.at_entry:
            notes.append("AT_ENTRY, the program's entry point")
        symbol = self.replay.symbolize(value)
        if symbol:
            notes.append(symbol)
        return " = ".join(notes)

    def value_text(self, value: int) -> str:
        label = self.name(value)
        return f"{value:#x}" + (f" ({label})" if label and label != "NULL" else "")

    def _root_cause(self, end: StopReason) -> None:
        last = self.rec.last_step
        self.replay.goto(last)
        pc = self.replay.pc
        maps = self.replay.maps()
        mapping = find_mapping(maps, pc)
        fault = end.fault_address
        self.say("Root cause:")
        where = f"at step {last:,}" if last else "at its first instruction"
        fault_text = f", fault address {fault:#x}" if fault is not None else ""
        self.say(f"  The process died {where} with {end.signal} at {self.arch.pc_register} {pc:#x}{fault_text}.")
        bad_pc = mapping is None or not mapping.executable or (fault is not None and fault == pc)
        if bad_pc and last > 0:
            self.say(f"  There is no code at {pc:#x}: the previous step jumped there.")
            self._bad_jump(last - 1, pc)
        else:
            self._data_fault(last, fault)

    def _bad_jump(self, step: int, target: int) -> None:
        branch = self.tracer.instruction(step)
        insn = branch.instruction
        self.say(f"  Step {step:,}: `{branch.text}` at {branch.where()} jumped to {self.value_text(target)}.")
        if insn is None:
            return
        registers = self.tracer.registers(step)
        operands = [op for op in insn.operands if op.kind in ("reg", "mem")]
        link = self.arch.dwarf_registers.get(self.arch.return_address_register)
        if insn.is_ret and not operands and link in self.arch.user_regs_fields:
            # aarch64's ret: the target is the link register's.
            self.say(f"  `ret` took its target from the link register {link} = "
                     f"{self.value_text(registers.get(link) or 0)}.")
            self._trace_register(link, step, jumped=True)
            return
        if insn.is_ret:
            sp = registers["rsp"]
            self.say(f"  `ret` took its target from the stack slot [rsp] = [{sp:#x}].")
            self._trace_memory(sp, 8, step, "the return address")
            return
        if not operands:
            return
        op = operands[0]
        if op.kind == "reg":
            register = self.full_register(op.reg) or op.reg
            value = registers.get(register)
            self.say(f"  The target came from register {op.reg} = {self.value_text(value or 0)}.")
            self._trace_register(register, step, jumped=True)
        else:
            accesses = [a for a in memory_operands(insn, registers) if a.address is not None]
            if accesses:
                slot = accesses[0]
                self.say(f"  The target was loaded from memory {slot.text} = [{slot.address:#x}].")
                self._trace_memory(slot.address, slot.size or 8, step, "the jump target")

    def _trace_register(self, register: str, before: int, jumped: bool = False) -> None:
        write = self.tracer.last_register_write(register, before)
        if write is None:
            self.say(f"  {register} was never written after the first instruction: the kernel "
                     f"started the program with {register} = {self.tracer.register(0, register):#x}.")
            return
        distance = before - write.step
        ago = "one step earlier" if distance == 1 else f"{distance:,} steps earlier"
        self.say(f"  {register} was last written by `{write.by.text}` at {write.by.where()}, "
                 f"step {write.step:,} ({ago}): {write.old:#x} -> {write.new:#x}.")
        if write.old != write.new:
            self.say(f"  Before that, {register} held {self.value_text(write.old)}.")
            self._conclude(register, write, jumped)
        source = self._source_of(write)
        if source is None and write.old != write.new:
            # The write destroyed a value (xor r, r): say where that value came from.
            self._provenance(register, write.step, write.old, MAX_HOPS)
        elif source is not None:
            self._follow(source, write.step, MAX_HOPS)

    def _provenance(self, register: str, before: int, value: int, hops: int) -> None:
        """How ``register`` came to hold ``value`` at step ``before``."""
        if hops <= 0:
            return
        write = self.tracer.last_register_write(register, before)
        if write is None:
            self.say(f"  {register} held {value:#x} since the kernel started the program.")
            return
        self.say(f"  {register} got {value:#x} at step {write.step:,} from `{write.by.text}` at {write.by.where()}.")
        source = self._source_of(write)
        if source is not None:
            self._follow(source, write.step, hops - 1)

    def _follow(self, source, step: int, hops: int) -> None:
        if hops <= 0:
            return
        kind, detail = source
        if kind == "register":
            value = self.tracer.register(step, detail)
            self._provenance(detail, step, value, hops)
        elif kind == "memory":
            addr, size = detail
            self._trace_memory(addr, size, step, "", hops - 1)

    def _conclude(self, register: str, write: RegisterWrite, jumped: bool) -> None:
        insn = write.by.instruction
        zeroing = write.new == 0 and insn is not None and (
            (insn.mnemonic == "xor" and len({o.reg for o in insn.operands}) == 1) or
            (insn.mnemonic == "mov" and any(o.kind == "imm" and o.imm == 0 for o in insn.operands)))
        if not jumped or not zeroing:
            return
        what = self.name(write.old) or "the intended target"
        zeroed = HANDOFF_ZEROED_BY_ARCH.get(self.arch.name, {}).get(register)
        if zeroed:
            why, advice = zeroed
            self.say(f"  So the jump target ({what}) was kept in {register}, and {register} is the register "
                     f"the hand-off zeroes ({why}): `{write.by.text}` destroyed it one step before the "
                     f"jump. {advice}.")
        else:
            self.say(f"  So the jump target ({what}) was in {register}, which was zeroed by "
                     f"`{write.by.text}` before the jump used it.")

    def _source_of(self, write: RegisterWrite):
        """Where the value a register write stored came from: another
        register (mov r, r) or memory (mov r, [m])."""
        insn = write.by.instruction
        if insn is None or insn.mnemonic not in VALUE_MOVES.get(self.arch.name, ()):
            return None
        sources = insn.operands[1:]
        if not sources:
            return None
        src = sources[0]
        if src.kind == "reg":
            name = self.full_register(src.reg)
            return ("register", name) if name else None
        if src.kind == "mem" and insn.mnemonic != "lea":
            registers = self.tracer.registers(write.step)
            accesses = [a for a in memory_operands(insn, registers) if a.address is not None and a.reads]
            if accesses:
                return ("memory", (accesses[0].address, accesses[0].size or 8))
        return None

    def _trace_memory(self, addr: int, size: int, before: int, what: str, hops: int = MAX_HOPS) -> None:
        slot = f"{what} [{addr:#x}]" if what else f"[{addr:#x}]"
        write = self.tracer.last_memory_write(addr, size, before)
        if write is None:
            self.say(f"  {slot} was never written during the recording (it is as the kernel loaded it).")
            return
        value = write.value(addr, size)
        value_text = f" = {self.value_text(value)}" if value is not None else ""
        if write.kind == "instruction":
            self.say(f"  {slot}{value_text} was stored by `{write.by.text}` at {write.by.where()}, "
                     f"step {write.step:,}.")
            self._source_of_store(write.by, write.step, hops)
        elif write.kind == "kernel":
            self.say(f"  {slot}{value_text} was written by the kernel during {write.syscall or 'a syscall'}, "
                     f"step {write.step:,}.")
        else:
            self.say(f"  {slot} changed at step {write.step:,} ({write.kind}).")

    def _source_of_store(self, by: StepInstruction, step: int, hops: int) -> None:
        insn = by.instruction
        stores = VALUE_STORES.get(self.arch.name, {})
        if insn is None or insn.mnemonic not in stores or len(insn.operands) < 2:
            return
        src = insn.operands[stores[insn.mnemonic]]
        if src.kind != "reg":
            return
        name = self.full_register(src.reg)
        if name is None:
            return
        value = self.tracer.register(step, name)
        self.say(f"  It stored {name} = {self.value_text(value)}.")
        self._provenance(name, step, value, hops)

    def _data_fault(self, step: int, fault: int | None) -> None:
        current = self.tracer.instruction(step)
        insn = current.instruction
        self.say(f"  The faulting instruction is `{current.text}` at {current.where()}.")
        if insn is None:
            return
        registers = self.tracer.registers(step)
        for access in memory_operands(insn, registers):
            if access.address is None:
                continue
            hit = fault is None or access.address <= fault < access.address + max(access.size, 1) or \
                (fault >> 12) == (access.address >> 12)
            if not hit:
                continue
            self.say(f"  It accessed {access.text} = {access.address:#x} ({access.access}).")
            for op in insn.operands:
                if op.kind != "mem":
                    continue
                for register in (op.base, op.index):
                    name = self.full_register(register) if register else None
                    if name and name != self.arch.pc_register:
                        self.say(f"  {name} = {self.value_text(registers[name])}.")
                        self._trace_register(name, step)
                        return
            return
