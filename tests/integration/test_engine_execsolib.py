"""The engine on the exec-solib demo (issue 4, "Must hold"), on real processes.

Every expected value comes from outside the engine: entry points and
PT_INTERP from `readelf`, load bases from /proc/PID/maps (the snapshot's raw
`maps`, which is /proc/PID/maps parsed), RELATIVE relocation counts from
`readelf -rW` (RELR expanded), the trampoline's place from the bytes of the
.so file itself.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.snapshot_json import snapshot_to_json

from readelf_relocations import parse_relocations

ROOT = Path(__file__).resolve().parents[2]
EXECSOLIB = ROOT / "build" / "fixtures" / "execsolib"
VARIANTS = ["glibc-O2", "glibc-O0", "glibc-relr", "musl-O2"]
ARGS = ("a", "b")
MILESTONE_ORDER = [
    "kernel-entry", "self-relocation-done", "memfd-create", "argv-rewritten",
    "ldso-mapped", "auxv-rewritten", "ldso-entry", "at-entry",
]


# ----------------------------------------------------------------- helpers

def readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


@functools.lru_cache(maxsize=None)
def elf_entry(path: str) -> int:
    m = re.search(r"Entry point address:\s+(0x[0-9a-f]+)", readelf("-h", path))
    assert m, path
    return int(m.group(1), 16)


@functools.lru_cache(maxsize=None)
def elf_phnum(path: str) -> int:
    m = re.search(r"Number of program headers:\s+(\d+)", readelf("-h", path))
    assert m, path
    return int(m.group(1))


@functools.lru_cache(maxsize=None)
def elf_interp(path: str) -> str | None:
    m = re.search(r"\[Requesting program interpreter: (.*)\]", readelf("-l", path))
    return m.group(1) if m else None


@functools.lru_cache(maxsize=None)
def relative_offsets(path: str) -> tuple[int, ...]:
    """Offsets of every R_X86_64_RELATIVE relocation, RELR expanded (readelf)."""
    rows = parse_relocations(readelf("-r", path))
    return tuple(sorted(offset for offset, kind in rows.elements() if kind == "R_X86_64_RELATIVE"))


def so_path(variant: str) -> str:
    path = EXECSOLIB / variant / "libexecsolib.so"
    if not path.is_file():
        pytest.fail(f"{path} missing: run `make fixtures`", pytrace=False)
    return str(path)


def tramp_path(variant: str) -> str:
    return str(EXECSOLIB / variant / "trampoline")


@functools.lru_cache(maxsize=None)
def blob_offset(variant: str) -> int:
    """Where the trampoline sits inside the .so file (page aligned)."""
    so = Path(so_path(variant)).read_bytes()
    tramp = Path(tramp_path(variant)).read_bytes()
    offset = so.find(tramp)
    assert offset > 0 and offset % 4096 == 0, offset
    return offset


def hexint(value: str) -> int:
    assert re.fullmatch(r"0x[0-9a-f]+", value), value
    return int(value, 16)


def map_base(snap: dict, path: str, offset: int = 0) -> int:
    """Start of the mapping of ``path`` at file ``offset`` (from /proc/PID/maps)."""
    real = os.path.realpath(path)
    for m in snap["maps"]:
        if m["path"] and os.path.realpath(m["path"]) == real and hexint(m["offset"]) == offset:
            return hexint(m["start"])
    raise AssertionError(f"{path}@{offset:#x} not mapped: "
                         f"{[(m['start'], m['path'], m['offset']) for m in snap['maps']]}")


def auxv(entries: list[dict]) -> dict[str, int]:
    return {e["type"]: hexint(e["value"]) for e in entries}


def object_named_at(snap: dict, base: int, elf_offset: int = 0) -> dict:
    found = [o for o in snap["objects"] if hexint(o["base"]) == base
             and hexint(o["elf_offset"]) == elf_offset]
    assert len(found) == 1, (hex(base), snap["objects"])
    return found[0]


def relocations_of(snap: dict, obj: dict, rtype: str | None = None) -> list[dict]:
    return [r for r in snap["relocations"] if r["object"] == obj["name"]
            and (rtype is None or r["type"] == rtype)]


@functools.lru_cache(maxsize=None)
def snapshot_at(variant: str, target: str) -> tuple[dict, str]:
    """(JSON snapshot, stop reason kind) of the demo run to ``target``.
    The session is closed before this returns."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        spec = launch_spec(so_path(variant), list(ARGS), aslr=False, stdout_fd=devnull,
                           stderr_fd=devnull)
        with LiveSession(spec) as session:
            reason = session.cont(target) if target != "first" else session.stop_reason
            assert reason.reached, reason
            snap = snapshot_to_json(session.snapshot())
    finally:
        os.close(devnull)
    return snap, reason.kind


