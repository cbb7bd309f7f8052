"""objects[].dynamic (issue 15): each object's dynamic section in readable
form, checked against readelf -dW on the same files: the same entries in
the same order, the same NEEDED/SONAME/RUNPATH strings and INIT/FINI
values, and the counts readelf's version sections imply; and the version names
against readelf -VW (one launch of python3 for both)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loaderdbg.decode.elf import VersionNames, parse_elf

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


# -- version names (issue 15): the files and versions DT_VERNEED asks for and the
# versions DT_VERDEF defines, against readelf -VW, from the same launch; perl's
# objects as ElfInfo reads them (gdb's 60 agree too, but take seconds to parse).
DEFINITION = re.compile(r"^\s*(?:0x)?[0-9a-f]+: Rev: \d+\s+Flags: (.+?)\s+Index: (\d+)\s+Cnt: \d+\s+Name: (\S+)$")
PARENT = re.compile(r"^\s*0x[0-9a-f]+: Parent \d+: (\S+)$")
NEED_FILE = re.compile(r"^\s*(?:0x)?[0-9a-f]+: Version: \d+\s+File: (\S+)\s+Cnt: \d+$")
NEED_NAME = re.compile(r"^\s*0x[0-9a-f]+:\s+Name: (\S+)\s+Flags: .*Version: \d+$")


def readelf_versions(path: str) -> tuple[list[dict], list[dict]]:
    """(needs, definitions) as version_need_names/version_definition_names spell them."""
    out = subprocess.run(["readelf", "-VW", path], capture_output=True, text=True, check=True).stdout
    needs: list[dict] = []
    definitions: list[dict] = []
    for line in out.splitlines():
        if found := DEFINITION.match(line):
            flags, index, name = found.groups()
            definitions.append({"index": int(index), "name": name, "base": "BASE" in flags, "parents": []})
        elif found := PARENT.match(line):
            definitions[-1]["parents"].append(found.group(1))
        elif found := NEED_FILE.match(line):
            needs.append({"file": found.group(1), "versions": []})
        elif found := NEED_NAME.match(line):
            needs[-1]["versions"].append(found.group(1))
    return needs, definitions


def test_json_version_names_equal_readelf(snapshot):
    checked = 0
    for obj in snapshot["objects"]:
        dynamic = obj["dynamic"]
        needs, definitions = readelf_versions(obj["path"])
        assert dynamic["version_need_names"] == needs, obj["path"]
        assert dynamic["version_definition_names"] == definitions, obj["path"]
        # The names go with the counts that were there before them.
        assert len(needs) == dynamic["version_needs"]
        assert len(definitions) == dynamic["version_definitions"]
        checked += bool(needs or definitions)
    assert checked >= 5
    libc = next(o for o in snapshot["objects"] if o["path"].endswith("/libc.so.6"))
    assert libc["dynamic"]["version_need_names"][0]["file"] == "ld-linux-x86-64.so.2"
    assert "GLIBC_2.2.5" in [d["name"] for d in libc["dynamic"]["version_definition_names"]]


def _needed_paths(program: str) -> list[str]:
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    return [program] + re.findall(r"=> (/\S+)", out)


@pytest.mark.parametrize("program", ["/usr/bin/perl"])
def test_parsed_version_names_equal_readelf(program):
    for path in _needed_paths(program):
        names = parse_elf(Path(path).read_bytes(), path).version_names
        needs, definitions = readelf_versions(path)
        assert [{"file": n.file, "versions": list(n.versions)} for n in names.needs] == needs, path
        assert [{"index": d.index, "name": d.name, "base": d.base, "parents": list(d.parents)}
                for d in names.definitions] == definitions, path


def test_an_object_without_version_tables_has_empty_lists():
    static = next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if Path(p).exists()), None)
    if static is None:
        pytest.skip("no static program here")
    assert parse_elf(Path(static).read_bytes(), static).version_names == VersionNames((), ())
