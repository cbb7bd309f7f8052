"""Controlling a recording: stop targets, Ctrl-C, a recorder killed
mid-run, and `explain PROG`. The tracee must never outlive the recorder
(the suite's no-orphans guard checks every test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from loaderdbg.explain import explain_program
from loaderdbg.errors import UsageError
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.format import open_recording
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

from stack_pushes import call_that_changes_the_stack

REPO = Path(__file__).resolve().parents[2]
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def spec_for(path: str, *args: str) -> LaunchSpec:
    return LaunchSpec(path=path, argv=(path, *args), env=dict(ENV))


@pytest.fixture(scope="module")
def static_meta(tmp_path_factory, fixtures_dir):
    """A full recording of hello-static, to know its addresses."""
    program = str(fixtures_dir / "zoo/hello-static")
    path = tmp_path_factory.mktemp("targets") / "full.ldbg"
    summary = record_program(spec_for(program), str(path), "exit", progress=False)
    with ReplaySession(str(path)) as replay:
        assert replay.verify().ok  # the static program's no-divergence case
        return program, summary, replay.recording.meta, replay.events()


def record(tmp_path, program, until, **kwargs):
    path = tmp_path / "t.ldbg"
    summary = record_program(spec_for(program), str(path), until, progress=False, **kwargs)
    return summary, ReplaySession(str(path))


def test_until_first_and_step(tmp_path, static_meta):
    program, full = static_meta[:2]
    assert full.divergences == 0 and full.stop_reason.kind == "exited"
    summary, replay = record(tmp_path, program, "first")
    with replay:
        assert summary.steps == 0 and replay.last_step == 0 and summary.stop_reason.reached
        assert replay.pc == replay.recording.meta["entry_pc"]
    summary, replay = record(tmp_path, program, "step:5000")
    with replay:
        assert summary.steps == 5000 == replay.last_step and summary.stop_reason.reached
        assert replay.verify().ok


def test_until_syscall_addr_sym_main(tmp_path, static_meta):
    program, full, meta, events = static_meta
    summary, replay = record(tmp_path, program, "syscall:write")
    with replay:
        replay.goto(replay.last_step)
        assert replay.register("rax") == 1 and replay.disassemble(replay.pc, 1)[0].mnemonic == "syscall"
        assert "write" in summary.stop_reason.description
    # Not AT_ENTRY: a static program starts there, and addr:, like a live
    # continue, stops at the next arrival, never where it already is.
    main = next(e for e in events if e.name == "main")
    summary, replay = record(tmp_path, program, f"addr:{main.address:#x}")
    with replay:
        assert summary.stop_reason.reached and summary.steps == main.step
        replay.goto(replay.last_step)
        assert replay.pc == main.address
    main_step = main.step
    summary, replay = record(tmp_path, program, "main")
    with replay:
        assert summary.steps == main_step and summary.stop_reason.reached
    summary, replay = record(tmp_path, program, "sym:main")
    with replay:
        assert summary.steps == main_step
        replay.goto(replay.last_step)
        assert replay.symbolize(replay.pc) == "main"
    summary, _ = record(tmp_path, program, "exit", max_steps=1000)
    assert summary.steps == 1000 and not summary.stop_reason.reached


def test_bad_target_is_a_usage_error(tmp_path, static_meta):
    with pytest.raises(UsageError):
        record_program(spec_for(static_meta[0]), str(tmp_path / "x.ldbg"), "nowhere")


@contextmanager
def once_stepping(act):
    """Run ``act(tracee_pid)`` once the recording is well under way (ld.so
    has mapped libc: tens of thousands of steps in), not after a fixed
    delay: setup alone takes seconds on a loaded machine."""
    me = os.getpid()
    done = threading.Event()
    with open(f"/proc/{me}/cmdline", "rb") as handle:
        our_argv = handle.read()

    def watch() -> None:
        while not done.wait(0.05):
            with open(f"/proc/{me}/task/{me}/children") as handle:
                children = [int(pid) for pid in handle.read().split()]
            for pid in children:
                try:
                    # Forked, not yet exec'd: it has our libc mapped. (Its exe
                    # says nothing: a venv of /usr/bin/python3 and the traced
                    # /usr/bin/python3 are the same file.)
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        if handle.read() == our_argv:
                            continue
                    with open(f"/proc/{pid}/maps") as maps:
                        if "libc.so" not in maps.read():
                            continue
                except OSError:
                    continue
                act(pid)
                return
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def test_ctrl_c_leaves_a_valid_file(tmp_path):
    """SIGINT while recording `sleep 30` (stepping, or blocked in
    nanosleep): the recording stops cleanly at the last complete step and
    the tracee is gone."""
    path = tmp_path / "sleep.ldbg"
    with once_stepping(lambda pid: os.kill(os.getpid(), signal.SIGINT)):
        summary = record_program(spec_for("/bin/sleep", "30"), str(path), "exit", progress=False)
    assert summary.interrupted and summary.stop_reason.kind == "interrupted"
    assert summary.seconds < 15
    with ReplaySession(str(path)) as replay:
        assert replay.last_step == summary.steps > 0
        assert replay.end_reason.kind == "interrupted"
        assert replay.verify().ok
    with pytest.raises(ProcessLookupError):
        os.kill(open_recording(str(path)).meta["pid"], 0)


def test_tracee_killed_during_recording(tmp_path):
    """SIGKILL from outside while stepping: the recording says where it
    happened, closes cleanly, and replays to that step."""
    path = tmp_path / "killed-tracee.ldbg"
    me = os.getpid()

    with once_stepping(lambda pid: os.kill(pid, signal.SIGKILL)):
        summary = record_program(spec_for("/usr/bin/python3", "-c", "pass"), str(path), "exit", progress=False)
    reason = summary.stop_reason
    assert reason.kind == "killed" and reason.signal == "SIGKILL" and not summary.interrupted
    assert reason.description == f"killed by SIGKILL at step {summary.steps}" and summary.steps > 0
    with ReplaySession(str(path)) as replay:
        assert replay.recording.meta["complete"] and replay.last_step == summary.steps
        assert replay.end_reason.description == reason.description
        replay.goto(replay.last_step)
        replay.snapshot()
        assert replay.verify().ok


RECORDER = """
import sys
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
spec = LaunchSpec(path="/usr/bin/python3", argv=("python3", "-c", "pass"), env={"PATH": "/usr/bin:/bin"})
record_program(spec, sys.argv[1], "exit", progress=False, keyframe_chunks=2)
"""


def alive(pid: int) -> bool:
    """Running or stopped; a zombie (dead, waiting for init to reap it
    after its parent, the recorder, was killed) does not count."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_killed_recorder_leaves_a_readable_prefix(tmp_path):
    """kill -9 of the recorder: the tracee dies with it (PTRACE_O_EXITKILL)
    and the committed chunks replay."""
    path = tmp_path / "killed.ldbg"
    recorder = subprocess.Popen([sys.executable, "-c", RECORDER, str(path)], cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.25)
            try:
                rec = open_recording(str(path))
            except UsageError:
                continue
            if rec.last_step > 20_000:
                rec.close()
                break
            rec.close()
        recorder.kill()
    finally:
        recorder.wait(timeout=10)
    rec = open_recording(str(path))
    tracee = rec.meta["pid"]
    assert not rec.meta["complete"] and rec.last_step > 20_000
    rec.close()
    for _ in range(100):
        if not alive(tracee):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"tracee {tracee} outlived its recorder")
    with ReplaySession(str(path)) as replay:
        assert replay.end_reason.kind == "end"
        replay.goto(replay.last_step)
        replay.snapshot()
        report = replay.verify()
        assert report.ok and report.keyframes_checked >= 1, report.describe()


