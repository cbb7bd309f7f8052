"""Names from separate debug files (issue 15 item 7).

libc6-dbg (the Makefile installs it) puts ld.so's and libc's debug files
under /usr/lib/debug/.build-id/. With them, a live session and a replay of
it name ld.so's code as gdb does (`_start`, `_start+3`, `_dl_start`,
`_dl_start_user+7`), and `sym:` reaches ld.so's internal functions. Debug
links are found beside the object, in its .debug/ and under the debug
directory, and only taken when their CRC matches."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loaderdbg.analysis.objects import ElfCache, discover_objects
from loaderdbg.analysis.source_lines import line_at, source_text
from loaderdbg.analysis.symbols import LoadedObject, SymbolTable
from loaderdbg.debug_files import build_id_path, find_debug_file
from loaderdbg.decode.maps import parse_maps
from loaderdbg.decode.elf import DebugLink, parse_debuglink, parse_elf
from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

LDSO = os.path.realpath("/lib64/ld-linux-x86-64.so.2")
LIBC = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")
TRUE = os.path.realpath("/bin/true")
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required: run `make sysdeps`", pytrace=False)
    return path


def _info(path: str):
    return parse_elf(Path(path).read_bytes(), path)


@pytest.fixture(scope="module", autouse=True)
def libc6_dbg():
    info = _info(LDSO)
    if not Path(build_id_path(info.build_id, "/usr/lib/debug")).is_file():
        pytest.fail("ld.so's debug file is missing: install libc6-dbg (`make sysdeps`)", pytrace=False)


# -- finding the files ---------------------------------------------------------


def test_ldso_and_libc_are_found_by_build_id():
    for path, inside in ((LDSO, ("_dl_start", "_dl_relocate_object", "_dl_start_user")),
                         (LIBC, ("__libc_start_call_main", "_IO_new_file_write"))):
        info = _info(path)
        found = find_debug_file(path, info)
        assert found is not None and found.path == build_id_path(info.build_id, "/usr/lib/debug")
        assert found.build_id == info.build_id
        names = {s.name for s in found.symbols}
        assert set(inside) <= names
        # Once per process: the same object (and its parsed symbols) again.
        assert find_debug_file(path, _info(path)) is found


def test_debuglink_section_layout():
    """Name, NUL, padding to 4, CRC in the file's byte order."""
    assert parse_debuglink(b"ab.debug\0\0\0\0\x78\x56\x34\x12") == DebugLink("ab.debug", 0x12345678)
    assert parse_debuglink(b"abc\0\x12\x34\x56\x78", little_endian=False) == DebugLink("abc", 0x12345678)
    assert parse_debuglink(b"abc\0\x12\x34") is None  # truncated CRC
    assert parse_debuglink(b"\0\0\0\0\x12\x34\x56\x78") is None  # no name
    assert parse_debuglink(b"no terminator") is None


HELLO = r"""
#include <stdio.h>
static int helper(int x) { return x * 3; }
int main(int argc, char **argv) { (void)argv; printf("%d\n", helper(argc)); return 0; }
"""


def _split_debug(tmp_path: Path, build_id: bool) -> tuple[Path, Path]:
    """A stripped program and its debug file (objcopy --only-keep-debug),
    linked by .gnu_debuglink; without a build-id the link is the only way."""
    source = tmp_path / "hello.c"
    source.write_text(HELLO)
    program = tmp_path / "bin" / "hello"
    program.parent.mkdir()
    subprocess.run([_tool("gcc"), "-g", "-O1", "-fno-inline", f"-Wl,--build-id={'sha1' if build_id else 'none'}",
                    "-o", str(program), str(source)], check=True, capture_output=True)
    debug = tmp_path / "hello.debug"
    subprocess.run([_tool("objcopy"), "--only-keep-debug", str(program), str(debug)], check=True)
    subprocess.run([_tool("strip"), "--strip-all", str(program)], check=True)
    subprocess.run([_tool("objcopy"), f"--add-gnu-debuglink={debug}", str(program)], check=True,
                   cwd=tmp_path)
    return program, debug


@pytest.mark.parametrize("place", ["beside", ".debug", "debug-dir"])
def test_a_debug_link_is_followed_where_gdb_looks(tmp_path, place):
    program, debug = _split_debug(tmp_path, build_id=False)
    info = _info(str(program))
    assert info.build_id is None and info.debuglink.name == "hello.debug"
    assert info.symbol_named("helper") is None
    directory = tmp_path / "usr-lib-debug"
    target = {"beside": program.parent, ".debug": program.parent / ".debug",
              "debug-dir": Path(str(directory) + str(program.parent))}[place]
    target.mkdir(parents=True, exist_ok=True)
    shutil.move(debug, target / "hello.debug")
    found = find_debug_file(str(program), info, (str(directory),))
    assert found is not None and found.path == str(target / "hello.debug")
    named = info.with_debug_file(found)
    helper = named.symbol_named("helper")
    assert helper is not None and helper.bind == "LOCAL"
    assert named.symbolize(helper.value + 1) == ("helper", 1)


def test_a_debug_link_with_another_crc_is_refused(tmp_path):
    program, debug = _split_debug(tmp_path, build_id=False)
    info = _info(str(program))
    damaged = program.parent / "hello.debug"
    damaged.write_bytes(debug.read_bytes() + b"\0")
    assert find_debug_file(str(program), info, (str(tmp_path / "none"),)) is None


