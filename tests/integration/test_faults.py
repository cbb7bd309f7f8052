"""Fault matrix: the tracee dies under us, the user hits Ctrl-C, the program
forks or takes signals. Nothing hangs, nothing is left stopped."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession

LOADERDBG = [sys.executable, "-m", "loaderdbg"]


def kill_soon(pid: int, delay: float = 0.3) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
    timer.start()
    return timer


@pytest.fixture
def demo(fixtures_dir) -> str:
    return str(fixtures_dir / "execsolib" / "glibc-O2" / "libexecsolib.so")


def test_killed_while_single_stepping(demo):
    with LiveSession(launch_spec(demo, [], aslr=False)) as session:
        session.step(100)
        os.kill(session.pid, signal.SIGKILL)
        # The kill lands asynchronously: a step already under way may finish.
        for _ in range(5):
            reason = session.step()
            if reason.kind != "step":
                break
        assert reason.kind == "killed"
        assert reason.description == f"killed by SIGKILL at step {session.position}"
        assert 100 <= session.position <= 104
        assert not session.alive


def test_killed_during_continue():
    with LiveSession(launch_spec("/bin/sleep", ["30"], aslr=False)) as session:
        timer = kill_soon(session.pid)
        reason = session.cont("exit")
        timer.join()
        assert reason.kind == "killed" and reason.signal == "SIGKILL" and not reason.reached


def test_killed_at_a_syscall_stop():
    with LiveSession(launch_spec("/bin/true", [], aslr=False)) as session:
        assert session.cont("syscall:openat").reached
        os.kill(session.pid, signal.SIGKILL)
        reason = session.cont("exit")
        assert reason.kind == "killed"


def test_ctrl_c_during_inspect_kills_the_tracee(tmp_path: Path):
    marker = tmp_path / "sleeping"
    script = f"import os,time; open('{marker}','w').close(); time.sleep(60)"
    proc = subprocess.Popen([*LOADERDBG, "inspect", "--at", "exit", sys.executable, "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err
    # The tracee (a python sleeping 60 s) is gone with us.
    leftovers = subprocess.run(["pgrep", "-f", str(marker)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


def test_interrupt_from_another_thread():
    with LiveSession(launch_spec("/bin/sleep", ["30"], aslr=False)) as session:
        pid = session.pid

        def interrupt_once_asleep():
            # A fixed delay races the startup on a loaded machine: wait for
            # the sleep itself (nanosleep 35, clock_nanosleep 230).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    with open(f"/proc/{pid}/syscall") as handle:
                        if handle.read().split()[0] in ("35", "230"):
                            break
                except (OSError, IndexError):
                    pass
                time.sleep(0.02)
            session.interrupt()

        timer = threading.Thread(target=interrupt_once_asleep)
        timer.start()
        reason = session.cont("exit")
        timer.join()
        assert reason.kind == "interrupted" and session.alive
        # The session is still usable after an interrupt (a step would wait
        # for the interrupted nanosleep to finish: the kernel restarts it).
        snap = session.snapshot()
        libc = next(o for o in snap.objects if o.name == "libc.so.6")
        assert any(m.object == libc.name and m.entry.start <= snap.registers.pc < m.entry.end
                   for m in snap.maps)  # stopped inside libc's sleep


FORKER = r"""
#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static void on_usr1(int sig) { (void)sig; }
int main(void) {
  signal(SIGUSR1, on_usr1);
  raise(SIGUSR1);
  sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, 0);
  raise(SIGUSR2);                         /* stays pending, blocked */
  for (int i = 0; i < 2; i++) {
    pid_t p = fork();
    if (p == 0) _exit(3);
    int st; waitpid(p, &st, 0); printf("fork %d\n", WEXITSTATUS(st));
  }
  pid_t v = vfork();
  if (v == 0) { execl("/bin/true", "true", (char *)0); _exit(127); }
  int st; waitpid(v, &st, 0); printf("vfork %d\n", WEXITSTATUS(st));
  fflush(stdout);
  execl("/bin/true", "true", (char *)0);
  return 1;
}
"""


def build_c_program(tmp_path_factory, name: str, source: str) -> str:
    directory = tmp_path_factory.mktemp(name)
    (directory / f"{name}.c").write_text(source)
    subprocess.run(["gcc", "-O1", "-o", str(directory / name), str(directory / f"{name}.c")], check=True)
    return str(directory / name)


@pytest.fixture(scope="module")
def forker(tmp_path_factory) -> str:
    return build_c_program(tmp_path_factory, "forker", FORKER)


def test_forks_signals_and_exec_are_followed_or_ignored(forker, tmp_path):
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        with LiveSession(launch_spec(forker, [], aslr=False, stdout_fd=fd)) as session:
            assert session.cont("main").reached
            # A breakpoint the forked children inherit: they must not trip on it.
            snap = session.snapshot()
            session.add_breakpoint(snap.registers.pc + 1)
            session.remove_breakpoint(snap.registers.pc + 1)
            reason = session.cont("exit")
            assert reason.reached, reason
            kinds = [(e.kind, e.name) for e in session.events()]
    finally:
        os.close(fd)
    assert out.read_text() == "fork 3\nfork 3\nvfork 0\n"
    assert ("signal", "SIGUSR1") in kinds
    assert ("fork", "fork") in kinds and ("fork", "vfork") in kinds
    assert ("milestone", "exec") in kinds


# ----------------------------------------------------------------- a fault, then one more step

CRASH_START = r"""
/* No libc, no ld.so: a handful of instructions, then a load from 0x10. */
__asm__(".globl _start\n_start:\n"
        "  mov $7, %eax\n"
        "  xor %ecx, %ecx\n"
        "  mov 0x10(%rcx), %rax\n"
        "  hlt\n");
