"""`loaderdbg inspect --json` on every fixture at first / ldso-entry / entry:
valid JSON of format loaderdbg.snapshot/1 with the keys of DESIGN.md §4,
64-bit values as hex strings, counts as numbers, and the right exit code.
Also: with --json, stdout carries only JSON; --tracee-output gets the output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "build" / "fixtures"
TARGETS = ("first", "ldso-entry", "entry")
HEX = re.compile(r"^0x[0-9a-f]+$")
SIGNED_HEX = re.compile(r"^-?0x[0-9a-f]+$")

EXECSOLIB = ["glibc-O2", "glibc-O0", "glibc-relr", "musl-O2", "rdxbug"]
ZOO = ["hello-glibc", "hello-musl", "hello-static", "hello-static-pie", "ifunc-tls", "sframe",
       "dlmopen", "threads", "lazy", "spawner"]
FIXTURES = {f"execsolib/{v}": (f"execsolib/{v}/libexecsolib.so", ["a", "b"]) for v in EXECSOLIB}
FIXTURES.update({f"zoo/{z}": (f"zoo/{z}", ["/bin/true"] if z == "spawner" else []) for z in ZOO})
# (fixture, target) -> exit code; everything else is 0.
NOT_REACHED = {
    ("execsolib/rdxbug", "ldso-entry"), ("execsolib/rdxbug", "entry"),  # SIGSEGV at 0
    ("zoo/hello-static", "ldso-entry"), ("zoo/hello-static-pie", "ldso-entry"),  # no ld.so
}


def inspect(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


_results: dict[tuple[str, str], subprocess.CompletedProcess] = {}


def result_for(fixture: str, target: str) -> subprocess.CompletedProcess:
    """All 45 runs at once, a few in parallel, on first use."""
    if not _results:
        missing = [p for p, _ in FIXTURES.values() if not (FIX / p).is_file()]
        if missing:
            pytest.fail(f"fixtures missing ({missing[:3]}…): run `make fixtures`", pytrace=False)
        jobs = [(f, t) for f in FIXTURES for t in TARGETS]

        def run(job):
            path, args = FIXTURES[job[0]]
            return job, inspect("--json", "--at", job[1], str(FIX / path), *args)
        with ThreadPoolExecutor(max_workers=4) as pool:
            _results.update(pool.map(run, jobs))
    return _results[(fixture, target)]


def check_hex(value, where: str, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    assert isinstance(value, str) and HEX.match(value), f"{where}: {value!r} is not a hex string"


def check_schema(snap: dict) -> None:
    assert snap["format"] == "loaderdbg.snapshot/1"
    for key in ("format", "step", "stop", "pid", "arch", "registers", "argv", "envp", "auxv",
                "auxv_kernel", "maps", "objects", "relocations", "link_map", "threads",
                "handoff", "events"):
        assert key in snap, key
    assert isinstance(snap["step"], int) and not isinstance(snap["step"], bool)
    assert isinstance(snap["pid"], int)
    assert snap["arch"] == "x86_64"
    assert isinstance(snap["stop"]["reason"], str) and isinstance(snap["stop"]["reached"], bool)
    check_hex(snap["stop"].get("fault_address"), "stop.fault_address", nullable=True)
    if snap["registers"]:
        for name in ("rip", "rsp", "rax", "rdx", "eflags", "fs_base", "orig_rax"):
            assert name in snap["registers"], name
        for name, value in snap["registers"].items():
            check_hex(value, f"registers.{name}")
    assert all(isinstance(a, str) for a in snap["argv"] + snap["envp"])
    for key in ("auxv", "auxv_kernel"):
        for e in snap[key]:
            assert e["type"].startswith("AT_"), e
            check_hex(e["value"], f"{key}.{e['type']}")
            assert "decoded" in e
    for m in snap["maps"]:
        for k in ("start", "end", "offset"):
            check_hex(m[k], f"maps.{k}")
        assert int(m["start"], 16) < int(m["end"], 16)
        for k in ("perms", "path", "object", "segment"):
            assert k in m
    names = set()
    for o in snap["objects"]:
        assert {"path", "base", "relocations"} <= set(o)
        check_hex(o["base"], "objects.base")
        counts = o["relocations"]
        for k in ("total", "applied", "pending"):
            assert isinstance(counts[k], int) and counts[k] >= 0
        assert counts["total"] == sum(counts.get(k, 0) for k in ("applied", "pending", "lazy",
                                                                  "unknown"))
        names.add(o.get("name"))
    per_object: dict[str, int] = {}
    for r in snap["relocations"]:
        assert {"object", "address", "type", "symbol", "addend", "state"} <= set(r)
        check_hex(r["address"], "relocations.address")
        assert r["type"].startswith("R_X86_64_")
        assert r["addend"] is None or SIGNED_HEX.match(r["addend"]), r
        assert r["state"] in ("pending", "lazy", "applied", "unknown")
        assert r["object"] in names
        per_object[r["object"]] = per_object.get(r["object"], 0) + 1
    for o in snap["objects"]:
        assert per_object.get(o["name"], 0) == o["relocations"]["total"], o["name"]
    for e in snap["link_map"]:
        assert {"namespace", "name", "l_addr", "l_ld"} <= set(e)
        check_hex(e["l_addr"], "link_map.l_addr")
        check_hex(e["l_ld"], "link_map.l_ld")
    for t in snap["threads"]:
        assert {"tid", "name", "fs_base", "sigmask", "sigpend"} <= set(t)
        assert isinstance(t["tid"], int)
        check_hex(t["fs_base"], "threads.fs_base", nullable=True)
    assert isinstance(snap["handoff"]["ok"], (bool, type(None)))
    assert isinstance(snap["handoff"]["violations"], list)
    assert isinstance(snap["events"], list)
    for e in snap["events"]:
        assert isinstance(e["kind"], str) and isinstance(e["name"], str)
        assert isinstance(e["step"], int)
        check_hex(e.get("address"), "events.address", nullable=True)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fixture", list(FIXTURES))
def test_inspect_json_is_valid(fixture, target):
    result = result_for(fixture, target)
    expected = 1 if (fixture, target) in NOT_REACHED else 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == expected, result.stderr[-2000:]
    snap = json.loads(result.stdout)  # all of stdout is one JSON document
    check_schema(snap)
    assert snap["stop"]["reached"] is (expected == 0)
    assert snap["stop"]["target"] == target
    if expected:
        assert f"{target} not reached" in result.stderr
    if target == "first":
        assert snap["step"] == 0 and snap["registers"]
    if target == "ldso-entry" and expected == 0:
        assert snap["handoff"]["checked"] is True and snap["handoff"]["ok"] is True, snap["handoff"]


def test_tracee_output_goes_to_the_file_and_stdout_is_only_json(tmp_path):
    out = tmp_path / "out.txt"
    result = inspect("--json", "--at", "exit", "--tracee-output", str(out),
                     str(FIX / "execsolib/glibc-O2/libexecsolib.so"), "a", "b")
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)
    assert result.stderr == ""
    assert out.read_text() == "execsolib: ok argc=3 a b\n"


def test_without_tracee_output_the_program_writes_to_stderr():
    result = inspect("--json", "--at", "exit", str(FIX / "zoo/hello-glibc"))
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    assert snap["stop"]["reached"] is True
    assert "hello from glibc" in result.stderr
    assert "hello from glibc" not in result.stdout


def test_human_readable_form_is_not_json():
    result = inspect("--at", "ldso-entry", str(FIX / "execsolib/glibc-O2/libexecsolib.so"), "a")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and not result.stdout.lstrip().startswith("{")