def test_a_fifo_under_the_linked_name_is_not_read(tmp_path):
    """A path from a recording may name anything: a FIFO must not block."""
    program, debug = _split_debug(tmp_path, build_id=False)
    os.mkfifo(program.parent / "hello.debug")
    (program.parent / ".debug").mkdir()
    shutil.move(debug, program.parent / ".debug" / "hello.debug")
    found = find_debug_file(str(program), _info(str(program)), (str(tmp_path / "none"),))
    assert found is not None and found.path == str(program.parent / ".debug" / "hello.debug")


def test_a_build_id_file_of_another_build_is_refused(tmp_path):
    program, debug = _split_debug(tmp_path, build_id=True)
    info = _info(str(program))
    directory = tmp_path / "debug"
    place = Path(build_id_path(info.build_id, str(directory)))
    place.parent.mkdir(parents=True)
    # ld.so's debug file where this program's should be: its build-id differs.
    place.write_bytes(Path(build_id_path(_info(LDSO).build_id, "/usr/lib/debug")).read_bytes())
    (program.parent / "hello.debug").unlink(missing_ok=True)
    assert find_debug_file(str(program), info, (str(directory),)) is None
    place.write_bytes(debug.read_bytes())
    found = find_debug_file(str(program), _info(str(program)), (str(directory) + "-other", str(directory)))
    # The first answer for this build-id and directory list was cached; a
    # different list looks again and finds the right file.
    assert found is not None and found.path == str(place)


# -- live and replay sessions, against gdb ---------------------------------------


def _gdb_listing(count: int) -> list[tuple[int, str]]:
    """(address, <symbol+offset>) of gdb's `x/Ni $pc` at /bin/true's first
    instruction (ld.so's _start; ASLR off as in loaderdbg)."""
    out = subprocess.run([_tool("gdb"), "-nx", "-batch", "-ex", "starti", "-ex", f"x/{count}i $pc", TRUE],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120).stdout
    rows = re.findall(r"(0x[0-9a-f]+) <([^>]+)>:", out)
    assert len(rows) == count, out
    return [(int(address, 16), name) for address, name in rows]


def _ours(symbol: str | None) -> str | None:
    # gdb writes offsets in decimal: _start+3.
    if symbol is None or "+" not in symbol:
        return symbol
    name, offset = symbol.rsplit("+", 1)
    return f"{name}+{int(offset, 16)}"


def test_live_names_ldso_as_gdb_does():
    expected = _gdb_listing(12)
    session = LiveSession(launch_spec(TRUE, [], aslr=False))
    try:
        listing = session.disassemble(session.snapshot().registers.get("rip"), 12)
        assert [(i.address, _ours(i.symbol)) for i in listing] == expected
        call = next(i for i in listing if i.is_call)
        assert call.target_symbol == "_dl_start"
        reason = session.cont("sym:_dl_relocate_object")
        assert reason.reached, reason
        pc = session.snapshot().registers.get("rip")
        assert session.symbolize(pc) == "_dl_relocate_object"
        assert session.resolve("_dl_relocate_object") == pc
    finally:
        session.close()


def test_a_replay_names_what_the_live_run_named(tmp_path):
    null = os.open(os.devnull, os.O_WRONLY)
    output = tmp_path / "true.ldbg"
    try:
        record_program(LaunchSpec(path=TRUE, argv=(TRUE,), env=dict(ENV), stdout_fd=null, stderr_fd=null),
                       str(output), "entry", progress=False)
    finally:
        os.close(null)
    expected = _gdb_listing(12)
    with ReplaySession(str(output)) as replay:
        replay.goto(0)
        listing = replay.disassemble(expected[0][0], 12)
        assert [(i.address, _ours(i.symbol)) for i in listing] == expected
        reason = replay.cont("sym:_dl_relocate_object")
        assert reason.reached, reason
        assert replay.symbolize(replay.pc) == "_dl_relocate_object"


# -- source lines ------------------------------------------------------------------


def test_source_lines_of_a_live_process(fixtures_dir):
    """At main of a -g fixture: its own DWARF gives hello.c's line, found
    through the source directory; ld.so's debug file gives rtld.c's."""
    program = fixtures_dir / "zoo" / "hello-glibc"
    sources = Path(__file__).resolve().parents[1] / "fixtures" / "zoo"
    null = os.open(os.devnull, os.O_WRONLY)
    session = LiveSession(LaunchSpec(path=str(program), argv=(str(program),), env=dict(ENV),
                                     stdout_fd=null, stderr_fd=null))
    try:
        assert session.cont("main").reached
        pc = session.snapshot().registers.get("rip")
        maps = parse_maps(Path(f"/proc/{session.pid}/maps").read_text())
        objects = discover_objects(maps, ElfCache(lambda entry: Path(entry.path).read_bytes()))
        symbols = SymbolTable([LoadedObject(o.name, o.base, o.info) for o in objects])
        line = line_at(symbols, pc)
        assert line is not None and line.file == "./hello.c", line
        text = source_text(line, [str(sources)])
        assert text == (sources / "hello.c").read_text().splitlines()[line.line - 1]
        assert "main" in text or "{" in text or "puts" in text
        assert source_text(line, []) is None  # ./hello.c is not under the current directory
        ldso = next(o for o in symbols.objects if o.name.startswith("ld-linux"))
        in_ldso = line_at(symbols, ldso.runtime(ldso.info.symbol_named("_dl_start").value))
        assert in_ldso is not None and in_ldso.file.endswith("rtld.c") and in_ldso.line > 0
        assert line_at(symbols, 0x10) is None
    finally:
        session.close()
        os.close(null)
