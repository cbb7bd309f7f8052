"""What a relocation binds to, checked against what ld.so really did.

With LD_BIND_NOW=1 ld.so resolves every JUMP_SLOT before AT_ENTRY, so at
`entry` every GLOB_DAT, JUMP_SLOT and 64-bit symbol slot holds the address
ld.so chose: our `expected` (found by our own scope walk and version rules)
must be exactly that, and every state must be known. Without it, the same
programs show lazy or applied slots, none pending or unknown.

Programs: perl and python3 (non-PIE here) as installed, and a program built
here with a symbol defined in two libraries (the first in breadth-first
DT_NEEDED order wins, also for the second library's own call), an export of
the program that satisfies a library's versioned libc reference (mkstemp),
a copy relocation, ifuncs in the program and a library, TLS, and a
function whose address a non-PIE program takes (its canonical PLT entry is
the definition for every non-PLT lookup) — built non-PIE and PIE, lazy and
-z now.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from loaderdbg.decode.elf import parse_elf
from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
FIXTURES = Path(__file__).resolve().parents[2] / "build" / "fixtures"
SYMBOL_SLOTS = ("R_X86_64_GLOB_DAT", "R_X86_64_JUMP_SLOT", "R_X86_64_64")

FIRST = r"""
#include <stdlib.h>
__thread int first_tls = 7;
int first_counter = 41;
int interposed(void) { return 1; }
int lib_fn(void) { return 5; }
int (*lib_fn_pointer)(void) = lib_fn;
static int impl_a(void) { return 10; }
static int impl_b(void) { return 20; }
static void *pick(void) { return getenv("BINDINGS_NEVER_SET") ? (void *)impl_a : (void *)impl_b; }
int lib_ifunc(void) __attribute__((ifunc("pick")));
int first_makes_temp(char *name) { return mkstemp(name); }
"""

SECOND = r"""
int interposed(void) { return 2; }
int second_calls_interposed(void) { return interposed(); }
"""

MAIN = r"""
#include <stdlib.h>
extern int first_counter;
extern __thread int first_tls;
extern int (*lib_fn_pointer)(void);
int interposed(void);
int lib_fn(void);
int lib_ifunc(void);
int second_calls_interposed(void);
int first_makes_temp(char *name);
/* Exported (-rdynamic): libfirst's mkstemp@GLIBC_2.2.5 binds here. */
int mkstemp(char *name) { (void)name; return -1; }
static int exe_a(void) { return 1; }
static int exe_b(void) { return 2; }
static void *exe_pick(void) { return getenv("BINDINGS_NEVER_SET") ? (void *)exe_a : (void *)exe_b; }
int exe_ifunc(void) __attribute__((ifunc("exe_pick")));
int (*exe_pointer)(void) = lib_fn;
int main(void) {
    /* Code taking a library function's address: non-PIC code (-fno-pie)
       gets a canonical PLT entry for it. */
    int (*volatile own)(void) = lib_fn;
    char name[] = "/nonexistent/x";
    int sum = first_counter + first_tls + interposed() + lib_ifunc() + exe_ifunc() + own()
              + lib_fn_pointer() + exe_pointer() + second_calls_interposed() + first_makes_temp(name);
    return sum == 41 + 7 + 1 + 20 + 2 + 5 + 5 + 5 + 1 - 1 ? 0 : 1;
}
"""

VARIANTS = {
    "nopie-lazy": ("-no-pie", "-fno-pie"),
    "nopie-now": ("-no-pie", "-fno-pie", "-Wl,-z,now"),
    "pie-lazy": ("-pie", "-fPIE"),
    "pie-now": ("-pie", "-fPIE", "-Wl,-z,now"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the binding test programs")
    out = tmp_path_factory.mktemp("bindings")
    for name, text in (("first", FIRST), ("second", SECOND), ("main", MAIN)):
        (out / f"{name}.c").write_text(text)

    def cc(*args: str) -> None:
        subprocess.run([gcc, "-O1", *args], cwd=out, check=True, capture_output=True)

    cc("-shared", "-fPIC", "-o", "libfirst.so", "first.c")
    cc("-shared", "-fPIC", "-o", "libsecond.so", "second.c")
    programs = {}
    for variant, flags in VARIANTS.items():
        cc(*flags, "-rdynamic", "-o", variant, "main.c", "-L.", "-lfirst", "-lsecond", "-Wl,-rpath,$ORIGIN")
        programs[variant] = out / variant
        # The program itself checks that every binding came out as intended.
        assert subprocess.run([str(out / variant)], env=ENV).returncode == 0, variant
    return programs


def at_entry(argv: list[str], bind_now: bool, until: str = "entry", **env_vars: str):
    env = dict(ENV, LD_BIND_NOW="1", **env_vars) if bind_now else dict(ENV, **env_vars)
    null = os.open(os.devnull, os.O_WRONLY)
    session = LiveSession(LaunchSpec(path=argv[0], argv=tuple(argv), env=env, stdout_fd=null, stderr_fd=null))
    try:
        session.cont(until)
        return session.snapshot()
    finally:
        session.close()
        os.close(null)


def check_against_ldso(snap) -> None:
    """Every symbol slot holds exactly our expected value, and every state is known."""
    wrong = [r for r in snap.relocations
             if r.type_name in SYMBOL_SLOTS and r.expected is not None and r.current != r.expected]
    assert not wrong, wrong[:5]
    ifunc_bound = [r for r in snap.relocations if r.type_name in SYMBOL_SLOTS and r.expected is None]
    assert all(r.state == "applied" and r.binding is not None for r in ifunc_bound), ifunc_bound[:5]
    unsettled = [r for r in snap.relocations if r.state != "applied"]
    assert not unsettled, unsettled[:5]
    assert all(r.reason is None or r.state == "applied" for r in snap.relocations)


def check_lazy(snap) -> None:
    unsettled = [r for r in snap.relocations if r.state in ("pending", "unknown")]
    assert not unsettled, unsettled[:5]


def slot(snap, object_name: str, symbol: str, type_name: str | None = None):
    found = [r for r in snap.relocations if r.object == object_name and r.symbol == symbol
             and (type_name is None or r.type_name == type_name)]
    assert found, (object_name, symbol, type_name)
    return found[0]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("bind_now", [True, False], ids=["bind-now", "lazy"])
def test_built_program_bindings(built, variant: str, bind_now: bool) -> None:
    snap = at_entry([str(built[variant])], bind_now)
    (check_against_ldso if bind_now else check_lazy)(snap)
    # The first definition in breadth-first DT_NEEDED order wins, for the
    # program and for libsecond's own call.
    for obj in (variant, "libsecond.so"):
        assert slot(snap, obj, "interposed").binding.object == "libfirst.so"
    # A program's unversioned export satisfies libc's versioned mkstemp.
    binding = slot(snap, "libfirst.so", "mkstemp").binding
    assert binding.object == variant and binding.version is None
    for name in ("lib_ifunc", "lib_fn"):
        assert slot(snap, variant, name).binding.object == "libfirst.so"
    first_pointer = slot(snap, "libfirst.so", "lib_fn")
    if variant.startswith("nopie"):
        copy = slot(snap, variant, "first_counter", "R_X86_64_COPY")
        assert copy.state == "applied" and copy.binding.object == "libfirst.so"
        # The program took lib_fn's address: libfirst's data pointer to
        # lib_fn binds to the program's canonical PLT entry.
        assert first_pointer.binding.object == variant
    else:
        assert first_pointer.binding.object == "libfirst.so"
    tls = slot(snap, variant, "first_tls")
    assert tls.state == "applied" and tls.binding.object == "libfirst.so"


def test_perl_binds_like_ldso() -> None:
    snap = at_entry(["/usr/bin/perl", "-e", "1"], bind_now=True)
    check_against_ldso(snap)
    # libm comes before libc in perl's DT_NEEDED order; both define frexp.
    for name in ("frexp", "ldexp", "modf"):
        assert slot(snap, "perl", name).binding.object == "libm.so.6"
    check_lazy(at_entry(["/usr/bin/perl", "-e", "1"], bind_now=False))


def test_python3_non_pie_binds_like_ldso() -> None:
    snap = at_entry(["/usr/bin/python3", "-c", "pass"], bind_now=True)
    check_against_ldso(snap)
    lazy = at_entry(["/usr/bin/python3", "-c", "pass"], bind_now=False)
    check_lazy(lazy)
    program = lazy.objects[0]
    assert program.base == 0, "python3 is non-PIE here"
    # Its PLT slots hold their stubs at base 0: lazy, since ld.so set GOT[1..2].
    plt = [r for r in lazy.relocations if r.object == program.name and r.type_name == "R_X86_64_JUMP_SLOT"]
    assert plt and all(r.state == "lazy" and r.current == r.link_value for r in plt)
    # libc's GLOB_DAT for malloc binds to python's own canonical PLT entry.
    assert slot(lazy, "libc.so.6", "malloc", "R_X86_64_GLOB_DAT").binding.object == program.name


def test_json_carries_r_debug_bindings_reasons_and_no_library_entry() -> None:
    from loaderdbg.snapshot_json import snapshot_to_json

    doc = snapshot_to_json(at_entry(["/usr/bin/python3", "-c", "pass"], bind_now=False))
    (r_debug,) = doc["r_debug"]
    assert r_debug["state"] == "RT_CONSISTENT" and r_debug["namespace"] == 0
    ldso = next(o for o in doc["objects"] if o["is_ldso"])
    assert r_debug["ldbase"] == ldso["base"] and int(r_debug["brk"], 16) and int(r_debug["map"], 16)
    # libm's e_entry is 0: no entry point, not its base.
    libm = next(o for o in doc["objects"] if o["name"] == "libm.so.6")
    assert libm["elf"]["entry"] is None and ldso["elf"]["entry"] is not None
    malloc = next(r for r in doc["relocations"] if r["object"] == "libc.so.6" and r["symbol"] == "malloc")
    assert malloc["binding"] == {"object": doc["objects"][0]["name"], "symbol": "malloc", "version": "GLIBC_2.2.5"}
    assert all("reason" in r and "binding" in r for r in doc["relocations"])
    rewritten = [r for r in doc["relocations"] if r["reason"]]
    assert rewritten and all(r["state"] == "applied" and "rewritten after relocation" in r["reason"]
                             for r in rewritten)


def test_ld_preload_interposes_first(built) -> None:
    """LD_PRELOAD objects follow the program in the link_map and in the
    global scope: the preloaded libsecond's interposed() wins."""
    preload = str(built["pie-now"].parent / "libsecond.so")
    snap = at_entry([str(built["pie-now"])], True, LD_PRELOAD=preload)
    check_against_ldso(snap)
    for obj in ("pie-now", "libsecond.so"):
        assert slot(snap, obj, "interposed").binding.object == "libsecond.so"


