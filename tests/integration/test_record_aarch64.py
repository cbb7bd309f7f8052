"""record, replay and explain on aarch64 (issue 22): the recorder steps a
qemu-user guest through the stub (record/guest_recorder.py), captures its
stores with record/capture_aarch64.py, and the recording replays, verifies
and explains like an x86 one.

Recordings made once for the module through the CLI: the exec-solib demo
(glibc and musl) to ld.so's entry, the hand-off bug variant to its death, and a plain
program to main (ld.so maps libc and zeroes its bss with `dc zva`, whose
block the recorder learns from the program's read of DCZID_EL0). A fourth
check steps a fixture live and compares every byte that changed in
writable memory with the capture plan's byte ranges.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from loaderdbg.decode.maps import parse_maps
from loaderdbg.process.qemu_target import DEFAULT_SYSROOT, launch
from loaderdbg.process.stops import StopKind
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.capture_aarch64 import PLAIN, WRITES, Aarch64Decoder, store_ranges
from loaderdbg.record.replay import ReplaySession
from loaderdbg.record.shadow import diff_runs

ROOT = Path(__file__).resolve().parents[2]
LOADERDBG = ROOT / ".venv" / "bin" / "loaderdbg"
FIXTURES = ROOT / "build" / "fixtures" / "execsolib"
DEMO = FIXTURES / "aarch64-glibc-O2" / "libexecsolib.so"
DEMO_O0 = FIXTURES / "aarch64-glibc-O0" / "libexecsolib.so"
MUSL_DEMO = FIXTURES / "aarch64-musl-O2" / "libexecsolib.so"
BUG = FIXTURES / "aarch64-handoffbug" / "libexecsolib.so"
HELLO = ROOT / "build" / "fixtures" / "zoo" / "aarch64-hello"
HELLO_MUSL = ROOT / "build" / "fixtures" / "zoo" / "aarch64-hello-musl"
LD_SO = Path(DEFAULT_SYSROOT) / "lib" / "ld-linux-aarch64.so.1"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
CROSS_CHECK_STEPS = 3000
STACK_WINDOW = 64 * 1024  # of the 8 MB guest stack, what is compared: this much below sp

pytestmark = pytest.mark.skipif(
    not (shutil.which("qemu-aarch64") and LD_SO.exists() and DEMO.exists() and BUG.exists()
         and MUSL_DEMO.exists() and HELLO.exists()),
    reason="needs qemu-user, the arm64 sysroot and the aarch64 fixtures (make fixtures)")


def loaderdbg(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(LOADERDBG), *args], capture_output=True, text=True, env=ENV, timeout=timeout,
                          cwd=ROOT)


DEMOS = {"glibc": DEMO, "musl": MUSL_DEMO}


def record(tmp_path_factory, name: str, ending: str, *args: str) -> Path:
    """`loaderdbg record -o NAME.ldbg ARGS…`: it succeeds, ends as ``ending``
    says on stderr, and warns of nothing."""
    path = tmp_path_factory.mktemp("aarch64") / f"{name}.ldbg"
    made = loaderdbg("record", "-o", str(path), *args)
    assert made.returncode == 0, made.stderr
    assert ending in made.stderr and "WARNING" not in made.stderr
    return path


@pytest.fixture(scope="module", params=sorted(DEMOS))
def demo(request, tmp_path_factory) -> tuple[Path, Path]:
    """(program, its recording to ld.so's entry)."""
    program = DEMOS[request.param]
    return program, record(tmp_path_factory, "demo", "reached ldso-entry", "--until", "ldso-entry",
                           str(program), "a", "b")


@pytest.fixture(scope="module")
def bug(tmp_path_factory) -> Path:
    return record(tmp_path_factory, "bug", "SIGSEGV at pc 0x0", str(BUG))


@pytest.fixture(scope="module")
def hello_musl(tmp_path_factory) -> Path:
    return record(tmp_path_factory, "hello-musl", "exited with status 0", str(HELLO_MUSL))


@pytest.fixture(scope="module")
def hello(tmp_path_factory) -> Path:
    return record(tmp_path_factory, "hello", "reached main", "--until", "main", str(HELLO))


def check_recording(path: Path) -> None:
    with ReplaySession(str(path)) as replay:
        meta = replay.recording.meta
        assert (meta["arch"], meta["regs_size"], meta["divergences"], meta["complete"]) == \
            ("aarch64", 34 * 8, 0, True)
        assert replay.arch.name == "aarch64"
    verified = loaderdbg("verify", str(path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "replay matches the recording at all" in verified.stdout


def test_demo_recording_says_its_arch_and_verifies(demo):
    check_recording(demo[1])


def test_crash_and_main_recordings_verify(bug, hello):
    check_recording(bug)
    check_recording(hello)


def test_replayed_syscalls_and_milestones(demo):
    with ReplaySession(str(demo[1])) as replay:
        names = [row["name"] for row in replay.recording.syscalls()]
        assert "memfd_create" in names and "openat" in names and "mmap" in names
        milestones = [e.name for e in replay.events() if e.kind == "milestone"]
        assert milestones[0] == "kernel-entry" and milestones[-1] == "ldso-entry"
        assert {"self-relocation-done", "memfd-create", "argv-rewritten", "ldso-mapped",
                "auxv-rewritten"} <= set(milestones)
        # Stepping back: the position before ld.so's entry is the hand-off's branch.
        replay.goto(replay.last_step)
        entry = replay.pc
        assert entry == replay.recording.meta["ldso"]["entry"]
        replay.goto(replay.last_step - 1)
        assert replay.pc != entry


def comparable(shown: dict, registers: bool = True) -> dict:
    """What a live and a replayed stop at the same place must agree on: all
    but the pid and tids (set_tid_address returns one), the step count (a
    live continue does not count), the AT_RANDOM bytes (random in each run)
    and, past ld.so's start, registers holding values made from them (the
    pointer guard), where late-noticed milestones sit among the events,
    and a thread's state: a
    guest thread's /proc status is qemu's host thread's, which may be running
    or asleep at the moment it is read (it waits on the stub's socket)."""
    tid = str(shown["pid"])

    def no_random(auxv):
        return [a for a in auxv if a["type"] != "AT_RANDOM"]

    keys = ("arch", "stop", "maps", "objects", "relocations", "got", "handoff", "argv", "envp", "link_map",
            "backtrace") + (("registers",) if registers else ())
    return {
        **{key: shown[key] for key in keys},
        "pc": shown["registers"]["pc"], "sp": shown["registers"]["sp"],
        "auxv": no_random(shown["auxv"]),
        "auxv_kernel": no_random(shown["auxv_kernel"]),
        # Only set_tid_address's result is a tid: a pid's digits also occur
        # inside addresses (0x55028516c8 holds pid 28516), a flaky mismatch.
        "events": sorted((e["kind"], e["name"], e["detail"].removesuffix(f" = {tid}")
                          if e["name"] == "set_tid_address" else e["detail"], e["address"])
                         for e in shown["events"]),
        "syscalls": [{k: v for k, v in s.items() if k != "step" and (k != "result" or s["name"] != "set_tid_address")}
                     for s in shown["syscalls"]],
        "threads": [{k: v for k, v in t.items() if k not in ("tid", "state")} for t in shown["threads"]],
    }


def test_live_equals_replay_at_ldso_entry(demo):
    program, recording = demo
    live = loaderdbg("inspect", "--json", "--at", "ldso-entry", str(program), "a", "b")
    assert live.returncode == 0, live.stderr
    replayed = loaderdbg("inspect", "--json", "--at", "ldso-entry", "--replay", str(recording))
    assert replayed.returncode == 0, replayed.stderr
    live_shown, replay_shown = json.loads(live.stdout), json.loads(replayed.stdout)
    assert replay_shown["arch"] == "aarch64" and replay_shown["verified"] is True
    assert replay_shown["stop"]["description"].startswith("reached ldso-entry")
    assert comparable(live_shown) == comparable(replay_shown)


def test_live_equals_replay_at_main(hello):
    live = loaderdbg("inspect", "--json", "--at", "main", str(HELLO))
    assert live.returncode == 0, live.stderr
    replayed = loaderdbg("inspect", "--json", "--at", "main", "--replay", str(hello))
    assert replayed.returncode == 0, replayed.stderr
    live_shown, replay_shown = json.loads(live.stdout), json.loads(replayed.stdout)
    assert replay_shown["stop"]["description"].startswith("reached main")
    assert comparable(live_shown, registers=False) == comparable(replay_shown, registers=False)
    assert sum(r["state"] == "applied" for r in replay_shown["relocations"]) > 100
    # TPIDR_EL0 is no user_pt_regs word: the recording keeps it in its threads rows.
    with ReplaySession(str(hello)) as replay:
        rows = replay.recording.threads_data(replay.last_step)
        assert rows[0]["tls_base"] == int(live_shown["threads"][0]["fs_base"], 16) != 0


def test_musl_program_recorded_through_its_lock_loops(hello_musl):
    """musl's a_cas loops (stlxr before ldaxr, a cbz back) run as one step
    each: stepped, the store-exclusive fails for ever; with the exit gdb's
    rule names, the run went on to the program's end unrecorded."""
    check_recording(hello_musl)
    with ReplaySession(str(hello_musl)) as replay:
        milestones = [e.name for e in replay.events() if e.kind == "milestone"]
        assert milestones[-3:] == ["at-entry", "main", "exit"]
        names = [row["name"] for row in replay.recording.syscalls()]
        assert names[-2:] == ["writev", "exit_group"]
    live = loaderdbg("inspect", "--json", "--at", "main", str(HELLO_MUSL))
    assert live.returncode == 0, live.stderr
    replayed = loaderdbg("inspect", "--json", "--at", "main", "--replay", str(hello_musl))
    assert replayed.returncode == 0, replayed.stderr
    assert comparable(json.loads(live.stdout), registers=False) == \
        comparable(json.loads(replayed.stdout), registers=False)


def test_explain_names_the_clobbering_instruction(bug):
    explained = loaderdbg("explain", str(bug))
    assert explained.returncode == 0, explained.stderr
    text = explained.stdout
    assert "Outcome: SIGSEGV at pc 0x0, fault address 0x0" in text
    assert "`br x0` at" in text and "<execsolib_handoff+" in text and "jumped to 0x0" in text
    assert "x0 was last written by `mov x0, #0`" in text and "(one step earlier)" in text
    assert "Before that, x0 held" in text and "ld.so's entry point" in text
    assert "x0 is the register the hand-off zeroes" in text
    # Further back: the load that put the target in x0, and the store it read.
    assert "from `ldr x0, [sp]`" in text and "was stored by `str x1, [sp]`" in text


def test_replay_at_the_crash(bug):
    with ReplaySession(str(bug)) as replay:
        assert replay.end_reason.signal == "SIGSEGV"
        replay.goto(replay.last_step)
        assert replay.pc == 0 and replay.register("x0") == 0
        replay.goto(replay.last_step - 1)
        branch = replay.pc
        replay.goto(replay.last_step - 2)
        assert replay.pc == branch - 4 and replay.register("x0") == replay.recording.meta["ldso"]["entry"]


def writable_memory(target) -> dict[int, bytes]:
    """start -> bytes of each writable guest mapping (of the stack, the
    window below sp)."""
    sp = target.sp
    out = {}
    for entry in parse_maps(target.maps_text()):
        if not entry.writable:
            continue
        start = entry.start
        if entry.path == "[stack]":
            start = max(start, (sp - STACK_WINDOW) & ~0xFFF)
        data = target.read_memory(start, entry.end - start)
        if data is not None:
            out[start] = data
    return out


def test_capture_plans_cover_every_changed_byte():
    """Step the -O0 demo (self-relocation, its stack frames, the memfd
    copy's start) and, after every instruction that is not a syscall or an
    atomic sequence, check each byte that changed in writable memory lies in
    a range the instruction's plan names."""
    decoder = Aarch64Decoder()
    target = launch(LaunchSpec(str(DEMO_O0), (str(DEMO_O0), "a"), dict(ENV),
                               stdout_fd=os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)))
    checked_stores = set()
    try:
        before = writable_memory(target)
        for step in range(CROSS_CHECK_STEPS):
            regs = target.registers_raw()
            pc = target.pc
            plan = decoder.plan(target.read_memory(pc, 4), pc)
            stop = target.step()
            assert stop.kind is StopKind.STEP, (step, plan.text, stop)
            after = writable_memory(target)
            if plan.kind not in (WRITES, PLAIN):
                before = after  # a syscall or an atomic sequence: not one instruction's stores
                continue
            ranges = store_ranges(plan, regs)
            for start, new in after.items():
                old = before.get(start)
                if old is None or len(old) != len(new):
                    continue
                for offset, length in diff_runs(old, new):
                    lo, hi = start + offset, start + offset + length
                    assert any(a <= lo and hi <= a + size for a, size in ranges), \
                        f"step {step}: `{plan.text}` at {pc:#x} changed [{lo:#x}, {hi:#x}), its plan names " \
                        f"{[(hex(a), size) for a, size in ranges]}"
            if ranges:
                checked_stores.add(plan.text.split()[0])
            before = after
    finally:
        target.kill()
    assert {"str", "stp"} <= checked_stores, checked_stores


@pytest.mark.skipif(not shutil.which("gdb-multiarch"), reason="needs gdb-multiarch")
def test_gdb_multiarch_reverse_steps_the_recording(bug):
    """`loaderdbg serve --stdio` gives gdb-multiarch the aarch64 recording:
    continue to the crash, then one reverse-stepi back onto the `br x0`."""
    gdb = subprocess.run(
        ["gdb-multiarch", "-nx", "-batch", "-ex", f"target remote | {LOADERDBG} serve --stdio {bug}",
         "-ex", "continue", "-ex", "info registers pc x0", "-ex", "reverse-stepi", "-ex", "x/i $pc"],
        capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    out = gdb.stdout
    assert "Program received signal SIGSEGV" in out, gdb.stdout + gdb.stderr
    assert "pc             0x0" in out
    assert "<execsolib_handoff+28>:\tbr\tx0" in out
