"""The scaling fixture's generator (issue 19) makes libraries with the
relocation mix it promises: one library built here and decoded by parse_elf
(the 20-library build itself is `make fixtures-big`, not part of the suite)."""

from __future__ import annotations

import collections
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from loaderdbg.decode.elf import parse_elf

GENERATOR = Path(__file__).resolve().parents[1] / "fixtures" / "big" / "generate.py"


def generator():
    spec = importlib.util.spec_from_file_location("big_fixture_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_library_has_the_promised_relocations(tmp_path):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: run `make sysdeps`", pytrace=False)
    gen = generator()
    source = tmp_path / "big07.c"
    source.write_text(gen.library_source(7))
    library = tmp_path / "libbig07.so"
    subprocess.run(["gcc", "-O0", "-fPIC", "-shared", "-Wl,-z,now", "-o", str(library), str(source)], check=True)
    types = collections.Counter(r.type_name for r in parse_elf(library.read_bytes()).relocations)
    assert types["R_X86_64_RELATIVE"] >= gen.RELATIVE_PER_LIBRARY
    assert types["R_X86_64_JUMP_SLOT"] >= gen.FUNCTIONS_PER_LIBRARY
    assert types["R_X86_64_GLOB_DAT"] >= gen.VARIABLES_PER_LIBRARY
    assert types["R_X86_64_DTPMOD64"] == types["R_X86_64_DTPOFF64"] == gen.TLS_PER_LIBRARY
    # The scales: 20 libraries make the full fixture's >= 500k RELATIVE and
    # >= 50k GLOB_DAT + JUMP_SLOT.
    assert gen.LIBRARIES * types["R_X86_64_RELATIVE"] >= 500_000
    assert gen.LIBRARIES * (types["R_X86_64_JUMP_SLOT"] + types["R_X86_64_GLOB_DAT"]) >= 50_000
    assert list(gen.SCALES.values()) == [gen.LIBRARIES // 4, gen.LIBRARIES // 2, gen.LIBRARIES]


def test_main_calls_each_library_it_loads():
    text = generator().main_source(3)
    assert [line.strip() for line in text.splitlines() if "_touch(x)" in line] == [
        "x += big00_touch(x);", "x += big01_touch(x);", "x += big02_touch(x);"]
