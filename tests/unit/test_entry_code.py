"""Finding main from a program's entry code (issue 15 item 5).

Programs are built here every way gcc and musl-gcc link them; for each, the
entry code's answer must equal the .symtab's `main`, and stripping the
program must not change it. Real system programs are checked against gdb
in tests/integration/test_entry_code_gdb.py."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from loaderdbg.analysis.entry_code import (find_main, locate_main, main_from_entry_code,
                                           main_not_found_reason)
from loaderdbg.arch import X86_64, get_arch
from loaderdbg.decode.elf import parse_elf

HELLO = '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'

# name -> (compiler, flags)
VARIANTS = {
    "pie": ("gcc", ["-O2", "-fPIE", "-pie"]),
    "no-pie": ("gcc", ["-O2", "-fno-PIE", "-no-pie"]),
    "no-plt": ("gcc", ["-O2", "-fno-plt", "-fPIE", "-pie"]),
    # The linker leaves `mov main@GOTPCREL(%rip), %rdi`: main comes from a GOT
    # slot (a RELATIVE relocation, or the file's word in an ET_EXEC).
    "pie-no-relax": ("gcc", ["-O0", "-fPIE", "-pie", "-Wl,--no-relax"]),
    "no-pie-no-relax": ("gcc", ["-O0", "-fno-PIE", "-no-pie", "-Wl,--no-relax"]),
    "static": ("gcc", ["-O2", "-static"]),
    "static-pie": ("gcc", ["-O2", "-static-pie"]),
    "static-no-relax": ("gcc", ["-O2", "-static", "-Wl,--no-relax"]),
    "static-pie-no-relax": ("gcc", ["-O2", "-static-pie", "-Wl,--no-relax"]),
    "musl": ("musl-gcc", ["-O2"]),
    "musl-static": ("musl-gcc", ["-O2", "-static"]),
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required: run `make sysdeps`", pytrace=False)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Each variant, and a stripped copy of it named NAME.stripped."""
    out = tmp_path_factory.mktemp("entry_code")
    source = out / "hello.c"
    source.write_text(HELLO)
    programs = {}
    for name, (compiler, flags) in VARIANTS.items():
        program = out / name
        subprocess.run([_tool(compiler), *flags, "-o", str(program), str(source)], check=True,
                       capture_output=True)
        stripped = out / f"{name}.stripped"
        subprocess.run([_tool("strip"), "-o", str(stripped), str(program)], check=True, capture_output=True)
        programs[name] = program
        programs[f"{name}.stripped"] = stripped
    return programs


def _load(path: Path):
    data = path.read_bytes()
    return parse_elf(data, str(path)), data


def _symtab_main(path: Path) -> int:
    out = subprocess.run([_tool("readelf"), "-sW", str(path)], check=True, capture_output=True,
                         text=True).stdout
    values = {int(line.split()[1], 16) for line in out.splitlines()
              if line.split()[-1:] == ["main"] and "FUNC" in line}
    assert len(values) == 1, out[-2000:]
    return values.pop()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_entry_code_finds_the_symbol_tables_main(built, variant):
    info, data = _load(built[variant])
    expected = _symtab_main(built[variant])
    location = main_from_entry_code(info, data, X86_64)
    assert location.address == expected, location
    assert "__libc_start_main" in location.how
    assert find_main(info, data, X86_64) == expected
    assert locate_main(info, data, X86_64).how == "symbol main"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_stripped_programs_keep_their_main(built, variant):
    info, data = _load(built[f"{variant}.stripped"])
    assert info.symbol_named("main") is None
    location = locate_main(info, data, X86_64)
    assert location.address == _symtab_main(built[variant]), location
    assert "start routine" in location.how or "__libc_start_main" in location.how
    assert main_not_found_reason(variant, info, data, X86_64) is None


def test_stripped_static_names_no_start_routine(built):
    """Nothing names the callee in a stripped static program: the answer
    says so instead of claiming __libc_start_main."""
    info, data = _load(built["static.stripped"])
    assert locate_main(info, data, X86_64).how.startswith("first argument of the C library's start routine")


def test_musl_goes_through_start_c(built):
    info, data = _load(built["musl"])
    location = main_from_entry_code(info, data, X86_64)
    # _start calls _start_c, which jumps to __libc_start_main@plt.
    assert location.how.startswith("first argument of __libc_start_main (jmp at")


def test_a_no_pie_program_that_exports_nothing_decodes_every_dynamic_symbol(built):
    """Its GNU hash table hashes nothing, so the relocations bound .dynsym
    (parse_elf used to stop at one symbol and reject the file)."""
    info, _ = _load(built["no-pie"])
    names = {s.name for s in info.dynsyms}
    assert {"__libc_start_main", "puts"} <= names
    assert any(r.symbol == "__libc_start_main" for r in info.relocations)


NO_LIBC_START = r"""
void start(void) { __asm__ volatile("mov $60, %eax\n xor %edi, %edi\n syscall"); }
"""

CALLS_ANOTHER = r"""
extern void setup(void *);
static int work(void) { return 0; }
void start(void) { setup((void *)work); }
void setup(void *p) { (void)p; __asm__ volatile("mov $60, %eax\n xor %edi, %edi\n syscall"); }
"""


def _build_nostdlib(tmp_path: Path, source: str, name: str, strip: bool) -> Path:
    path = tmp_path / f"{name}.c"
    path.write_text(source)
    program = tmp_path / name
    subprocess.run([_tool("gcc"), "-O1", "-fno-inline", "-static", "-nostdlib", "-Wl,-e,start",
                    "-o", str(program), str(path)], check=True, capture_output=True)
    if strip:
        subprocess.run([_tool("strip"), str(program)], check=True, capture_output=True)
    return program


def test_no_start_routine_is_said_in_one_line(tmp_path):
    program = _build_nostdlib(tmp_path, NO_LIBC_START, "raw", strip=True)
    info, data = _load(program)
    assert find_main(info, data, X86_64) is None
    reason = main_not_found_reason("raw", info, data, X86_64)
    assert reason == ("main not found: raw has no symbol `main` and its entry code does not call "
                      "__libc_start_main")


def test_a_named_callee_that_is_not_the_start_routine_is_named(tmp_path):
    program = _build_nostdlib(tmp_path, CALLS_ANOTHER, "other", strip=False)
    info, data = _load(program)
    reason = main_not_found_reason("other", info, data, X86_64)
    assert reason is not None and "\n" not in reason
    assert "calls setup, not __libc_start_main" in reason


def test_libraries_have_no_main():
    for path in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
        info, data = _load(Path(path))
        assert find_main(info, data, X86_64) is None
        reason = main_not_found_reason(path, info, data, X86_64)
        assert reason.startswith(f"main not found: {path} has no symbol `main` and its entry code")


def test_an_entry_point_outside_code_is_reported(built):
    info, data = _load(built["pie.stripped"])
    moved = replace(info, entry=info.dynamic_vaddr)
    assert "not in an executable segment" in main_not_found_reason("p", moved, data, X86_64)


def test_other_architectures_say_they_are_not_read_yet(built):
    info, data = _load(built["pie.stripped"])
    assert "aarch64" in main_not_found_reason("p", info, data, get_arch("aarch64"))
