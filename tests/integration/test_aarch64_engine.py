"""The engine (Inferior, LiveSession, `loaderdbg inspect`) on aarch64
programs through qemu-user (issue 22): the same stop targets as on x86-64,
checked against gdb-multiarch on its own qemu of the same program,
aarch64-linux-gnu-readelf and qemu's -strace.

One session per program and motion (module-scoped): launching under qemu
takes ~60 ms, running the demo to main well under a second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from qemuhelp import qemu_listening
from loaderdbg.live import LiveSession
from loaderdbg.process.qemu_target import AARCH64, DEFAULT_SYSROOT, find_qemu
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.snapshot_json import snapshot_to_json

ROOT = Path(__file__).resolve().parents[2]
LOADERDBG = ROOT / ".venv" / "bin" / "loaderdbg"
HELLO = ROOT / "build" / "fixtures" / "zoo" / "aarch64-hello"
DEMO = ROOT / "build" / "fixtures" / "execsolib" / "aarch64-glibc-O2" / "libexecsolib.so"
BUG = ROOT / "build" / "fixtures" / "execsolib" / "aarch64-handoffbug" / "libexecsolib.so"
LD_SO = Path(DEFAULT_SYSROOT) / "lib" / "ld-linux-aarch64.so.1"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
REGISTERS = [f"x{n}" for n in range(31)] + ["sp", "pc"]
# Auxv entries that depend on neither the stack's strings nor randomness.
# ld.so's first svc (brk) is step 1828 of aarch64-hello here; gdb's stepi
# over an svc under qemu also runs the next instruction, so step counts are
# compared before it.
STEPS_BEFORE_FIRST_SYSCALL = 1800
STABLE_AUXV = ("AT_PHDR", "AT_PHENT", "AT_PHNUM", "AT_PAGESZ", "AT_BASE", "AT_ENTRY", "AT_HWCAP", "AT_HWCAP2")

pytestmark = pytest.mark.skipif(
    not (shutil.which("qemu-aarch64") and LD_SO.exists() and HELLO.exists() and DEMO.exists()),
    reason="needs qemu-user, the arm64 sysroot and the aarch64 fixtures (make fixtures)")


def spec(program: Path) -> LaunchSpec:
    return LaunchSpec(str(program), (str(program),), dict(ENV), stdout_fd=DEVNULL)


DEVNULL = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def stops_at(program: Path, targets: tuple[str, ...]) -> dict[str, dict]:
    """One session through ``targets`` in order: the JSON snapshot at each."""
    out = {}
    with LiveSession(spec(program)) as session:
        for target in targets:
            if target != "first":
                session.cont(target)
            out[target] = snapshot_to_json(session.snapshot())
    return out


@pytest.fixture(scope="module")
def hello() -> dict[str, dict]:
    return stops_at(HELLO, ("first", "ldso-entry", "entry", "main"))


@pytest.fixture(scope="module")
def demo() -> dict[str, dict]:
    return stops_at(DEMO, ("first", "ldso-entry", "entry", "main"))


def value(text: str | None) -> int | None:
    return None if text is None else int(text, 16)


def auxv(snap: dict) -> dict[str, int]:
    return {e["type"]: value(e["value"]) if isinstance(e["value"], str) else e["value"] for e in snap["auxv"]}


def milestones(snap: dict) -> list[str]:
    return [e["name"] for e in snap["events"] if e["kind"] == "milestone"]


def elf_symbol(path: Path, name: str) -> int:
    out = subprocess.run(["aarch64-linux-gnu-readelf", "-sW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[7] == name and fields[3] == "FUNC":
            return int(fields[1], 16)
    raise AssertionError(f"{name} not in {path}")


def elf_entry(path: Path) -> int:
    out = subprocess.run(["aarch64-linux-gnu-readelf", "-hW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", out).group(1), 16)


# -- the plain program ---------------------------------------------------------


def test_every_stop_says_aarch64_with_its_registers(hello):
    for snap in hello.values():
        assert snap["arch"] == "aarch64"
        assert list(snap["registers"]) == REGISTERS + ["pstate"]
        assert value(snap["registers"]["sp"]) % 16 == 0


def test_first_instruction_is_ldso_entry_and_already_there(hello):
    first = hello["first"]
    base = auxv(first)["AT_BASE"]
    assert value(first["registers"]["pc"]) == base + elf_entry(LD_SO)
    assert first["step"] == 0 and first["step_exact"]
    assert hello["ldso-entry"]["stop"]["description"] == "already at ldso-entry"
    ldso = next(o for o in first["objects"] if o["name"] == "ld-linux-aarch64.so.1")
    assert ldso["path"].startswith(DEFAULT_SYSROOT)  # mapped from the sysroot, found as the interpreter
    assert milestones(first) == ["kernel-entry", "ldso-mapped", "ldso-entry"]


def test_entry_and_main_are_where_the_file_says(hello):
    entry = hello["entry"]
    at_entry = auxv(entry)["AT_ENTRY"]
    assert value(entry["registers"]["pc"]) == at_entry
    program_base = at_entry - elf_entry(HELLO)
    main = hello["main"]
    assert value(main["registers"]["pc"]) == program_base + elf_symbol(HELLO, "main")
    assert main["stop"]["description"] == f"reached main at {program_base + elf_symbol(HELLO, 'main'):#x}"
    assert milestones(main)[-2:] == ["at-entry", "main"]
    # tpidr_el0 set by ld.so (TLS set up before AT_ENTRY) is the thread's TLS base
    assert value(main["threads"][0]["fs_base"]) > 0


def test_syscalls_have_aarch64_names_and_the_kernels_results(hello):
    """A step over svc stops right after it (qemu's single step would run
    the next instruction too): the calls and results are -strace's."""
    ours = [(c["name"], value(c["result"]) if isinstance(c["result"], str) else c["result"])
            for c in hello["main"]["syscalls"]]
    strace = subprocess.run([find_qemu(), "-L", DEFAULT_SYSROOT, "-strace", str(HELLO)], env=ENV,
                            capture_output=True, text=True, timeout=60).stderr
    theirs = []
    for line in strace.splitlines():
        match = re.match(r"\d+ (\w+)\(.*\) = (-?\d+|0x[0-9a-f]+)", line)
        unknown = re.match(r"\d+ Unknown syscall (\d+)", line)  # qemu 7.2 does not know rseq
        if match:
            theirs.append((match.group(1), match.group(2)))
        elif unknown:
            theirs.append((AARCH64.syscall_names[int(unknown.group(1))], "0"))
    assert [name for name, _ in ours] == [name for name, _ in theirs][:len(ours)]
    assert "mmap" in [name for name, _ in ours] and "brk" in [name for name, _ in ours]
    for (name, result), (_, text) in zip(ours, theirs):
        if name in ("close", "mprotect", "munmap"):
            assert result == int(text, 0) == 0


