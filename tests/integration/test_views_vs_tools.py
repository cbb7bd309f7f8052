"""The decoded views against the system's own tools, on programs built the
ways the view sweep found them wrong (real system binaries: gold-linked
/usr/lib/llvm-14/bin/*, a patchelf'd python, the JDK's launchers):

- objects[] against the link map (l_addr) and readelf -lW: a writable
  segment that starts in the file's first page is mapped from offset 0,
  ELF header and all; it is the object's own segment, not a second copy of
  the object (gold's and `ld -z noseparate-code`'s layout);
- objects[].elf against readelf -dW / -lW / -nW (gnu_property: gold writes
  the GNU property note in a PT_NOTE without a PT_GNU_PROPERTY);
- maps against /proc/PID/maps, argv/envp against /proc/PID/cmdline and
  environ, read at the same stop; a mapping's segment names every PT_LOAD
  it spans;
- syscalls of a multi-threaded run against what each thread made;
- a run whose main thread ended first (pthread_exit) still shows its maps.

One launched process per program, its stops collected once per module.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import subprocess
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from loaderdbg.analysis.objects import annotate_maps, discover_objects
from loaderdbg.decode.maps import MapEntry
from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.snapshot_json import snapshot_to_json

PAGE = 4096
ENV = {"PATH": "/usr/bin:/bin", "VIEWS": "vs tools"}

PROGRAM = textwrap.dedent("""\
    #include <stdio.h>
    __thread int per_thread = 3;
    int main(int argc, char **argv) { printf("%d %s %d\\n", argc, argv[0], per_thread); return 0; }
""")

# Two threads making syscalls at the same time, each its own kind with its
# own result: the main thread getpid (the pid), the worker gettid (its tid).
CONCURRENT = textwrap.dedent("""\
    #define _GNU_SOURCE
    #include <pthread.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    #define CALLS 300
    static pthread_barrier_t both;
    static void *worker(void *arg) {
        pthread_barrier_wait(&both);
        for (int i = 0; i < CALLS; i++) syscall(SYS_gettid);
        return arg;
    }
    int main(void) {
        pthread_t t;
        pthread_barrier_init(&both, NULL, 2);
        pthread_create(&t, NULL, worker, NULL);
        pthread_barrier_wait(&both);
        for (int i = 0; i < CALLS; i++) syscall(SYS_getpid);
        pthread_join(t, NULL);
        return 0;
    }
""")

# The main thread leaves with pthread_exit (a zombie leader, as the JDK's
# launcher leaves it); a worker ends the program later with exit(0).
LEADER_LEAVES = textwrap.dedent("""\
    #include <pthread.h>
    #include <stdlib.h>
    #include <unistd.h>
    static void *worker(void *arg) { usleep(100000); exit(0); return arg; }
    int main(void) {
        pthread_t t;
        pthread_create(&t, NULL, worker, NULL);
        pthread_exit(NULL);
    }
""")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def hexint(value: str) -> int:
    return int(value, 16)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, str]:
    gcc = need("gcc")
    directory = tmp_path_factory.mktemp("views")
    sources = {"program.c": PROGRAM, "concurrent.c": CONCURRENT, "leader_leaves.c": LEADER_LEAVES}
    for name, text in sources.items():
        (directory / name).write_text(text)
    programs = {
        # RW segment in the header's page, mapped from offset 0 (both), a
        # property note without PT_GNU_PROPERTY (gold).
        "gold": ("program.c", ["-fuse-ld=gold", "-Wl,-rpath,/views/rpath"]),
        "noseparate": ("program.c", ["-no-pie", "-Wl,-z,noseparate-code", "-Wl,--enable-new-dtags",
                                     "-Wl,-rpath,$ORIGIN/lib"]),
        "concurrent": ("concurrent.c", ["-pthread"]),
        "leader_leaves": ("leader_leaves.c", ["-pthread"]),
    }
    programs["no_build_id"] = ("program.c", ["-Wl,--build-id=none"])
    out = {}
    for name, (source, flags) in programs.items():
        if "-fuse-ld=gold" in flags and shutil.which("ld.gold") is None:
            continue
        path = directory / name
        subprocess.run([gcc, "-O2", *flags, "-o", str(path), str(directory / source)], check=True,
                       capture_output=True, timeout=60)
        out[name] = str(path)
    # Its build-id only in a section, in no PT_NOTE: Go's linker's layout
    # (its PT_NOTE holds .note.go.buildid alone).
    note = directory / "build-id.note"
    note.write_bytes(struct.pack("<III", 4, 20, 3) + b"GNU\0" + bytes(range(1, 21)))
    subprocess.run([need("objcopy"), "--add-section", f".note.gnu.build-id={note}", "--set-section-flags",
                    ".note.gnu.build-id=readonly", out["no_build_id"], str(directory / "section_build_id")],
                   check=True, capture_output=True, timeout=60)
    out["section_build_id"] = str(directory / "section_build_id")
    return out


def _proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as handle:
        return handle.read()


def _stops(path: str, targets: tuple[str, ...]) -> dict[str, dict]:
    """Each target's JSON snapshot with /proc's maps, cmdline and environ
    read at the same stop (before and after the snapshot: they must agree)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        spec = launch_spec(path, ["one", "two"], aslr=False, stdin_fd=devnull, stdout_fd=devnull,
                           stderr_fd=devnull)
        spec = replace(spec, argv=(path, "one", "two"), env=dict(ENV))
        found = {}
        with LiveSession(spec) as session:
            for target in targets:
                assert session.cont(target).reached, target
                before = {name: _proc(session.pid, name) for name in ("maps", "cmdline", "environ")}
                snap = snapshot_to_json(session.snapshot())
                after = {name: _proc(session.pid, name) for name in ("maps", "cmdline", "environ")}
                assert before == after
                found[target] = {"json": snap, "proc": before}
        return found
    finally:
        os.close(devnull)


