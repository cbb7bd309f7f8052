"""objects[].dynamic (issue 15): each object's dynamic section in readable
form, checked against readelf -dW on the same files: the same entries in
the same order, the same NEEDED/SONAME/RUNPATH strings and INIT/FINI
values, and the counts readelf's version sections imply."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\s*0x[0-9a-f]+\s+\((\w+)\)\s+(.*)$")


def readelf_dynamic(path: str) -> list[tuple[str, str]]:
    out = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True, check=True).stdout
    return [(m.group(1), m.group(2).strip()) for m in map(LINE.match, out.splitlines()) if m]


@pytest.fixture(scope="module")
def snapshot():
    done = subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "--json", "--at", "entry",
                           "/usr/bin/python3", "-c", "pass"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_dynamic_sections_equal_readelf(snapshot):
    checked = 0
    for obj in snapshot["objects"]:
        theirs = [(tag, value) for tag, value in readelf_dynamic(obj["path"]) if tag != "NULL"]
        ours = [e for e in obj["dynamic"]["entries"] if e["tag"] != "DT_NULL"]
        assert [f"DT_{tag}" for tag, _ in theirs] == [e["tag"] for e in ours], obj["path"]
        for (tag, value), entry in zip(theirs, ours):
            if tag in ("NEEDED", "SONAME", "RUNPATH", "RPATH"):
                assert value.endswith(f"[{entry['text']}]"), (obj["path"], tag, value, entry)
            elif tag in ("INIT", "FINI", "STRTAB", "SYMTAB", "PLTGOT"):
                assert int(value, 16) == int(entry["value"], 16), (obj["path"], tag)
        dynamic = obj["dynamic"]
        assert dynamic["needed"] == [v.rsplit("[", 1)[-1][:-1] for t, v in theirs if t == "NEEDED"]
        assert dynamic["version_needs"] == next((int(v) for t, v in theirs if t == "VERNEEDNUM"), 0)
        checked += 1
    assert checked >= 5  # python3, libc, libm, libz, libexpat, ld.so
