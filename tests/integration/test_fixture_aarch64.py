"""The aarch64 fixtures (issue 22) behave as documented, run through qemu-user.

Built by `make fixtures` (tests/fixtures/execsolib-aarch64: the x86 demo's
sources, built for aarch64; and the zoo's aarch64-hello); each program runs as `qemu-aarch64 -L /usr/aarch64-linux-gnu
PROG ...`. The output contract is the x86 demo's (payload.c):
`execsolib: ok argc=<argc>` and ` <argv[i]>` for i >= 1, exit status 0.
gdb-multiarch on qemu's gdb stub checks the hand-off: at ld.so's entry, sp is
the kernel's, x0 is 0 and the auxv names the trampoline and ld.so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from execsolibhelp import (
    REPO, Arch, assert_argv_names_the_memfd, assert_blob_check, assert_dynamic_and_relocations,
    assert_missing_ldso_is_loud, assert_patch_needed, clean_env, patch_failures, require_built, tool,
    traced_run,
)

BUILD = REPO / "build/fixtures"
SYSROOT = Path("/usr/aarch64-linux-gnu")
GUEST_LDSO = "/lib/ld-linux-aarch64.so.1"  # the trampoline's PT_INTERP, as the guest names it
# Debian's musl:arm64 (multiarch) installs it on the host; qemu finds it there
# because the -L sysroot has no file of that name.
MUSL_LDSO = "/lib/ld-musl-aarch64.so.1"
OK_VARIANTS = ["aarch64-glibc-O2", "aarch64-glibc-O0", "aarch64-glibc-relr", "aarch64-musl-O2"]
BUG_VARIANT = "aarch64-handoffbug"
ALL_VARIANTS = OK_VARIANTS + [BUG_VARIANT]
ZOO = {"aarch64-hello": ("hello from aarch64\n", GUEST_LDSO),
       "aarch64-hello-musl": ("hello from aarch64 musl\n", MUSL_LDSO)}
CROSS_TOOLS = ["qemu-aarch64", "gdb-multiarch", "aarch64-linux-gnu-readelf", "aarch64-linux-gnu-objdump"]
_absent = [t for t in CROSS_TOOLS if shutil.which(t) is None]
if not (SYSROOT / GUEST_LDSO.lstrip("/")).exists():
    _absent.append(f"{SYSROOT}{GUEST_LDSO} (libc6-arm64-cross)")
if not Path(MUSL_LDSO).exists():
    _absent.append(f"{MUSL_LDSO} (musl:arm64)")
if _absent:
    pytest.skip(f"aarch64 cross tools not installed: {', '.join(_absent)} (`make sysdeps` installs them)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def build_dir() -> Path:
    return require_built(ALL_VARIANTS, *(BUILD / "zoo" / p for p in ZOO))


def ldso_of(variant: str) -> str:
    return MUSL_LDSO if "musl" in variant else GUEST_LDSO


def qemu(argv, *qemu_opts: str, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["qemu-aarch64", "-L", str(SYSROOT), *qemu_opts, *[str(a) for a in argv]],
        cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=30,
    )


AARCH64 = Arch("aarch64", readelf="aarch64-linux-gnu-readelf", objdump="aarch64-linux-gnu-objdump",
               reloc_prefix="R_AARCH64", run=qemu)


def readelf(opts: str, path) -> str:
    return tool("aarch64-linux-gnu-readelf", opts, str(path))


def elf_entry(path) -> int:
    return int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", readelf("-hW", path)).group(1), 16)


# --------------------------------------------------------------------------
# Running the variants under qemu


@pytest.mark.parametrize("variant", OK_VARIANTS)
def test_runs_under_qemu(build_dir, variant):
    r = qemu(["./libexecsolib.so", "a", "b"], cwd=build_dir / variant)
    assert (r.returncode, r.stdout, r.stderr) == (0, "execsolib: ok argc=3 a b\n", "")


def test_runs_by_absolute_path_and_symlink(build_dir, tmp_path):
    so = build_dir / "aarch64-glibc-O2" / "libexecsolib.so"
    r = qemu([so], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "execsolib: ok argc=1\n"), r.stderr
    link = tmp_path / "renamed-link"
    link.symlink_to(so)
    r = qemu([link, "x", "y", "z"], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "execsolib: ok argc=4 x y z\n"), r.stderr


@pytest.mark.parametrize("mode", ["lazy", "now"])
def test_dlopen_modes(build_dir, mode):
    r = qemu(["./libexecsolib.so", mode], cwd=build_dir / "aarch64-glibc-O2", EXECSOLIB_DLOPEN=mode)
    assert (r.returncode, r.stdout) == (0, f"execsolib: ok argc=2 {mode}\n"), r.stderr


def test_argv_entries_naming_the_so_point_at_the_memfd(build_dir):
    assert_argv_names_the_memfd(AARCH64, build_dir / "aarch64-glibc-O0")


@pytest.mark.parametrize("variant", OK_VARIANTS)
def test_trace_shows_milestones_in_order_and_relocation_count(build_dir, variant):
    trace = traced_run(AARCH64, build_dir / variant / "libexecsolib.so")
    assert f"{ldso_of(variant)} mapped at 0x" in trace


def test_strace_shows_memfd_ldso_mapping_then_ldso_at_work(build_dir):
    """qemu's -strace: the bootstrap's syscalls, then ld.so's, in order."""
    r = qemu(["./libexecsolib.so", "s"], "-strace", cwd=build_dir / "aarch64-glibc-O2")
    assert r.returncode == 0 and "execsolib: ok argc=2 s\n" in r.stdout, r.stderr
    lines = r.stderr.splitlines()

    def first(pattern: str) -> int:
        hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert hits, f"no {pattern!r} in qemu -strace output:\n{r.stderr}"
        return hits[0]

    memfd = first(r"memfd_create\(.*\) = \d+$")
    fd = re.search(r"= (\d+)$", lines[memfd]).group(1)
    open_ldso = first(rf'openat\(AT_FDCWD,"{GUEST_LDSO}",O_RDONLY\|O_CLOEXEC\) = \d+$')
    ldso_fd = re.search(r"= (\d+)$", lines[open_ldso]).group(1)
    # ld.so's text, MAP_FIXED over the reservation, from file offset 0.
    map_ldso = first(rf"mmap\(0x[0-9a-f]+,\d+,PROT_EXEC\|PROT_READ,MAP_PRIVATE\|MAP_FIXED,{ldso_fd},0\) = ")
    libc = first(r'openat\(AT_FDCWD,"[^"]*/libc\.so\.6",O_RDONLY\|O_CLOEXEC\) = \d+$')  # ld.so at work
    dlopen = first(rf'openat\(AT_FDCWD,"/proc/self/fd/{fd}",O_RDONLY\|O_CLOEXEC\) = \d+$')
    assert memfd < open_ldso < map_ldso < libc < dlopen
    assert "exit_group(0)" in lines[-1]


