"""The qemu-user target (process/qemu_target.py) on real aarch64 programs,
checked against what qemu shows the guest and what gdb-multiarch reads
from the same stub."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from qemuhelp import qemu_listening
from loaderdbg.errors import TargetError
from loaderdbg.process import ptrace
from loaderdbg.process.qemu_target import AARCH64, DEFAULT_SYSROOT, launch
from loaderdbg.process.raw_target import RawTarget
from loaderdbg.process.stops import StopKind
from loaderdbg.process.tracee import LaunchSpec

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "fixtures" / "qemu"
PROBE = OUT / "probe"
LD_SO = Path(DEFAULT_SYSROOT) / "lib" / "ld-linux-aarch64.so.1"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
AT_BASE, AT_ENTRY = 7, 9

pytestmark = pytest.mark.skipif(
    not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-gcc") and LD_SO.exists()),
    reason="needs qemu-user, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (make sysdeps)")


@pytest.fixture(scope="module", autouse=True)
def probe() -> Path:
    subprocess.run(["make", "-s", "-C", str(ROOT / "tests" / "fixtures" / "qemu"), f"OUT={OUT}"], check=True)
    return PROBE


def start(*args: str, **fds) -> object:
    if "stdout_fd" not in fds:
        fds["stdout_fd"] = DEVNULL
    return launch(LaunchSpec(str(PROBE), ("probe", *args), dict(ENV), **fds))


DEVNULL = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def word(raw: bytes, name: str) -> int:
    offset = AARCH64.register_offset(name)
    return int.from_bytes(raw[offset:offset + 8], "little")


def auxv(target) -> dict[int, int]:
    """The kernel-style auxv qemu built on the guest's stack, read through
    the target's memory (argc, argv, envp, then pairs)."""
    sp = target.sp
    argc = struct.unpack("<Q", target.read_memory(sp, 8))[0]
    cursor = sp + 8 * (argc + 2)
    while struct.unpack("<Q", target.read_memory(cursor, 8))[0]:
        cursor += 8
    cursor += 8
    vector = {}
    while True:
        key, value = struct.unpack("<QQ", target.read_memory(cursor, 16))
        if key == 0:
            return vector
        vector[key] = value
        cursor += 16


def elf_entry(path: Path) -> int:
    with open(path, "rb") as handle:
        return ELFFile(handle).header["e_entry"]


def run_to_syscall(target, name: str):
    while True:
        stop = target.resume(syscalls=True)
        assert stop.kind is StopKind.SYSCALL, stop.describe()
        info = target.syscall_info()
        if info.op == ptrace.SYSCALL_INFO_ENTRY and AARCH64.syscall_names.get(info.number) == name:
            return info


@pytest.fixture
def at_start():
    """A guest at its first instruction (a launch costs ~50 ms; the suite's
    no-orphans guard wants every process gone after each test)."""
    target = start("exit", "0")
    yield target
    target.close()


def test_first_instruction_is_ld_so_entry(at_start):
    assert isinstance(at_start, RawTarget)
    assert at_start.pid == at_start.maps_pid and at_start.arch is AARCH64
    vector = auxv(at_start)
    assert at_start.pc == vector[AT_BASE] + elf_entry(LD_SO)
    assert at_start.last_stop.kind is StopKind.EVENT and at_start.last_stop.event_name == "exec"


def test_read_proc_answers_for_the_guest_not_for_qemu(at_start):
    raw = at_start.read_proc("auxv")
    pairs = dict(struct.iter_unpack("<QQ", raw))
    assert raw.endswith(bytes(16)) and {k: v for k, v in pairs.items() if k} == auxv(at_start)
    assert at_start.read_proc("cmdline") == b"probe\x00exit\x000\x00"  # probe, exit, 0
    assert at_start.read_proc("maps") == at_start.maps_text().encode()
    with open(f"/proc/{at_start.pid}/auxv", "rb") as handle:
        assert handle.read() != raw  # qemu's own, the x86-64 host's vector


