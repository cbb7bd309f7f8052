"""The stack and auxv views after the program execs another one (found by
the view sweep on build/fixtures/threads/thread_exec): /usr/bin/env execs
/bin/true (env's argv 3 KiB longer), and at its exit the views must describe /bin/true's process as
/proc/PID/{auxv,cmdline,environ} do at that same stop, not env's."""

from __future__ import annotations

import os
import struct
from dataclasses import replace

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.snapshot_json import snapshot_to_json

ENV = {"PATH": "/usr/bin:/bin", "AFTER": "exec"}
TRUE = os.path.realpath("/bin/true")


def _proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def after_exec() -> dict:
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        # env's own argv is 3 KiB longer than true's: the new image's stack
        # starts well above where env's did.
        args = ["-u", "UNSET" * 600, TRUE]
        spec = launch_spec("/usr/bin/env", args, aslr=False, stdin_fd=devnull, stdout_fd=devnull,
                           stderr_fd=devnull)
        spec = replace(spec, argv=("/usr/bin/env", *args), env=dict(ENV))
        with LiveSession(spec) as session:
            assert session.cont("exit").reached
            proc = {name: _proc(session.pid, name) for name in ("auxv", "cmdline", "environ", "exe")
                    if name != "exe"}
            proc["exe"] = os.readlink(f"/proc/{session.pid}/exe")
            return {"json": snapshot_to_json(session.snapshot()), "proc": proc}
    finally:
        os.close(devnull)


def test_the_process_is_true_after_the_exec(after_exec):
    snap, proc = after_exec["json"], after_exec["proc"]
    assert proc["exe"] == TRUE and proc["cmdline"] == TRUE.encode() + b"\0"
    assert snap["objects"][0]["path"] == TRUE
    assert [e["name"] for e in snap["events"] if e["kind"] == "syscall"].count("execve") == 1


def test_auxv_kernel_is_the_new_images(after_exec):
    snap, proc = after_exec["json"], after_exec["proc"]
    raw = proc["auxv"]
    theirs = [struct.unpack_from("<QQ", raw, i) for i in range(0, len(raw), 16)]
    theirs = theirs[:next(i for i, (t, _) in enumerate(theirs) if t == 0) + 1]
    assert [int(e["value"], 16) for e in snap["auxv_kernel"]] == [v for _, v in theirs]
    execfn = next(e for e in snap["auxv_kernel"] if e["type"] == "AT_EXECFN")
    assert execfn["decoded"].endswith(f'"{TRUE}"')


def test_stack_views_are_the_new_images(after_exec):
    snap, proc = after_exec["json"], after_exec["proc"]
    assert snap["argv"] == [TRUE]
    assert snap["envp"] == [e.decode() for e in proc["environ"].split(b"\0")[:-1]] == [
        f"{k}={v}" for k, v in ENV.items()]
    assert snap["stack_pointer"] is not None
    assert [e["type"] for e in snap["auxv"]] == [e["type"] for e in snap["auxv_kernel"]]


def test_a_recording_shows_each_images_stack_and_auxv(after_exec, tmp_path):
    """The recorder keeps where the kernel started each image (meta
    `execs`): replayed at the exit, the views are /bin/true's, as live; at
    env's main, env's."""
    from loaderdbg.record.recorder import record_program
    from loaderdbg.record.replay import ReplaySession

    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        args = ["-u", "UNSET" * 600, TRUE]
        spec = replace(launch_spec("/usr/bin/env", args, aslr=False, stdin_fd=devnull, stdout_fd=devnull,
                                   stderr_fd=devnull), argv=("/usr/bin/env", *args), env=dict(ENV))
        path = tmp_path / "env-true.ldbg"
        record_program(spec, str(path), "exit", progress=False)
    finally:
        os.close(devnull)
    live = after_exec["json"]
    with ReplaySession(str(path)) as replay:
        assert replay.cont("exit").reached
        at_exit = snapshot_to_json(replay.snapshot())
    assert at_exit["argv"] == live["argv"] == [TRUE]
    assert at_exit["envp"] == live["envp"]
    assert at_exit["stack_pointer"] == live["stack_pointer"]

    def values(auxv):
        return [(e["type"], e["value"]) for e in auxv if e["type"] != "AT_RANDOM"]
    assert values(at_exit["auxv_kernel"]) == values(live["auxv_kernel"])
    assert values(at_exit["auxv"]) == values(live["auxv"])
    with ReplaySession(str(path)) as replay:
        assert replay.cont("main").reached  # env's main, before the exec
        at_main = snapshot_to_json(replay.snapshot())
    assert at_main["argv"] == ["/usr/bin/env", *args]
    assert next(e for e in at_main["auxv_kernel"] if e["type"] == "AT_EXECFN")["decoded"].endswith('"/usr/bin/env"')