@pytest.fixture(scope="module")
def gold(built) -> dict[str, dict]:
    if "gold" not in built:
        pytest.skip("ld.gold is not installed")
    return _stops(built["gold"], ("entry", "exit"))


@pytest.fixture(scope="module")
def noseparate(built) -> dict[str, dict]:
    return _stops(built["noseparate"], ("entry", "exit"))


def _program_stops(request, name: str) -> dict[str, dict]:
    return request.getfixturevalue(name)


# ------------------------------------------------------------ objects vs link map

def program_headers(path: str) -> list[dict]:
    out = subprocess.run([need("readelf"), "-lW", path], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"^\s+(\S+)\s+(0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) "
                     r"(.{3}) (0x[0-9a-f]+|0)$", line)
        if m:
            rows.append({"type": m.group(1), "offset": int(m.group(2), 16), "vaddr": int(m.group(3), 16),
                         "filesz": int(m.group(5), 16), "memsz": int(m.group(6), 16),
                         "flags": m.group(7).replace(" ", ""), "align": int(m.group(8), 0)})
    return rows


@pytest.mark.parametrize("name", ["gold", "noseparate"])
@pytest.mark.parametrize("target", ["entry", "exit"])
def test_objects_are_the_link_maps_objects(request, name, target):
    """Each object of the link map is one object at its l_addr; none other
    (a program's data segment mapped from offset 0 was a second copy of the
    program, 0x1000 higher, with every relocation 'pending')."""
    snap = _program_stops(request, name)[target]["json"]
    objects = snap["objects"]
    assert len({o["name"] for o in objects}) == len(objects), [(o["name"], o["base"]) for o in objects]
    bases = sorted(hexint(o["base"]) for o in objects)
    in_link_map = sorted(hexint(e["l_addr"]) for e in snap["link_map"] if e["kind"] != "vdso")
    assert bases == in_link_map
    program = objects[0]
    assert program["path"] == snap["program"] or os.path.realpath(program["path"]) == snap["program"]
    assert program["relocations"]["pending"] == 0


@pytest.mark.parametrize("name", ["gold", "noseparate"])
def test_every_mapping_of_the_program_names_the_load_readelf_places_there(request, name):
    snap = _program_stops(request, name)["exit"]["json"]
    program = snap["objects"][0]
    loads = [p for p in program_headers(program["path"]) if p["type"] == "LOAD"]
    bias = 0 if program["elf"]["type"] == "ET_EXEC" else hexint(program["base"])
    mine = [m for m in snap["maps"] if m["object"] == program["name"]]
    assert len(mine) >= 3
    for m in mine:
        lo, hi = hexint(m["start"]) - bias, hexint(m["end"]) - bias
        spanned = [f"LOAD[{i}]" for i, p in enumerate(loads)
                   if p["vaddr"] & ~(PAGE - 1) < hi and lo < (p["vaddr"] + p["memsz"] + PAGE - 1) & ~(PAGE - 1)]
        assert m["segment"].split()[0] == "+".join(spanned), m


def test_a_mapping_over_two_loads_names_both(noseparate):
    """The kernel merges two segments' mappings when they are adjacent in
    memory and in the file with the same rights (patchelf's PT_LOAD added
    after the data segment): the one mapping names each PT_LOAD."""
    snap = noseparate["exit"]
    maps = tuple(_map_entries(snap["proc"]["maps"].decode()))
    program = discover_objects(maps, _reading_cache())[0]
    first, last = program.maps[0], program.maps[-1]
    merged = replace(first, end=last.end)
    (annotation,) = annotate_maps([merged], [replace(program, maps=(merged,))])
    assert annotation.segment.startswith("LOAD[0]+LOAD[1] "), annotation.segment


