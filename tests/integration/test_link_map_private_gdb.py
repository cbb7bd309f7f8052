"""link_map[]'s private glibc fields (l_relocated, l_init_called,
l_tls_modid; issue 15) against gdb, which reads them through libc6-dbg's
DWARF as loaderdbg does: one gdb run and one loaderdbg launch of
/usr/bin/python3 (non-PIE) and of /usr/bin/perl (PIE, with TLS of its own),
each stopped at the first mprotect (ld.so has relocated libc and itself,
not yet the others: a mixed list) and then at AT_ENTRY (every object
relocated and initialised), walking the list from _r_debug."""

from __future__ import annotations

import re
from dataclasses import replace
import shutil
import subprocess

import pytest

from loaderdbg.analysis.link_map_layout import private_layout
from loaderdbg.decode.elf import parse_elf
from loaderdbg.debug_files import find_debug_file
from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.snapshot_json import snapshot_to_json

# python3 is non-PIE; perl is PIE with a TLS block of its own (module 1).
PROGRAMS = {"/usr/bin/python3": ("-c", "pass"), "/usr/bin/perl": ("-e", "1")}
LDSO = "/lib64/ld-linux-x86-64.so.2"
ENTRY_LINE = re.compile(r"^LM (\S+) (\d) (\d) (\d+) (0x[0-9a-f]+) (\S*)$")

GDB_SCRIPT = """
set pagination off
set confirm off
set startup-with-shell off
python
import gdb
def dump_link_map(stop):
    node = gdb.parse_and_eval("*(struct link_map **)((char *)&_r_debug + 8)")
    while int(node) != 0:
        print("LM %s %d %d %d %#x %s" % (stop, int(node["l_relocated"]), int(node["l_init_called"]),
              int(node["l_tls_modid"]), int(node["l_addr"]), node["l_name"].string()))
        node = node["l_next"]
end
catch syscall mprotect
run
python dump_link_map("mprotect")
delete
set $main_map = *(struct link_map **)((char *)&_r_debug + 8)
break *($main_map->l_addr + {entry})
continue
python dump_link_map("entry")
kill
"""


def _gdb_lists(program: str, script_path) -> dict[str, list[tuple]]:
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    entry = parse_elf(open(program, "rb").read(), program).entry
    script_path.write_text(GDB_SCRIPT.replace("{entry}", str(entry)))
    result = subprocess.run([gdb, "-nx", "-batch", "-x", str(script_path), "--args", program, *PROGRAMS[program]],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    lists: dict[str, list[tuple]] = {"mprotect": [], "entry": []}
    for line in result.stdout.splitlines():
        found = ENTRY_LINE.match(line)
        if found:
            stop, relocated, init_called, modid, l_addr, name = found.groups()
            lists[stop].append((name, int(l_addr, 16), relocated == "1", init_called == "1", int(modid)))
    assert lists["mprotect"] and lists["entry"], result.stdout[-2000:] + result.stderr[-2000:]
    return lists


def _ours(link_map: list[dict]) -> list[tuple]:
    return [(e["name"], int(e["l_addr"], 16), e["l_relocated"], e["l_init_called"], e["l_tls_modid"])
            for e in link_map]


@pytest.fixture(scope="module", params=list(PROGRAMS))
def stops(request) -> dict[str, dict]:
    found = {"program": request.param}
    with LiveSession(launch_spec(request.param, list(PROGRAMS[request.param]), aslr=False)) as session:
        for target, name in (("syscall:mprotect", "mprotect"), ("entry", "entry")):
            session.cont(target)
            found[name] = snapshot_to_json(session.snapshot())
    return found


def test_private_fields_agree_with_gdb(stops, tmp_path):
    theirs = _gdb_lists(stops["program"], tmp_path / "link_map.gdb")
    for stop in ("mprotect", "entry"):
        assert _ours(stops[stop]["link_map"]) == theirs[stop], stop
    # The stops tell the fields apart: a mixed list, then everything done.
    mixed = theirs["mprotect"]
    assert {e[2] for e in mixed} == {True, False}
    assert all(e[2] for e in theirs["entry"])
    assert any(e[4] == 1 for e in theirs["entry"]) and all(e[4] < 3 for e in theirs["entry"])


def test_entries_name_their_struct_and_no_reason_when_known(stops):
    for entry in stops["entry"]["link_map"]:
        assert entry["private_reason"] is None
        assert int(entry["address"], 16) > 0
        assert entry["l_tls_offset"] is not None


def test_layout_is_unknown_without_debug_info():
    data = open(LDSO, "rb").read()
    info = parse_elf(data, LDSO)
    assert info.debug_file is None  # parse_elf alone looks for none
    answer = private_layout("/nonexistent/ld-linux-x86-64.so.2", replace(info, build_id=None))
    assert answer.layout is None and "libc6-dbg" in answer.reason
    with_debug = info.with_debug_file(find_debug_file(LDSO, info))
    assert private_layout(LDSO, with_debug).layout is not None


def test_musl_entries_say_why_their_private_fields_are_null():
    program = "build/fixtures/execsolib/musl-O2/libexecsolib.so"
    with LiveSession(launch_spec(program, [], aslr=False)) as session:
        session.cont("main")
        link_map = snapshot_to_json(session.snapshot())["link_map"]
    assert len(link_map) >= 2
    for entry in link_map:
        assert (entry["l_relocated"], entry["l_init_called"], entry["l_tls_modid"]) == (None, None, None)
        assert "musl" in entry["private_reason"], entry
