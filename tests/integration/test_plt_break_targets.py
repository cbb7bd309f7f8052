"""`sym:puts@plt` stops where gdb's `break puts@plt` does: in the PLT entry
BFD names puts@plt (IBT's .plt.sec entry, not its lazy stub in .plt; a
.plt.got entry for a GLOB_DAT-called function), with a location in every
loaded object that has one. Cross-checked with gdb's `info breakpoints`
after `break NAME@plt` at the same stop (AT_ENTRY, ASLR off in both: the
same addresses), on the lazy fixtures and python3 (malloc@plt is in
python3's .plt, libc's .plt.got, and libexpat's and libm's .plt). A PLT
entry no object has is refused as any unknown symbol is: one line, no
traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.decode.elf import parse_elf
from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZOO = os.path.join(REPO, "build", "fixtures", "zoo")
LOCATION = re.compile(r"^(\d+)(?:\.\d+)?\s+(?:breakpoint\s+keep\s+)?y\s+(0x[0-9a-f]+)\s+<([^>]+)>", re.M)

CASES = {
    "lazy": ([os.path.join(ZOO, "lazy")], ["puts@plt", "malloc@plt", "free@plt", "_dl_catch_exception@plt"]),
    "lazy-ibt": ([os.path.join(ZOO, "lazy-ibt")], ["puts@plt", "malloc@plt", "__cxa_finalize@plt"]),
    "python3": (["/usr/bin/python3", "-c", "pass"], ["malloc@plt", "free@plt", "calloc@plt", "realloc@plt"]),
}


def _gdb_locations(argv: list[str], entry: int, names: list[str]) -> dict[str, list[int]]:
    """Each name's locations in gdb's `info breakpoints` after `break NAME`
    at the program's entry (names gdb does not know get none)."""
    commands = ["set pagination off", "set confirm off", "set debuginfod enabled off", "starti",
                f"tbreak *{entry:#x}", "continue", "delete"]
    commands += [f"break {name}" for name in names] + ["info breakpoints", "kill"]
    args = ["gdb", "-batch", "-nx"] + [part for command in commands for part in ("-ex", command)]
    said = subprocess.run(args + ["--args", *argv], capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL).stdout
    assert f"Temporary breakpoint 1, {entry:#018x}" in said, said
    numbered = {number: name for number, name in enumerate(names, start=2)}
    found: dict[str, list[int]] = {name: [] for name in names}
    for number, address, label in LOCATION.findall(said):
        assert label == numbered[int(number)], said
        found[label].append(int(address, 16))
    return found


def _symbol_table(snapshot) -> SymbolTable:
    """The stop's objects, parsed afresh from their files."""
    objects = []
    for obj in snapshot.objects:
        if obj.path.startswith("[") or obj.elf_offset:
            continue
        with open(obj.path, "rb") as handle:
            objects.append(LoadedObject(obj.path, obj.base, parse_elf(handle.read(), obj.path)))
    return SymbolTable(objects)


@pytest.mark.parametrize("case", list(CASES))
def test_plt_targets_are_where_gdb_breaks(case):
    argv, names = CASES[case]
    with open(os.devnull, "w") as sink:
        spec = launch_spec(argv[0], argv[1:], aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as session:
            assert session.cont("entry").reached
            snapshot = session.snapshot()
            entry = snapshot.registers.get("rip")
            resolved = {name: session.resolve(name) for name in names + ["nosuch@plt"]}
            # Run on to the first name's entry: a stop in one of its locations.
            reason = session.cont(f"sym:{names[0]}")
            stopped_at = session.snapshot().registers.get("rip") if reason.reached else None
            named = session.symbolize(stopped_at) if stopped_at is not None else None
    table = _symbol_table(snapshot)
    ours = {name: table.plt_locations(name) for name in names}
    theirs = _gdb_locations(argv, entry, names)
    assert ours == theirs
    assert all(theirs[name] for name in names[:1]) and any(theirs.values())
    if case == "python3":  # names with a location in several objects
        assert len(theirs["malloc@plt"]) >= 3 and len(theirs["free@plt"]) >= 2
    program = table.program
    for name in names:
        if theirs[name]:
            own = [a for a in theirs[name] if table.object_at(a) is program]
            assert resolved[name] == (own or theirs[name])[0], name
            assert table.symbolize(resolved[name]) == name
        else:
            assert resolved[name] is None
    assert resolved["nosuch@plt"] is None
    assert reason.reached and stopped_at in theirs[names[0]] and named == names[0], reason


def test_unknown_plt_entry_is_one_line_without_traceback():
    done = subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "--at", "sym:nosuch@plt",
                           os.path.join(ZOO, "lazy")], capture_output=True, text=True, timeout=120, cwd=REPO,
                          stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no object defines nosuch@plt" in lines[0], done.stderr


def test_known_plt_entry_is_run_to_from_the_command_line():
    done = subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "--json", "--at", "sym:puts@plt",
                           os.path.join(ZOO, "lazy")], capture_output=True, text=True, timeout=120, cwd=REPO,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert '"reached": true' in done.stdout and '"symbol": "puts@plt"' in done.stdout


def test_a_plt_target_stops_in_the_first_object_to_call_through_its_entry():
    """python3 and libc both have calloc@plt; libc calls through its own
    first (__wcsmbs_load_conv): gdb's `continue` stops at location 2.2,
    and so does sym:calloc@plt, where it ran on to python3's before."""
    argv = ["/usr/bin/python3", "-c", "pass"]
    with open(os.devnull, "w") as sink:
        spec = launch_spec(argv[0], argv[1:], aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as session:
            assert session.cont("entry").reached
            entry = session.snapshot().registers.get("rip")
            primary = session.resolve("calloc@plt")
            reason = session.cont("sym:calloc@plt")
            stopped_at = session.snapshot().registers.get("rip")
    commands = ["set debuginfod enabled off", "starti", f"tbreak *{entry:#x}", "continue",
                "break calloc@plt", "continue", "kill"]
    said = subprocess.run(["gdb", "-batch", "-nx"] + [p for c in commands for p in ("-ex", c)] + ["--args", *argv],
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL).stdout
    hit = re.search(r"^Breakpoint 2(?:\.\d+)?, (0x[0-9a-f]+) in calloc@plt \(\)", said, re.M)
    assert hit is not None, said
    assert reason.reached and stopped_at == int(hit.group(1), 16)
    assert stopped_at != primary  # not the program's own entry