def pc(snap: dict) -> int:
    return hexint(snap["registers"]["rip"])


def milestones(snap: dict) -> list[str]:
    return [e["name"] for e in snap["events"] if e["kind"] == "milestone"]


# ----------------------------------------------------------------- first

@pytest.mark.parametrize("variant", VARIANTS)
def test_first_pc_is_the_so_entry(variant):
    snap, _ = snapshot_at(variant, "first")
    base = map_base(snap, so_path(variant))
    assert pc(snap) == base + elf_entry(so_path(variant))
    assert snap["step"] == 0
    assert milestones(snap) == ["kernel-entry"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_first_every_relative_relocation_is_pending(variant):
    snap, _ = snapshot_at(variant, "first")
    base = map_base(snap, so_path(variant))
    obj = object_named_at(snap, base)
    rel = relocations_of(snap, obj, "R_X86_64_RELATIVE")
    expected = relative_offsets(so_path(variant))
    assert len(expected) > 100
    assert sorted(hexint(r["address"]) - base for r in rel) == list(expected)
    assert {r["state"] for r in rel} == {"pending"}


def test_relr_variant_packs_its_relative_relocations():
    """The relr demo really is RELR: no RELATIVE in .rela.dyn, all in .relr.dyn,
    and the engine still lists every one of them (checked above)."""
    out = readelf("-r", so_path("glibc-relr"))
    assert ".relr.dyn" in out
    assert "R_X86_64_RELATIVE" not in out


# ----------------------------------------------------------------- ldso-entry

@pytest.mark.parametrize("variant", VARIANTS)
def test_ldso_entry_pc_and_rdx(variant):
    snap, _ = snapshot_at(variant, "ldso-entry")
    interp = elf_interp(tramp_path(variant))
    assert interp
    ldso_base = map_base(snap, interp)
    assert pc(snap) == ldso_base + elf_entry(os.path.realpath(interp))
    assert hexint(snap["registers"]["rdx"]) == 0
    assert snap["stop"]["reached"] is True


@pytest.mark.parametrize("variant", VARIANTS)
def test_ldso_entry_auxv_rewritten_kernel_auxv_kept(variant):
    snap, _ = snapshot_at(variant, "ldso-entry")
    so = so_path(variant)
    so_base = map_base(snap, so)
    tramp_base = map_base(snap, so, blob_offset(variant))
    ldso_base = map_base(snap, elf_interp(tramp_path(variant)))

    stack = auxv(snap["auxv"])
    assert stack["AT_ENTRY"] == tramp_base + elf_entry(tramp_path(variant))
    assert stack["AT_BASE"] == ldso_base
    assert stack["AT_PHNUM"] == elf_phnum(tramp_path(variant))

    kernel = auxv(snap["auxv_kernel"])
    assert kernel["AT_ENTRY"] == so_base + elf_entry(so)
    assert kernel["AT_BASE"] == 0
    assert kernel["AT_PHNUM"] == elf_phnum(so)
    changed = {e["type"] for e in snap["auxv"] if e["changed"]}
    assert {"AT_ENTRY", "AT_BASE", "AT_PHDR", "AT_PHNUM"} <= changed


@pytest.mark.parametrize("variant", VARIANTS)
def test_ldso_entry_so_relative_relocations_applied(variant):
    snap, _ = snapshot_at(variant, "ldso-entry")
    base = map_base(snap, so_path(variant))
    obj = object_named_at(snap, base)
    rel = relocations_of(snap, obj, "R_X86_64_RELATIVE")
    assert len(rel) == len(relative_offsets(so_path(variant)))
    assert {r["state"] for r in rel} == {"applied"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_ldso_entry_handoff_passes(variant):
    snap, _ = snapshot_at(variant, "ldso-entry")
    assert snap["handoff"]["checked"] is True
    assert snap["handoff"]["ok"] is True, snap["handoff"]["violations"]
    assert snap["handoff"]["violations"] == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_ldso_entry_argv0_is_the_memfd(variant):
    snap, _ = snapshot_at(variant, "ldso-entry")
    assert re.fullmatch(r"/proc/self/fd/\d+", snap["argv"][0]), snap["argv"]
    assert snap["argv"][1:] == list(ARGS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_ldso_entry_milestones_in_order(variant):
    snap, _ = snapshot_at(variant, "ldso-entry")
    assert milestones(snap) == MILESTONE_ORDER[:-1]


# ----------------------------------------------------------------- entry

@pytest.mark.parametrize("variant", VARIANTS)
def test_entry_pc_is_at_entry(variant):
    snap, _ = snapshot_at(variant, "entry")
    tramp_base = map_base(snap, so_path(variant), blob_offset(variant))
    assert pc(snap) == auxv(snap["auxv"])["AT_ENTRY"]
    assert pc(snap) == tramp_base + elf_entry(tramp_path(variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_entry_ldso_relocations_applied(variant):
    snap, _ = snapshot_at(variant, "entry")
    ldso_base = map_base(snap, elf_interp(tramp_path(variant)))
    obj = object_named_at(snap, ldso_base)
    assert obj["is_ldso"] is True
    rel = relocations_of(snap, obj)
    assert rel and len(rel) == obj["relocations"]["total"]
    assert obj["relocations"]["pending"] == 0
    # ld.so binds itself eagerly: nothing lazy, nothing left over.
    assert obj["relocations"]["lazy"] == 0
    relative = [r for r in rel if r["type"] == "R_X86_64_RELATIVE"]
    assert relative and {r["state"] for r in relative} == {"applied"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_entry_milestones_in_order(variant):
    snap, _ = snapshot_at(variant, "entry")
    assert milestones(snap) == MILESTONE_ORDER


@pytest.mark.parametrize("variant", VARIANTS)
def test_ldso_entry_pc_is_consistent_with_ldso_mapped_event(variant):
    """The ldso-mapped milestone names the base the maps show."""
    snap, _ = snapshot_at(variant, "ldso-entry")
    ldso_base = map_base(snap, elf_interp(tramp_path(variant)))
    mapped = [e for e in snap["events"] if e["name"] == "ldso-mapped"]
    assert len(mapped) == 1 and hexint(mapped[0]["address"]) == ldso_base


# ----------------------------------------------------------------- rdxbug (CLI)

def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loaderdbg", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=ROOT)


def test_rdxbug_ldso_entry_not_reached_sigsegv_at_zero(tmp_path):
    import json

    out = tmp_path / "tracee.txt"
    result = run_cli("inspect", "--json", "--at", "ldso-entry", "--tracee-output", str(out),
                     so_path("rdxbug"), *ARGS)
    assert result.returncode == 1, result.stderr
    snap = json.loads(result.stdout)
    assert snap["stop"]["reached"] is False
    assert snap["stop"]["signal"] == "SIGSEGV"
    assert snap["stop"]["fault_address"] == "0x0"
    assert snap["registers"]["rip"] == "0x0"
    # ld.so was mapped by hand but never entered.
    assert "ldso-mapped" in milestones(snap) and "ldso-entry" not in milestones(snap)
    assert "crash" in milestones(snap)
    # One sentence: target not reached, the signal, the fault address.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "Traceback" not in result.stderr
    assert "ldso-entry" in line and "not reached" in line
    assert "SIGSEGV" in line
    assert re.search(r"fault address (0x0|0)\b", line), line


def test_rdxbug_session_stops_on_the_fault():
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        spec = launch_spec(so_path("rdxbug"), list(ARGS), aslr=False, stdout_fd=devnull,
                           stderr_fd=devnull)
        with LiveSession(spec) as session:
            reason = session.cont("ldso-entry")
            assert reason.reached is False
            assert reason.signal == "SIGSEGV"
            assert reason.fault_address == 0
            # Stopped *at* the fault, the process still there to inspect.
            assert session.alive
            snap = snapshot_to_json(session.snapshot())
            assert snap["registers"]["rip"] == "0x0"
    finally:
        os.close(devnull)


def test_rdxbug_timeline_has_auxv_rewritten_before_the_crash():
    """The bootstrap rewrote auxv (milestone 6, EXECSOLIB_TRACE=1 prints it)
    and then jumped to 0. The snapshot at the crash shows the rewritten
    entries, so the timeline must have "auxv-rewritten" before "crash"; the
    rewrite is followed by no syscall, so only a check at the crash stop
    can notice it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSOLIB_")}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        spec = replace(launch_spec(so_path("rdxbug"), list(ARGS), aslr=False, stdout_fd=devnull,
                                   stderr_fd=devnull), env=env)
        with LiveSession(spec) as session:
            reason = session.cont("ldso-entry")
            assert reason.signal == "SIGSEGV"
            snap = snapshot_to_json(session.snapshot())
    finally:
        os.close(devnull)
    assert {"AT_ENTRY", "AT_BASE"} <= {e["type"] for e in snap["auxv"] if e["changed"]}
    names = milestones(snap)
    assert "auxv-rewritten" in names, names
    assert names.index("ldso-mapped") < names.index("auxv-rewritten") < names.index("crash")


def test_musl_demo_maps_musl_loader():
    snap, _ = snapshot_at("musl-O2", "ldso-entry")
    interp = elf_interp(tramp_path("musl-O2"))
    assert interp == "/lib/ld-musl-x86_64.so.1"
    ldso = object_named_at(snap, map_base(snap, interp))
    assert ldso["is_ldso"] is True
