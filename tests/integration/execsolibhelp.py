"""What the exec-solib demo's two test modules share: test_fixture_execsolib.py
(x86-64, run natively) and test_fixture_aarch64.py (aarch64, under
qemu-user) check one set of sources (tests/fixtures/execsolib) built for two
architectures. An Arch names the binutils, the relocation names and how a
program is run; the checks below take one. Imported as a plain module, like
clihelp.py."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE_SRC = REPO / "tests/fixtures/execsolib"
BUILD_DIR = REPO / "build/fixtures/execsolib"
HOST_LIB = "libexecsolib_host.so"
MILESTONES = [
    "(1) self-relocation done",
    "(2) trampoline mapped",
    "(3) memfd copy patched",
    "(4) argv rewritten",
    "(5) ld.so mapped",
    "(6) auxv rewritten",
    "(7) hand-off",
]
# The copy's patches, as EXECSOLIB_TRACE=1 reports them (bootstrap.c).
PATCH_TRACES = (f"DT_NEEDED -> 0x6e000001: {HOST_LIB}", "DT_INIT_ARRAY -> 0x6e000019",
                "DT_VERNEED -> 0x6e000ffe", "DT_VERSYM -> 0x6e000ff0",
                "host_report: GLOBAL -> WEAK")
# Tags the .so has before the bootstrap retags them in its copy.
DYNAMIC_TAGS = ("(VERNEED)", "(VERNEEDNUM)", "(VERSYM)", "(INIT)", "(FINI)",
                "(INIT_ARRAY)", "(FINI_ARRAY)", "(JMPREL)")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the fixture's and qemu's variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECSOLIB_", "QEMU_"))}
    env.update(extra)
    return env


def tool(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=15).stdout


@dataclass(frozen=True)
class Arch:
    name: str  # as check_blob.py takes it
    readelf: str
    objdump: str
    reloc_prefix: str  # R_X86_64, R_AARCH64
    # run(argv, cwd=None, **env) -> CompletedProcess: natively or under qemu
    run: Callable[..., subprocess.CompletedProcess]

    def relative_count(self, so: Path) -> int:
        """RELATIVE relocations, counting RELR-encoded ones."""
        out = tool(self.readelf, "-rW", str(so))
        n = sum(1 for line in out.splitlines() if f"{self.reloc_prefix}_RELATIVE" in line)
        m = re.search(r"'\.relr\.dyn' at offset \S+ contains \d+ entr(?:y|ies):\s*\n\s*(\d+) offsets", out)
        return n + (int(m.group(1)) if m else 0)

    def handoff_disassembly(self, so: Path) -> list[tuple[int, str]]:
        """execsolib_handoff's instructions: (offset from the symbol, `mnemonic operands`)."""
        out = tool(self.objdump, "-d", "--no-show-raw-insn", "--disassemble=execsolib_handoff", str(so))
        insns = []
        for line in out.splitlines():
            m = re.match(r"\s+([0-9a-f]+):\s+(\S.*)$", line)
            if m:
                text = re.sub(r"\s*//.*$", "", m.group(2))
                insns.append((int(m.group(1), 16), " ".join(text.split())))
        assert insns, f"no execsolib_handoff in {so}"
        start = insns[0][0]
        return [(addr - start, text) for addr, text in insns]

    def handoff_instructions(self, so: Path) -> list[str]:
        return [text for _, text in self.handoff_disassembly(so)]

    def check_blob(self, so: Path, trampoline: Path) -> subprocess.CompletedProcess:
        """The link-time check the Makefiles run, run again."""
        return subprocess.run(["python3", str(FIXTURE_SRC / "check_blob.py"), self.name, str(so), str(trampoline)],
                              capture_output=True, text=True, timeout=15)


def require_built(variants: list[str], *others: Path) -> Path:
    """The fixture build directory, or the test fails naming what is missing."""
    missing = [v for v in variants if not (BUILD_DIR / v / "libexecsolib.so").is_file()]
    missing += [str(p) for p in others if not p.is_file()]
    if missing:
        pytest.fail(f"exec-solib fixtures not built (missing {missing}); run `make fixtures`")
    return BUILD_DIR


