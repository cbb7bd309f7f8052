"""The hand-off check: is the process in a state ld.so's entry can start from?

At ld.so's first instruction the x86-64 psABI and ld.so itself expect the
kernel's initial stack: rsp 16-byte aligned and pointing at argc, argv and
envp NULL-terminated, an AT_NULL-terminated auxv whose AT_PHDR/AT_PHNUM/
AT_ENTRY describe the program ld.so must run, AT_BASE naming ld.so itself
(musl finds its own base through it), AT_SYSINFO_EHDR 0 or the real vDSO.
rdx should be 0 (the atexit pointer), but glibc's and musl's ld.so ignore it,
so a non-zero rdx is a warning, not an error.

aarch64 (the AAPCS64 process start): sp 16-byte aligned at argc, the same
vectors, and x0 the atexit pointer — 0 or a function (executable memory);
ld.so ignores it too, so a stray x0 is a warning unless it points at no code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from loaderdbg.analysis.objects import MappedObject
from loaderdbg.decode.maps import MapEntry, find_mapping
from loaderdbg.decode.memory import MemoryReader, read_u64
from loaderdbg.decode.registers import Registers
from loaderdbg.decode.stack import InitialStack

ELF64_PHDR_SIZE = 56
# Per arch: the stack pointer's name and the register holding the atexit pointer.
_SP_NAME = {"x86_64": "rsp", "aarch64": "sp"}
_ATEXIT_REGISTER = {"x86_64": "rdx", "aarch64": "x0"}
PT_LOAD = 1
PT_PHDR = 6


@dataclass(frozen=True)
class Finding:
    """One check of the hand-off to ld.so and what it found."""

    severity: str  # "error" | "warning" | "ok"
    check: str
    message: str


@dataclass(frozen=True)
class HandoffReport:
    """The checks made at ld.so's entry on what an exec-solib launcher handed it."""

    checked: bool
    at: int | None  # pc the check was made at (ld.so's entry)
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool | None:
        if not self.checked:
            return None
        return not any(f.severity == "error" for f in self.findings)

    @property
    def violations(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity != "ok")


NOT_CHECKED = HandoffReport(False, None)


