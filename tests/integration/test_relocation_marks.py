"""Relocation states in the middle of ld.so's startup relocation, settled by
glibc's link_map l_relocated (issue 15).

dl_main relocates the startup objects one at a time, dependencies first and
the program last. A slot that holds the same value before and after its
relocation (python3's non-PIE GLOB_DAT of the weak, undefined
__gmon_start__: 0 either way) cannot tell by itself; l_relocated, read
where ld.so's DWARF places it, and GOT[1] (ld.so writes the link_map there
before an object's relocations when it binds lazily) can.

At every mprotect of python3 (non-PIE) and perl (PIE) during startup, and
at every entry to _dl_relocate_object: no relocation of an object whose
l_relocated is known is "unknown", and every state agrees with the slot's
value. Ground truth from gdb at the same mprotect stops: the object whose
_dl_relocate_object is on the stack has nothing pending, and while it is
not the program, nothing of the program has been processed yet.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession

PROGRAMS = {"/usr/bin/python3": ("-c", "pass"), "/usr/bin/perl": ("-e", "1")}
# glibc clears ld.so's own l_relocated to relocate it again once the
# program is done (rtld_multiple_ref): not a startup object here.
LDSO_NAME = "ld-linux-x86-64.so.2"
RELOCATING = re.compile(r"in _dl_relocate_object \(l=(?:l@entry=)?(0x[0-9a-f]+)")


def _stops_at(program: str, target: str) -> list[dict]:
    """Per stop: the relocations and each link_map struct's address ->
    (name, l_relocated), until the target is no longer reached."""
    found = []
    with LiveSession(launch_spec(program, list(PROGRAMS[program]), aslr=False)) as session:
        while session.cont(target).reached:
            snap = session.snapshot()
            entries = snap.link_map
            found.append({
                "relocations": snap.relocations,
                "link_map": {e.address: (e.name, e.private.l_relocated) for e in entries},
                "program": entries[0].address if entries else None,
                "objects": {e.address: e.l_addr for e in entries},
            })
    return found


@pytest.fixture(scope="module", params=list(PROGRAMS))
def stops(request) -> dict:
    program = request.param
    return {"program": program, "mprotect": _stops_at(program, "syscall:mprotect"),
            "relocate": _stops_at(program, "sym:_dl_relocate_object")}


def _struct_of(stop: dict, relocation) -> int:
    """The link_map struct of the object holding the relocation's slot:
    the listed object with the highest load bias at or below it (the
    vDSO has no relocations)."""
    listed = [(l_addr, address) for address, l_addr in stop["objects"].items()
              if not stop["link_map"][address][0].endswith("linux-vdso.so.1") and l_addr <= relocation.address]
    return max(listed)[1]


def _marked(stop: dict, relocation) -> bool | None:
    """l_relocated of the object the relocation belongs to, None when unknown."""
    return stop["link_map"][_struct_of(stop, relocation)][1]


def _by_object(stop: dict) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for r in stop["relocations"]:
        grouped.setdefault(r.object, []).append(r)
    return grouped


def test_mid_startup_stops_leave_nothing_unknown_where_l_relocated_is_known(stops):
    assert len(stops["mprotect"]) >= 4 and len(stops["relocate"]) >= 4
    for kind in ("mprotect", "relocate"):
        for index, stop in enumerate(stops[kind]):
            assert any(relocated is not None for _, relocated in stop["link_map"].values()), \
                "libc6-dbg's DWARF for ld.so is installed by the Makefile: l_relocated must be known"
            unknown = [(r.object, r.type_name, r.symbol, r.reason) for r in stop["relocations"]
                       if r.state == "unknown" and _marked(stop, r) is not None]
            assert not unknown, (kind, index, unknown[:5])


def test_states_agree_with_slot_values(stops):
    for kind in ("mprotect", "relocate"):
        for index, stop in enumerate(stops[kind]):
            for r in stop["relocations"]:
                if r.type_name.endswith("_COPY"):
                    continue
                if r.state == "pending":
                    assert r.current == r.link_value, (kind, index, r)
                elif r.state == "applied" and r.expected is not None and r.reason is None:
                    assert r.current == r.expected, (kind, index, r)
                elif r.state == "lazy":
                    assert r.type_name == "R_X86_64_JUMP_SLOT", (kind, index, r)


def test_l_relocated_decides_each_object_as_a_whole(stops):
    """A marked object has nothing pending; while another startup object
    is not marked, nothing of the program (relocated last) is processed."""
    seen_program_waiting = 0
    for kind in ("mprotect", "relocate"):
        for index, stop in enumerate(stops[kind]):
            grouped = _by_object(stop)
            for obj, relocations in grouped.items():
                if _marked(stop, relocations[0]):
                    assert not [r for r in relocations if r.state == "pending"], (kind, index, obj)
            others = [relocated for address, (name, relocated) in stop["link_map"].items()
                      if address != stop["program"] and not name.endswith(("linux-vdso.so.1", LDSO_NAME))]
            if False in others:
                program = [rs for rs in grouped.values() if _struct_of(stop, rs[0]) == stop["program"]]
                assert len(program) == 1
                assert {r.state for r in program[0]} == {"pending"}, (kind, index)
                seen_program_waiting += 1
    assert seen_program_waiting >= 4


def _gdb_relocating(program: str) -> list[int | None]:
    """Per mprotect syscall entry during the run: the link_map address of
    the object whose _dl_relocate_object is on the stack, or None."""
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    commands = ["set pagination off", "set confirm off", "set startup-with-shell off",
                "set disable-randomization on", "catch syscall mprotect", "run"]
    commands += ["bt 4", "continue"] * 24
    args = [gdb, "-nx", "-batch"]
    for command in commands:
        args += ["-ex", command]
    result = subprocess.run(args + ["--args", program, *PROGRAMS[program]], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    stops: list[int | None] = []
    for hit in result.stdout.split("Catchpoint 1 (")[1:]:
        if not hit.startswith("call to syscall mprotect"):
            continue
        found = RELOCATING.search(hit)
        stops.append(int(found.group(1), 16) if found else None)
    assert stops, result.stdout[-2000:] + result.stderr[-2000:]
    return stops


def test_program_is_pending_while_gdb_shows_ld_so_relocating_another_object(stops):
    ours = stops["mprotect"]
    theirs = _gdb_relocating(stops["program"])
    assert len(theirs) == len(ours), (theirs, len(ours))
    decided_by_gdb = 0
    for index, (stop, relocating) in enumerate(zip(ours, theirs)):
        if relocating is None:
            continue
        assert relocating in stop["link_map"], (index, hex(relocating))
        name = stop["link_map"][relocating][0]
        grouped = _by_object(stop)
        being = [rs for rs in grouped.values() if _marked(stop, rs[0]) is not None
                 and _struct_of(stop, rs[0]) == relocating]
        assert len(being) == 1, (index, name)
        assert not [r for r in being[0] if r.state == "pending"], (index, name)
        if relocating != stop["program"] and not name.endswith(LDSO_NAME):
            program = [rs for rs in grouped.values() if _struct_of(stop, rs[0]) == stop["program"]]
            assert len(program) == 1
            assert {r.state for r in program[0]} == {"pending"}, (index, name, [
                (r.type_name, r.symbol, r.state, r.reason) for r in program[0] if r.state != "pending"][:5])
            decided_by_gdb += 1
    assert decided_by_gdb >= 2

