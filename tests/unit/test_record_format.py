"""A recording is data from outside: every way a file can be wrong is one
clear UsageError line naming the file (exit 2 in the CLI), never a
traceback, and nothing in it is executed. Damaged copies of a sample
recording are made with sqlite3 and plain byte edits."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.errors import UsageError
from loaderdbg.record.format import FORMAT_VERSION, open_recording
from loaderdbg.record.replay import ReplaySession

from damaged_recording import copy_of_sample, corrupt_chunk, edit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sample(tmp_path) -> Path:
    return copy_of_sample(tmp_path / "copy.ldbg")


def one_line_error(path: Path, *, touch_everything: bool = False) -> str:
    with pytest.raises(UsageError) as err:
        rec = open_recording(str(path))
        if touch_everything:
            for chunk in range(len(rec.chunks)):
                rec.chunk_regs(chunk)
                rec.chunk_writes(chunk)
                rec.chunk_pcs(chunk)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_the_sample_opens(sample):
    rec = open_recording(str(sample))
    # The samples may predate format version 2 (threads), which opens version 1 as before.
    assert rec.meta["format_version"] in (1, FORMAT_VERSION)
    assert rec.last_step > 60_000


def test_not_sqlite(tmp_path):
    path = tmp_path / "notes.ldbg"
    path.write_text("hello, this is not a database\n" * 10)
    assert "not an SQLite database" in one_line_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.ldbg"
    path.write_bytes(b"")
    assert "not an SQLite database" in one_line_error(path)


def test_missing_file_and_directory(tmp_path):
    assert "no such file" in one_line_error(tmp_path / "nope.ldbg")
    assert "directory" in one_line_error(tmp_path)


def test_truncated(sample):
    data = sample.read_bytes()
    sample.write_bytes(data[:len(data) // 2])
    assert "truncated" in one_line_error(sample)


def test_truncated_to_a_header(sample):
    data = sample.read_bytes()
    sample.write_bytes(data[:50])
    assert "truncated" in one_line_error(sample)


def test_missing_table(sample):
    edit(sample, "DROP TABLE chunks")
    assert "missing table chunks" in one_line_error(sample)


def test_other_sqlite_database(tmp_path):
    path = tmp_path / "other.ldbg"
    edit(path, "CREATE TABLE t (x)")
    assert "not a loaderdbg recording" in one_line_error(path)


def test_future_format_version(sample):
    edit(sample, "UPDATE meta SET value = ? WHERE key = 'format_version'", args=(json.dumps(FORMAT_VERSION + 1),))
    message = one_line_error(sample)
    assert f"version {FORMAT_VERSION + 1}" in message and "newer" in message


@pytest.mark.parametrize("key,value", [
    ("format_version", "0"), ("format_version", '"one"'), ("chunk_steps", "-4"), ("page_size", "8192"),
    ("kernel_sp", "-1"), ("arch", '"sparc"'), ("format", '"something-else"'), ("argv", '"not a list"'),
])
def test_meta_values_out_of_range(sample, key, value):
    edit(sample, "UPDATE meta SET value = ? WHERE key = ?", args=(value, key))
    one_line_error(sample)


def test_meta_not_json(sample):
    edit(sample, "UPDATE meta SET value = 'nope{' WHERE key = 'arch'")
    assert "not JSON" in one_line_error(sample)


def test_corrupted_compressed_chunk(sample):
    corrupt_chunk(sample)
    assert "corrupted compressed chunk" in one_line_error(sample)


def test_corrupted_chunk_with_a_matching_crc(sample):
    """Damage the checksum can't see (we recompute it): zstd's own frame
    checksum or the bounds checks must catch it when the chunk is read."""
    import zlib
    db = sqlite3.connect(sample)
    (blob,) = db.execute("SELECT data FROM chunks WHERE chunk = 2").fetchone()
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0xFF
    damaged[len(damaged) // 3] ^= 0xFF
    db.execute("UPDATE chunks SET data = ?, crc = ? WHERE chunk = 2", (bytes(damaged), zlib.crc32(damaged)))
    db.commit()
    db.close()
    one_line_error(sample, touch_everything=True)


@pytest.mark.parametrize("statement", [
    "UPDATE chunks SET steps = 999999 WHERE chunk = 1",
    "UPDATE chunks SET first_step = 17 WHERE chunk = 1",
    "UPDATE chunks SET regs = x'00' WHERE chunk = 0",
    "DELETE FROM chunks WHERE chunk = 2",
    "DELETE FROM chunks",
    "UPDATE maps SET step = 99999999 WHERE step = 0",
    "UPDATE keyframes SET step = -5 WHERE step = 0",
    "DELETE FROM maps",
])
def test_rows_out_of_range(sample, statement):
    edit(sample, statement)
    one_line_error(sample)


def test_bad_event_rows_fail_when_read(sample):
    edit(sample, "UPDATE events SET step = 123456789")
    with pytest.raises(UsageError):
        ReplaySession(str(sample))


def test_nothing_in_a_recording_is_executed():
    """The reader and replayer import no pickle/marshal/shelve and call no
    eval/exec."""
    import ast
    for name in ("format.py", "replay.py", "index.py"):
        tree = ast.parse((REPO / "loaderdbg" / "record" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "marshal", "shelve", "dill"} & set(modules), f"{name} imports {modules}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec", "__import__"), f"{name} calls {node.func.id}"


def test_replay_needs_no_ptrace(sample):
    """Replaying (snapshots included) never loads the ptrace layer."""
    code = (
        "import sys\n"
        "from loaderdbg.record.replay import ReplaySession\n"
        "from loaderdbg.explain import explain_recording\n"
        f"s = ReplaySession({str(sample)!r})\n"
        "s.cont('exit'); s.snapshot(); s.step_back(3); s.snapshot(); explain_recording(s)\n"
        "bad = [m for m in sys.modules if m.startswith('loaderdbg.process')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