def test_step_n_registers_and_auxv_at_entry_match_gdb_multiarch(hello):
    if not shutil.which("gdb-multiarch"):
        pytest.skip("gdb-multiarch not installed")
    steps = STEPS_BEFORE_FIRST_SYSCALL
    with LiveSession(spec(HELLO)) as session:
        reason = session.cont(f"step:{steps}")
        assert reason.description == f"reached step {steps}"
        ours = snapshot_to_json(session.snapshot())
    assert ours["syscalls"] == [] and ours["step"] == steps
    entry = auxv(hello["entry"])["AT_ENTRY"]
    registers, gdb_auxv = gdb_session(HELLO, steps, entry)
    assert {name: value(ours["registers"][name]) for name in REGISTERS} == registers
    mine = auxv(hello["entry"])
    assert {name: mine[name] for name in STABLE_AUXV} == {name: gdb_auxv[name] for name in STABLE_AUXV}


def gdb_session(program: Path, steps: int, break_at: int) -> tuple[dict[str, int], dict[str, int]]:
    """gdb-multiarch on its own qemu of the same program, argv and env:
    registers after ``stepi steps``, then `info auxv` at ``break_at``."""
    with qemu_listening(spec(program)) as sock:
        fmt = " ".join("%lx" for _ in REGISTERS)
        args = ", ".join(f"${name}" for name in REGISTERS)
        result = subprocess.run(
            ["gdb-multiarch", "-nx", "-batch", "-ex", "set architecture aarch64",
             "-ex", f"target remote {sock}", "-ex", f"stepi {steps}",
             "-ex", f'printf "REGS {fmt}\\n", {args}', "-ex", f"break *{break_at:#x}",
             "-ex", "continue", "-ex", "info auxv", "-ex", "kill"],
            capture_output=True, text=True, timeout=120)
    line = next(line for line in result.stdout.splitlines() if line.startswith("REGS "))
    registers = dict(zip(REGISTERS, (int(v, 16) for v in line.split()[1:])))
    found = {}
    for line in result.stdout.splitlines():
        match = re.match(r"\d+\s+(AT_\w+)\s+.*?\s(0x[0-9a-f]+|\d+)(?:\s|$)", line)
        if match:
            found[match.group(1)] = int(match.group(2), 0)
    return registers, found


