"""Stop targets on real programs: /bin/true, the zoo, and tiny C programs
compiled here. Expected addresses come from `nm`/`readelf` plus the load base
in /proc/PID/maps; syscall facts from `strace`."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.snapshot_json import snapshot_to_json

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "build" / "fixtures" / "zoo"
GLIBC_LDSO = "/lib64/ld-linux-x86-64.so.2"
MUSL_LDSO = "/lib/ld-musl-x86_64.so.1"
AT_FDCWD = 0xFFFFFF9C  # -100 as the int the kernel reads (glibc sets edi)
SUBPROCESS_TIMEOUT = 60


# ----------------------------------------------------------------- helpers

def zoo(name: str) -> str:
    path = ZOO / name
    if not path.is_file():
        pytest.fail(f"{path} missing: run `make fixtures`", pytrace=False)
    return str(path)


def tool(*argv: str, **kw) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=30,
                          **kw).stdout


@functools.lru_cache(maxsize=None)
def elf_entry(path: str) -> int:
    m = re.search(r"Entry point address:\s+(0x[0-9a-f]+)", tool("readelf", "-hW", path))
    return int(m.group(1), 16)


@functools.lru_cache(maxsize=None)
def elf_type(path: str) -> str:
    return re.search(r"^\s*Type:\s+(\S+)", tool("readelf", "-hW", path), re.M).group(1)


def nm_symbol(path: str, name: str) -> int:
    for line in tool("nm", path).splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2] == name and fields[1] in "TtWw":
            return int(fields[0], 16)
    raise AssertionError(f"{name} not in nm {path}")


def dynsym(path: str, name: str) -> int:
    for line in tool("readelf", "-W", "--dyn-syms", path).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[7].split("@")[0] == name and fields[3] == "FUNC":
            return int(fields[1], 16)
    raise AssertionError(f"{name} not in the dynamic symbols of {path}")


def hexint(value: str) -> int:
    assert re.fullmatch(r"0x[0-9a-f]+", value), value
    return int(value, 16)


def map_base(snap: dict, path: str) -> int:
    real = os.path.realpath(path)
    for m in snap["maps"]:
        if m["path"] and os.path.realpath(m["path"]) == real and hexint(m["offset"]) == 0:
            return hexint(m["start"])
    raise AssertionError(f"{path} not mapped")


def pc(snap: dict) -> int:
    return hexint(snap["registers"]["rip"])


class Quiet:
    """A LiveSession with the tracee's output thrown away."""

    def __init__(self, program: str, args: list[str] | None = None) -> None:
        self._devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            self.session = LiveSession(launch_spec(program, args or [], aslr=False,
                                                   stdout_fd=self._devnull, stderr_fd=self._devnull))
        except BaseException:
            os.close(self._devnull)
            raise

    def __enter__(self) -> LiveSession:
        return self.session

    def __exit__(self, *exc) -> None:
        try:
            self.session.close()
        finally:
            os.close(self._devnull)


def json_snapshot(session: LiveSession) -> dict:
    return snapshot_to_json(session.snapshot())


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loaderdbg", *args], capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT, stdin=subprocess.DEVNULL, cwd=ROOT)


@pytest.fixture(scope="module")
def cprogs(tmp_path_factory) -> dict[str, str]:
    """Tiny C programs for the signal and exit targets."""
    sources = {
        "raise_usr1": "#include <signal.h>\nint main(void){ raise(SIGUSR1); return 0; }\n",
        "segv16": "int main(void){ *(volatile int *)16 = 1; return 0; }\n",
        "exit3": "int main(void){ return 3; }\n",
        "int3": "#include <signal.h>\n#include <unistd.h>\n"
                "static void h(int s){ (void)s; write(1, \"caught\\n\", 7); }\n"
                "int main(void){ signal(SIGTRAP, h); __asm__ volatile(\"int3\"); return 0; }\n",
    }
    out = tmp_path_factory.mktemp("cprogs")
    built = {}
    for name, source in sources.items():
        (out / f"{name}.c").write_text(source)
        subprocess.run(["gcc", "-O0", "-o", str(out / name), str(out / f"{name}.c")], check=True,
                       capture_output=True, timeout=60)
        built[name] = str(out / name)
    return built