# --------------------------------------------------------------------------
# The hand-off bug: the branch target in x0, zeroed before the branch


def test_handoffbug_dies_of_sigsegv_at_address_zero(build_dir):
    r = qemu(["./libexecsolib.so", "a", "b"], "-strace", cwd=build_dir / BUG_VARIANT)
    assert r.returncode == -11, (r.returncode, r.stdout, r.stderr[-2000:])
    assert r.stdout == ""
    assert "--- SIGSEGV {si_signo=SIGSEGV, si_code=1, si_addr=NULL} ---" in r.stderr
    assert "uncaught target signal 11 (Segmentation fault)" in r.stderr


def test_handoffbug_branches_through_zeroed_x0(build_dir):
    insns = [text for _, text in AARCH64.handoff_disassembly(build_dir / BUG_VARIANT / "libexecsolib.so")]
    i = insns.index("mov x0, #0x0")
    assert insns[i + 1] == "br x0", insns


@pytest.mark.parametrize("variant", OK_VARIANTS)
def test_fixed_handoff_branches_through_x16(build_dir, variant):
    insns = [text for _, text in AARCH64.handoff_disassembly(build_dir / variant / "libexecsolib.so")]
    branches = [i for i in insns if i.startswith(("br ", "blr ", "ret"))]
    assert branches == ["br x16"], insns
    assert insns.index("mov x0, #0x0") < insns.index("br x16")
    # Nothing writes x16 between loading the target and the branch.
    last_x16 = max(i for i, t in enumerate(insns) if re.match(r"\w+ x16,", t))
    assert last_x16 < insns.index("mov x0, #0x0")


