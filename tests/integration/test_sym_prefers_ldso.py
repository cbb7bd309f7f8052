"""sym:_dl_start once libc is mapped (issue 15): libc's debug file has a
local `_dl_start` of its own, and gdb sets a breakpoint at both; sym: takes
an exported definition first, then ld.so's, and says before running which
objects define the name when several do. Checked on the exec-solib demo
(which maps ld.so by hand) and on python3 against gdb's breakpoint
locations."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clihelp import run_cli
from loaderdbg.decode.elf import parse_elf
from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.snapshot_json import snapshot_to_json

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "build/fixtures/execsolib/glibc-O2/libexecsolib.so")
PYTHON = "/usr/bin/python3"


def _owner(snapshot: dict, address: int) -> dict:
    for obj in snapshot["objects"]:
        for mapping in snapshot["maps"]:
            if mapping["object"] == obj["name"] and int(mapping["start"], 16) <= address < int(mapping["end"], 16):
                return obj
    raise AssertionError(f"{address:#x} is in no object")


def _resolve_after(program: str, args: list[str], target: str) -> tuple[int, dict]:
    with LiveSession(launch_spec(program, args, aslr=False)) as session:
        session.cont(target)
        return session.resolve("_dl_start"), snapshot_to_json(session.snapshot())


def test_demo_at_main_takes_ld_so_s_dl_start_not_libc_s():
    address, snapshot = _resolve_after(DEMO, [], "main")
    assert _owner(snapshot, address)["is_ldso"]
    # The ambiguity is real here: libc is mapped and its debug file names
    # a _dl_start too.
    libc = next(o for o in snapshot["objects"] if o["path"].endswith("/libc.so.6"))
    from loaderdbg.debug_files import find_debug_file
    info = parse_elf(Path(libc["path"]).read_bytes(), libc["path"])
    debug = find_debug_file(libc["path"], info)
    assert debug is not None and info.with_debug_file(debug).symbol_named("_dl_start") is not None


def test_python3_at_entry_agrees_with_one_of_gdb_s_locations(tmp_path):
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    address, snapshot = _resolve_after(PYTHON, ["-c", "pass"], "entry")
    entry = parse_elf(Path(PYTHON).read_bytes(), PYTHON).entry
    script = tmp_path / "dl_start.gdb"
    script.write_text(f"""set pagination off
set confirm off
set startup-with-shell off
break *{entry:#x}
run
break _dl_start
info breakpoints
kill
""")
    out = subprocess.run([gdb, "-nx", "-batch", "-x", str(script), "--args", PYTHON, "-c", "pass"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60).stdout
    locations = {int(a, 16) for a in re.findall(r"^2\.\d+\s+y\s+(0x[0-9a-f]+)", out, re.M)}
    assert len(locations) == 2, out  # ld.so's and libc's
    assert address in locations
    owners = {_owner(snapshot, a)["name"] for a in locations}
    assert len(owners) == 2 and _owner(snapshot, address)["is_ldso"]


def test_cli_says_which_of_several_definitions_it_stops_at():
    result = run_cli("inspect", "--json", "--at", "sym:_dl_start", PYTHON, "-c", "pass")
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stderr.splitlines() if "sym:_dl_start" in l)
    assert "2 objects define _dl_start" in line
    assert "ld-linux-x86-64.so.2, libc.so.6" in line and "stopping at ld-linux-x86-64.so.2's" in line
    snapshot = json.loads(result.stdout)
    assert _owner(snapshot, int(snapshot["registers"]["rip"], 16))["is_ldso"]
