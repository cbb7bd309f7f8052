"""Bad programs (issue 8): each through `inspect --json PROG` and `run PROG`.

One line on stderr, exit 2 when the file is the problem (we vet it before
forking) or 1 when the kernel refuses the exec (the errno is reported), no
traceback, no JSON on stdout, no process left (conftest.no_orphans). `run`
must fail before any TUI exists: its stdin is /dev/null and a Textual app
there would hang until the timeout, not print one line.

Decision on `#!` scripts: accepted. The kernel execs the interpreter, so the
session shows the interpreter's startup with the script as an argument, as
`strace ./script` would; the interpreter is vetted like a program (a missing
one is named, not reported as a bare ENOENT about the script).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from clihelp import assert_one_line, run_cli

HELLO = "zoo/hello-glibc"
STATIC_PIE = "zoo/hello-static-pie"
EM_AARCH64 = 183
EM_RISCV = 243


def _elf32(path: Path, work: Path) -> None:
    """A real i386 binary when gcc -m32 can link one (no libc needed),
    else a hand-made ELFCLASS32 header."""
    source = work / "s32.c"
    source.write_text('void _start(void){__asm__ volatile("movl $1,%%eax; xorl %%ebx,%%ebx; int $0x80":::"memory");}\n')
    built = shutil.which("gcc") and subprocess.run(
        ["gcc", "-m32", "-nostdlib", "-static", "-fno-pic", "-no-pie", "-o", str(path), str(source)],
        capture_output=True).returncode == 0
    if not built:
        ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
        path.write_bytes(ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x8048000, 52, 0, 0,
                                             52, 32, 1, 40, 0, 0) + bytes(32))


def _patched_interp(source: Path, new: bytes) -> bytes:
    data = bytearray(source.read_bytes())
    old = b"/lib64/ld-linux-x86-64.so.2\0"
    at = data.find(old)
    assert at > 0 and len(new) < len(old)
    data[at:at + len(old)] = new.ljust(len(old), b"\0")
    return bytes(data)


@pytest.fixture(scope="module")
def programs(tmp_path_factory, fixtures_dir) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("badprogs")
    true = Path("/bin/true").read_bytes()
    phoff = struct.unpack_from("<Q", true, 32)[0]
    out: dict[str, Path] = {}

    def put(name: str, data: bytes | str, mode: int = 0o755) -> None:
        path = work / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(path, mode)
        out[name] = path

    put("nonexec", true, 0o644)
    put("empty", b"")
    put("text", "just some words\n")
    put("script", "#!/bin/sh\nexit 0\n")
    put("script-missing-interp", "#!/no/such/interpreter\n")
    put("script-text-interp", f"#!{work}/text\n")
    put("script-no-interp", "#!   \n")
    put("truncated-header", true[:40])
    put("truncated-phdrs", true[:phoff + 20])
    aarch64 = bytearray(true)
    struct.pack_into("<H", aarch64, 18, EM_AARCH64)
    put("aarch64", bytes(aarch64))
    riscv = bytearray(true)
    struct.pack_into("<H", riscv, 18, EM_RISCV)
    put("riscv", bytes(riscv))
    put("missing-interp", _patched_interp(fixtures_dir / HELLO, b"/lib64/ld-gone-x86-64.so.2"))
    # Exists, so our check passes; the kernel then refuses it (EACCES: no x bit).
    put("unexecutable-interp", _patched_interp(fixtures_dir / HELLO, b"/etc/passwd"))
    _elf32(work / "elf32", work)
    out["elf32"] = work / "elf32"
    out["dir"] = work
    out["missing"] = work / "no-such-program"
    return out


BAD = [
    # case, exit code, words in the one line
    ("missing", 2, ("no such file",)),
    ("dir", 2, ("is a directory",)),
    ("nonexec", 2, ("not executable",)),
    ("empty", 2, ("not an ELF",)),
    ("text", 2, ("not an ELF",)),
    ("script-missing-interp", 2, ("/no/such/interpreter", "no such file")),
    ("script-text-interp", 2, ("interpreter", "not an ELF")),
    ("script-no-interp", 2, ("names no interpreter",)),
    ("truncated-header", 2, ("truncated ELF header",)),
    ("truncated-phdrs", 2, ("truncated program headers",)),
    ("elf32", 2, ("32-bit",)),
    # aarch64 runs under qemu-user: its PT_INTERP is looked for in the sysroot.
    ("aarch64", 2, ("/lib64/ld-linux-x86-64.so.2", "PT_INTERP", "not an ELF for EM_AARCH64")),
    ("riscv", 2, ("EM_RISCV",)),
    ("missing-interp", 2, ("/lib64/ld-gone-x86-64.so.2", "PT_INTERP", "does not exist")),
    ("unexecutable-interp", 1, ("execve failed", "Permission denied (EACCES)")),
]


@pytest.mark.parametrize("case,code,words", BAD, ids=[case for case, _, _ in BAD])
def test_inspect_bad_program(programs, case, code, words):
    line = assert_one_line(run_cli("inspect", "--json", str(programs[case])), code, *words)
    assert str(programs[case]) in line


@pytest.mark.parametrize("case,code,words", BAD, ids=[case for case, _, _ in BAD])
def test_run_bad_program_fails_before_the_tui(programs, case, code, words):
    assert_one_line(run_cli("run", str(programs[case]), timeout=30), code, *words)


def test_bad_program_in_path(monkeypatch):
    result = run_cli("inspect", "--json", "no-such-program-in-path-xyz")
    assert_one_line(result, 2, "not found in PATH")


def test_script_is_launched_through_its_interpreter(programs):
    result = run_cli("inspect", "--json", str(programs["script"]))
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    # The kernel rewrote argv: the interpreter first, then the script.
    assert snap["argv"][-1] == str(programs["script"])
    assert snap["argv"][0] == "/bin/sh"


def test_static_pie_runs_and_has_no_ldso(programs, fixtures_dir):
    prog = str(fixtures_dir / STATIC_PIE)
    result = run_cli("inspect", "--json", "--at", "main", prog)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stop"]["reason"]
    result = run_cli("inspect", "--json", "--at", "ldso-entry", prog)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    json.loads(result.stdout)  # the snapshot where it gave up is still printed
    assert result.stderr.strip().splitlines()[-1].startswith("loaderdbg: ldso-entry not reached")
    assert "statically linked" in result.stderr


def test_tracee_output_unwritable(fixtures_dir):
    result = run_cli("inspect", "--json", "--tracee-output", "/no/such/dir/out", str(fixtures_dir / HELLO))
    assert_one_line(result, 2, "--tracee-output")


SUBSET = [case for case in BAD if case[0] in ("missing", "truncated-phdrs", "elf32", "missing-interp",
                                               "unexecutable-interp")]


@pytest.mark.parametrize("case,code,words", SUBSET, ids=[case for case, _, _ in SUBSET])
def test_explain_and_record_bad_program(programs, tmp_path, case, code, words):
    """The same vetting guards `explain` and `record` (a representative
    subset: every command goes through inspect_command.launch_spec)."""
    assert_one_line(run_cli("explain", str(programs[case])), code, *words)
    out = tmp_path / "rec.ldbg"
    assert_one_line(run_cli("record", "-o", str(out), str(programs[case])), code, *words)
    assert not out.exists()  # no half-made recording for a program that never ran