# --------------------------------------------------------------------------
# gdb-multiarch on qemu's gdb stub (Unix socket: no port to collide on)


def gdb_on_qemu(tmp_path: Path, prog: Path, args: list[str], commands: list[str]) -> tuple[str, int]:
    """Run `prog` under `qemu-aarch64 -g SOCKET`, drive it with gdb-multiarch
    -batch; `{qemu_pid}` in a command is the qemu process id. Returns gdb's
    stdout and qemu's exit status."""
    sock = tmp_path / "gdb.sock"
    q = subprocess.Popen(
        ["qemu-aarch64", "-L", str(SYSROOT), "-g", str(sock), str(prog), *args],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert q.poll() is None and time.monotonic() < deadline, "qemu did not open its gdb socket"
            time.sleep(0.02)
        script = ["set pagination off", "set confirm off", f"file {prog}", f"target remote {sock}"]
        script += [c.format(qemu_pid=q.pid) for c in commands]
        argv = ["gdb-multiarch", "-nx", "-q", "-batch"]
        for c in script:
            argv += ["-ex", c]
        g = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=clean_env())
        q_out, _ = q.communicate(timeout=20)
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()
    return g.stdout + q_out.decode(errors="replace"), q.returncode


AUXV_LINE = re.compile(r"^\d+\s+(AT_\w+)\s.*?\s(0x[0-9a-f]+|\d+)(?:\s+\".*\")?$")


def auxv_blocks(out: str) -> list[dict[str, int]]:
    """Each `info auxv` listing in gdb's output, in order (one ends at AT_NULL)."""
    blocks, cur = [], {}
    for line in out.splitlines():
        m = AUXV_LINE.match(line.strip())
        if m:
            cur[m.group(1)] = int(m.group(2), 0)
            if m.group(1) == "AT_NULL":
                blocks.append(cur)
                cur = {}
    return blocks


def regs(out: str, tag: str) -> dict[str, int]:
    m = re.search(rf"^{tag} pc=(0x[0-9a-f]+) sp=(0x[0-9a-f]+) x0=(0x[0-9a-f]+)$", out, re.M)
    assert m, f"no {tag} line in:\n{out}"
    return dict(zip(("pc", "sp", "x0"), (int(v, 16) for v in m.groups())))


@pytest.fixture(scope="module")
def handoff_session(build_dir, tmp_path_factory):
    """One gdb-multiarch session on the O2 demo: its first instruction, then
    ld.so's entry one step after the hand-off's `br x16`."""
    d = build_dir / "aarch64-glibc-O2"
    so = d / "libexecsolib.so"
    br = next(off for off, text in AARCH64.handoff_disassembly(so) if text == "br x16")
    out, rc = gdb_on_qemu(tmp_path_factory.mktemp("gdb"), so, ["g1", "g2"], [
        'printf "FIRST pc=0x%lx sp=0x%lx x0=0x%lx\\n", $pc, $sp, $x0',
        "info auxv",
        f"break *(execsolib_handoff + {br})",
        "continue",
        "stepi",
        'printf "HANDOFF pc=0x%lx sp=0x%lx x0=0x%lx\\n", $pc, $sp, $x0',
        "shell grep -F ld-linux-aarch64 /proc/{qemu_pid}/maps",
        # gdb caches the auxv it read at attach; loading a file drops the cache.
        f"file {d / 'trampoline'}",
        "info auxv",
        "continue",
    ])
    return out, rc, so, d / "trampoline"