def _map_entries(text: str):
    from loaderdbg.decode.maps import parse_maps
    return parse_maps(text)


def _reading_cache():
    from loaderdbg.analysis.objects import ElfCache

    def read_file(entry: MapEntry) -> bytes | None:
        try:
            return Path(entry.path).read_bytes()
        except OSError:
            return None
    return ElfCache(read_file, find_debug=None)


# ------------------------------------------------------------ object detail vs readelf

def readelf(option: str, path: str) -> str:
    return subprocess.run([need("readelf"), option, path], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def dynamic_rows(path: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s*0x[0-9a-f]+\s+\((\S+)\)\s+(.*?)\s*$", readelf("-dW", path), re.M)


def bracketed(rows, tag: str) -> list[str]:
    return [re.search(r"\[(.*)\]", value).group(1) for t, value in rows if t == tag]


@pytest.mark.parametrize("name", ["gold", "noseparate"])
def test_object_detail_equals_readelf(request, name):
    snap = _program_stops(request, name)["exit"]["json"]
    maps = snap["maps"]
    for obj in snap["objects"]:
        path, elf, dynamic = obj["path"], obj["elf"], obj["dynamic"]
        rows = dynamic_rows(path)
        headers = program_headers(path)
        notes = readelf("-nW", path)
        assert elf["needed"] == dynamic["needed"] == bracketed(rows, "NEEDED"), path
        assert elf["soname"] == dynamic["soname"] == next(iter(bracketed(rows, "SONAME")), None), path
        assert dynamic["rpath"] == next(iter(bracketed(rows, "RPATH")), None), path
        assert dynamic["runpath"] == next(iter(bracketed(rows, "RUNPATH")), None), path
        assert [e["tag"] for e in dynamic["entries"]] == [f"DT_{t}" for t, _ in rows], path
        flags = next((v.split() for t, v in rows if t == "FLAGS"), [])
        assert sorted(f.removeprefix("DF_") for f in elf["flags"]) == sorted(flags), path
        flags_1 = next((v.removeprefix("Flags:").split() for t, v in rows if t == "FLAGS_1"), [])
        assert sorted(f.removeprefix("DF_1_") for f in elf["flags_1"]) == sorted(flags_1), path
        build_id = re.search(r"Build ID: ([0-9a-f]+)", notes)
        assert elf["build_id"] == (build_id and build_id.group(1)), path
        assert elf["gnu_property"] == ("NT_GNU_PROPERTY_TYPE_0" in notes), path
        tls = next((p for p in headers if p["type"] == "TLS"), None)
        assert elf["tls"] == (tls and {"init_size": tls["filesz"], "size": tls["memsz"], "align": tls["align"]})
        stack = next((p for p in headers if p["type"] == "GNU_STACK"), None)
        assert elf["gnu_stack"] == (stack and stack["flags"]), path
        assert elf["eh_frame_hdr"] == any(p["type"] == "GNU_EH_FRAME" for p in headers), path
        relro = next(p for p in headers if p["type"] == "GNU_RELRO")
        bias = 0 if elf["type"] == "ET_EXEC" else hexint(obj["base"]) - (
            min(p["vaddr"] for p in headers if p["type"] == "LOAD") & ~(PAGE - 1))
        start, end = (relro["vaddr"] + bias) & ~(PAGE - 1), (relro["vaddr"] + relro["memsz"] + bias) & ~(PAGE - 1)
        assert (hexint(elf["relro"]["start"]), hexint(elf["relro"]["end"])) == (start, end), path
        writable = [m for m in maps if "w" in m["perms"] and hexint(m["start"]) < end and start < hexint(m["end"])]
        assert elf["relro"]["protected"] == (not writable), path  # ld.so protected it before the entry


def test_a_build_id_outside_every_pt_note_is_the_files(built):
    """readelf -n (and gdb, debuginfod) read .note.gnu.build-id from the
    section headers; no PT_NOTE holds it here."""
    snap = _stops(built["section_build_id"], ("entry",))["entry"]["json"]
    program = snap["objects"][0]
    assert program["path"] == built["section_build_id"]
    build_id = re.search(r"Build ID: ([0-9a-f]+)", readelf("-nW", built["section_build_id"])).group(1)
    assert program["elf"]["build_id"] == build_id == bytes(range(1, 21)).hex()


def test_readelf_sees_what_the_layouts_are_for(built):
    """The programs hold what the tests above are about."""
    for name in ("gold", "noseparate"):
        if name not in built:
            continue
        loads = [p for p in program_headers(built[name]) if p["type"] == "LOAD"]
        assert loads[0]["offset"] == 0 and loads[-1]["offset"] < PAGE and "W" in loads[-1]["flags"]
    if "gold" in built:
        assert not any(p["type"] == "GNU_PROPERTY" for p in program_headers(built["gold"]))
        assert "NT_GNU_PROPERTY_TYPE_0" in readelf("-nW", built["gold"])


# ------------------------------------------------------------ maps, stack vs /proc

@pytest.mark.parametrize("name", ["gold", "noseparate"])
@pytest.mark.parametrize("target", ["entry", "exit"])
def test_maps_and_stack_equal_proc(request, name, target):
    stop = _program_stops(request, name)[target]
    snap, proc = stop["json"], stop["proc"]
    rows = []
    for line in proc["maps"].decode().splitlines():
        fields = line.split(None, 5)
        start, end = fields[0].split("-")
        rows.append((int(start, 16), int(end, 16), fields[1], int(fields[2], 16), fields[5] if len(fields) > 5 else ""))
    assert [(hexint(m["start"]), hexint(m["end"]), m["perms"], hexint(m["offset"]), m["path"])
            for m in snap["maps"]] == rows
    assert snap["argv"] == [a.decode() for a in proc["cmdline"].split(b"\0")[:-1]]
    assert snap["envp"] == [e.decode() for e in proc["environ"].split(b"\0")[:-1]] == [f"{k}={v}" for k, v in ENV.items()]


# ------------------------------------------------------------ threads

@contextlib.contextmanager
def _at_exit(path: str):
    """A LiveSession on path, run to its exit (quiet, the sweep's env)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        spec = replace(launch_spec(path, [], aslr=False, stdin_fd=devnull, stdout_fd=devnull, stderr_fd=devnull),
                       env=dict(ENV))
        with LiveSession(spec) as session:
            assert session.cont("exit").reached
            yield session
    finally:
        os.close(devnull)


@pytest.fixture(scope="module")
def concurrent(built) -> dict:
    with _at_exit(built["concurrent"]) as session:
        return {"json": snapshot_to_json(session.snapshot()), "pid": session.pid}


def test_each_threads_syscalls_are_its_own(concurrent):
    """strace -f: 300 getpid by the main thread (result: the pid), 300
    gettid by the worker (result: its tid), and both threads' rseq."""
    calls = concurrent["json"]["syscalls"]
    getpid = [c for c in calls if c["name"] == "getpid"]
    gettid = [c for c in calls if c["name"] == "gettid"]
    assert len(getpid) == 300 and len(gettid) == 300
    assert {c["result"] for c in getpid} == {hex(concurrent["pid"])}
    assert len({c["result"] for c in gettid}) == 1 and hex(concurrent["pid"]) not in {c["result"] for c in gettid}
    assert [c["name"] for c in calls].count("rseq") == 2


@pytest.fixture(scope="module")
def leader_left(built) -> dict:
    with _at_exit(built["leader_leaves"]) as session:
        snap = snapshot_to_json(session.snapshot())
        worker = next(t["tid"] for t in snap["threads"] if t["tid"] != session.pid)
        return {"json": snap, "maps": _proc(session.pid, f"task/{worker}/maps").decode()}


def test_the_leader_is_a_zombie_and_the_worker_exits(leader_left):
    snap = leader_left["json"]
    assert snap["stop"]["reached"] and snap["stop"]["exit_code"] == 0
    states = {t["state"][0] for t in snap["threads"]}
    assert states == {"Z", "t"}, snap["threads"]
    assert len(leader_left["maps"].splitlines()) > 10


def test_a_run_whose_main_thread_left_still_has_its_maps(leader_left):
    snap = leader_left["json"]
    rows = leader_left["maps"].splitlines()
    assert len(snap["maps"]) == len(rows)
    assert snap["objects"] and snap["link_map"]


def test_a_workers_exit_syscall_is_listed(concurrent):
    """strace -f lists the worker's `exit(0) = ?` before the main thread's
    exit_group; so must the syscalls."""
    calls = concurrent["json"]["syscalls"]
    names = [c["name"] for c in calls]
    assert names[-1] == "exit_group"
    exits = [c for c in calls if c["name"] == "exit"]
    assert len(exits) == 1 and exits[0]["result"] is None
    assert any(e["kind"] == "syscall" and e["name"] == "exit" for e in concurrent["json"]["events"])