"""


@pytest.fixture(scope="module")
def crash_start(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("crash")
    (directory / "crash.c").write_text(CRASH_START)
    subprocess.run(["gcc", "-static", "-nostdlib", "-o", str(directory / "crash"),
                    str(directory / "crash.c")], check=True)
    return str(directory / "crash")


def test_step_after_a_fault_reports_the_death(crash_start):
    """The step after a SIGSEGV stop delivers it and the process dies: that
    step says "killed by SIGSEGV at step N" (N: nothing more executed)."""
    with LiveSession(launch_spec(crash_start, [], aslr=False)) as session:
        reason = session.step(10)
        assert reason.kind == "signal" and reason.signal == "SIGSEGV", reason
        assert reason.fault_address == 0x10
        assert session.position == 2 and session.alive  # mov, xor; the load faults
        reason = session.step()
        assert reason.kind == "killed" and reason.signal == "SIGSEGV"
        assert reason.description == "killed by SIGSEGV at step 2"
        assert session.position == 2 and not session.alive
        assert [e.name for e in session.events()][-2:] == ["crash", "exit"]


def test_continue_after_a_fault_reports_the_death(crash_start):
    with LiveSession(launch_spec(crash_start, [], aslr=False)) as session:
        assert session.step(10).kind == "signal"
        reason = session.cont()
        assert reason.kind == "killed" and not reason.reached
        # Resuming from the fault ran nothing: the count is still exact.
        assert reason.description == "killed by SIGSEGV at step 2"
        assert not session.alive


def test_step_after_a_continued_to_fault_reports_the_death(fixtures_dir):
    rdxbug = str(fixtures_dir / "execsolib" / "rdxbug" / "libexecsolib.so")
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        spec = launch_spec(rdxbug, ["a"], aslr=False, stdout_fd=devnull, stderr_fd=devnull)
        with LiveSession(spec) as session:
            reason = session.cont("signal")
            assert reason.reached and reason.signal == "SIGSEGV", reason
            reason = session.step()
            assert reason.kind == "killed"
            assert reason.description == "killed by SIGSEGV after a continue"
            assert not session.alive
            with pytest.raises(Exception, match="the process is gone"):
                session.step()
    finally:
        os.close(devnull)


# ----------------------------------------------------------------- SIGKILL from outside, precisely

def test_killed_in_the_middle_of_a_long_step_run(demo):
    """The kill lands while step(n) is looping on the tracer thread: the
    run ends with the death, at an exact step, nothing left stopped."""
    with LiveSession(launch_spec(demo, [], aslr=False)) as session:
        timer = kill_soon(session.pid, 0.5)
        reason = session.step(10**7)
        timer.join()
        assert reason.kind == "killed" and reason.signal == "SIGKILL"
        assert reason.description == f"killed by SIGKILL at step {session.position}"
        assert session.position > 0 and not session.alive


def test_killed_during_continue_says_after_a_continue():
    with LiveSession(launch_spec("/bin/sleep", ["30"], aslr=False)) as session:
        timer = kill_soon(session.pid)
        reason = session.cont("exit")
        timer.join()
        assert reason.description == "killed by SIGKILL after a continue"
        assert not session.alive
        assert [e.name for e in session.events()][-1] == "exit"


def test_killed_at_a_syscall_stop_is_reported_and_reaped():
    with LiveSession(launch_spec("/bin/true", [], aslr=False)) as session:
        assert session.cont("syscall:openat").reached
        pid = session.pid
        os.kill(pid, signal.SIGKILL)
        reason = session.cont("syscall")
        assert reason.kind == "killed" and reason.signal == "SIGKILL" and not reason.reached
        assert reason.description == "killed by SIGKILL after a continue"
        assert not session.alive
        with pytest.raises(Exception, match="the process is gone"):
            session.step()
    assert not os.path.exists(f"/proc/{pid}")


def test_killed_at_a_syscall_stop_then_stepped():
    """Stepping (not continuing) from the syscall stop of a killed tracee."""
    with LiveSession(launch_spec("/bin/true", [], aslr=False)) as session:
        assert session.cont("syscall:openat").reached
        os.kill(session.pid, signal.SIGKILL)
        reason = session.step()
        assert reason.kind == "killed" and reason.signal == "SIGKILL"
        assert not session.alive


def test_signal_for_the_tracer_while_a_stepped_syscall_blocks():
    """The step helper's waitpid returns EINTR when a signal with a Python
    handler reaches the tracer thread; the wait then finishes in Python and
    the step is still the one instruction it was, r11 fixed included."""
    read_end, write_end = os.pipe()
    caught = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: caught.append(True))
    try:
        spec = dataclasses.replace(launch_spec("/bin/cat", [], aslr=False), stdin_fd=read_end)
        with LiveSession(spec) as session:
            for _ in range(10):  # ld.so reads libc first; cat's read is of fd 0
                assert session.cont("syscall:read").reached
                before = session.snapshot()
                if before.registers.values["rdi"] == 0:
                    break
            stepping = threading.Thread(target=lambda: caught.append(session.step()))
            stepping.start()
            time.sleep(0.3)  # the step is blocked in read(0)
            signal.pthread_kill(session._tracer._thread.ident, signal.SIGUSR1)
            time.sleep(0.2)
            assert stepping.is_alive()  # still waiting for the tracee, not failed
            os.write(write_end, b"x")
            stepping.join(10)
            reason = caught[-1]
            assert reason.kind == "step", reason
            after = session.snapshot()
            regs_before, regs_after = before.registers.values, after.registers.values
            # At the syscall-entry stop rip is already past `syscall`.
            assert regs_after["rip"] == regs_before["rip"]
            assert regs_after["rax"] == 1  # read one byte
            assert regs_after["r11"] & 0x100 == 0  # our trap flag taken out
    finally:
        signal.signal(signal.SIGUSR1, previous)
        os.close(write_end)
        os.close(read_end)


# ----------------------------------------------------------------- threads, spawns, blocked signals

def interrupt_soon(session: LiveSession, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, session.interrupt)
    timer.start()
    return timer


def test_threads_of_a_launched_program_stop_with_it(fixtures_dir, tmp_path):
    """Every thread a launched program creates is traced and stops with it
    (all-stop, issue 20): the main thread steps over clone3 while the new
    thread waits, and an interrupt stops a continue that would never end
    with every thread in a tracing stop."""
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        spec = launch_spec(str(fixtures_dir / "zoo" / "threads"), [], aslr=False, stdout_fd=fd)
        with LiveSession(spec) as session:
            reason = session.cont("syscall:clone3")
            assert reason.reached, reason
            assert session.step(300).kind == "step"  # over clone3 while a thread starts
            timer = interrupt_soon(session, 1.0)
            reason = session.cont("exit")
            timer.join()
            assert reason.kind == "interrupted" and session.alive, reason
            threads = session.threads()
            assert sorted(t.name for t in threads) == ["threads", "worker-1", "worker-2", "worker-3"]
            assert [t.state[0] for t in threads] == ["t", "t", "t", "t"], threads
            # The step restarts the interrupted pause(), which blocks as in
            # the program; an interrupt still gets the step back (the kernel
            # reports the syscall's end before the SIGSTOP: a step).
            timer = interrupt_soon(session, 0.5)
            reason = session.step()
            timer.join()
            assert reason.kind in ("step", "interrupted") and session.alive, reason
    finally:
        os.close(fd)
    assert out.read_text() == "threads ready\n"


def test_a_spawning_program_is_not_followed(fixtures_dir, tmp_path):
    """fork + exec in a threaded parent: each child is let go (our int3s
    taken out of its copy), runs /bin/true and is reaped by the parent."""
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        spec = launch_spec(str(fixtures_dir / "zoo" / "spawner"), ["--every", "0.05", "/bin/true"],
                           aslr=False, stdout_fd=fd)
        with LiveSession(spec) as session:
            assert session.cont("main").reached
            timer = interrupt_soon(session, 1.0)
            reason = session.cont("exit")
            timer.join()
            assert reason.kind == "interrupted", reason
            forks = [e for e in session.events() if e.kind == "fork"]
            assert len(forks) >= 3
    finally:
        os.close(fd)
    lines = out.read_text().splitlines()
    assert len(lines) >= 3 and all(line.endswith("status=exited:0") for line in lines), lines


BLOCKER = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static volatile sig_atomic_t got;
static void on_usr1(int sig) { (void)sig; got = 1; }
/* Runs while ld.so initialises the program: everything blocked, one
   SIGUSR1 raised into the blocked set, so it waits as pending. */
__attribute__((constructor)) static void block_all(void) {
  sigset_t all; sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, 0);
  signal(SIGUSR1, on_usr1);
  raise(SIGUSR1);
}
int main(int argc, char **argv) {
  if (argc > 1) { sleep(30); return 0; }   /* blocked all along */
  sigset_t none; sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, 0);      /* SIGUSR1 arrives here */
  printf("got=%d\n", got);
  return 0;
}
"""


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> str:
    return build_c_program(tmp_path_factory, "blocker", BLOCKER)