def test_explain_a_program(fixtures_dir):
    spec = spec_for(str(fixtures_dir / "execsolib/rdxbug/libexecsolib.so"))
    explanation = explain_program(spec)
    assert not explanation.diverged
    text = explanation.text
    assert "`jmp rdx`" in text and "`xor edx, edx`" in text and "one step earlier" in text
    assert "ld.so's entry point" in text


SIGNALS_C = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int hits;
static void handler(int sig) { hits += sig; }
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigaction(SIGUSR1, &sa, 0);
    sigaction(SIGTRAP, &sa, 0);
    raise(SIGUSR1);                /* a signal stop, then a handler frame */
    __asm__ volatile("int3");      /* the program's own int3: SIGTRAP to its handler */
    int status = -1;
    pid_t child = fork();          /* waited for: it must not be left stopped by us */
    if (child == 0)
        _exit(7);
    waitpid(child, &status, 0);
    if (vfork() == 0)              /* the parent sleeps until the child is gone */
        _exit(0);
    return hits == SIGUSR1 + SIGTRAP && WEXITSTATUS(status) == 7 ? 0 : 1;
}
"""


def test_signal_handlers_int3_and_forks(tmp_path):
    gcc = subprocess.run(["gcc", "-O1", "-o", str(tmp_path / "signals"), "-x", "c", "-"], input=SIGNALS_C,
                         text=True, capture_output=True)
    if gcc.returncode:
        pytest.skip(f"cannot build the signal test program: {gcc.stderr.strip()}")
    summary, replay = record(tmp_path, str(tmp_path / "signals"), "exit")
    with replay:
        assert summary.stop_reason.kind == "exited" and summary.stop_reason.exit_code == 0
        assert summary.divergences == 0 and replay.verify().ok
        signals = [e.name for e in replay.events() if e.kind == "signal"]
        assert signals[:2] == ["SIGUSR1", "SIGTRAP"]
        assert [e.name for e in replay.events() if e.kind == "fork"] == ["fork", "vfork"]


def test_unwritable_output_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        record_program(spec_for("/bin/true"), str(tmp_path / "no" / "such" / "dir.ldbg"), "exit")



def test_kill_landing_after_a_step_ran_keeps_its_write(tmp_path, monkeypatch, static_meta):
    """A SIGKILL that lands after a stepped instruction ran but before its
    trap was reported: the tracee's next stop is its exit event, not the
    step's trap (a race CI once hit). The instruction ran and its store
    with it, so the recording counts that step and records its write; the
    final keyframe must not find the store as a divergence. The order is
    forced with real ptrace calls: step a `call`, wait for the trap, kill,
    wait for the exit event."""
    from loaderdbg.process import ptrace
    real_step = ptrace.step_and_fetch
    regs = ptrace.RegisterBuffer()
    seen = {"steps": 0, "rip_after": None}

    def step_then_kill(c_pid, regs_addr):
        seen["steps"] += 1
        pid = c_pid.value
        if seen["steps"] < 2000 or seen["rip_after"] is not None \
                or not call_that_changes_the_stack(pid, regs.fetch(pid)):
            return real_step(c_pid, regs_addr)
        ptrace.singlestep(pid)
        status = ptrace.waitpid(pid)[1]
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP
        seen["rip_after"] = int.from_bytes(regs.fetch(pid)[16 * 8:17 * 8], "little")
        os.kill(pid, signal.SIGKILL)
        status = ptrace.waitpid(pid)[1]
        assert status >> 8 == signal.SIGTRAP | ptrace.EVENT_EXIT << 8  # the exit event, in the trap's place
        return status

    monkeypatch.setattr(ptrace, "step_and_fetch", step_then_kill)
    path = tmp_path / "killed-after-step.ldbg"
    summary = record_program(spec_for(static_meta[0]), str(path), "exit", progress=False)
    assert seen["rip_after"] is not None
    assert summary.stop_reason.kind == "killed" and summary.divergences == 0
    with ReplaySession(str(path)) as replay:
        replay.goto(replay.last_step)
        assert replay.pc == seen["rip_after"]  # the step that ran is in the recording
        assert replay.verify().ok


def test_kill_landing_after_a_syscall_ran_keeps_what_it_wrote(tmp_path, monkeypatch, static_meta):
    """The same race over a stepped `syscall`: readlink has filled its
    buffer when the SIGKILL lands, before the step's trap. The recording
    counts the syscall as returned, with its result and the bytes the
    kernel wrote, and finds no divergence at the end."""
    from loaderdbg.process import ptrace
    real_singlestep = ptrace.singlestep
    regs = ptrace.RegisterBuffer()
    readlink = 89
    seen = {"result": None, "rip_after": None}

    def singlestep_then_kill(pid, signal_number=0):
        raw = regs.fetch(pid)
        rip = int.from_bytes(raw[16 * 8:17 * 8], "little")  # user_regs_struct.rip
        rax = int.from_bytes(raw[10 * 8:11 * 8], "little")
        with open(f"/proc/{pid}/mem", "rb") as mem:
            mem.seek(rip)
            at_syscall = mem.read(2) == b"\x0f\x05"
        real_singlestep(pid, signal_number)
        if seen["result"] is None and at_syscall and rax == readlink:
            status = ptrace.waitpid(pid)[1]
            assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP
            after = regs.fetch(pid)
            seen["result"] = int.from_bytes(after[10 * 8:11 * 8], "little")
            seen["rip_after"] = int.from_bytes(after[16 * 8:17 * 8], "little")
            os.kill(pid, signal.SIGKILL)  # the recorder's wait now gets the exit event

    monkeypatch.setattr(ptrace, "singlestep", singlestep_then_kill)
    path = tmp_path / "killed-after-syscall.ldbg"
    program = static_meta[0]
    summary = record_program(spec_for(program), str(path), "exit", progress=False)
    assert seen["result"] == len(os.path.realpath(program))
    assert summary.stop_reason.kind == "killed" and summary.divergences == 0
    with ReplaySession(str(path)) as replay:
        replay.goto(replay.last_step)
        assert replay.pc == seen["rip_after"] and replay.register("rax") == seen["result"]
        assert replay.verify().ok
