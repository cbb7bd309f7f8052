"""The exec-solib fixture (DESIGN.md section 7) behaves as documented.

Real processes only: the variants built by
`make -C tests/fixtures/execsolib OUT=<repo>/build/fixtures/execsolib`
are run, disassembled and inspected with binutils and gdb.

Output contract (payload.c): `execsolib: ok argc=<argc>` followed by
` <argv[i]>` for i = 1..argc-1 and a newline, exit status 0; argv entries
naming the .so read `/proc/self/fd/N` (the memfd copy).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from execsolibhelp import (
    Arch, assert_argv_names_the_memfd, assert_blob_check, assert_dynamic_and_relocations,
    assert_missing_ldso_is_loud, assert_patch_needed, clean_env, patch_failures, require_built, tool,
    traced_run,
)

OK_VARIANTS = ["glibc-O2", "glibc-O0", "glibc-relr", "musl-O2"]
ALL_VARIANTS = OK_VARIANTS + ["rdxbug"]
GLIBC_LDSO = "/lib64/ld-linux-x86-64.so.2"
MUSL_LDSO = "/lib/ld-musl-x86_64.so.1"
# Named in the .so's .symtab so a debugger can mark the milestones.
MILESTONE_SYMBOLS = [
    "execsolib_start",
    "execsolib_self_relocate",
    "execsolib_bootstrap",
    "execsolib_map_trampoline",
    "execsolib_make_memfd_copy",
    "execsolib_patch_copy",
    "execsolib_rewrite_argv",
    "execsolib_map_ldso",
    "execsolib_rewrite_auxv",
    "execsolib_handoff",
    "execsolib_milestone",
    "execsolib_relocs_applied",
]


def run(argv, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=clean_env(**env),
        capture_output=True, text=True, timeout=15,
    )


X86 = Arch("x86_64", readelf="readelf", objdump="objdump", reloc_prefix="R_X86_64", run=run)


@pytest.fixture(scope="session")
def build_dir() -> Path:
    return require_built(ALL_VARIANTS)


# --------------------------------------------------------------------------
# Running the variants


@pytest.mark.parametrize("variant", OK_VARIANTS)
def test_runs_from_its_directory(build_dir, variant):
    r = run(["./libexecsolib.so", "a", "b"], cwd=build_dir / variant)
    assert (r.returncode, r.stdout, r.stderr) == (0, "execsolib: ok argc=3 a b\n", "")


@pytest.mark.parametrize("variant", OK_VARIANTS)
def test_runs_by_absolute_path_and_symlink(build_dir, variant, tmp_path):
    so = build_dir / variant / "libexecsolib.so"
    r = run([so, "one"], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "execsolib: ok argc=2 one\n"), r.stderr
    link = tmp_path / "renamed-link"
    link.symlink_to(so)
    r = run([link, "x", "y", "z"], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "execsolib: ok argc=4 x y z\n"), r.stderr
    r = run([so], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "execsolib: ok argc=1\n"), r.stderr


@pytest.mark.parametrize("variant", OK_VARIANTS)
@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_dlopen_modes(build_dir, variant, mode):
    r = run(["./libexecsolib.so", mode], cwd=build_dir / variant, EXECSOLIB_DLOPEN=mode)
    assert (r.returncode, r.stdout) == (0, f"execsolib: ok argc=2 {mode}\n"), r.stderr


@pytest.mark.parametrize("variant", OK_VARIANTS)
def test_argv_entries_naming_the_so_point_at_the_memfd(build_dir, variant):
    assert_argv_names_the_memfd(X86, build_dir / variant)


@pytest.mark.parametrize("variant", OK_VARIANTS)
def test_trace_shows_milestones_in_order_and_relocation_count(build_dir, variant):
    traced_run(X86, build_dir / variant / "libexecsolib.so")


def test_rdxbug_dies_at_address_zero(build_dir):
    r = run(["./libexecsolib.so", "a", "b"], cwd=build_dir / "rdxbug")
    assert r.returncode == -11, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""


def test_rdxbug_fault_is_rip_0_addr_0_under_gdb(build_dir):
    so = build_dir / "rdxbug" / "libexecsolib.so"
    r = subprocess.run(
        ["gdb", "-nx", "-batch", "-ex", "run", "-ex", "p $pc",
         "-ex", "p $_siginfo._sifields._sigfault.si_addr", "--args", str(so), "a"],
        capture_output=True, text=True, timeout=30, env=clean_env(),
    )
    assert "SIGSEGV" in r.stdout, r.stdout + r.stderr
    assert re.search(r"^\$1 = .*\b0x0$", r.stdout, re.M), r.stdout
    assert re.search(r"^\$2 = .*\b0x0$", r.stdout, re.M), r.stdout


def test_rdxbug_handoff_jumps_through_zeroed_rdx(build_dir):
    insns = X86.handoff_instructions(build_dir / "rdxbug" / "libexecsolib.so")
    i = insns.index("xor %edx,%edx")
    assert insns[i + 1] == "jmp *%rdx", insns


@pytest.mark.parametrize("variant", OK_VARIANTS)
def test_fixed_handoff_does_not_jump_through_rdx(build_dir, variant):
    insns = X86.handoff_instructions(build_dir / variant / "libexecsolib.so")
    jumps = [i for i in insns if i.startswith("jmp *")]
    assert jumps == ["jmp *%rax"], insns
    assert "xor %edx,%edx" in insns
    assert insns.index("xor %edx,%edx") < insns.index("jmp *%rax")


# --------------------------------------------------------------------------
# ELF shape


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_so_elf_shape(build_dir, variant):
    so = build_dir / variant / "libexecsolib.so"
    assert os.access(so, os.X_OK)
    header = tool("readelf", "-hW", str(so))
    assert re.search(r"Type:\s+DYN", header)
    entry = int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", header).group(1), 16)
    assert entry != 0
    phdrs = tool("readelf", "-lW", str(so))
    assert "INTERP" not in phdrs and "Requesting program interpreter" not in phdrs

    syms = tool("readelf", "-sW", str(so))
    values = {}
    for line in syms.splitlines():
        f = line.split()
        if len(f) >= 8 and f[7] in MILESTONE_SYMBOLS:
            values[f[7]] = int(f[1], 16)
    assert set(values) == set(MILESTONE_SYMBOLS)
    assert values["execsolib_start"] == entry
    assert_dynamic_and_relocations(X86, so, relr=variant == "glibc-relr")


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_trampoline_is_pie_with_interp_and_phdr(build_dir, variant):
    t = build_dir / variant / "trampoline"
    header = tool("readelf", "-hW", str(t))
    assert re.search(r"Type:\s+DYN", header)
    phdrs = tool("readelf", "-lW", str(t))
    assert re.search(r"^\s+PHDR\s", phdrs, re.M)
    interp = MUSL_LDSO if variant.startswith("musl") else GLIBC_LDSO
    assert f"[Requesting program interpreter: {interp}]" in phdrs
    assert "(FLAGS_1)            Flags: PIE" in tool("readelf", "-dW", str(t))


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_trampoline_blob_page_aligned_and_identical(build_dir, variant):
    assert_blob_check(X86, build_dir, variant, "musl-O2" if variant != "musl-O2" else "glibc-O2")


def test_trampoline_refuses_to_run_directly(build_dir):
    r = run([build_dir / "glibc-O2" / "trampoline"])
    assert r.returncode == 2 and "not a /proc/self/fd/ path" in r.stderr


# --------------------------------------------------------------------------
# Every patch of the memfd copy is needed (EXECSOLIB_SKIP_PATCH leaves one out)

SKIP_FAILURES = patch_failures("glibc-O2", "musl-O2", musl_init="DT_INIT ran in the memfd copy")


@pytest.mark.parametrize("variant,skip,rc,message", SKIP_FAILURES)
def test_each_patch_is_necessary(build_dir, variant, skip, rc, message):
    assert_patch_needed(X86, build_dir / variant, skip, rc, message)


def test_bootstrap_failures_are_loud(build_dir):
    so = build_dir / "glibc-O2" / "libexecsolib.so"
    r = run([so], EXECSOLIB_SKIP_PATCH="bogus")
    assert r.returncode == 127 and "EXECSOLIB_SKIP_PATCH: unknown word" in r.stderr
    assert_missing_ldso_is_loud(X86, so)
    r = run([so, "over"], EXECSOLIB_LDSO=os.path.realpath(GLIBC_LDSO))
    assert (r.returncode, r.stdout) == (0, "execsolib: ok argc=2 over\n"), r.stderr