def test_signals_blocked_during_startup_arrive_when_unblocked(blocker, tmp_path):
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        with LiveSession(launch_spec(blocker, [], aslr=False, stdout_fd=fd)) as session:
            assert session.cont("main").reached
            main_thread = session.threads()[0]
            # raise() is thread-directed: pending on the main thread itself.
            assert "SIGUSR1" in main_thread.sigmask and "SIGUSR1" in main_thread.sigpend, main_thread
            reason = session.cont("signal")
            assert reason.reached and reason.signal == "SIGUSR1", reason
            reason = session.cont("exit")
            assert reason.reached, reason
            reason = session.cont("exit")
            assert reason.kind == "exited" and reason.exit_code == 0
    finally:
        os.close(fd)
    assert out.read_text() == "got=1\n"


def test_interrupt_works_with_every_signal_blocked(blocker):
    """SIGSTOP cannot be blocked: an interrupt still stops a program that
    blocked everything else."""
    with LiveSession(launch_spec(blocker, ["sleep"], aslr=False)) as session:
        timer = interrupt_soon(session, 0.5)
        reason = session.cont("exit")
        timer.join()
        assert reason.kind == "interrupted" and session.alive, reason


# ----------------------------------------------------------------- Ctrl-C of an attached run

def test_ctrl_c_during_attached_inspect_detaches_and_leaves_it_running(fixtures_dir):
    target = subprocess.Popen([str(fixtures_dir / "zoo" / "threads")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert target.stdout.readline().strip() == "threads ready"
        proc = subprocess.Popen([*LOADERDBG, "inspect", "--pid", str(target.pid), "--at",
                                 "syscall:nanosleep"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while tracer_of(target.pid) == 0:  # attached: now it is continuing, forever
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err
        tasks = os.listdir(f"/proc/{target.pid}/task")
        assert len(tasks) == 4
        for tid in tasks:
            state, tracer = task_state(target.pid, int(tid))
            assert tracer == 0 and state[0] == "S", (tid, state)
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()


def task_state(pid: int, tid: int) -> tuple[str, int]:
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/task/{tid}/status") if ":" in line)
    return fields["State"].strip(), int(fields["TracerPid"])


def tracer_of(pid: int) -> int:
    return task_state(pid, pid)[1]


# ----------------------------------------------------------------- stepping across an execve

EXECER = r"""
/* No libc: execve("/bin/true", NULL, NULL) as the fifth instruction. */
__asm__(".globl _start\n_start:\n"
        "  lea path(%rip), %rdi\n"
        "  xor %esi, %esi\n"
        "  xor %edx, %edx\n"
        "  mov $59, %eax\n"
        "  syscall\n"
        "  hlt\n"
        "path: .asciz \"/bin/true\"\n");
"""


def test_stepping_over_execve_lands_on_the_new_images_first_instruction(tmp_path):
    (tmp_path / "execer.c").write_text(EXECER)
    program = str(tmp_path / "execer")
    subprocess.run(["gcc", "-static", "-nostdlib", "-o", program, str(tmp_path / "execer.c")],
                   check=True)
    with LiveSession(launch_spec(program, [], aslr=False)) as session:
        assert session.step(4).kind == "step"
        reason = session.step()  # the `syscall`: execve
        assert reason.kind == "step" and session.position == 5, reason
        snap = session.snapshot()
        first = snap.registers.pc
        here = next(m for m in snap.maps if m.entry.start <= first < m.entry.end)
        assert "ld-linux" in here.entry.path and "x" in here.entry.perms  # nothing of /bin/true ran
        events = [(e.kind, e.name, e.step) for e in session.events()]
        assert ("syscall", "execve", 5) in events and ("milestone", "exec", 5) in events
        # The next step executes ld.so's first instruction (no empty step
        # finishing the syscall).
        session.step()
        assert session.snapshot().registers.pc != first and session.position == 6
        reason = session.cont("exit")
        assert reason.reached, reason


# ----------------------------------------------------------------- killed while parked at a stop

def snapshot_once_dead(session: LiveSession):
    """The kill lands asynchronously: a snapshot taken before it does shows
    the old stop; soon after, it must say the process was killed."""
    deadline = time.monotonic() + 10
    while True:
        snap = session.snapshot()
        if snap.stop.kind != "step" and snap.stop.kind != "attach" or time.monotonic() > deadline:
            return snap
        time.sleep(0.02)


def test_snapshot_of_a_launched_tracee_killed_while_stopped(demo):
    """Nothing waits on a tracee parked at a stop: the snapshot must notice
    it died, not show the stale stop."""
    with LiveSession(launch_spec(demo, [], aslr=False)) as session:
        session.step(10)
        os.kill(session.pid, signal.SIGKILL)
        snap = snapshot_once_dead(session)
        assert snap.stop.kind == "killed" and not snap.stop.reached
        assert snap.stop.description == "killed by SIGKILL while stopped at step 10"
        assert not session.alive and snap.registers is None


def test_snapshot_of_an_attached_process_killed_while_stopped(fixtures_dir):
    proc = subprocess.Popen([str(fixtures_dir / "zoo" / "threads")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "threads ready"
        with LiveSession.attach(proc.pid) as session:
            os.kill(proc.pid, signal.SIGKILL)
            snap = snapshot_once_dead(session)
            assert snap.stop.kind == "killed", snap.stop
            assert snap.stop.description == "killed by SIGKILL while stopped"
            assert not session.alive
        # Reaped (this test is both its parent and its tracer): nothing left.
        assert not os.path.exists(f"/proc/{proc.pid}")
    finally:
        proc.kill()
        proc.wait()
