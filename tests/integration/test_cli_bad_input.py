"""Bad input: one clear line on stderr, exit 2, no traceback, nothing left behind."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from clihelp import run_cli


def assert_one_line_error(result: subprocess.CompletedProcess, code: int = 2, *words: str) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("loaderdbg: ")
    for word in words:
        assert word in lines[0]


def _elf32_header() -> bytes:
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x8048000, 0, 0, 0, 52, 32, 0, 40, 0, 0)


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["nonexec"] = tmp_path / "nonexec"
    files["nonexec"].write_bytes(Path("/bin/true").read_bytes())
    files["text"] = tmp_path / "text"
    files["text"].write_text("hello\n")
    files["empty"] = tmp_path / "empty"
    files["empty"].write_bytes(b"")
    files["elf32"] = tmp_path / "elf32"
    files["elf32"].write_bytes(_elf32_header())
    files["truncated"] = tmp_path / "truncated"
    files["truncated"].write_bytes(Path("/bin/true").read_bytes()[:40])
    for name in ("text", "empty", "elf32", "truncated"):
        os.chmod(files[name], 0o755)
    files["dir"] = tmp_path
    return files


@pytest.mark.parametrize("case,words", [
    ("nonexec", ("not executable",)),
    ("text", ("not an ELF",)),
    ("empty", ("not an ELF",)),
    ("elf32", ("32-bit",)),
    ("truncated", ("truncated ELF header",)),
    ("dir", ("directory",)),
])
def test_bad_programs(bad_files, case, words):
    result = run_cli("inspect", "--json", str(bad_files[case]))
    assert_one_line_error(result, 2, *words)
    assert result.stdout == ""


def test_missing_program():
    assert_one_line_error(run_cli("inspect", "/no/such/program"), 2, "no such file")


def test_unknown_target():
    assert_one_line_error(run_cli("inspect", "--at", "nowhere", "/bin/true"), 2, "stop target")


def test_usage_errors_are_one_line():
    assert_one_line_error(run_cli("inspect", "--no-such-option"), 2)


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for sub in ("run", "attach", "record", "replay", "inspect", "explain"):
        assert f" {sub} " in result.stdout or f"{sub}\n" in result.stdout or f"    {sub}" in result.stdout


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("loaderdbg ")


@pytest.mark.parametrize("command", [
    ["inspect", "--json", "--at", "syscall:mmapp", "/bin/true"],
    ["run", "--until", "syscall:mmapp", "/bin/true"],
    ["record", "-o", "/dev/null", "--until", "syscall:mmapp", "/bin/true"],
])
def test_misspelled_syscall_target_is_refused_before_running(command):
    assert_one_line_error(run_cli(*command), 2, "syscall", "mmapp")


def test_a_source_tree_without_the_step_helper_says_so(tmp_path):
    """Run from a copy of the sources that was never built (no
    _stepper*.so): one line naming the fix, exit 1, no traceback."""
    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "loaderdbg", tmp_path / "loaderdbg",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "/bin/true"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert_one_line_error(result, 1, "step helper", "make venv")