def test_dlmopen_namespace_binds_within_itself() -> None:
    """The dlmopen fixture loads libzoo-ns.so and a second libc.so.6 into a
    new namespace: the program keeps binding to namespace 0's libc, the new
    namespace to its own."""
    program = FIXTURES / "zoo" / "dlmopen"
    if not program.exists():
        pytest.fail(f"{program} is missing: run `make fixtures`")
    snap = at_entry([str(program)], True, until="exit")
    check_against_ldso(snap)
    libcs = {o.base for o in snap.objects if o.name == "libc.so.6"}
    assert len(libcs) == 2
    namespace_of = {e.l_addr: e.namespace for e in snap.link_map if e.name.endswith("libc.so.6")}
    libc = parse_elf(Path("/lib/x86_64-linux-gnu/libc.so.6").read_bytes(), "libc.so.6")

    def libc_namespace(r) -> int:
        """The namespace of the libc copy r's slot points into."""
        values = {sym.value for sym in libc.definitions(r.symbol)}
        (base,) = [b for b in libcs if r.current - b in values]
        return namespace_of[base]

    assert libc_namespace(slot(snap, "dlmopen", "puts")) == 0
    zoo = [r for r in snap.relocations if r.object == "libzoo-ns.so" and r.binding is not None
           and r.binding.object == "libc.so.6" and r.type_name in SYMBOL_SLOTS]
    assert zoo and {libc_namespace(r) for r in zoo} == {1}
