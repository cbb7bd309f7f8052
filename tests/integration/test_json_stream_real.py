"""The streamed snapshot JSON (issue 19) is byte for byte what json.dumps(...,
indent=1) made of the same snapshot: the glibc demo and gdb (59 objects, 151k
relocations) stopped at their entry, and `inspect --json` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.snapshot_json import snapshot_to_json, write_json

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "build" / "fixtures" / "execsolib" / "glibc-O2" / "libexecsolib.so"
GDB = "/usr/bin/gdb"


def snapshot_at_entry(program: str, args: list[str]):
    with open(os.devnull, "w") as devnull:
        spec = launch_spec(program, args, aslr=False, stdout_fd=devnull.fileno(), stderr_fd=devnull.fileno())
        with LiveSession(spec) as session:
            assert session.cont("entry").reached
            return session.snapshot()


def assert_streamed_equals_dumps(snapshot) -> list[str]:
    value = snapshot_to_json(snapshot)
    chunks: list[str] = []
    write_json(value, chunks.append, end="\n")
    assert "".join(chunks) == json.dumps(value, indent=1) + "\n"
    # inspect's way: the relocations' text made from the states directly.
    from_states: list[str] = []
    write_json(snapshot_to_json(snapshot, relocation_rows=True), from_states.append, end="\n")
    assert "".join(from_states) == "".join(chunks)
    return chunks


def test_demo_snapshot():
    if not DEMO.is_file():
        pytest.fail("fixtures missing: run `make fixtures`", pytrace=False)
    snapshot = snapshot_at_entry(str(DEMO), ["a", "b"])
    assert snapshot.relocations
    assert_streamed_equals_dumps(snapshot)


@pytest.mark.skipif(not os.access(GDB, os.X_OK), reason="gdb is not installed")
def test_gdb_snapshot_is_written_a_few_hundred_relocations_at_a_time():
    snapshot = snapshot_at_entry(GDB, ["--version"])
    assert len(snapshot.relocations) > 50_000
    chunks = assert_streamed_equals_dumps(snapshot)
    assert len(chunks) >= len(snapshot.relocations) // 1000
    assert len(chunks) <= len(snapshot.relocations) // 100


def test_inspect_json_is_indented_as_json_dumps():
    if not DEMO.is_file():
        pytest.fail("fixtures missing: run `make fixtures`", pytrace=False)
    result = subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "--json", "--at", "entry",
                             str(DEMO), "a", "b"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == json.dumps(json.loads(result.stdout), indent=1) + "\n"
