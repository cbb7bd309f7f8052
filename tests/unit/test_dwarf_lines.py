"""file:line for code addresses from DWARF line programs, against gdb's
`info line *ADDR` (issue 15 item 7): on ld.so's separate debug file
(libc6-dbg, DWARF 5, many inlined headers) and on a -g fixture's own DWARF."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loaderdbg.debug_files import find_debug_file
from loaderdbg.decode.dwarf_lines import LineTable
from loaderdbg.decode.elf import parse_elf

ROOT = Path(__file__).resolve().parents[2]
LDSO = "/lib64/ld-linux-x86-64.so.2"


def _gdb_lines(path: str, addresses: list[int]) -> list[tuple[str, int] | None]:
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    args = []
    for address in addresses:
        args += ["-ex", f"info line *{address:#x}"]
    out = subprocess.run([gdb, "-nx", "-batch", *args, path], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=120).stdout.splitlines()
    answers = [line for line in out if line.startswith(("Line ", "No line number"))]
    assert len(answers) == len(addresses), out[-20:]
    found = []
    for answer in answers:
        match = re.match(r'Line (\d+) of "([^"]+)"', answer)
        found.append((match.group(2), int(match.group(1))) if match else None)
    return found


def _ours(table: LineTable, addresses: list[int]) -> list[tuple[str, int] | None]:
    out = []
    for address in addresses:
        line = table.line_for(address)
        out.append((line.file, line.line) if line is not None else None)
    return out


def _code_addresses(info, count: int, seed: int) -> list[int]:
    text = next(s for s in info.load_segments() if s.executable)
    rng = random.Random(seed)
    return sorted(rng.randrange(text.vaddr, text.vaddr + text.filesz) for _ in range(count))


def test_ldso_debug_file_lines_agree_with_gdb():
    info = parse_elf(Path(LDSO).read_bytes(), LDSO)
    debug = find_debug_file(LDSO, info)
    if debug is None:
        pytest.fail("ld.so's debug file is missing: install libc6-dbg (`make sysdeps`)", pytrace=False)
    addresses = _code_addresses(info, 400, seed=15)
    expected = _gdb_lines(debug.path, addresses)
    ours = _ours(debug.lines, addresses)
    differ = [(hex(a), o, e) for a, o, e in zip(addresses, ours, expected) if o != e]
    # gdb keeps one line table per source file and picks among files at one
    # address by their order; we keep one table per unit. That leaves a rare
    # disagreement inside inlined code (1 in 600 when measured).
    assert len(differ) <= 4, differ
    assert sum(e is not None for e in expected) > 300
    with_debug = info.with_debug_file(debug)
    dl_start = with_debug.symbol_named("_dl_start").value
    assert with_debug.line_for(dl_start) == debug.lines.line_for(dl_start)
    assert with_debug.line_for(dl_start).file.endswith("rtld.c")


def test_a_g_builds_own_lines_agree_with_gdb_exactly():
    program = ROOT / "build" / "fixtures" / "zoo" / "hello-glibc"
    if not program.exists():
        pytest.fail(f"{program} is missing: run `make fixtures`", pytrace=False)
    info = parse_elf(program.read_bytes(), str(program))
    main = info.symbol_named("main")
    addresses = list(range(main.value, main.value + main.size)) + _code_addresses(info, 60, seed=1)
    assert _ours(LineTable(program.read_bytes()), addresses) == _gdb_lines(str(program), addresses)
    line = info.line_for(main.value)
    assert line.file.endswith("hello.c") and line.comp_dir == "." and line.text == f"{line.file}:{line.line}"


def test_no_dwarf_no_lines():
    data = Path("/bin/true").read_bytes()
    table = LineTable(data)
    assert not table.available
    info = parse_elf(data, "/bin/true")
    assert table.line_for(info.entry) is None
    assert LineTable(b"not an ELF file").line_for(0x1000) is None
