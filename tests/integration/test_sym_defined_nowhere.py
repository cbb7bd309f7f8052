"""sym:NAME that no object defines is said before launching (issue 15.5):
the objects a program starts with are found on disk as ld.so finds them
(checked against ldd, which asks ld.so itself, with $ORIGIN runpaths and
LD_LIBRARY_PATH), and a name none of them (nor their debug files, nor the
vDSO) defines is refused with exit 2 and one line; --pending runs anyway
and reaches a function of a library the program dlopens later."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from clihelp import assert_one_line, run_cli
from loaderdbg.analysis.library_search import search_definition

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "int plugin_entry(int x) { return x + 1; }\n"
HELPER = "int helper_value(void) { return 7; }\n"
MAIN = r"""
#include <dlfcn.h>
#include <stdio.h>
int helper_value(void);
int main(int argc, char **argv) {
    void *handle = dlopen(argv[1], RTLD_NOW);
    if (!handle) { fprintf(stderr, "%s\n", dlerror()); return 3; }
    int (*entry)(int) = (int (*)(int))dlsym(handle, "plugin_entry");
    return entry(helper_value()) == 8 ? 0 : 4;
}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, str]:
    """main (runpath $ORIGIN/lib, needing libhelper.so there) dlopens
    plugin.so, which nothing names before it runs."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the test programs", pytrace=False)
    out = tmp_path_factory.mktemp("defined_nowhere")
    (out / "lib").mkdir()
    for name, text in (("plugin.c", PLUGIN), ("helper.c", HELPER), ("main.c", MAIN)):
        (out / name).write_text(text)
    for args in (["-shared", "-fPIC", "-o", "plugin.so", "plugin.c"],
                 ["-shared", "-fPIC", "-o", "lib/libhelper.so", "helper.c"],
                 ["-o", "main", "main.c", "-Llib", "-lhelper", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib"]):
        subprocess.run([gcc, "-O1", *args], cwd=out, check=True, capture_output=True)
    return {"main": str(out / "main"), "plugin": str(out / "plugin.so"), "dir": str(out)}


def _ldd(program: str, env: dict[str, str] | None = None) -> set[str]:
    text = subprocess.run(["ldd", program], capture_output=True, text=True, check=True, env=env).stdout
    paths = re.findall(r"=> (/\S+)", text) + re.findall(r"^\s+(/\S+) \(", text, re.M)
    return {os.path.realpath(p) for p in paths}


def _searched(program: str, env) -> set[str]:
    found = search_definition(program, "no_such_symbol_anywhere", env)
    assert found is not None and found.defined_in is None
    return {os.path.realpath(p) for p in found.searched if p != "[vdso]"}


@pytest.mark.parametrize("program", [p for p in ("/usr/bin/python3", "/usr/bin/perl", "/usr/bin/gdb")
                                     if os.path.exists(p)])
def test_startup_objects_are_the_ones_ld_so_loads(program):
    assert _searched(program, os.environ) == _ldd(program) | {os.path.realpath(program)}


def test_runpath_origin_and_library_path_as_ld_so(built, tmp_path):
    main = built["main"]
    assert _searched(main, os.environ) == _ldd(main) | {os.path.realpath(main)}
    # LD_LIBRARY_PATH comes before DT_RUNPATH: a second libhelper.so there wins.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(os.path.join(built["dir"], "lib", "libhelper.so"), other / "libhelper.so")
    env = {**os.environ, "LD_LIBRARY_PATH": str(other)}
    assert str(other / "libhelper.so") in _searched(main, env)
    assert _searched(main, env) == _ldd(main, env) | {os.path.realpath(main)}


def test_a_name_defined_nowhere_is_refused_before_launching(built):
    started = time.monotonic()
    result = run_cli("inspect", "--at", "sym:plugin_entry", built["main"], built["plugin"])
    line = assert_one_line(result, 2, "sym:plugin_entry", "no object defines plugin_entry",
                           "libhelper.so", "libc.so.6", "dlopen", "--pending")
    assert "main" in line.split("searched:")[1]
    assert time.monotonic() - started < 20


def test_names_only_debug_files_or_the_vdso_define_are_not_refused(built):
    env = os.environ
    assert search_definition(built["main"], "_dl_start", env).defined_in.endswith("ld-linux-x86-64.so.2")
    assert search_definition(built["main"], "helper_value", env).defined_in.endswith("libhelper.so")
    assert search_definition(built["main"], "__vdso_clock_gettime", env).defined_in == "[vdso]"


def test_pending_runs_on_to_the_dlopened_definition(built):
    result = run_cli("inspect", "--json", "--pending", "--at", "sym:plugin_entry", built["main"], built["plugin"])
    assert result.returncode == 0, result.stderr
    assert '"reached": true' in result.stdout and "sym:plugin_entry" in result.stdout


def test_unknowable_startups_are_not_refused():
    # ld.so run as a program may load anything: not refused.
    assert search_definition("/lib64/ld-linux-x86-64.so.2", "nothing_here", os.environ) is None
    musl = str(ROOT / "build/fixtures/execsolib/musl-O2/trampoline")
    found = search_definition(musl, "nothing_here", os.environ)
    assert found is not None and found.defined_in is None
    assert any("ld-musl" in p for p in found.searched)
    assert search_definition(musl, "printf", os.environ).defined_in.endswith("ld-musl-x86_64.so.1")


def test_an_attached_process_is_asked_what_it_has_mapped_and_left_running():
    sleeper = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        result = run_cli("inspect", "--pid", str(sleeper.pid), "--at", "sym:no_such_symbol_anywhere")
        assert_one_line(result, 2, "no object defines no_such_symbol_anywhere",
                        f"the objects process {sleeper.pid} has mapped", "--pending")
        status = Path(f"/proc/{sleeper.pid}/status").read_text()
        assert sleeper.poll() is None and re.search(r"^TracerPid:\s+0$", status, re.M), status
    finally:
        sleeper.kill()
        sleeper.wait()
