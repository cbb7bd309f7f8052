"""Issue 17.5: the command line explains itself: help for every option, the
stop targets in every help, words instead of argparse's for a missing
program or a bad PID, a TUI command without a terminal says so, `explain`
stops at entry by default, and the text report lists relocations and
names the kernel's mappings."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from clihelp import LOADERDBG, run_cli
from prochelp import PtySession
from loaderdbg.cli import build_parser
from loaderdbg.targets import SIMPLE_TARGETS

COMMANDS = ("run", "attach", "record", "replay", "inspect", "explain")
# `record`'s options belong to the change that adds --force to it.
COMMANDS_WITH_FULL_HELP = ("run", "attach", "replay", "inspect", "explain")


def _undocumented(help_text: str) -> list[str]:
    """Options and arguments in a --help with no words of their own: a
    line naming one that neither says something after it nor is followed
    by an indented description."""
    lines = help_text.splitlines()
    missing = []
    section = None
    for index, line in enumerate(lines):
        if line and not line.startswith(" "):
            section = line
            continue
        if section not in ("options:", "positional arguments:") or not line.startswith("  ") \
                or line.startswith("   "):
            continue
        described = re.search(r"\S\s{2,}\S", line.strip()) is not None
        follows = index + 1 < len(lines) and lines[index + 1].startswith(" " * 10)
        if not described and not follows:
            missing.append(line.strip())
    return missing


@pytest.mark.parametrize("command", ["", *COMMANDS_WITH_FULL_HELP])
def test_every_option_has_help(command):
    done = run_cli(*([command] if command else []), "--help")
    assert done.returncode == 0
    assert _undocumented(done.stdout) == []


def test_undocumented_options_are_found():
    """The check above, on a help that lacks words."""
    parser = build_parser()
    parser.add_argument("--bare")
    assert _undocumented(parser.format_help()) == ["--bare BARE"]


@pytest.mark.parametrize("args", [["--help"], *[[c, "--help"] for c in COMMANDS]], ids=lambda a: " ".join(a))
def test_help_lists_the_stop_targets(args):
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    for target in (*SIMPLE_TARGETS, "syscall:NAME", "addr:0xADDR", "sym:NAME", "step:N"):
        assert re.search(rf"(^|[\s|]){re.escape(target)}($|[\s|,.])", done.stdout), (target, done.stdout)


@pytest.mark.parametrize("args,line", [
    (["attach", "abc"], "loaderdbg attach: not a PID: abc"),
    (["inspect", "--pid", "12x"], "loaderdbg inspect: not a PID: 12x"),
    (["run"], "loaderdbg run: no program given: loaderdbg run [--until T] PROG [ARGS…]"),
])
def test_bad_command_lines_are_said_once_in_words(args, line):
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stderr == line + "\n"
    assert done.stdout == ""


def test_explain_and_inspect_without_a_program_say_what_is_missing():
    for command in ("explain", "inspect"):
        done = run_cli(command)
        assert done.returncode == 2
        assert done.stderr.startswith(f"loaderdbg {command}: ") and "PROG" in done.stderr
        assert len(done.stderr.splitlines()) == 1


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_attach_without_a_terminal_is_one_line_not_escape_codes(sleeper, tmp_path):
    out = tmp_path / "screen"
    with open(out, "w") as handle:
        done = subprocess.run([*LOADERDBG, "attach", str(sleeper.pid)], stdout=handle, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("loaderdbg attach: stdout is not a terminal")
    assert f"loaderdbg inspect --pid {sleeper.pid}" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert out.read_text() == ""
    status = open(f"/proc/{sleeper.pid}/status").read()
    assert re.search(r"TracerPid:\s+0\n", status)


def test_replay_and_run_without_a_terminal_say_so(tmp_path):
    recording = os.path.join(os.path.dirname(__file__), "..", "..", "recordings", "execsolib-glibc-entry.ldbg")
    for args in (["replay", recording], ["run", "/bin/true"]):
        done = run_cli(*args)
        assert done.returncode == 2, done.stderr
        assert "is not a terminal" in done.stderr and len(done.stderr.splitlines()) == 1
        assert done.stdout == ""


def test_explain_stops_at_entry_by_default():
    done = run_cli("explain", "/bin/true", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "AT_ENTRY reached" in done.stdout
    assert "exit" not in done.stdout.split("Outcome:")[-1].lower()
    until_exit = run_cli("explain", "--until", "exit", "/bin/true", timeout=300)
    assert until_exit.returncode == 0, until_exit.stderr
    assert "exit" in until_exit.stdout.split("Outcome:")[-1].lower()


def test_explain_at_a_terminal_says_where_it_stops_and_ctrl_c_reports_so_far():
    """python3 to its exit is minutes of single steps: at a terminal the
    first line says what will happen, and Ctrl-C gives the report so far."""
    session = PtySession(["explain", "--until", "exit", "/usr/bin/python3", "-c", "pass"])
    try:
        session.read_for(60, until=b"Ctrl-C gives the report so far")
        first = session.text.splitlines()[0]
        assert first.startswith("loaderdbg: explaining /usr/bin/python3 up to exit"), first
        time.sleep(2)
        os.kill(session.child, signal.SIGINT)
        session.exit_code(timeout=120)
    finally:
        session.close()
    assert "Milestones:" in session.text and "Outcome:" in session.text, session.text[-3000:]


def test_text_report_names_kernel_mappings_and_lists_relocations():
    done = run_cli("inspect", "--at", "entry", "--relocs", "lazy", "/bin/true")
    assert done.returncode == 0, done.stderr
    maps_rows = [line for line in done.stdout.splitlines() if line.startswith("│ 0x")]
    for name in ("[vdso]", "[stack]"):
        assert any(f"│ {name} " in row for row in maps_rows), name
    as_json = json.loads(run_cli("inspect", "--json", "--at", "entry", "/bin/true").stdout)
    lazy = [r for r in as_json["relocations"] if r["state"] == "lazy"]
    assert f"lazy relocations: {len(lazy)} of {len(as_json['relocations'])}" in done.stdout
    listed = re.findall(r"^  \S+\s+(0x[0-9a-f]+)\s+R_X86_64_\w+.*\blazy\b", done.stdout, re.M)
    assert sorted(listed) == sorted(r["address"] for r in lazy)
    # `--relocs PROG` is read as PROG with every relocation listed.
    every = run_cli("inspect", "--relocs", "/bin/true")
    assert every.returncode == 0, every.stderr
    assert re.search(r"^relocations: (\d+) of \1$", every.stdout, re.M)