def test_maps_list_program_ld_so_and_stack_at_guest_addresses(at_start):
    text = at_start.maps_text()
    vector = auxv(at_start)
    rows = [line.split() for line in text.splitlines()]
    program = [row for row in rows if row[-1] == str(PROBE)]
    ld_so = [row for row in rows if row[-1].endswith("ld-linux-aarch64.so.1")]
    stack = [row for row in rows if row[-1] == "[stack]"]
    assert program and ld_so and len(stack) == 1
    assert int(ld_so[0][0].split("-")[0], 16) == vector[AT_BASE]
    assert int(program[0][0].split("-")[0], 16) <= vector[AT_ENTRY] < int(program[0][0].split("-")[1], 16)
    low, high = (int(half, 16) for half in stack[0][0].split("-"))
    assert low <= at_start.sp < high
    assert program[0][1] == "r-xp" and ld_so[0][1] == "r-xp"  # the guest's protections, not the host's r--
    # Nothing of qemu's own: its binary, the host's x86-64 libraries, its heap.
    assert "qemu-aarch64" not in text and "x86_64-linux-gnu" not in text and "[heap]" not in text


def test_memory_of_qemu_itself_is_not_the_guests(at_start):
    with open(f"/proc/{at_start.maps_pid}/maps") as handle:
        qemu_row = next(line for line in handle if line.rstrip().endswith("/qemu-aarch64"))
    qemu_start = int(qemu_row.split("-")[0], 16)
    assert at_start.read_memory(qemu_start, 4) is None
    assert at_start.read_memory(0, 4) is None
    with pytest.raises(TargetError, match="not guest memory"):
        at_start.write_memory(qemu_start, b"\0")
    below_sp = at_start.sp - 64
    at_start.write_memory(below_sp, b"loaderdb")
    assert at_start.read_memory(below_sp, 8) == b"loaderdb"
    # ld.so's first PT_LOAD maps file offset 0 at its base: the entry's bytes are the file's.
    entry = elf_entry(LD_SO)
    assert at_start.read_memory(at_start.pc, 16) == LD_SO.read_bytes()[entry:entry + 16]


def test_threads_are_the_guests_only(at_start):
    assert at_start.threads() == [at_start.pid]  # /proc/PID/task also has qemu's RCU thread


def test_registers_are_user_pt_regs(at_start):
    raw = at_start.registers_raw()
    assert len(raw) == AARCH64.user_regs_size == 34 * 8
    assert word(raw, "pc") == at_start.pc and word(raw, "sp") == at_start.sp
    assert word(raw, "pstate") >> 32 == 0


def test_registers_at_step_n_match_gdb_multiarch():
    if not shutil.which("gdb-multiarch"):
        pytest.skip("gdb-multiarch not installed")
    steps = 300
    target = start("exit", "0")
    try:
        for _ in range(steps):
            assert target.step().kind is StopKind.STEP
        ours = target.registers_raw()
    finally:
        target.close()
    theirs = gdb_registers_after(steps)
    names = [f"x{n}" for n in range(31)] + ["sp", "pc"]
    assert {name: word(ours, name) for name in names} == {name: theirs[name] for name in names}
    assert word(ours, "pstate") == theirs["cpsr"]


def gdb_registers_after(steps: int) -> dict[str, int]:
    """gdb-multiarch's registers after ``stepi steps`` on its own qemu of
    the same program, argv and environment."""
    names = [f"x{n}" for n in range(31)] + ["sp", "pc", "cpsr"]
    with qemu_listening(LaunchSpec(str(PROBE), ("probe", "exit", "0"), dict(ENV))) as sock:
        fmt = " ".join("%lx" for _ in names)
        args = ", ".join(f"${name}" for name in names)
        result = subprocess.run(
            ["gdb-multiarch", "-nx", "-batch", "-ex", "set architecture aarch64",
             "-ex", f"target remote {sock}", "-ex", f"stepi {steps}",
             "-ex", f'printf "REGS {fmt}\\n", {args}', "-ex", "kill"],
            capture_output=True, text=True, timeout=60)
    line = next(line for line in result.stdout.splitlines() if line.startswith("REGS "))
    return dict(zip(names, (int(value, 16) for value in line.split()[1:])))