# ----------------------------------------------------------------- exit
# Run in a child Python: a tracee parked at its exit stop that the engine
# fails to kill would otherwise hang the whole test run.

EXIT_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.live import LiveSession
    from loaderdbg.snapshot_json import snapshot_to_json
    devnull = os.open(os.devnull, os.O_WRONLY)
    s = LiveSession(launch_spec(sys.argv[1], sys.argv[2:], aslr=False, stdout_fd=devnull,
                                stderr_fd=devnull))
    r = s.cont("exit")
    pid = s.pid
    state = ""
    try:
        with open(f"/proc/{pid}/status") as f:
            state = [l for l in f if l.startswith("State:")][0].split(":", 1)[1].strip()
    except OSError:
        pass
    snap = snapshot_to_json(s.snapshot())
    alive = s.alive
    s.close()
    try:
        os.kill(pid, 0)
        gone = False
    except ProcessLookupError:
        gone = True
    print(json.dumps({"reached": r.reached, "kind": r.kind, "description": r.description,
                      "alive": alive, "state": state, "rip": snap["registers"].get("rip"),
                      "gone_after_close": gone}))
""")


def run_to_exit(program: str, *args: str) -> dict:
    try:
        result = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, program, *args],
                                capture_output=True, text=True, timeout=20, cwd=ROOT,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"LiveSession.cont('exit') + close() on {program} hung (> 20 s)")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("program", ["/bin/true", "hello-glibc", "hello-musl", "hello-static"])
def test_exit_stops_alive_then_closes_cleanly(program):
    path = program if program.startswith("/") else zoo(program)
    out = run_to_exit(path)
    assert out["reached"] is True and out["kind"] == "target", out
    assert "about to exit" in out["description"] and "status 0" in out["description"]
    assert out["alive"] is True
    assert out["state"].startswith("t"), out  # tracing stop
    assert out["rip"] is not None
    assert out["gone_after_close"] is True


def test_exit_status_is_reported(cprogs):
    out = run_to_exit(cprogs["exit3"])
    assert out["reached"] is True
    assert "status 3" in out["description"], out


def test_exit_via_cli_json():
    result = run_cli("inspect", "--json", "--at", "exit", "/bin/true")
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    assert snap["stop"]["reached"] is True
    assert "about to exit" in snap["stop"]["description"]
    assert snap["registers"]["rip"]


# ----------------------------------------------------------------- main, addr, sym

@pytest.mark.parametrize("program", ["hello-glibc", "hello-musl"])
def test_main_is_mains_address(program):
    path = zoo(program)
    with Quiet(path) as session:
        reason = session.cont("main")
        assert reason.reached, reason
        snap = json_snapshot(session)
    assert pc(snap) == map_base(snap, path) + nm_symbol(path, "main")
    assert "main" in [e["name"] for e in snap["events"] if e["kind"] == "milestone"]


def test_addr_target_stops_there_with_the_int3_hidden():
    path = zoo("hello-glibc")
    with Quiet(path) as session:
        first = json_snapshot(session)
        addr = map_base(first, path) + nm_symbol(path, "main")
        code_before = session.read_memory(addr, 16)
        reason = session.cont(f"addr:{addr:#x}")
        assert reason.reached, reason
        snap = json_snapshot(session)
        assert pc(snap) == addr
        assert session.read_memory(addr, 16) == code_before
        assert session.alive


def test_addr_target_never_hit_runs_to_exit():
    with Quiet("/bin/true") as session:
        reason = session.cont("addr:0x1000")
        assert reason.reached is False
        assert reason.kind == "exited"


def test_sym_puts_resolves_once_libc_is_mapped():
    path = zoo("hello-glibc")
    with Quiet(path) as session:
        first = json_snapshot(session)
        assert not any("libc.so" in (m["path"] or "") for m in first["maps"])
        reason = session.cont("sym:puts")
        assert reason.reached, reason
        snap = json_snapshot(session)
    libc = next(m["path"] for m in snap["maps"] if m["path"] and "/libc.so" in m["path"])
    assert pc(snap) == map_base(snap, libc) + dynsym(libc, "puts")


def test_sym_on_a_static_program_uses_its_symbol_table():
    """hello-static has no .dynsym; puts is in .symtab (`nm`), and gdb's
    `break puts` stops there. `main` already resolves through .symtab."""
    path = zoo("hello-static")
    with Quiet(path) as session:
        reason = session.cont("sym:puts")
        assert reason.reached, reason
        snap = json_snapshot(session)
    assert pc(snap) == nm_symbol(path, "puts")


def test_sym_on_a_hidden_bootstrap_function_of_the_demo():
    """bootstrap.c keeps its milestone functions out of line "so a debugger
    can break on them"; gdb's `break execsolib_self_relocate` stops at
    base + nm's value. They are hidden, so only .symtab has them."""
    path = str(ROOT / "build/fixtures/execsolib/glibc-O2/libexecsolib.so")
    with Quiet(path, ["a"]) as session:
        first = json_snapshot(session)
        reason = session.cont("sym:execsolib_self_relocate")
        assert reason.reached, reason
        snap = json_snapshot(session)
    assert pc(snap) == map_base(first, path) + nm_symbol(path, "execsolib_self_relocate")