def traced_run(arch: Arch, so: Path) -> str:
    """Runs `so t` with EXECSOLIB_TRACE=1 and checks its report: every
    milestone in order, every RELATIVE relocation (or RELR bit) applied,
    every patch of the copy. Returns the trace (stderr)."""
    r = arch.run([so, "t"], EXECSOLIB_TRACE="1")
    assert (r.returncode, r.stdout) == (0, "execsolib: ok argc=2 t\n"), r.stderr
    positions = [r.stderr.find(m) for m in MILESTONES]
    assert -1 not in positions and positions == sorted(positions), r.stderr
    m = re.search(r"(\d+) RELATIVE relocations applied", r.stderr)
    assert m, r.stderr
    applied = int(m.group(1))
    assert applied >= 50
    assert applied == arch.relative_count(so)
    for needle in PATCH_TRACES:
        assert needle in r.stderr, needle
    return r.stderr


def assert_argv_names_the_memfd(arch: Arch, variant_dir: Path) -> None:
    """Every argv entry naming the .so (not only argv[0]) names the memfd copy."""
    r = arch.run(["./libexecsolib.so", "x", "./libexecsolib.so", "y"], cwd=variant_dir)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"execsolib: ok argc=4 x /proc/self/fd/\d+ y\n", r.stdout), r.stdout


def assert_dynamic_and_relocations(arch: Arch, so: Path, relr: bool) -> None:
    """The .so as the bootstrap expects to find it: the host library needed
    (no rpath), versions, init/fini, PLT, the host's symbols, 50+ RELATIVE
    relocations, packed as RELR or not."""
    out = tool(arch.readelf, "-drW", str(so))
    assert f"(NEEDED)             Shared library: [{HOST_LIB}]" in out
    for tag in DYNAMIC_TAGS:
        assert tag in out, tag
    assert "RUNPATH" not in out and "RPATH" not in out
    relative = f"{arch.reloc_prefix}_RELATIVE"
    assert re.search(rf"{arch.reloc_prefix}_JUMP_SLOT\s+0+ host_report", out)
    assert re.search(rf"{arch.reloc_prefix}_GLOB_DAT\s+0+ host_optional_hook", out)
    assert arch.relative_count(so) >= 50
    if relr:
        assert ".relr.dyn" in out and "(RELR)" in out
        assert relative not in out  # all packed
    else:
        assert ".relr.dyn" not in out
        assert sum(relative in line for line in out.splitlines()) >= 50


def assert_blob_check(arch: Arch, build_dir: Path, variant: str, other_variant: str) -> None:
    """check_blob.py passes the variant's own .so and trampoline, and is no
    tautology: another variant's trampoline is refused."""
    d = build_dir / variant
    r = arch.check_blob(d / "libexecsolib.so", d / "trampoline")
    assert r.returncode == 0, r.stderr
    r = arch.check_blob(d / "libexecsolib.so", build_dir / other_variant / "trampoline")
    assert r.returncode == 1 and "are not" in r.stderr


def patch_failures(glibc: str, musl: str, musl_init: str) -> list[tuple[str, str, int, str]]:
    """(variant, EXECSOLIB_SKIP_PATCH word, exit status, message on stderr):
    what leaving each patch out of the memfd copy does under glibc and under
    musl. `musl_init` is musl's message for `init`: on x86-64 musl runs
    DT_INIT (payload.c's guard) first; on aarch64 it has no DT_INIT/DT_FINI at
    all (NO_LEGACY_INITFINI), so the constructor in DT_INIT_ARRAY fires."""
    return [
        # The host library exists only at link time: ld.so cannot find it.
        (glibc, "needed", 3, f"{HOST_LIB}: cannot open shared object file"),
        (musl, "needed", 3, f"Error loading shared library {HOST_LIB}"),
        # payload.c's guards: kill(getpid(), SIGABRT). glibc runs DT_INIT first.
        (glibc, "init", -6, "DT_INIT ran in the memfd copy"),
        (musl, "init", -6, musl_init),
        (glibc, "verneed", 127, "_dl_check_map_versions"),
        (glibc, "weak", 3, "undefined symbol: host_"),
        (musl, "weak", 3, "symbol not found"),
    ]


def assert_patch_needed(arch: Arch, variant_dir: Path, skip: str, rc: int, message: str) -> None:
    """Leaving one patch out of the memfd copy (EXECSOLIB_SKIP_PATCH) makes
    the run fail with `rc` and `message`."""
    assert (variant_dir / HOST_LIB).is_file()  # it exists, just not findable
    r = arch.run(["./libexecsolib.so", "a"], cwd=variant_dir, EXECSOLIB_SKIP_PATCH=skip)
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr
    assert "execsolib: ok" not in r.stdout


def assert_missing_ldso_is_loud(arch: Arch, so: Path) -> None:
    r = arch.run([so], EXECSOLIB_LDSO="/nonexistent/ld.so")
    assert r.returncode == 127
    assert "execsolib: bootstrap failed: open /nonexistent/ld.so (errno 2)" in r.stderr
