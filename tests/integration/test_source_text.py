"""The source line beside file:line (issue 15.7) on the -O0 exec-solib demo,
whose DWARF says ./bootstrap.c compiled in "." (so only a --source-dir or
the right current directory finds it): the line gdb names at a step inside
execsolib_bootstrap, and that line of tests/fixtures/execsolib/bootstrap.c;
`inspect --json` carries it as "source"."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession

REPO = Path(__file__).resolve().parents[2]
DEMO_O0 = REPO / "build" / "fixtures" / "execsolib" / "glibc-O0" / "libexecsolib.so"
SOURCES = REPO / "tests" / "fixtures" / "execsolib"
STEPS = 40  # instructions into execsolib_bootstrap: past its prologue, a few lines in


@pytest.fixture(scope="module")
def demo() -> Path:
    if not DEMO_O0.is_file():
        pytest.fail("fixtures are not built: run `make fixtures`", pytrace=False)
    return DEMO_O0


@pytest.fixture(scope="module")
def inside_bootstrap(demo):
    """(SourceLine, SourceFile) STEPS instructions into execsolib_bootstrap."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        session = LiveSession(launch_spec(str(demo), [], aslr=False, stdout_fd=null, stderr_fd=null))
    finally:
        os.close(null)
    with session:
        session.source_directories = (str(SOURCES),)
        assert session.cont("sym:execsolib_bootstrap").reached
        session.step(STEPS)
        line = session.source_line(session.snapshot().registers.pc)
        assert line is not None
        found = session.source_file(line)
    return line, found  # the process is gone before any test runs (no tracee left across tests)


def test_the_line_is_gdbs_and_its_text_is_the_files(demo, inside_bootstrap):
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.skip("gdb is not installed")
    line, found = inside_bootstrap
    out = subprocess.run([gdb, "-nx", "-batch", "-ex", "break *execsolib_bootstrap", "-ex", "run",
                          "-ex", f"stepi {STEPS}", "-ex", "info line *$pc", str(demo)],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL).stdout
    said = re.search(r'Line (\d+) of "([^"]+)"', out)
    assert said, out
    assert (line.line, line.file) == (int(said.group(1)), said.group(2))
    assert found is not None and Path(found.path) == SOURCES / "bootstrap.c"
    expected = (SOURCES / "bootstrap.c").read_text().splitlines()[line.line - 1]
    assert found.line(line.line) == expected and expected.strip()


def _inspect_source(demo, cwd, *options) -> dict:
    out = subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "--json", *options,
                          "--at", "sym:execsolib_bootstrap", str(demo)],
                         capture_output=True, text=True, timeout=60, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["source"]


def test_inspect_json_names_the_source_line_and_its_text_with_source_dir(demo, tmp_path):
    lines = (SOURCES / "bootstrap.c").read_text().splitlines()
    found = _inspect_source(demo, tmp_path, "--source-dir", str(SOURCES))
    assert found["file"] == "./bootstrap.c"
    assert found["text"] == lines[found["line"] - 1]
    # Without the directory (and not run from it) the line is known, its text is not.
    assert _inspect_source(demo, tmp_path) == {**found, "text": None}


def test_a_source_dir_that_is_no_directory_is_one_line_and_exit_2(demo, tmp_path):
    out = subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "--source-dir", str(tmp_path / "none"),
                          str(demo)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"loaderdbg inspect: --source-dir {tmp_path / 'none'}: not a directory"]