# ----------------------------------------------------------------- syscall

def strace_first(program: str, name: str) -> str:
    out = subprocess.run(["strace", "-qq", "-e", f"trace={name}", "-o", "/dev/stderr", program],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    lines = [line for line in out.stderr.splitlines() if line.startswith(name + "(")]
    assert lines, out.stderr
    return lines[0]


def test_syscall_openat_stops_at_the_entry_of_the_first_openat():
    path = zoo("hello-glibc")
    first = strace_first(path, "openat")  # openat(AT_FDCWD, "/etc/ld.so.cache", ...
    m = re.match(r'openat\(AT_FDCWD, "([^"]+)", ([A-Z_|]+)', first)
    assert m, first
    with Quiet(path) as session:
        reason = session.cont("syscall:openat")
        assert reason.reached and reason.kind == "syscall", reason
        snap = json_snapshot(session)
        regs = {k: hexint(v) for k, v in snap["registers"].items()}
        assert regs["orig_rax"] == 257  # openat
        assert regs["rax"] == (1 << 64) - 38  # -ENOSYS: at the entry, not the exit
        assert regs["rdi"] & 0xFFFFFFFF == AT_FDCWD
        raw = session.read_memory(regs["rsi"], 256)
        assert raw.split(b"\0")[0].decode() == m.group(1)
        # Entry of the *first* openat: none completed before it.
        names = [e["name"] for e in snap["events"] if e["kind"] == "syscall"]
        assert "openat" not in names, names


def test_syscall_any_stops_at_the_first_syscall():
    """`syscall` stops at the entry of the first one strace shows after execve."""
    out = subprocess.run(["strace", "-qq", "-o", "/dev/stderr", "/bin/true"], capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    names = [line.split("(", 1)[0] for line in out.stderr.splitlines() if "(" in line]
    assert names[0] == "execve"
    with Quiet("/bin/true") as session:
        reason = session.cont("syscall")
        assert reason.reached and reason.kind == "syscall"
        # strace's notation for the call, without a result: nothing has run yet.
        first = out.stderr.splitlines()[1].rsplit(" = ", 1)[0].rstrip()
        assert reason.description == f"about to make syscall {first}", (reason, names[:3])


# ----------------------------------------------------------------- step:N

def test_step_count_is_exact():
    with Quiet("/bin/true") as session:
        assert session.position == 0
        reason = session.cont("step:100")
        assert reason.reached
        assert session.position == 100
        session.step(5)
        assert session.position == 105
        session.cont("step:250")
        assert session.position == 250
        regs_a = json_snapshot(session)["registers"]
    with Quiet("/bin/true") as session:
        session.cont("step:250")
        regs_b = json_snapshot(session)["registers"]
    assert regs_a == regs_b  # ASLR off: the same run, instruction for instruction


def test_step_then_step_target_equals_direct_step_target():
    with Quiet("/bin/true") as session:
        for _ in range(7):
            session.step()
        assert session.position == 7
        a = json_snapshot(session)["registers"]
    with Quiet("/bin/true") as session:
        session.cont("step:7")
        b = json_snapshot(session)["registers"]
    assert a == b


def test_step_one_executes_one_instruction():
    """`step:1` from the first instruction executes exactly that instruction.
    ld.so's _start begins with `mov %rsp,%rdi` (3 bytes): after one step rip
    is 3 bytes further and rdi == rsp (gdb: starti; si)."""
    with Quiet("/bin/true") as session:
        first = json_snapshot(session)
        session.cont("step:1")
        one = json_snapshot(session)
    code = bytes.fromhex("4889e7")  # mov %rsp,%rdi
    ldso_base = map_base(first, GLIBC_LDSO)
    assert pc(first) == ldso_base + elf_entry(os.path.realpath(GLIBC_LDSO))
    assert pc(one) == pc(first) + len(code), (hex(pc(first)), hex(pc(one)))
    assert one["registers"]["rdi"] == one["registers"]["rsp"]


# ----------------------------------------------------------------- signal

def test_signal_target_stops_on_raised_signal(cprogs):
    with Quiet(cprogs["raise_usr1"]) as session:
        reason = session.cont("signal")
        assert reason.reached is True, reason
        assert reason.signal == "SIGUSR1"
        assert session.alive
        events = [e for e in session.events() if e.kind == "signal"]
        assert events and events[-1].name == "SIGUSR1"


def test_signal_target_on_fault_reports_fault_address(cprogs):
    with Quiet(cprogs["segv16"]) as session:
        reason = session.cont("signal")
        assert reason.reached is True, reason
        assert reason.signal == "SIGSEGV"
        assert reason.fault_address == 16


def test_fault_stops_other_targets_with_not_reached(cprogs):
    result = run_cli("inspect", "--json", "--at", "exit", cprogs["segv16"])
    assert result.returncode == 1
    snap = json.loads(result.stdout)
    assert snap["stop"]["signal"] == "SIGSEGV" and snap["stop"]["fault_address"] == "0x10"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "exit not reached" in lines[0] and "SIGSEGV" in lines[0]


def test_programs_own_int3_is_delivered_not_swallowed(cprogs):
    """An int3 the program executes itself is a SIGTRAP for the program."""
    result = run_cli("inspect", "--json", "--at", "exit", "--tracee-output", "/dev/stdout",
                     cprogs["int3"])
    assert "caught" in result.stdout.splitlines()[0], result.stdout[:200]


def test_signal_target_not_reached_when_no_signal():
    with Quiet(zoo("hello-glibc")) as session:
        reason = session.cont("signal")
        assert reason.reached is False
        assert reason.kind == "exited"


# ----------------------------------------------------------------- static, static-pie

@pytest.mark.parametrize("program", ["hello-static", "hello-static-pie"])
def test_static_entry_is_first(program):
    path = zoo(program)
    with Quiet(path) as session:
        first = json_snapshot(session)
        reason = session.cont("entry")
        assert reason.reached, reason
        entry = json_snapshot(session)
    base = 0 if elf_type(path) == "EXEC" else map_base(first, path)
    assert pc(first) == base + elf_entry(path)
    assert pc(entry) == pc(first)
    assert entry["step"] == 0
    auxv = {e["type"]: hexint(e["value"]) for e in first["auxv"]}
    assert auxv["AT_ENTRY"] == pc(first) and auxv["AT_BASE"] == 0


@pytest.mark.parametrize("program", ["hello-static", "hello-static-pie"])
def test_static_ldso_entry_not_reached(program):
    result = run_cli("inspect", "--json", "--at", "ldso-entry", "--tracee-output", os.devnull,
                     zoo(program))
    assert result.returncode == 1, result
    snap = json.loads(result.stdout)
    assert snap["stop"]["reached"] is False
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ldso-entry not reached" in lines[0]
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------- ordinary dynamic programs

@pytest.mark.parametrize("program,ldso", [("hello-glibc", GLIBC_LDSO), ("hello-musl", MUSL_LDSO),
                                          ("/bin/true", GLIBC_LDSO)])
def test_dynamic_program_first_is_ldso_entry_then_entry(program, ldso):
    path = program if program.startswith("/") else zoo(program)
    with Quiet(path) as session:
        first = json_snapshot(session)
        reason = session.cont("ldso-entry")
        assert reason.reached, reason
        at_ldso = json_snapshot(session)
        reason = session.cont("entry")
        assert reason.reached, reason
        entry = json_snapshot(session)
    ldso_entry = map_base(first, ldso) + elf_entry(os.path.realpath(ldso))
    assert pc(first) == ldso_entry
    assert pc(at_ldso) == ldso_entry and at_ldso["step"] == 0
    assert at_ldso["handoff"]["checked"] and at_ldso["handoff"]["ok"], at_ldso["handoff"]
    prog_base = map_base(first, path)
    assert pc(entry) == prog_base + elf_entry(path)
    auxv = {e["type"]: hexint(e["value"]) for e in entry["auxv"]}
    assert auxv["AT_ENTRY"] == pc(entry)
    assert auxv["AT_BASE"] == map_base(first, ldso)
    names = [e["name"] for e in entry["events"] if e["kind"] == "milestone"]
    assert names.index("kernel-entry") < names.index("ldso-entry") < names.index("at-entry")


# ----------------------------------------------------------------- ASLR

def test_aslr_off_by_default_and_on_with_aslr():
    def ldso_entry(aslr: bool) -> tuple[int, int]:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            spec = launch_spec("/bin/true", [], aslr=aslr, stdout_fd=devnull, stderr_fd=devnull)
            with LiveSession(spec) as session:
                snap = json_snapshot(session)
        finally:
            os.close(devnull)
        return pc(snap), map_base(snap, GLIBC_LDSO)

    entry = elf_entry(os.path.realpath(GLIBC_LDSO))
    fixed = {ldso_entry(False) for _ in range(2)}
    assert len(fixed) == 1
    randomized = {ldso_entry(True) for _ in range(3)}
    assert len(randomized) > 1  # 3 equal random bases: ~never
    for run_pc, base in fixed | randomized:
        assert run_pc == base + entry


def test_stepping_over_exit_group_stops_at_the_exit(fixtures_dir):
    """The step that runs exit_group lands on the exit event: say so (the
    process is still there to inspect); the next step ends it."""
    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.live import LiveSession

    null = os.open(os.devnull, os.O_WRONLY)
    try:
        spec = launch_spec(str(fixtures_dir / "zoo" / "hello-static"), [], aslr=False,
                           stdout_fd=null, stderr_fd=null)
        with LiveSession(spec) as session:
            assert session.cont("syscall:exit_group").reached
            reason = session.step()
            assert (reason.kind, reason.description, reason.exit_code) == ("exiting", "about to exit (status 0)", 0)
            assert session.alive and session.snapshot().registers is not None
            reason = session.step()
            assert reason.kind == "exited" and not session.alive
    finally:
        os.close(null)
