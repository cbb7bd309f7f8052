"""Issue 16.6: attaching never hangs. A process that creates and ends
threads all the time is attached every time (no false "another tracer", no
thread left in tracing stop); a parent blocked in vfork gives up with a
reason after ATTACH_SECONDS, or at once on Ctrl-C; a thread's id is
refused with the process's; a host its user SIGSTOPped stays stopped
while we follow its spawns, and after."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from clihelp import LOADERDBG, run_cli
from prochelp import task_status
from loaderdbg.errors import TargetError
from loaderdbg.live import LiveSession
from loaderdbg.process import attach as attach_module

THREAD_CHURN = r"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *brief(void *arg) { (void)arg; return NULL; }
static void *spawner(void *arg) {
    (void)arg;
    for (;;) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, brief, NULL) == 0)
            pthread_detach(thread);
    }
    return NULL;
}
int main(void) {
    pthread_t a, b;
    pthread_create(&a, NULL, spawner, NULL);
    pthread_create(&b, NULL, spawner, NULL);
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
"""

VFORK_PARENT = r"""
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        pid_t child = vfork();
        if (child == 0) {
            sleep(30);  /* the parent is stuck in vfork() meanwhile */
            _exit(0);
        }
        waitpid(child, 0, 0);
    }
}
"""


def _build(tmp_path_factory, name: str, source: str, *flags: str) -> str:
    directory = tmp_path_factory.mktemp(name)
    (directory / f"{name}.c").write_text(source)
    program = str(directory / name)
    subprocess.run(["gcc", "-O1", *flags, "-o", program, str(directory / f"{name}.c")], check=True)
    return program


@pytest.fixture(scope="module")
def churn_program(tmp_path_factory) -> str:
    return _build(tmp_path_factory, "churn", THREAD_CHURN, "-pthread")


@pytest.fixture(scope="module")
def vfork_program(tmp_path_factory) -> str:
    return _build(tmp_path_factory, "vforker", VFORK_PARENT)


def _started(program: str):
    proc = subprocess.Popen([program], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _in_vfork(proc: subprocess.Popen) -> None:
    """Wait until the parent is blocked in vfork() (the kernel shows it
    waiting in kernel_clone, as the attach code reads it), not a fixed
    time: on a loaded machine it may not have got there yet."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with open(f"/proc/{proc.pid}/wchan") as handle:
                if handle.read().strip() == "kernel_clone":
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the program never blocked in vfork()"
        time.sleep(0.01)


def _tracer_threads_ended(pid: int) -> None:
    """Wait until every thread of ours that traces pid has ended: the kernel
    lets go of a tracee only when its tracer thread has exited, a moment
    after Python's thread object says it is done."""
    deadline = time.monotonic() + 10
    while True:
        tracers = {task_status(pid, int(tid)).get("TracerPid") for tid in os.listdir(f"/proc/{pid}/task")}
        ours = tracers & set(os.listdir("/proc/self/task"))
        if not ours:
            return
        assert time.monotonic() < deadline, f"tracer threads {sorted(ours)} still running"
        time.sleep(0.01)


def _end(proc: subprocess.Popen) -> None:
    # The vfork child shares the parent's group: kill both.
    for child in _children(proc.pid):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.kill()
    proc.wait()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(c) for c in handle.read().split()]
    except OSError:
        return []


def _field(pid: int, name: str) -> str | None:
    return task_status(pid).get(name)


def _traced_or_trace_stopped(pid: int) -> list[str]:
    found = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        status = task_status(pid, int(tid))
        tracer, state = status.get("TracerPid"), status.get("State", "")
        if (tracer not in (None, "0")) or state.startswith("t"):
            found.append(f"{tid} {state} tracer {tracer}")
    return found


def test_thread_churn_is_attached_every_time(churn_program):
    proc = _started(churn_program)
    try:
        for _ in range(12):
            started = time.monotonic()
            with LiveSession.attach(proc.pid) as session:
                threads = session.threads()
                assert session.stop_reason.kind == "attach"
                assert len(threads) >= 1
            assert time.monotonic() - started < attach_module.ATTACH_SECONDS
            time.sleep(0.05)
            assert _traced_or_trace_stopped(proc.pid) == []
        # And from the command line, start to end.
        done = run_cli("inspect", "--json", "--pid", str(proc.pid), timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        _end(proc)


def test_parent_blocked_in_vfork_gives_up_with_the_reason(vfork_program, monkeypatch):
    proc = _started(vfork_program)
    try:
        _in_vfork(proc)  # for 30 s
        monkeypatch.setattr(attach_module, "ATTACH_SECONDS", 1.0)
        started = time.monotonic()
        with pytest.raises(TargetError, match=r"did not stop within 1 s \(it is in vfork\(\), waiting for its child"):
            LiveSession.attach(proc.pid)
        assert time.monotonic() - started < 5
        # The tracer thread ends: the kernel releases what it could not stop.
        _tracer_threads_ended(proc.pid)
        assert _traced_or_trace_stopped(proc.pid) == []
    finally:
        _end(proc)


def test_ctrl_c_while_attaching_to_a_vfork_parent(vfork_program):
    proc = _started(vfork_program)
    try:
        _in_vfork(proc)
        debugger = subprocess.Popen([*LOADERDBG, "inspect", "--json", "--pid", str(proc.pid)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while _field(proc.pid, "TracerPid") in (None, "0") and time.monotonic() < deadline:
            time.sleep(0.02)
        debugger.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = debugger.communicate(timeout=30)
        assert time.monotonic() - started < 3, "Ctrl-C was not heard while attaching"
        assert debugger.returncode == 130, err
        assert err == "loaderdbg: interrupted\n"
        assert _traced_or_trace_stopped(proc.pid) == []
    finally:
        _end(proc)


def test_a_thread_id_is_refused_with_its_process(fixtures_dir):
    proc = subprocess.Popen([str(fixtures_dir / "zoo" / "threads")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "threads ready"
        worker = max(int(t) for t in os.listdir(f"/proc/{proc.pid}/task"))
        done = run_cli("inspect", "--pid", str(worker), "--at", "exit")
        assert done.returncode == 2
        assert done.stderr == f"loaderdbg: {worker} is a thread of process {proc.pid} (worker-3); " \
                              f"attach to {proc.pid}\n"
        assert _traced_or_trace_stopped(proc.pid) == []
    finally:
        proc.kill()
        proc.wait()


def test_follow_exec_keeps_a_stopped_host_stopped(fixtures_dir):
    host = subprocess.Popen([str(fixtures_dir / "zoo" / "spawner"), "/bin/true"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        os.kill(host.pid, signal.SIGSTOP)
        while not (_field(host.pid, "State") or "").startswith("T"):
            time.sleep(0.01)
        debugger = subprocess.Popen([*LOADERDBG, "inspect", "--json", "--pid", str(host.pid), "--follow-exec"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while "attached" not in (line := debugger.stderr.readline()) and time.monotonic() < deadline:
                assert line, "loaderdbg ended before attaching"
            time.sleep(0.5)
            # Traced and stopped ('t': LISTEN), never resumed.
            assert (_field(host.pid, "State") or "").startswith(("t", "T"))
            debugger.send_signal(signal.SIGINT)
            debugger.communicate(timeout=30)
        finally:
            debugger.kill()
            debugger.wait()
        assert debugger.returncode == 130
        time.sleep(0.1)
        assert (_field(host.pid, "State") or "").startswith("T")
        assert _field(host.pid, "TracerPid") == "0"
        os.kill(host.pid, signal.SIGCONT)
    finally:
        host.kill()
        host.wait()