def test_breakpoint_at_entry_then_syscalls_then_exit_code():
    target = start("exit", "5")
    try:
        entry = auxv(target)[AT_ENTRY]
        program = next(line for line in target.maps_text().splitlines() if line.endswith(str(PROBE)))
        assert entry == int(program.split("-")[0], 16) + elf_entry(PROBE)  # a PIE's first PT_LOAD is at 0
        assert target.insert_breakpoint(entry)
        stop = target.resume(syscalls=False)
        assert stop.kind is StopKind.BREAKPOINT and target.pc == entry
        assert target.read_memory(entry, 4) == PROBE.read_bytes()[elf_entry(PROBE):elf_entry(PROBE) + 4]
        target.remove_breakpoint(entry)
        target.take_logged_syscalls()  # ld.so's, run by the continue: not compared below
        names, pending = [], None
        while True:
            stop = target.resume(syscalls=True)
            if stop.kind is not StopKind.SYSCALL:
                break
            info = target.syscall_info()
            if info.op == ptrace.SYSCALL_INFO_ENTRY:
                assert pending is None, "two entries without an exit"
                pending = AARCH64.syscall_names.get(info.number, str(info.number))
                assert info.instruction_pointer == target.pc + 4  # as the kernel says it
                assert target.read_memory(target.pc, 4) == bytes.fromhex("010000d4")  # svc #0
            else:
                assert info.op == ptrace.SYSCALL_INFO_EXIT and pending is not None
                assert info.instruction_pointer == target.pc
                names.append(pending)
                pending = None
        assert stop.kind is StopKind.EXITED and stop.exit_code == 5
        assert pending == "exit_group"
        assert "write" in names
        # The same syscalls, in the same order, as qemu's own -strace saw.
        logged = [line.split()[1].split("(")[0] for line in target_logged(target)]
        assert logged == names + ["exit_group"]
    finally:
        target.close()


def target_logged(target) -> list[str]:
    return [line for line in target.take_logged_syscalls() if "(" in line.split(" ", 1)[-1]]


def test_exec_solib_demo_syscalls_from_code_mapped_after_the_start():
    """The aarch64 exec-solib demo copies itself into a memfd, maps ld.so
    by hand and hands off; ld.so then maps libc. The syscall stops follow
    the guest's mmaps: its last syscalls stop at svc instructions in libc,
    which was nowhere at the first instruction."""
    demo = ROOT / "build" / "fixtures" / "execsolib" / "aarch64-glibc-O2" / "libexecsolib.so"
    if not demo.is_file():
        pytest.fail("aarch64 fixtures are not built: run `make fixtures`", pytrace=False)
    target = launch(LaunchSpec(str(demo), (str(demo),), dict(ENV), stdout_fd=DEVNULL))
    try:
        assert "libc.so.6" not in target.maps_text()
        entries = []
        while True:
            stop = target.resume(syscalls=True)
            assert stop.kind is StopKind.SYSCALL, stop.describe()
            info = target.syscall_info()
            if info.op == ptrace.SYSCALL_INFO_ENTRY:
                name = AARCH64.syscall_names.get(info.number, str(info.number))
                entries.append((name, target.pc))
                if name == "exit_group":
                    break
        maps = target.maps_text().splitlines()
        assert any("/memfd:execsolib" in line for line in maps)
        libc = [tuple(int(half, 16) for half in line.split()[0].split("-")) for line in maps
                if line.endswith("/libc.so.6") and line.split()[1] == "r-xp"]
        names = [name for name, _ in entries]
        assert "memfd_create" in names and names[-2:] == ["write", "exit_group"]
        assert len(libc) == 1 and all(libc[0][0] <= pc < libc[0][1] for _, pc in entries[-2:])
        stop = target.resume(syscalls=True)
        assert stop.kind is StopKind.EXITED and stop.exit_code == 0
    finally:
        target.close()


def test_maps_text_is_what_the_guest_reads_in_its_own_proc_self_maps():
    with tempfile.TemporaryFile() as output:
        target = start("maps", stdout_fd=output.fileno())
        try:
            run_to_syscall(target, "getppid")
            ours = target.maps_text()
        finally:
            target.close()
        output.seek(0)
        theirs = output.read().decode()
    # qemu pads an unnamed mapping's line to the path column; the kernel does not.
    assert [line.rstrip() for line in ours.splitlines()] == [line.rstrip() for line in theirs.splitlines()]


