"""A launched program gets the environment loaderdbg was given. Python
started under the C locale (env -i, a bare CI job) sets LC_CTYPE=C.UTF-8
in its own environment (PEP 538); the program must not inherit that
(`serve --live` against native gdb showed it: one more variable, another
stack layout)."""

from __future__ import annotations

import subprocess

import pytest

from clihelp import LOADERDBG


@pytest.mark.parametrize("given", [{}, {"LC_CTYPE": "C"}, {"LC_CTYPE": "C.UTF-8"}])
def test_the_program_sees_the_environment_we_were_given(tmp_path, given):
    printed = tmp_path / "env.txt"
    env = {"PATH": "/usr/bin:/bin", **given}
    done = subprocess.run([*LOADERDBG, "inspect", "--at", "exit", "--tracee-output", str(printed), "/usr/bin/env"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert dict(line.split("=", 1) for line in printed.read_text().splitlines()) == env
