"""`loaderdbg serve` driven by the real gdb, in batch mode (issue 21).

Each scenario is one gdb run (`target remote | loaderdbg serve --stdio`)
whose commands are separated by `echo @@NAME` markers; the tests read the
sections. Expected values come from loaderdbg's other fronts (inspect
--json at the same step, the recording's own index), never from the
server under test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.record import index
from loaderdbg.record.replay import ReplaySession

ROOT = Path(__file__).resolve().parents[2]
LOADERDBG = str(Path(sys.executable).with_name("loaderdbg"))
GLIBC = ROOT / "recordings" / "execsolib-glibc-entry.ldbg"
RDXBUG = ROOT / "recordings" / "execsolib-rdxbug-crash.ldbg"
DEMO = ROOT / "build" / "fixtures" / "execsolib" / "glibc-O2" / "libexecsolib.so"
BACK = 25  # reverse-stepi / stepi count
GENERAL = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
           "r14", "r15", "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base")


def run_gdb(serve_args: list[str], sections: list[tuple[str, list[str]]], timeout: float = 120,
            native: list[str] | None = None) -> dict[str, str]:
    """``native``: gdb's own commands that start the program (file, starti,
    attach) instead of `target remote` to the server: native gdb, compared."""
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    remote = " ".join([LOADERDBG, "serve", "--stdio", *serve_args])
    start = native if native is not None else [f"target remote | {remote}"]
    args = [gdb, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", "set remotetimeout 60"] + [arg for command in start for arg in ("-ex", command)]
    for name, commands in sections:
        args += ["-ex", f"echo @@{name}\\n"]
        for command in commands:
            args += ["-ex", command]
    args += ["-ex", "echo @@END\\n"]
    # One pipe for both: monitor output is gdb's stderr, and must stay in its section.
    done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          check=False, cwd=ROOT)
    out = done.stdout
    parts = re.split(r"^@@(\w+)$", out, flags=re.M)
    found = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    assert "END" in found, out  # gdb ran every command (a failed one ends a batch run)
    assert "Traceback" not in out, out
    found["_all"] = out
    return found


def registers(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in GENERAL and fields[1].startswith("0x"):
            values[fields[0]] = int(fields[1], 16)
    return values


def step_of(text: str) -> int:
    found = re.search(r"^step (\d+)", text, flags=re.M)
    assert found, text
    return int(found.group(1))


def inspect_json(*args: str) -> dict:
    done = subprocess.run([LOADERDBG, "inspect", "--json", *args], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


# -- the glibc exec-solib recording, served from AT_ENTRY (its last step) -----------------

@pytest.fixture(scope="module")
def at_entry():
    snapshot = inspect_json("--replay", str(GLIBC), "--at", "entry")
    debug = snapshot["r_debug"][0]
    r_version = int(debug["address"], 16)
    r_brk = int(debug["brk"], 16)
    maps_copy = Path(__file__).parent / ".." / ".." / "build" / "serve-test-maps.txt"
    maps_copy = maps_copy.resolve()
    maps_copy.unlink(missing_ok=True)
    sections = [
        ("start", ["info registers", "info registers fs_base gs_base orig_rax", "monitor step"]),
        ("libs", ["info sharedlibrary"]),
        ("auxv", ["info auxv"]),
        ("maps", [f"remote get /proc/{snapshot['pid']}/maps {maps_copy}"]),
        ("back", [f"reverse-stepi {BACK}", "info registers", "info registers fs_base gs_base", "monitor step"]),
        ("forward", [f"stepi {BACK}", "info registers", "info registers fs_base gs_base", "monitor step"]),
        ("break", [f"break *{r_brk:#x}", "reverse-continue", "monitor step", "info registers rip",
                   "reverse-continue", "monitor step", "delete"]),
        ("who", [f"monitor who {r_version:#x} 8"]),
        ("watch", [f"watch *(long*){r_version:#x}", "reverse-continue", "monitor step", "continue",
                   "monitor step", "delete"]),
        ("refused", ["set var $rax = 1", "set {long}$rsp = 1"]),
    ]
    out = run_gdb(["--at", "entry", str(GLIBC)], sections)
    maps = maps_copy.read_text() if maps_copy.exists() else None
    maps_copy.unlink(missing_ok=True)
    with ReplaySession(str(GLIBC)) as replay:
        last = replay.last_step
        replay.goto(last)
        recorded_maps = replay.recording.maps_text(last)
    return dict(out=out, snapshot=snapshot, last=last, r_brk=r_brk, maps=maps, recorded_maps=recorded_maps)


def test_connects_at_the_step_asked_for(at_entry):
    out, snapshot = at_entry["out"], at_entry["snapshot"]
    assert step_of(out["start"]) == at_entry["last"] == snapshot["step"]
    regs = registers(out["start"])
    assert regs["rip"] == int(snapshot["registers"]["rip"], 16)
    assert regs["rsp"] == int(snapshot["registers"]["rsp"], 16)
    assert regs["fs_base"] == int(snapshot["registers"]["fs_base"], 16), out["start"]


def test_reverse_stepi_then_stepi_returns_to_the_same_registers(at_entry):
    out = at_entry["out"]
    start, back, forward = (registers(out[name]) for name in ("start", "back", "forward"))
    assert len(start) >= 20, out["start"]
    assert step_of(out["back"]) == at_entry["last"] - BACK
    assert step_of(out["forward"]) == at_entry["last"]
    assert back != start
    assert forward == start
    # And the registers BACK steps earlier are the recording's at that step.
    earlier = inspect_json("--replay", str(GLIBC), "--at", f"step:{at_entry['last'] - BACK}")
    assert back["rip"] == int(earlier["registers"]["rip"], 16)
    assert back["rsp"] == int(earlier["registers"]["rsp"], 16)


def test_info_sharedlibrary_at_entry_is_our_link_map(at_entry):
    out, snapshot = at_entry["out"], at_entry["snapshot"]
    listed = re.findall(r"^0x[0-9a-f]+\s+0x[0-9a-f]+\s+\S+\s+target:(\S+)$", out["libs"], flags=re.M)
    named = [e["name"] for e in snapshot["link_map"] if e["name"]]
    assert set(named) <= set(listed), out["libs"]
    # ld.so's main program here is the payload inside the launcher file, at its own base: listed too.
    copy = next(o for o in snapshot["objects"] if int(o["base"], 16) ==
                int(next(e for e in snapshot["link_map"] if e["kind"] == "main")["l_addr"], 16))
    assert f"{copy['path']}@{copy['elf_offset']}" in listed or \
        f"{copy['path']}@{int(copy['elf_offset'], 16):#x}" in listed, out["libs"]
    assert len(listed) == len(named) + 1


def test_info_auxv_at_entry_is_the_rewritten_auxv(at_entry):
    out, snapshot = at_entry["out"], at_entry["snapshot"]
    shown = {}
    for line in out["auxv"].splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            value = next((f for f in reversed(fields) if re.fullmatch(r"0x[0-9a-f]+|\d+", f)), None)
            shown[int(fields[0])] = int(value, 0)
    expected = {}
    for entry in snapshot["auxv"]:
        number = next((int(n) for n in re.findall(r"\((\d+)\)", entry["type"])), None)
        expected[entry["type"] if number is None else number] = int(entry["value"], 16)
    by_name = {"AT_ENTRY": 9, "AT_PHDR": 3, "AT_BASE": 7, "AT_PHNUM": 5, "AT_SYSINFO_EHDR": 33, "AT_RANDOM": 25}
    for name, number in by_name.items():
        assert shown[number] == expected[name], (name, out["auxv"])
    # The auxv ld.so sees differs from the kernel's in this exec-solib run: it is the rewritten one.
    kernel = {e["type"]: int(e["value"], 16) for e in snapshot["auxv_kernel"]}
    assert kernel["AT_ENTRY"] != shown[9]


def test_remote_get_proc_maps(at_entry):
    assert at_entry["maps"] == at_entry["recorded_maps"]
    assert "[stack]" in at_entry["maps"]


def test_watch_reverse_continue_stops_where_who_says(at_entry):
    out = at_entry["out"]
    said = re.search(r"written by step (\d+)", out["who"])
    assert said, out["who"]
    assert "Hardware watchpoint" in out["watch"], out["watch"]
    steps = [int(s) for s in re.findall(r"^step (\d+)", out["watch"], flags=re.M)]
    assert steps[0] == int(said.group(1))
    assert steps[1] == steps[0] + 1  # forwards again: right after the same write


def test_break_reverse_continue_stops_at_the_last_earlier_hit(at_entry):
    out = at_entry["out"]
    with ReplaySession(str(GLIBC)) as replay:
        first = index.find_pc(replay.recording, {at_entry["r_brk"]}, before=at_entry["last"])
        second = index.find_pc(replay.recording, {at_entry["r_brk"]}, before=first) if first else None
    assert first is not None
    steps = [int(s) for s in re.findall(r"^step (\d+)", out["break"], flags=re.M)]
    assert steps[0] == first, out["break"]
    assert registers(out["break"])["rip"] == at_entry["r_brk"]
    if second is None:
        assert "No more reverse-execution history" in out["break"] and steps[1] == 0
    else:
        assert steps[1] == second


def test_a_recording_cannot_be_changed(at_entry):
    refused = at_entry["out"]["refused"]
    assert "Could not" in refused or "Cannot" in refused or "E01" in refused, refused


# -- the rdxbug crash -----------------------------------------------------------------

def test_reverse_stepi_from_the_crash_lands_on_the_bad_jump():
    out = run_gdb([str(RDXBUG)], [
        ("crash", ["continue", "info registers rip"]),
        ("jump", ["reverse-stepi", "x/i $pc", "p/x $rdx"]),
        ("xor", ["reverse-stepi", "x/i $pc"]),
    ])
    assert "SIGSEGV" in out["crash"], out["crash"]
    assert registers(out["crash"])["rip"] == 0
    assert re.search(r"=> 0x[0-9a-f]+ <execsolib_handoff\+\d+>:\s+jmp\s+\*%rdx", out["jump"]), out["jump"]
    assert "= 0x0" in out["jump"]
    assert re.search(r"=> 0x[0-9a-f]+ <execsolib_handoff\+\d+>:\s+xor\s+%edx,%edx", out["xor"]), out["xor"]


# -- live: the exec-solib demo at AT_ENTRY -----------------------------------------------

def test_live_info_sharedlibrary_at_entry_lists_ldso_libc_and_the_copy():
    out = run_gdb(["--live", str(DEMO), "hello", "world"], [
        ("before", ["info sharedlibrary"]),
        ("until", ["monitor until entry", "maint flush register-cache", "sharedlibrary"]),
        ("libs", ["info sharedlibrary", "info symbol $pc"]),
        ("end", ["continue"]),
    ])
    listed = re.findall(r"^0x[0-9a-f]+\s+0x[0-9a-f]+\s+\S+\s+target:(\S+)$", out["libs"], flags=re.M)
    assert any(name.endswith("/ld-linux-x86-64.so.2") for name in listed), out["libs"]
    assert any(name.endswith("/libc.so.6") for name in listed), out["libs"]
    assert any(re.search(r"libexecsolib\.so@0x[0-9a-f]+$|memfd", name) for name in listed), out["libs"]
    assert "_start in section .text" in out["libs"]
    assert "exited normally" in out["end"], out["end"]


# -- a fresh recording of a program that exits ---------------------------------------------

def test_exited_recording_ends_with_its_exit_and_reverses_from_there(tmp_path):
    recording = tmp_path / "true.ldbg"
    subprocess.run([LOADERDBG, "record", "-o", str(recording), "/bin/true"], capture_output=True, timeout=120,
                   check=True)
    out = run_gdb([str(recording)], [
        ("end", ["continue", "monitor step", "info sharedlibrary"]),
        ("back", ["reverse-stepi", "monitor step"]),
        ("exit", ["continue", "continue"]),
    ])
    with ReplaySession(str(recording)) as replay:
        last = replay.last_step
    assert "No more reverse-execution history" in out["end"], out["end"]
    assert step_of(out["end"]) == last
    # The program is the exec file, not a library; ld.so and libc are.
    listed = re.findall(r"target:(\S+)$", out["end"], flags=re.M)
    assert not any(name.endswith("/true") for name in listed), out["end"]
    assert any(name.endswith("/libc.so.6") for name in listed), out["end"]
    assert step_of(out["back"]) == last - 1
    assert "exited normally" in out["exit"], out["exit"]


# -- TCP ---------------------------------------------------------------------------------------

def test_tcp_port_zero_prints_the_port_and_frees_it_when_gdb_goes():
    server = subprocess.Popen([LOADERDBG, "serve", "--port", "0", str(RDXBUG)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert found, line
        port = int(found.group(1))
        gdb = shutil.which("gdb")
        done = subprocess.run([gdb, "-nx", "-batch", "-ex", "set remotetimeout 60",
                               "-ex", f"target remote 127.0.0.1:{port}", "-ex", "monitor step", "-ex", "detach"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert "step 0" in done.stdout + done.stderr, done.stdout + done.stderr
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    import socket
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nobody listens there any more


@pytest.mark.parametrize("args, message", [
    ([], "give one of FILE"),
    (["--stdio", "--port", "1", str(RDXBUG)], "give one of --stdio or --port"),
    (["--port", "70000", str(RDXBUG)], "not a TCP port"),
    (["--stdio", "/nonexistent.ldbg"], "nonexistent"),
    (["--stdio", "--at", "nowhere", str(RDXBUG)], "unknown stop target"),
])
def test_bad_command_lines_say_one_line_and_exit_2(args, message):
    done = subprocess.run([LOADERDBG, "serve", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""


def test_pid_attach_serves_the_libraries_and_detaches_leaving_it_running():
    sleeper = subprocess.Popen(["/bin/sleep", "60"])
    try:
        out = run_gdb(["--pid", str(sleeper.pid)], [
            ("libs", ["info sharedlibrary", "monitor who $rax"]),
            ("detach", ["detach"]),
        ])
        listed = re.findall(r"target:(\S+)$", out["libs"], flags=re.M)
        assert any(name.endswith("/libc.so.6") for name in listed), out["libs"]
        assert "needs a recording" in out["libs"]
        status = Path(f"/proc/{sleeper.pid}/status").read_text()
        assert "TracerPid:\t0" in status and "(stopped)" not in status and "(tracing stop)" not in status
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_dlmopen_namespaces_reach_gdb_with_their_lmid():
    from xml.etree import ElementTree

    from loaderdbg.live import LiveSession
    from loaderdbg.serve.live_target import LiveTarget
    from loaderdbg.serve.server import GdbServer

    program = ROOT / "build" / "fixtures" / "zoo" / "dlmopen"
    child = subprocess.Popen([str(program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "dlmopen ok"
        out = run_gdb(["--pid", str(child.pid)], [("libs", ["info sharedlibrary"]), ("detach", ["detach"])])
        # The document itself, from the same server code in this process.
        target = LiveTarget(LiveSession.attach(child.pid))
        try:
            reply = GdbServer(target).handle(b"qXfer:libraries-svr4:read::0,3fff")
            namespaces = {e.namespace for e in target.snapshot().link_map if e.name.endswith("libzoo-ns.so")}
        finally:
            target.close()
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    listed = re.findall(r"^(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+\S+\s+target:(\S+)$", out["libs"], flags=re.M)
    libcs = {start for start, name in listed if name.endswith("/libc.so.6")}
    assert len(libcs) == 2, out["libs"]  # one in each namespace, at two addresses
    assert any(name.endswith("/libzoo-ns.so") for _, name in listed), out["libs"]
    assert reply[:1] == b"l"
    libraries = ElementTree.fromstring(reply[1:]).findall("library")
    lmids = {int(lib.get("lmid"), 16) for lib in libraries if lib.get("name").endswith("libzoo-ns.so")}
    assert lmids == namespaces and 0 not in lmids
    assert {int(lib.get("lmid"), 16) for lib in libraries if lib.get("name").endswith("/libc.so.6")} == \
        {0} | lmids
    assert child.returncode == 0


def test_live_ctrl_c_stops_a_continue():
    """gdb's Ctrl-C (a bare 0x03) while a live continue runs: the process
    stops (SIGINT reported) and can be continued again."""
    import time

    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.live import LiveSession
    from loaderdbg.serve.live_target import LiveTarget

    from rsp_wire import serving

    target = LiveTarget(LiveSession(launch_spec("/bin/sleep", ["30"], aslr=False)))
    with serving(target) as wire:
        wire.send(b"vCont;c")
        time.sleep(0.5)  # well into the sleep
        started = time.monotonic()
        wire.send_raw(b"\x03")
        assert wire.reply().startswith(b"T02")
        assert time.monotonic() - started < 5
        assert target.session.alive
        wire.send(b"k")
