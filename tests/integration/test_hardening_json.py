"""`inspect --json` is valid JSON with the DESIGN.md §4 keys for every fixture
at every stop target that applies (issue 8), including the ones where the
target is not reached (the snapshot where the run ended, exit 1).

first / ldso-entry / entry are covered by test_engine_json.py (with a full
schema check); this file adds main, exit, syscall:mmap, step:1000 for every
fixture and signal where one is raised (rdxbug) plus one where none is.
Left out: `exit` for zoo/threads (it sleeps until killed). One process per
(fixture, target), three at a time: ~60 runs, ~35 s on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "build" / "fixtures"

EXECSOLIB = ["glibc-O2", "glibc-O0", "glibc-relr", "musl-O2", "rdxbug"]
ZOO = ["hello-glibc", "hello-musl", "hello-static", "hello-static-pie", "ifunc-tls", "sframe",
       "dlmopen", "threads", "lazy", "spawner"]
PROGRAMS = {f"execsolib/{v}": (f"execsolib/{v}/libexecsolib.so", "a", "b") for v in EXECSOLIB}
# spawner spawns one child per stdin line and exits on EOF: /dev/null ends it at once.
PROGRAMS.update({f"zoo/{z}": (f"zoo/{z}", *(["/bin/true"] if z == "spawner" else [])) for z in ZOO})
TARGETS = ("main", "exit", "syscall:mmap", "step:1000")
CASES = [(p, t) for p in PROGRAMS for t in TARGETS if (p, t) != ("zoo/threads", "exit")]
CASES += [("execsolib/rdxbug", "signal"), ("zoo/hello-glibc", "signal")]
NOT_REACHED = {
    ("execsolib/rdxbug", "main"), ("execsolib/rdxbug", "exit"),  # SIGSEGV at 0 first
    ("zoo/hello-static", "syscall:mmap"), ("zoo/hello-static-pie", "syscall:mmap"),  # brk only
    ("zoo/hello-glibc", "signal"),
}
TOP_LEVEL = ("format", "step", "stop", "pid", "arch", "registers", "argv", "envp", "auxv",
             "auxv_kernel", "maps", "objects", "relocations", "link_map", "threads", "handoff", "events")

_results: dict[tuple[str, str], subprocess.CompletedProcess] = {}


def result_for(program: str, target: str) -> subprocess.CompletedProcess:
    if not _results:
        missing = [p for p, *_ in PROGRAMS.values() if not (FIX / p).is_file()]
        if missing:
            pytest.fail(f"fixtures missing ({missing[:3]}…): run `make fixtures`", pytrace=False)

        def run(case):
            path, *args = PROGRAMS[case[0]]
            return case, subprocess.run(
                [sys.executable, "-m", "loaderdbg", "inspect", "--json", "--at", case[1], str(FIX / path), *args],
                capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)
        with ThreadPoolExecutor(max_workers=3) as pool:
            _results.update(pool.map(run, CASES))
    return _results[(program, target)]


@pytest.mark.parametrize("program,target", CASES, ids=[f"{p}@{t}" for p, t in CASES])
def test_json_valid_at_target(program, target):
    result = result_for(program, target)
    reached = (program, target) not in NOT_REACHED
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == (0 if reached else 1), result.stderr[-2000:]
    snap = json.loads(result.stdout)  # stdout is exactly one JSON document
    missing = [key for key in TOP_LEVEL if key not in snap]
    assert not missing, missing
    assert snap["format"] == "loaderdbg.snapshot/1" and snap["arch"] == "x86_64"
    assert isinstance(snap["step"], int) and isinstance(snap["pid"], int)
    assert snap["stop"]["target"] == target and snap["stop"]["reached"] is reached
    for key in ("argv", "envp", "auxv", "auxv_kernel", "maps", "objects", "relocations", "link_map",
                "threads", "events"):
        assert isinstance(snap[key], list), key
    assert isinstance(snap["registers"], dict) and isinstance(snap["handoff"], dict)
    if reached:
        assert result.stderr.count("loaderdbg:") == 0, result.stderr[-2000:]
    else:
        assert result.stderr.strip().splitlines()[-1].startswith(f"loaderdbg: {target} not reached")
    if target == "step:1000":
        assert snap["step"] == 1000
    if (program, target) == ("execsolib/rdxbug", "signal"):
        assert "SIGSEGV" in snap["stop"]["description"]
