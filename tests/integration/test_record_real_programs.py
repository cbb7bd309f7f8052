"""Recording real programs where the recorder's bookkeeping is easy to get
wrong: a fault the program handles and lives on from, rt_sigreturn's r11,
an execve or a step that a SIGKILL cuts into, a Ctrl-C met as a chunk ends
or as a caught child's recording ends, a second Ctrl-C mid-run. The order a
race takes is forced with real ptrace calls and real signals on the real
process (a kill sent at the exact stop), never mocked.

The programs are tiny static C programs built here, or hello-static (a
static startup is ~11,000 steps: each recording takes well under a second).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from loaderdbg.process import ptrace
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

from stack_pushes import call_that_changes_the_stack

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
EXECVE = 59  # x86-64 syscall number

R11_AFTER_A_HANDLER_C = r"""
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
static void unprotect(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)context;
    mprotect((void *)((long)info->si_addr & ~4095L), 4096, PROT_READ | PROT_WRITE);
}
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = unprotect;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    char *page = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long r11;
    /* r11 holds a value with bit 8 (the trap flag's place in RFLAGS) set when
       the store faults; rt_sigreturn gives it back as it was. */
    __asm__ volatile("mov $0x1100, %%r11\n\tmovb $42, (%1)\n\tmov %%r11, %0"
                     : "=r"(r11) : "r"(page + 100) : "r11", "memory");
    return r11 == 0x1100 && page[100] == 42 ? 0 : 1;
}
"""

SHARED_WRITER_C = r"""
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(void) {
    volatile long *shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);  /* it dies with the recorded parent */
        for (long i = 1;; i++)
            shared[0] = i;                 /* writes the recorder never sees happen */
    }
    while (shared[0] < (1L << 62))
        ;
    return 0;
}
"""

EXEC_SELF_C = r"""
#include <unistd.h>
int main(int argc, char **argv) {
    (void)argv;
    if (argc > 1)
        return 0;
    char *again[] = {"exec-self", "again", 0};
    execv("/proc/self/exe", again);
    return 1;
}
"""


def build_static(directory, name: str, source: str) -> str:
    path = str(directory / name)
    gcc = subprocess.run(["gcc", "-static", "-O1", "-o", path, "-x", "c", "-"], input=source, text=True,
                         capture_output=True)
    if gcc.returncode:
        pytest.skip(f"cannot build {name}: {gcc.stderr.strip()}")
    return path


def spec_for(path: str) -> LaunchSpec:
    return LaunchSpec(path=path, argv=(path,), env=dict(ENV))


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("programs")
    return {"exec-self": build_static(directory, "exec-self", EXEC_SELF_C),
            "r11-after-a-handler": build_static(directory, "r11-after-a-handler", R11_AFTER_A_HANDLER_C),
            "shared-writer": build_static(directory, "shared-writer", SHARED_WRITER_C)}


def test_a_fault_the_program_handles_does_not_end_the_recording_as_a_crash(tmp_path, fixtures_dir):
    """zoo/segv-handled: the SIGSEGV is recorded (a signal, no crash
    milestone), its handler runs, the store runs again and the program
    exits 0: the recording ends 'exited with status 0', as the run did, not
    with the fault it lived through."""
    path = tmp_path / "handled.ldbg"
    summary = record_program(spec_for(str(fixtures_dir / "zoo" / "segv-handled")), str(path), "exit",
                             progress=False)
    assert summary.divergences == 0
    assert summary.stop_reason.kind == "exited" and summary.stop_reason.exit_code == 0, summary.stop_reason
    with ReplaySession(str(path)) as replay:
        assert replay.end_reason.kind == "exited" and replay.end_reason.exit_code == 0
        assert [e.name for e in replay.events() if e.kind == "signal"] == ["SIGSEGV"]
        assert "crash" not in [e.name for e in replay.events() if e.kind == "milestone"]
        assert replay.verify().ok


def test_rt_sigreturn_gives_r11_back_untouched(tmp_path, programs):
    """A stepped `syscall` saves RFLAGS, our trap flag with it, in r11, and
    the recorder takes the flag out again. rt_sigreturn is a `syscall` too,
    but the r11 it leaves is the interrupted code's own: a value that merely
    has bit 8 set must stay as it is, in the process (the program checks it
    and exits 1 otherwise) and in the recording."""
    path = tmp_path / "r11.ldbg"
    summary = record_program(spec_for(programs["r11-after-a-handler"]), str(path), "exit", progress=False)
    assert summary.stop_reason.kind == "exited" and summary.stop_reason.exit_code == 0, summary.stop_reason
    assert summary.divergences == 0
    with ReplaySession(str(path)) as replay:
        sigreturn = [e for e in replay.events() if e.kind == "syscall" and e.name == "rt_sigreturn"]
        assert len(sigreturn) == 1
        replay.goto(sigreturn[0].step)
        assert replay.register("r11") == 0x1100
        assert replay.verify().ok


def test_stepping_rt_sigreturn_live_gives_r11_back_untouched(programs):
    """The same in a live session stepped by hand from the fault through the
    handler: back at the store, r11 is 0x1100 and the program exits 0."""
    from loaderdbg.live import LiveSession
    with LiveSession(spec_for(programs["r11-after-a-handler"])) as live:
        assert live.cont("signal").signal == "SIGSEGV"
        store = live.snapshot().registers["rip"]
        for _ in range(200):
            live.step()
            if live.snapshot().registers["rip"] == store:
                break
        assert live.snapshot().registers["rip"] == store
        assert live.snapshot().registers["r11"] == 0x1100
        assert live.cont().exit_code == 0


def _at_execve(pid: int, regs: ptrace.RegisterBuffer) -> bool:
    raw = regs.fetch(pid)
    rip = int.from_bytes(raw[16 * 8:17 * 8], "little")  # user_regs_struct.rip
    rax = int.from_bytes(raw[10 * 8:11 * 8], "little")
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(rip)
        return mem.read(2) == b"\x0f\x05" and rax == EXECVE


def _argv_at(replay: ReplaySession, sp: int) -> list[bytes] | None:
    """The argument strings of the initial stack at ``sp`` (argc, argv[]),
    as the replayed memory holds them."""
    argc = replay.read_memory(sp, 8)
    if argc is None:
        return None
    strings = []
    for index in range(int.from_bytes(argc, "little")):
        pointer = replay.read_memory(sp + 8 + 8 * index, 8)
        text = None if pointer is None else replay.read_memory(int.from_bytes(pointer, "little"), 32)
        if text is None:
            return None
        strings.append(text.split(b"\0", 1)[0])
    return strings


def _the_new_image_is_recorded(path, summary) -> None:
    """The execve completed before the kill: the recording's last step is the
    new image at its first instruction, with its own memory (its argv on its
    new stack), and nothing diverges."""
    assert summary.stop_reason.kind == "killed" and summary.divergences == 0, summary
    with ReplaySession(str(path)) as replay:
        replay.goto(replay.last_step)
        assert replay.pc == replay.recording.meta["entry_pc"]  # the same static program, its entry again
        assert _argv_at(replay, replay.register("rsp")) == [b"exec-self", b"again"]
        replay.snapshot()
        execs = [e for e in replay.events() if e.kind == "syscall" and e.name == "execve"]
        assert len(execs) == 1 and execs[0].detail.endswith("= 0")
        assert any(e.kind == "milestone" and e.name == "exec" for e in replay.events())
        assert replay.verify().ok


def test_kill_after_the_exec_event_keeps_the_new_image(tmp_path, monkeypatch, programs):
    """A SIGKILL that lands once the exec event was reported, before the
    recorder has left execve: its PTRACE_SYSCALL finds the thread woken by
    the kill (ESRCH, the exit event follows), or finds it already at its
    exit event and lets it die with no stop left to read it at (which of
    the two depends on the scheduler; both happen here). The execve
    happened: the recording has it, then the kill."""
    real_syscall = ptrace.syscall
    killed = []

    def kill_then_leave_execve(pid, signal_number=0):
        if not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return real_syscall(pid, signal_number)

    monkeypatch.setattr(ptrace, "syscall", kill_then_leave_execve)
    path = tmp_path / "exec-killed.ldbg"
    summary = record_program(spec_for(programs["exec-self"]), str(path), "exit", progress=False)
    assert killed
    _the_new_image_is_recorded(path, summary)


def test_kill_in_place_of_the_exec_event_keeps_the_new_image(tmp_path, monkeypatch, programs):
    """A SIGKILL that lands after execve replaced the address space but
    before its exec event stopped the thread: the exit event comes in the
    exec event's place, with the new image's registers. The order is forced:
    step the execve, take its exec event, kill, and the recorder's wait gets
    the exit event."""
    real_singlestep = ptrace.singlestep
    regs = ptrace.RegisterBuffer()
    seen = []

    def singlestep_then_kill(pid, signal_number=0):
        at_execve = not seen and _at_execve(pid, regs)
        real_singlestep(pid, signal_number)
        if at_execve:
            status = ptrace.waitpid(pid)[1]
            seen.append(status)
            assert (status >> 16) & 0xFF == ptrace.EVENT_EXEC
            os.kill(pid, signal.SIGKILL)

    monkeypatch.setattr(ptrace, "singlestep", singlestep_then_kill)
    path = tmp_path / "exec-replaced.ldbg"
    summary = record_program(spec_for(programs["exec-self"]), str(path), "exit", progress=False)
    assert seen
    _the_new_image_is_recorded(path, summary)


@pytest.fixture(scope="module")
def hello_static(fixtures_dir):
    return str(fixtures_dir / "zoo/hello-static")


def test_kill_between_a_trap_and_its_registers(tmp_path, monkeypatch, hello_static):
    """A SIGKILL that lands after the step's trap was reported but before
    the registers were read: GETREGS finds the thread woken by the kill
    (ESRCH), on its way to its exit event. The step ran and is recorded,
    the recording ends 'killed by SIGKILL', with no SIGTRAP the program
    never got. The order is forced as the step helper meets it: step, take
    the trap, kill, and hand back the trap without registers."""
    real_step = ptrace.step_and_fetch
    regs = ptrace.RegisterBuffer()
    seen = {"steps": 0, "rip_after": None}

    def trap_then_kill(c_pid, regs_addr):
        seen["steps"] += 1
        if seen["steps"] < 3000 or seen["rip_after"] is not None:
            return real_step(c_pid, regs_addr)
        pid = c_pid.value
        ptrace.singlestep(pid)
        status = ptrace.waitpid(pid)[1]
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP
        seen["rip_after"] = int.from_bytes(regs.fetch(pid)[16 * 8:17 * 8], "little")
        os.kill(pid, signal.SIGKILL)
        return status  # no STEP_REGS_FETCHED: GETREGS failed

    monkeypatch.setattr(ptrace, "step_and_fetch", trap_then_kill)
    path = tmp_path / "killed-before-getregs.ldbg"
    summary = record_program(spec_for(hello_static), str(path), "exit", progress=False)
    assert seen["rip_after"] is not None
    assert summary.stop_reason.kind == "killed" and summary.divergences == 0, summary
    with ReplaySession(str(path)) as replay:
        replay.goto(replay.last_step)
        assert replay.pc == seen["rip_after"]
        assert not [e for e in replay.events() if e.kind == "signal"]
        assert replay.verify().ok



def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def test_ctrl_c_as_a_caught_childs_recording_ends_does_not_leave_it_stopped(tmp_path, monkeypatch,
                                                                            fixtures_dir):
    """Ctrl-C stops a recording by a SIGSTOP sent to the stepping thread,
    which the next step meets. When it comes as the recording is ending
    anyway (here: its target reached, the file being finished), no step
    meets it: a caught child, let go to run on, must not take that SIGSTOP
    with it and stay stopped, untraced, for good (its parent waiting on it
    forever). The order is forced: the SIGINT is raised as the file is
    finished."""
    from spawner import Spawner, execsolib_so
    from loaderdbg.record.recorder import record_spawn
    from loaderdbg.record.writer import RecordingWriter

    real_finish = RecordingWriter.finish

    def ctrl_c_then_finish(writer, hurry=False):
        os.kill(os.getpid(), signal.SIGINT)  # our handler runs here, in the main thread
        return real_finish(writer, hurry)

    monkeypatch.setattr(RecordingWriter, "finish", ctrl_c_then_finish)
    spawner = Spawner(fixtures_dir, execsolib_so(fixtures_dir, "glibc-O2"))
    child = None
    try:
        path = tmp_path / "caught.ldbg"
        summary = record_spawn(spawner.proc.pid, str(path), "ldso-entry", match="*libexecsolib*",
                               on_ready=spawner.spawn, progress=False, timeout=30)
        assert summary.stop_reason.reached
        with ReplaySession(str(path)) as replay:
            child = replay.recording.meta["pid"]
        states = []
        for _ in range(100):
            states.append(_state(child))
            if states[-1] in (None, "Z", "X"):
                break
            time.sleep(0.05)
        assert states[-1] in (None, "Z", "X"), f"the caught child is left {states[-3:]}"
        assert spawner.status_line().endswith("status=exited:0")
    finally:
        if child is not None and _state(child) == "T":
            os.kill(child, signal.SIGKILL)
        spawner.close()


def test_a_second_ctrl_c_mid_chunk_leaves_a_file_that_verifies(tmp_path, monkeypatch, hello_static):
    """A second Ctrl-C (or SIGTERM: `timeout` passes its own on, so a
    recorder under it gets two) ends the recording at once, from wherever
    the step loop was: the file keeps the steps up to the last complete
    one, and must verify. The stores of the steps it drops were already in
    the recorder's copy of memory: the file's last image must not have
    them. Forced: two real SIGINTs delivered to the recorder in a run of
    plain steps, just after a `call` stored its return address."""
    real_step = ptrace.step_and_fetch
    regs = ptrace.RegisterBuffer()
    state = {"calls": 0, "after_call": False}

    def two_ctrl_c_after_a_call(c_pid, regs_addr):
        state["calls"] += 1
        if state["after_call"]:
            os.kill(os.getpid(), signal.SIGINT)  # the first: a clean stop is asked for
            os.kill(os.getpid(), signal.SIGINT)  # the second: KeyboardInterrupt, here
        state["after_call"] = state["calls"] > 5000 and call_that_changes_the_stack(c_pid.value, regs.fetch(c_pid.value))
        return real_step(c_pid, regs_addr)

    monkeypatch.setattr(ptrace, "step_and_fetch", two_ctrl_c_after_a_call)
    path = tmp_path / "twice.ldbg"
    with pytest.raises(KeyboardInterrupt):
        record_program(spec_for(hello_static), str(path), "exit", progress=False, keyframe_chunks=1)
    with ReplaySession(str(path)) as replay:
        assert replay.end_reason.kind == "interrupted" and replay.last_step > 4096
        report = replay.verify()
        assert report.ok, report.describe()
        replay.goto(replay.last_step)
        replay.snapshot()


def test_ctrl_c_met_right_after_a_chunk_ends_with_memory_changed_outside(tmp_path, monkeypatch, programs):
    """Memory another process writes (a MAP_SHARED page its untraced child
    keeps writing) changes with no step of ours: each keyframe finds it
    and records it as a fixup. A Ctrl-C handled while a chunk is written
    is met at the next step, so the recording ends on an empty chunk: the
    final keyframe's fixups belong to the step before, in a chunk already
    written. It ended in 'OverflowError: can't convert negative value to
    unsigned int' (a traceback, the file left incomplete); now the file is
    complete and replays as recorded. Forced: a real SIGINT raised as the third chunk
    is written."""
    from loaderdbg.record.writer import RecordingWriter
    real_add_chunk = RecordingWriter.add_chunk
    chunks = []

    def ctrl_c_while_writing_a_chunk(writer, *args, **kwargs):
        chunks.append(args[1])  # its first step
        if len(chunks) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_add_chunk(writer, *args, **kwargs)

    monkeypatch.setattr(RecordingWriter, "add_chunk", ctrl_c_while_writing_a_chunk)
    path = tmp_path / "shared.ldbg"
    summary = record_program(spec_for(programs["shared-writer"]), str(path), "exit", progress=False,
                             keyframe_chunks=1)
    assert summary.stop_reason.kind == "interrupted" and summary.steps == 3 * 4096, summary.stop_reason
    assert summary.divergences > 0  # the child's writes, found at the keyframes before
    with ReplaySession(str(path)) as replay:
        assert replay.recording.meta["complete"]
        assert replay.last_step == 3 * 4096 and replay.end_reason.kind == "interrupted"
        # What verify finds is what the recording says it found, and no more:
        # the replay reproduces every keyframe it has.
        report = replay.verify()
        assert report.divergences and all(d.message.startswith("recording: ") for d in report.divergences), \
            report.describe()
        replay.goto(replay.last_step)
        replay.snapshot()
