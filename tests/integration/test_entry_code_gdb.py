"""main of stripped system programs, found from their entry code, against
gdb (issue 15 item 5): gdb stops the real program at __libc_start_main
(libc6-dbg names it) and reads its first argument, rdi; loaderdbg's answer
plus the program's load bias must be that value.

ldconfig is static and stripped: nothing names __libc_start_main in it, so
gdb stops at the call the entry code makes instead, and reads rdi there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loaderdbg.analysis.entry_code import locate_main
from loaderdbg.arch import X86_64
from loaderdbg.decode.elf import parse_elf

# program -> arguments (main is never reached: gdb kills it at the start routine)
SYSTEM_PROGRAMS = {
    "/usr/bin/python3": ("--version",),
    "/usr/bin/ssh": ("-V",),
    "/usr/bin/curl": ("--version",),
    "/usr/bin/gdb": ("--version",),
    "/usr/bin/perl": ("-v",),
    "/bin/true": (),
    "/sbin/ldconfig": ("-p",),
}
PRESENT = [p for p in SYSTEM_PROGRAMS if Path(p).exists()]


def _gdb() -> str:
    path = shutil.which("gdb")
    if path is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    return path


def _runtime_first_argument(program: str, args: tuple[str, ...], call_site: int | None,
                            script_path: Path) -> tuple[int, int]:
    """(rdi at the start routine, where the program's first page is mapped)."""
    stop = "b __libc_start_main" if call_site is None else "b *($base + %d)" % call_site
    script = f"""
set pagination off
set confirm off
set breakpoint pending on
starti
python
import gdb, os
path = os.path.realpath(gdb.current_progspace().filename)
for line in gdb.execute("info proc mappings", to_string=True).splitlines():
    fields = line.split()
    if fields and fields[-1] == path:
        gdb.execute("set $first = " + fields[0])
        break
end
set $base = $first - {parse_elf(Path(program).read_bytes()).min_vaddr}
{stop}
continue
printf "RDI=%lx FIRST=%lx\\n", $rdi, $first
kill
"""
    script_path.write_text(script)
    result = subprocess.run([_gdb(), "-nx", "-batch", "-x", str(script_path), "--args", program, *args],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    found = re.search(r"RDI=([0-9a-f]+) FIRST=([0-9a-f]+)", result.stdout)
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    return int(found.group(1), 16), int(found.group(2), 16)


@pytest.mark.parametrize("program", PRESENT)
def test_main_found_in_the_entry_code_is_what_gdb_sees(program, tmp_path):
    path = os.path.realpath(program)
    data = Path(path).read_bytes()
    info = parse_elf(data, path)
    location = locate_main(info, data, X86_64)
    assert location.found, location.how
    static = info.interp is None
    rdi, first = _runtime_first_argument(path, SYSTEM_PROGRAMS[program],
                                         location.call_site if static else None, tmp_path / "script.gdb")
    base = first - info.min_vaddr
    assert rdi == base + location.address, (hex(rdi), hex(base), location)
