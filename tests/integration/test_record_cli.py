"""The recording commands as a user runs them.

- `loaderdbg inspect --json --replay FILE --at T` prints what a live
  `loaderdbg inspect --json --at T` prints for the same run: byte-identical
  registers, auxv, maps and relocation states (and the other decoded
  views) at first, step:N, ldso-entry and entry of the glibc demo.
- `loaderdbg record` shows a progress line on a terminal, none without one;
  Ctrl-C exits 130 with a valid file and the tracee gone.
- A bad recording given to `replay`, `inspect --replay` or `explain` is one
  line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loaderdbg.errors import UsageError
from loaderdbg.record.format import FORMAT_VERSION, open_recording
from loaderdbg.record.replay import ReplaySession

from cli_runs import ctrl_c, never_left_running
from damaged_recording import copy_of_sample, corrupt_chunk, edit

REPO = Path(__file__).resolve().parents[2]
LOADERDBG = [sys.executable, "-m", "loaderdbg"]
# Both runs get exactly this environment: the initial stack (and so every
# stack address in registers and auxv) depends on it.
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "PYTHONPATH": str(REPO)}
COMPARED = ("registers", "eflags", "stack_pointer", "argv", "envp", "auxv", "auxv_kernel", "maps",
            "objects", "relocations", "link_map", "handoff")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*LOADERDBG, *args], capture_output=True, text=True, env=ENV, timeout=timeout,
                          cwd=REPO)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, fixtures_dir):
    program = str(fixtures_dir / "execsolib/glibc-O2/libexecsolib.so")
    path = tmp_path_factory.mktemp("cli") / "demo.ldbg"
    done = run("record", "-o", str(path), "--until", "entry", program, "hello", "world")
    assert done.returncode == 0, done.stderr
    return program, path, done


def without_random_bytes(auxv: list[dict]) -> list[dict]:
    """AT_RANDOM's 16 bytes differ on every exec, even without ASLR
    (PTRACE_NOTES.md §1): two runs can only agree on where they are."""
    return [dict(e, decoded=e["value"]) if e["type"] == "AT_RANDOM" else e for e in auxv]


def test_record_is_quiet_without_a_terminal(demo):
    _, _, done = demo
    assert "recording:" not in done.stderr and "\r" not in done.stderr
    assert done.stderr.count("\n") == 1 and "recorded" in done.stderr and "reached entry" in done.stderr


def test_inspect_replay_matches_live_inspect(demo):
    program, path, _ = demo
    with ReplaySession(str(path)) as replay:
        milestones = {e.name: e.step for e in replay.events() if e.kind == "milestone" and e.exact}
    targets = ["first", "step:2500", f"step:{milestones['memfd-create']}",
               f"step:{milestones['ldso-mapped'] + 1}", "ldso-entry", "entry"]
    # Independent processes: run them side by side.
    jobs = []
    for target in targets:
        for argv in (["inspect", "--json", "--at", target, program, "hello", "world"],
                     ["inspect", "--json", "--replay", str(path), "--at", target]):
            jobs.append((target, subprocess.Popen([*LOADERDBG, *argv], stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)))
    outputs = {}
    for target, proc in jobs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{proc.args}: {err}"
        outputs.setdefault(target, []).append(json.loads(out))
    for target in targets:
        live, replayed = outputs[target]
        # A live continue does not count steps (step -1); a replay knows them.
        assert live["step"] in (-1, replayed["step"]), target
        assert live["stop"]["reached"] and replayed["stop"]["reached"], target
        for key in ("auxv", "auxv_kernel"):
            live[key] = without_random_bytes(live[key])
            replayed[key] = without_random_bytes(replayed[key])
        for key in COMPARED:
            assert json.dumps(replayed[key]) == json.dumps(live[key]), f"{key} differs at {target}"
    assert outputs["first"][0]["step"] == 0
    assert outputs["step:2500"][0]["step"] == 2500
    assert outputs["entry"][1]["relocations"]


def test_the_demo_recording_is_small_and_verifies(demo):
    _, path, _ = demo
    with ReplaySession(str(path)) as replay:
        meta = replay.recording.meta
        assert os.path.getsize(path) / replay.last_step <= 16
        assert meta["divergences"] == 0 and not meta["warnings"]
        report = replay.verify()
        assert report.ok, report.describe()


def test_progress_line_on_a_terminal(tmp_path):
    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed")
    output = tmp_path / "true.ldbg"
    command = " ".join([sys.executable, "-m", "loaderdbg", "record", "-o", str(output),
                        "--until", "step:40000", "/bin/true"])
    done = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                          env=ENV, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)
    shown = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, shown
    assert "recording:" in shown and "steps/s" in shown and "milestone:" in shown
    assert "\rrecording:" in shown  # one line, rewritten in place
    assert "recorded 40,000 steps" in shown


def test_ctrl_c_exits_130_with_a_valid_file(tmp_path):
    output = tmp_path / "sleep.ldbg"
    with never_left_running(subprocess.Popen([*LOADERDBG, "record", "-o", str(output), "/bin/sleep", "30"],
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                                             cwd=REPO)) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                rec = open_recording(str(output))
            except UsageError:
                time.sleep(0.1)
                continue
            steps = rec.last_step
            rec.close()
            if steps > 0:
                break
            time.sleep(0.1)
        err = ctrl_c(proc, 30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    with ReplaySession(str(output)) as replay:
        assert replay.end_reason.kind == "interrupted" and replay.last_step > 0
        tracee = replay.recording.meta["pid"]
        assert replay.verify().ok
    with pytest.raises(ProcessLookupError):
        os.kill(tracee, 0)


# -- bad recordings -----------------------------------------------------------
def _sql(*statements, args=()):
    def apply(path: Path) -> None:
        edit(path, *statements, args=args)
    return apply


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _not_sqlite(path: Path) -> None:
    path.write_text("hello, this is not a database\n" * 10)


DAMAGE = {
    "not-sqlite": _not_sqlite,
    "truncated": _truncate,
    "corrupted-chunk": corrupt_chunk,
    "missing-table": _sql("DROP TABLE chunks"),
    "future-version": _sql("UPDATE meta SET value = ? WHERE key = 'format_version'",
                           args=(json.dumps(FORMAT_VERSION + 1),)),
    "out-of-range": _sql("UPDATE meta SET value = '-4' WHERE key = 'chunk_steps'"),
    "bad-step": _sql("UPDATE chunks SET steps = 999999 WHERE chunk = 1"),
}


COMMANDS = (["replay"], ["inspect", "--json", "--at", "entry", "--replay"], ["explain"])


def damaged(tmp_path: Path, name: str) -> Path:
    path = copy_of_sample(tmp_path / f"{name}.ldbg")
    DAMAGE[name](path)
    return path


def test_bad_recordings_are_one_line_and_exit_2(tmp_path, capsys):
    """Every kind of damage through each command's real code path (the CLI's
    main, in this process: a traceback would fail the test)."""
    from loaderdbg.cli import main
    failures = []
    for name in DAMAGE:
        path = damaged(tmp_path, name)
        # `replay` opens the TUI on a good file: only ever given bad ones.
        for command in COMMANDS:
            code = main([*command, str(path)])
            out, err = capsys.readouterr()
            lines = err.strip().splitlines()
            if code != 2 or len(lines) != 1 or out.strip() or str(path) not in lines[0]:
                failures.append(f"{name} {command[0]}: exit {code}, stderr {err!r}, stdout {out[:80]!r}")
    assert not failures, "\n".join(failures)


def test_bad_recording_in_a_real_process(tmp_path):
    """The same as a user sees it: exit status 2 and one stderr line."""
    path = damaged(tmp_path, "corrupted-chunk")
    jobs = [subprocess.Popen([*LOADERDBG, *command, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=ENV, cwd=REPO, stdin=subprocess.DEVNULL) for command in COMMANDS]
    for proc in jobs:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{proc.args}: did not exit (a TUI on a bad file?)")
        assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, (proc.args, err)
        assert "Traceback" not in err and not out.strip() and "corrupted compressed chunk" in err
