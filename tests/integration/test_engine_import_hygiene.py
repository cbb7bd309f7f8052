"""The engine never imports Textual (DESIGN.md §1, §8): importing any module
under loaderdbg/ in a fresh interpreter leaves `textual` out of sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "loaderdbg"


def engine_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


SCRIPT = """
import importlib, json, sys
loaded = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    loaded[name] = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(json.dumps(loaded))
"""


def imported_textual(*modules: str) -> dict[str, list[str]]:
    result = subprocess.run([sys.executable, "-c", SCRIPT, *modules], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_module_list_is_complete():
    modules = engine_modules()
    for expected in ("loaderdbg", "loaderdbg.cli", "loaderdbg.live", "loaderdbg.snapshot",
                     "loaderdbg.process.inferior", "loaderdbg.decode.auxv"):
        assert expected in modules


@pytest.mark.parametrize("entry", ["loaderdbg", "loaderdbg.cli", "loaderdbg.live",
                                   "loaderdbg.snapshot", "loaderdbg.inspect_command",
                                   "loaderdbg.process.tracer_thread"])
def test_entry_points_do_not_import_textual(entry):
    assert imported_textual(entry)[entry] == []


def test_no_engine_module_imports_textual():
    """Every module under loaderdbg/, imported one after another in one
    interpreter; the first one after which textual shows up is the culprit."""
    modules = [m for m in engine_modules() if m != "loaderdbg.__main__"]  # runs the CLI
    loaded = imported_textual(*modules)
    assert list(loaded) == modules
    culprit = next((k for k, v in loaded.items() if v), None)
    assert culprit is None, f"textual imported by {culprit}: {loaded[culprit][:3]}"


def test_cli_inspect_run_does_not_import_textual():
    """A real `inspect --json` run (not just the imports) stays Textual-free."""
    code = ("import runpy, sys; sys.argv = ['loaderdbg', 'inspect', '--json', '/bin/true'];\n"
            "import io, contextlib\n"
            "from loaderdbg.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    rc = main(sys.argv[1:])\n"
            "assert rc == 0, rc\n"
            "print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_inspect_at_entry_never_imports_capstone(fixtures_dir):
    """`inspect` disassembles nothing at a stop: capstone (~30 ms to import)
    stays out of the command (issue 19), even through the aarch64 modules
    the engine loads with the qemu target."""
    demo = fixtures_dir / "execsolib" / "glibc-O2" / "libexecsolib.so"
    code = ("import sys\n"
            "from loaderdbg.cli import main\n"
            f"code = main(['inspect', '--json', '--at', 'entry', {str(demo)!r}])\n"
            "print('CAPSTONE', sorted(m for m in sys.modules if m.split('.')[0] == 'capstone'), code, "
            "file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    line = next(line for line in result.stderr.splitlines() if line.startswith("CAPSTONE"))
    assert line == "CAPSTONE [] 0", result.stderr[-2000:]


def test_inspect_of_an_x86_program_leaves_out_what_it_does_not_use(fixtures_dir):
    """Issue 19 (import time): an x86-64 inspect loads neither the qemu-user
    target and its A64 decoders nor python-ptrace's binding (its find_library
    runs ldconfig), its syscall package's start-up or its package __init__
    (logging, datetime), nor socket; the tables it reads come from
    python-ptrace all the same. Nor what it never uses at AT_ENTRY: the
    disassembler, main's finder, the SFrame decoder, the spawn catcher."""
    demo = fixtures_dir / "execsolib" / "glibc-O2" / "libexecsolib.so"
    unwanted = ("loaderdbg.process.qemu_target", "loaderdbg.process.stub_client", "loaderdbg.decode.aarch64_access",
                "loaderdbg.gdb_remote", "ptrace.binding", "ptrace.syscall", "ctypes.util", "ptrace", "socket",
                "datetime", "loaderdbg.decode.disasm", "loaderdbg.decode.sframe", "loaderdbg.analysis.entry_code",
                "loaderdbg.process.follow")
    code = ("import sys\n"
            "from loaderdbg.cli import main\n"
            f"code = main(['inspect', '--json', '--at', 'entry', {str(demo)!r}])\n"
            f"print('LOADED', sorted(m for m in {unwanted!r} if m in sys.modules), code, "
            "'ptrace.syscall.prototypes' in sys.modules, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, timeout=120, cwd=ROOT)
    line = next(line for line in result.stderr.splitlines() if line.startswith("LOADED"))
    assert line == "LOADED [] 0 True", result.stderr[-2000:]