def check_handoff(
    registers: Registers,
    stack: InitialStack | None,
    memory: MemoryReader,
    maps: Sequence[MapEntry],
    objects: Sequence[MappedObject],
    ldso: MappedObject | None,
) -> HandoffReport:
    findings: list[Finding] = []

    def add(severity: str, check: str, message: str) -> None:
        findings.append(Finding(severity, check, message))

    sp = registers.sp
    sp_name = _SP_NAME.get(registers.arch, "sp")
    if sp % 16:
        add("error", "stack-alignment", f"{sp_name} {sp:#x} is not 16-byte aligned (it is {sp % 16} bytes off)")
    else:
        add("ok", "stack-alignment", f"{sp_name} {sp:#x} is 16-byte aligned")
    if stack is None or stack.sp != sp:
        add("error", "initial-stack",
            f"[{sp_name}] does not hold the kernel's argc/argv/envp/auxv block ({sp_name} {sp:#x})")
        return HandoffReport(True, registers.pc, tuple(findings))
    unreadable = [i for i, s in enumerate(stack.argv) if s.text is None]
    if unreadable:
        add("error", "argv", f"argv[{unreadable[0]}] points at unreadable memory")
    else:
        add("ok", "argv", f"argc {stack.argc}, argv NULL-terminated with readable strings")
    bad_env = [i for i, s in enumerate(stack.envp) if s.text is None]
    if bad_env:
        add("error", "envp", f"envp[{bad_env[0]}] points at unreadable memory")
    else:
        add("ok", "envp", f"{len(stack.envp)} environment strings, NULL-terminated")
    if not stack.auxv or stack.auxv[-1].name != "AT_NULL":
        add("error", "auxv", "auxv is not terminated by AT_NULL")
        return HandoffReport(True, registers.pc, tuple(findings))
    auxv = {e.name: e.value for e in stack.auxv}

    phdr, phnum, phent = auxv.get("AT_PHDR"), auxv.get("AT_PHNUM"), auxv.get("AT_PHENT")
    if phent != ELF64_PHDR_SIZE:
        add("error", "AT_PHENT", f"AT_PHENT is {phent}, 64-bit program headers are {ELF64_PHDR_SIZE} bytes")
    program = _object_at(objects, phdr) if phdr else None
    if not phdr or memory.read(phdr, ELF64_PHDR_SIZE * max(phnum or 1, 1)) is None:
        add("error", "AT_PHDR", f"AT_PHDR {phdr or 0:#x} does not point at readable program headers")
    elif program is None:
        add("error", "AT_PHDR", f"AT_PHDR {phdr:#x} is not inside any mapped ELF object")
    else:
        expected = program.base + program.info.phoff if program.info.phoff is not None else None
        phdr_seg = next((s for s in program.info.segments if s.type == "PHDR"), None)
        if phdr_seg is not None:
            expected = program.base + phdr_seg.vaddr
        if expected is not None and expected != phdr:
            add("error", "AT_PHDR", f"AT_PHDR {phdr:#x} is not {program.name}'s program header table ({expected:#x})")
        elif phnum != program.info.phnum:
            add("error", "AT_PHNUM", f"AT_PHNUM {phnum} but {program.name} has {program.info.phnum} program headers")
        else:
            add("ok", "AT_PHDR", f"AT_PHDR/AT_PHNUM describe {program.name} ({phnum} headers at {phdr:#x})")

    entry = auxv.get("AT_ENTRY")
    entry_map = find_mapping(maps, entry) if entry else None
    if entry_map is None:
        add("error", "AT_ENTRY", f"AT_ENTRY {entry or 0:#x} is not mapped")
    elif not entry_map.executable:
        add("error", "AT_ENTRY", f"AT_ENTRY {entry:#x} is mapped {entry_map.perms}, not executable")
    elif program is not None and program.base + program.info.entry != entry:
        add("warning", "AT_ENTRY", f"AT_ENTRY {entry:#x} is not the e_entry of {program.name} "
                                    f"({program.base + program.info.entry:#x})")
    else:
        add("ok", "AT_ENTRY", f"AT_ENTRY {entry:#x} is mapped executable")

    base = auxv.get("AT_BASE", 0)
    if ldso is None:
        add("warning", "AT_BASE", "could not tell which mapped object is ld.so")
    elif base != ldso.base:
        add("error", "AT_BASE", f"AT_BASE {base:#x} is not where ld.so is mapped ({ldso.base:#x}); "
                                "musl's ld.so finds itself through it")
    else:
        add("ok", "AT_BASE", f"AT_BASE {base:#x} is ld.so's base")

    vdso = auxv.get("AT_SYSINFO_EHDR")
    if vdso:
        vdso_map = find_mapping(maps, vdso)
        if vdso_map is None or vdso_map.kind != "vdso" or vdso_map.start != vdso:
            add("error", "AT_SYSINFO_EHDR", f"AT_SYSINFO_EHDR {vdso:#x} is not the mapped vDSO")
        else:
            add("ok", "AT_SYSINFO_EHDR", f"AT_SYSINFO_EHDR {vdso:#x} is the vDSO")
    else:
        add("ok", "AT_SYSINFO_EHDR", "AT_SYSINFO_EHDR is 0: ld.so will run without the vDSO")

    atexit_name = _ATEXIT_REGISTER.get(registers.arch, "rdx")
    atexit = registers.get(atexit_name)
    atexit_map = find_mapping(maps, atexit) if atexit else None
    if atexit and registers.arch == "aarch64" and (atexit_map is None or not atexit_map.executable):
        add("error", atexit_name, f"{atexit_name} is {atexit:#x}, neither 0 nor a function: the "
                                  "atexit pointer a program's _start would register and call")
    elif atexit:
        add("warning", atexit_name, f"{atexit_name} is {atexit:#x}, not 0: the psABI's atexit pointer; "
                                    "glibc's and musl's ld.so ignore it, a program's own _start would call it")
    else:
        add("ok", atexit_name, f"{atexit_name} is 0 (no atexit function), as the psABI asks")
    argc_word = read_u64(memory, sp)
    if argc_word != stack.argc:
        add("error", "argc", f"[{sp_name}] is {argc_word}, not argc {stack.argc}")
    return HandoffReport(True, registers.pc, tuple(findings))


def _object_at(objects: Sequence[MappedObject], addr: int) -> MappedObject | None:
    for obj in objects:
        if obj.contains(addr):
            return obj
    return None