def test_gdb_stops_at_the_first_instruction(handoff_session):
    out, rc, so, _ = handoff_session
    first = regs(out, "FIRST")
    kernel_auxv = auxv_blocks(out)[0]
    assert first["pc"] == kernel_auxv["AT_ENTRY"]
    assert "execsolib_start () at ./start.S" in out.split("FIRST", 1)[0]  # gdb names where it stopped
    assert first["x0"] == 0 and first["sp"] % 16 == 0
    assert kernel_auxv["AT_BASE"] == 0  # no interpreter: qemu mapped the .so alone
    load_base = first["pc"] - elf_entry(so)
    assert kernel_auxv["AT_PHDR"] == load_base + 64  # the .so's own headers, right after its ELF header


def test_gdb_after_the_handoff_sees_ldso_entry_kernel_sp_and_rewritten_auxv(handoff_session):
    out, rc, _, trampoline = handoff_session
    assert rc == 0 and "execsolib: ok argc=3 g1 g2" in out, out
    first, handoff = regs(out, "FIRST"), regs(out, "HANDOFF")
    kernel_auxv, auxv = auxv_blocks(out)
    assert handoff["sp"] == first["sp"]  # the kernel's stack pointer, unchanged
    assert handoff["x0"] == 0
    ldso_entry = elf_entry(SYSROOT / GUEST_LDSO.lstrip("/"))
    assert handoff["pc"] == auxv["AT_BASE"] + ldso_entry
    phdr_vaddr = int(re.search(r"^\s+PHDR\s+\S+\s+(0x[0-9a-f]+)", readelf("-lW", trampoline), re.M).group(1), 16)
    bias = auxv["AT_PHDR"] - phdr_vaddr
    assert auxv["AT_ENTRY"] == bias + elf_entry(trampoline)
    assert auxv["AT_PHNUM"] == int(re.search(r"Number of program headers:\s+(\d+)", readelf("-hW", trampoline)).group(1))
    for key in ("AT_PHDR", "AT_PHNUM", "AT_ENTRY", "AT_BASE"):
        assert auxv[key] != kernel_auxv[key], key
    assert auxv["AT_RANDOM"] == kernel_auxv["AT_RANDOM"] and auxv["AT_EXECFN"] == kernel_auxv["AT_EXECFN"]
    # Guest addresses are host addresses in qemu's own maps: ld.so, opened by
    # the guest as /lib/..., is qemu's -L sysroot file, mapped at AT_BASE.
    start = f"{auxv['AT_BASE']:x}-"
    maps = [line for line in out.splitlines() if line.startswith(start)]
    assert maps and maps[0].endswith(str(SYSROOT / GUEST_LDSO.lstrip("/"))), out


def test_gdb_sees_handoffbug_branch_to_zero(build_dir, tmp_path):
    so = build_dir / BUG_VARIANT / "libexecsolib.so"
    br = next(off for off, text in AARCH64.handoff_disassembly(so) if text == "br x0")
    out, rc = gdb_on_qemu(tmp_path, so, ["a"], [
        f"break *(execsolib_handoff + {br})",
        "continue",
        'printf "AT_BR pc=0x%lx sp=0x%lx x0=0x%lx\\n", $pc, $sp, $x0',
        "stepi",
        'printf "LANDED pc=0x%lx sp=0x%lx x0=0x%lx\\n", $pc, $sp, $x0',
        "continue",  # fetching the instruction at 0 faults
        'printf "FAULT pc=0x%lx sp=0x%lx x0=0x%lx\\n", $pc, $sp, $x0',
        "kill",
    ])
    at_br, landed, fault = regs(out, "AT_BR"), regs(out, "LANDED"), regs(out, "FAULT")
    assert at_br["x0"] == 0  # the target, zeroed by `mov x0, #0`
    assert landed["pc"] == 0 and landed["sp"] == at_br["sp"]
    assert "Program received signal SIGSEGV" in out.split("LANDED", 1)[1], out
    assert fault["pc"] == 0
    assert "execsolib: ok" not in out