def test_write_memory_patches_code_the_guest_runs_next():
    target = start("patch")
    try:
        mark, answer = symbol_address(target, "mark"), symbol_address(target, "answer")
        target.insert_breakpoint(mark)
        seen = []
        assert target.resume(syscalls=False).kind is StopKind.BREAKPOINT
        seen.append(word(target.registers_raw(), "x0"))
        target.write_memory(answer, struct.pack("<I", 0x52800040))  # mov w0, #2
        for _ in range(3):
            assert target.resume(syscalls=False).kind is StopKind.BREAKPOINT
            seen.append(word(target.registers_raw(), "x0"))
        assert seen == [1, 2, 2, 2]
        target.remove_breakpoint(mark)
        stop = target.resume(syscalls=False)
        assert stop.kind is StopKind.EXITED and stop.exit_code == 0
    finally:
        target.close()


def test_an_atomic_sequence_is_one_step_as_in_gdb():
    """Stepping between ldaxr and stlxr would clear the exclusive monitor
    and loop for ever: the sequence is one step, landing after the stlxr
    (where gdb-multiarch's stepi lands on the same stub)."""
    target = start("atomic")
    try:
        bump = symbol_address(target, "bump")
        code = target.read_memory(bump, 20)
        mnemonics = [insn.mnemonic for insn in arm64_disassembler().disasm(code, bump)]
        assert mnemonics == ["ldaxr", "add", "stlxr", "cbnz", "ret"]
        target.insert_breakpoint(bump)
        assert target.resume(syscalls=False).kind is StopKind.BREAKPOINT and target.pc == bump
        counter = word(target.registers_raw(), "x0")
        before = int.from_bytes(target.read_memory(counter, 4), "little")
        returns_to = word(target.registers_raw(), "x30")
        pcs = []
        for _ in range(8):  # stepped one instruction at a time, the stlxr fails for ever
            assert target.step().kind is StopKind.STEP
            pcs.append(target.pc)
            if target.pc == returns_to:
                break
        assert pcs == [bump + 12, bump + 16, returns_to]  # after the stlxr, the ret, back in main
        assert int.from_bytes(target.read_memory(counter, 4), "little") == before + 1
        target.remove_breakpoint(bump)
        stop = target.resume(syscalls=False)
        assert stop.kind is StopKind.EXITED and stop.exit_code == 0  # the counter reached 2
    finally:
        target.close()


def symbol_address(target, name: str) -> int:
    with open(PROBE, "rb") as handle:
        value = next(s["st_value"] for s in ELFFile(handle).get_section_by_name(".symtab").iter_symbols()
                     if s.name == name)
    return auxv(target)[AT_ENTRY] - elf_entry(PROBE) + value


def arm64_disassembler():
    return capstone.Cs(AARCH64.capstone_arch, AARCH64.capstone_mode)


def test_set_registers_raw_holds_across_a_step(at_start):
    raw = bytearray(at_start.registers_raw())
    offset = AARCH64.register_offset("x7")
    raw[offset:offset + 8] = (0x1122334455667788).to_bytes(8, "little")
    at_start.set_registers_raw(bytes(raw))
    pc = at_start.pc
    assert at_start.step().kind is StopKind.STEP
    assert at_start.pc == pc + 4
    assert word(at_start.registers_raw(), "x7") == 0x1122334455667788


def test_fatal_signal_is_a_stop_then_the_death():
    target = start("segv")
    try:
        stop = target.resume(syscalls=False)
        assert stop.kind is StopKind.SIGNAL and stop.signal == signal.SIGSEGV
        target.pending_signal = stop.signal
        stop = target.resume(syscalls=False)
        assert stop.kind is StopKind.KILLED and stop.signal == signal.SIGSEGV
        assert not target.alive
    finally:
        target.close()


def test_handled_signal_is_delivered_and_suppressed_as_asked():
    for deliver, code in ((True, 3), (False, 3)):
        with tempfile.TemporaryFile() as output:
            target = start("usr1", stdout_fd=output.fileno())
            try:
                stop = target.resume(syscalls=False)
                assert stop.kind is StopKind.SIGNAL and stop.signal == signal.SIGUSR1
                if deliver:
                    target.pending_signal = stop.signal
                stop = target.resume(syscalls=False)
                assert stop.kind is StopKind.EXITED and stop.exit_code == code
            finally:
                target.close()
            output.seek(0)
            assert (b"handled 10" in output.read()) is deliver