# -- the exec-solib demo ---------------------------------------------------------


def test_demo_milestones_and_handoff(demo):
    assert milestones(demo["first"]) == ["kernel-entry"]
    at_ldso = demo["ldso-entry"]
    assert at_ldso["stop"]["reached"]
    for name in ("self-relocation-done", "memfd-create", "argv-rewritten", "ldso-mapped",
                 "auxv-rewritten", "ldso-entry"):
        assert name in milestones(at_ldso)
    handoff = at_ldso["handoff"]
    assert handoff["checked"] and handoff["ok"], handoff
    assert {"stack-alignment", "argv", "envp", "AT_ENTRY", "AT_BASE", "x0"} <= set(handoff["passed"])
    assert "rdx" not in handoff["passed"]
    ldso = next(o for o in at_ldso["objects"] if o["name"] == "ld-linux-aarch64.so.1")
    assert value(at_ldso["registers"]["pc"]) == value(ldso["base"]) + elf_entry(LD_SO)
    main = demo["main"]
    assert milestones(main)[-2:] == ["at-entry", "main"]
    pc = value(main["registers"]["pc"])
    assert main["stop"]["description"] == f"reached main at {pc:#x}"
    program = next(o for o in main["objects"] if o["name"] == "libexecsolib.so@0x20000")  # the memfd's program
    assert value(program["base"]) <= pc < auxv(main)["AT_ENTRY"] + 0x10000


def readelf_relocations(path: str) -> set[tuple[int, str]]:
    out = subprocess.run(["aarch64-linux-gnu-readelf", "-rW", path], capture_output=True, text=True,
                         check=True).stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and re.fullmatch(r"[0-9a-f]{16}", fields[0]) and fields[2].startswith("R_AARCH64_"):
            found.add((int(fields[0], 16), fields[2]))
    return found


def test_demo_relocations_match_readelf_with_states(demo):
    snap = demo["main"]
    bases = {o["name"]: (value(o["base"]), o["path"]) for o in snap["objects"]}
    for name in ("libexecsolib.so", "libc.so.6", "ld-linux-aarch64.so.1"):
        base, path = bases[name]
        ours = {(value(r["address"]) - base, r["type"]) for r in snap["relocations"] if r["object"] == name}
        assert ours == readelf_relocations(path), name
    states = {(r["type"], r["state"]) for r in snap["relocations"]}
    assert ("R_AARCH64_IRELATIVE", "applied") in states  # libc's ifuncs, resolved by main
    assert ("R_AARCH64_TLS_TPREL64", "applied") in states
    assert ("R_AARCH64_JUMP_SLOT", "lazy") in states
    assert not [r for r in snap["relocations"] if r["state"] == "unknown"]
    assert {g["type"] for g in snap["got"]} == {"R_AARCH64_GLOB_DAT", "R_AARCH64_JUMP_SLOT"}
    assert len(snap["ifuncs"]) == 2


# -- the command line -------------------------------------------------------------


def loaderdbg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LOADERDBG), *args], capture_output=True, text=True, timeout=120,
                          env={**ENV, "COLUMNS": "200"})


def test_handoffbug_dies_of_sigsegv_at_zero_and_the_stop_says_so():
    result = loaderdbg("inspect", "--json", "--at", "signal", str(BUG))
    snap = json.loads(result.stdout)
    assert snap["arch"] == "aarch64"
    assert snap["stop"]["signal"] == "SIGSEGV" and snap["stop"]["fault_address"] == "0x0"
    assert snap["stop"]["description"] == "SIGSEGV at pc 0x0, fault address 0x0"
    assert snap["registers"]["pc"] == "0x0" and snap["registers"]["x0"] == "0x0"
    text = loaderdbg("inspect", "--at", "ldso-entry", str(BUG))
    assert text.returncode != 0
    assert "ldso-entry not reached: SIGSEGV at pc 0x0, fault address 0x0" in text.stderr