# --------------------------------------------------------------------------
# ELF shape (aarch64-linux-gnu-readelf -lrdW)


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_so_elf_shape(build_dir, variant):
    so = build_dir / variant / "libexecsolib.so"
    assert os.access(so, os.X_OK)
    header = readelf("-hW", so)
    assert re.search(r"Type:\s+DYN", header) and re.search(r"Machine:\s+AArch64", header)
    entry = elf_entry(so)
    syms = {f[7]: int(f[1], 16) for f in (line.split() for line in readelf("-sW", so).splitlines())
            if len(f) >= 8 and re.fullmatch(r"[0-9a-f]{16}", f[1])}
    assert entry != 0 and entry == syms["execsolib_start"]
    assert "execsolib_handoff" in syms and "execsolib_milestone" in syms
    out = readelf("-lW", so)
    assert "INTERP" not in out and "Requesting program interpreter" not in out
    assert_dynamic_and_relocations(AARCH64, so, relr=variant == "aarch64-glibc-relr")


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_trampoline_is_aarch64_pie_with_interp_and_phdr(build_dir, variant):
    t = build_dir / variant / "trampoline"
    out = readelf("-hldW", t)
    assert re.search(r"Type:\s+DYN", out) and re.search(r"Machine:\s+AArch64", out)
    assert re.search(r"^\s+PHDR\s", out, re.M)
    assert f"[Requesting program interpreter: {ldso_of(variant)}]" in out
    assert "(FLAGS_1)            Flags: PIE" in out


def test_link_check_refuses_a_foreign_trampoline(build_dir):
    assert_blob_check(AARCH64, build_dir, "aarch64-glibc-O2", "aarch64-glibc-O0")
    x86 = build_dir / "glibc-O2"
    r = AARCH64.check_blob(x86 / "libexecsolib.so", x86 / "trampoline")
    assert r.returncode == 1 and "e_machine 62, want 183" in r.stderr


# --------------------------------------------------------------------------
# Every patch of the memfd copy is needed on aarch64 too

SKIP_FAILURES = patch_failures("aarch64-glibc-O2", "aarch64-musl-O2",
                               musl_init="constructor ran in the memfd copy")


@pytest.mark.parametrize("variant,skip,rc,message", SKIP_FAILURES)
def test_each_patch_is_necessary(build_dir, variant, skip, rc, message):
    assert_patch_needed(AARCH64, build_dir / variant, skip, rc, message)


def test_bootstrap_failures_are_loud(build_dir):
    so = build_dir / "aarch64-glibc-O2" / "libexecsolib.so"
    assert_missing_ldso_is_loud(AARCH64, so)
    # An x86-64 ld.so is refused by name, not jumped into.
    r = qemu([so], EXECSOLIB_LDSO=os.path.realpath("/lib64/ld-linux-x86-64.so.2"))
    assert r.returncode == 127 and "is not an aarch64 ELF64 file" in r.stderr


# --------------------------------------------------------------------------
# The plain aarch64 program


@pytest.mark.parametrize("program", sorted(ZOO))
def test_zoo_aarch64_hello(build_dir, program):
    hello = BUILD / "zoo" / program
    greeting, ldso = ZOO[program]
    r = qemu([hello])
    assert (r.returncode, r.stdout, r.stderr) == (0, greeting, "")
    out = readelf("-hlW", hello)
    assert re.search(r"Type:\s+DYN", out) and re.search(r"Machine:\s+AArch64", out)
    assert f"[Requesting program interpreter: {ldso}]" in out