def test_interrupt_stops_a_resume_in_another_thread():
    target = start("sleep")
    try:
        stops = []
        runner = threading.Thread(target=lambda: stops.append(target.resume(syscalls=False)))
        runner.start()
        time.sleep(0.2)
        assert not stops  # sleeping a minute
        target.interrupt()
        runner.join(5)
        assert len(stops) == 1 and stops[0].kind is StopKind.SIGNAL and stops[0].signal == signal.SIGINT
        assert target.alive
    finally:
        target.close()
        runner.join(5)


def test_a_signal_a_syscall_raises_comes_after_its_exit():
    """raise(SIGUSR1) is tgkill of itself: ptrace shows tgkill's entry,
    its exit, then the signal; so does the qemu target."""
    target = start("usr1")
    try:
        seen = []
        while True:
            stop = target.resume(syscalls=True)
            if stop.kind is not StopKind.SYSCALL:
                break
            info = target.syscall_info()
            if info.op == ptrace.SYSCALL_INFO_ENTRY:
                seen.append(AARCH64.syscall_names.get(info.number))
            else:
                seen.append(info.return_value)
        assert seen[-2:] == ["tgkill", 0]
        assert stop.kind is StopKind.SIGNAL and stop.signal == signal.SIGUSR1
        target.pending_signal = stop.signal
        assert target.resume(syscalls=False).exit_code == 3
    finally:
        target.close()


def test_close_leaves_no_qemu_and_no_files():
    target = start("exit", "0")
    pid = target.pid
    workdirs = [path for path in Path(tempfile.gettempdir()).glob("loaderdbg-qemu-*")
                if Path(path, f"log.{pid}").exists()]
    assert len(workdirs) == 1
    target.close()
    assert not Path(f"/proc/{pid}").exists()
    assert not workdirs[0].exists()
    with pytest.raises(TargetError):
        target.step()
    target.kill()  # twice is harmless


def test_a_dropped_target_takes_qemu_with_it():
    target = start("sleep")
    pid = target.pid
    del target
    gc.collect()
    assert not Path(f"/proc/{pid}").exists()


def test_qemu_dies_when_loaderdbg_is_killed_by_sigterm():
    """The guest sleeps in a continue: without PR_SET_PDEATHSIG qemu would
    carry on for a minute after its debugger's death."""
    script = textwrap.dedent(f"""
        import sys, time
        from loaderdbg.process.qemu_target import launch
        from loaderdbg.process.tracee import LaunchSpec
        target = launch(LaunchSpec({str(PROBE)!r}, ("probe", "sleep"), {{"PATH": "/usr/bin"}}))
        print(target.pid, flush=True)
        target.resume(syscalls=False)  # the guest sleeps a minute, qemu with it
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        qemu_pid = int(holder.stdout.readline())
        time.sleep(0.1)  # the continue is on its way
        assert process_state(qemu_pid) not in (None, "Z")
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=10)
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while process_state(qemu_pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.02)
    survived = process_state(qemu_pid) not in (None, "Z")
    if survived:
        os.kill(qemu_pid, signal.SIGKILL)  # not left behind for the next tests
    # A SIGTERM'd loaderdbg cannot remove its qemu log directory: this test's is removed here.
    for workdir in Path(tempfile.gettempdir()).glob("loaderdbg-qemu-*"):
        if (workdir / f"log.{qemu_pid}").exists():
            shutil.rmtree(workdir, ignore_errors=True)
    assert not survived


def process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_not_an_aarch64_program_is_a_clear_error(tmp_path):
    with pytest.raises(TargetError, match="not an aarch64 program"):
        launch(LaunchSpec("/bin/true", ("true",), dict(ENV)))
    with pytest.raises(TargetError, match="No such file"):
        launch(LaunchSpec(str(tmp_path / "missing"), ("missing",), dict(ENV)))
    text = tmp_path / "text"
    text.write_text("not elf")
    with pytest.raises(TargetError, match="not an ELF"):
        launch(LaunchSpec(str(text), ("text",), dict(ENV)))