def test_inspect_step_n_text():
    result = loaderdbg("inspect", "--at", "step:50", str(HELLO))
    assert result.returncode == 0, result.stderr
    assert "stop: reached step 50" in result.stdout and "nzcv:" in result.stdout
    # record and explain work on aarch64 (tests/integration/test_record_aarch64.py), and so
    # does serve (tests/integration/test_serve_aarch64.py).


def test_interrupt_and_a_kill_from_outside_through_qemu():
    probe = ROOT / "build" / "fixtures" / "qemu" / "probe"
    if not probe.exists():
        pytest.skip("the qemu probe is built by tests/integration/test_qemu_target.py")
    with LiveSession(LaunchSpec(str(probe), ("probe", "sleep"), dict(ENV))) as session:
        timer = threading.Timer(0.5, session.interrupt)
        timer.start()
        reason = session.cont("exit")
        timer.join()
        assert reason.kind == "interrupted" and session.alive  # qemu's SIGINT, never the guest's
        session.step(2)
        os.kill(session.pid, signal.SIGKILL)
        time.sleep(0.1)
        session.snapshot()
        assert not session.alive and session.stop_reason.description == "killed by SIGKILL while stopped"


def test_attach_to_qemu_is_refused_in_one_line():
    with LiveSession(spec(HELLO)) as session:
        result = loaderdbg("inspect", "--pid", str(session.pid))
        assert session.alive
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "qemu-aarch64 running a guest program" in result.stderr


@pytest.mark.parametrize("program", ["execsolib/aarch64-musl-O2/libexecsolib.so", "zoo/aarch64-hello-musl",
                                     "execsolib/aarch64-glibc-relr/libexecsolib.so"])
def test_musl_and_relr_reach_ldso_entry_and_main(program):
    """musl's ld.so comes from the host's /lib (qemu's -L falls back to it),
    glibc's from the sysroot: both are found as the interpreter."""
    stops = stops_at(ROOT / "build" / "fixtures" / program, ("ldso-entry", "main"))
    at_ldso, main = stops["ldso-entry"], stops["main"]
    assert at_ldso["stop"]["reached"] and main["stop"]["reached"], (at_ldso["stop"], main["stop"])
    assert at_ldso["handoff"]["ok"], at_ldso["handoff"]
    assert "ldso-entry" in milestones(at_ldso) and milestones(main)[-1] == "main"
    assert not [r for r in main["relocations"] if r["state"] == "unknown"]


def test_a_breakpoint_on_an_svc_loses_no_syscall():
    """Stopped at a breakpoint on an svc, the continue reports that
    syscall's entry and exit like any other (set_tid_address returns the
    pid, which differs between the runs)."""
    def calls(session) -> list[tuple[str, int | None]]:
        return [(c.name, None if c.name == "set_tid_address" else c.result) for c in session.snapshot().syscalls]

    with LiveSession(spec(HELLO)) as session:
        assert session.cont("syscall:mmap").reached
        svc = session.snapshot().registers["pc"]
        session.cont("exit")
        plain = calls(session)
    with LiveSession(spec(HELLO)) as session:
        session.add_breakpoint(svc)
        hits = 0
        while session.cont("exit").kind == "breakpoint":
            hits += 1
        assert 1 < hits <= sum(1 for name, _ in plain if name == "mmap")  # ld.so's mmap wrapper, called often
        assert calls(session) == plain


def test_exit_stops_with_the_guest_still_there():
    """qemu's stub has no exit event: `exit` stops at exit_group's entry,
    where the program can still be inspected, as PTRACE_EVENT_EXIT does."""
    with LiveSession(spec(HELLO)) as session:
        reason = session.cont("exit")
        assert reason.description == "about to exit (status 0)" and reason.exit_code == 0
        snap = snapshot_to_json(session.snapshot())
        assert session.alive and value(snap["registers"]["x8"]) == 94  # exit_group
        assert snap["syscalls"][-1]["name"] == "write"  # hello's line, already written
        session.step(1)
        assert not session.alive and session.stop_reason.description == "exited with status 0"
