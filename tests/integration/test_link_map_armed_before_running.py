"""A live session starts watching the link map (ld.so's r_brk hook) when the
program runs on from AT_ENTRY, not at AT_ENTRY itself (a stop there does not
need it: finding r_debug parses the program, issue 19). Running on from
entry reports the same loads and unloads as running through it."""

from __future__ import annotations

import os

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession


def link_map_events(program, args, *targets):
    with open(os.devnull, "w") as sink:
        spec = launch_spec(str(program), args, aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as session:
            for target in targets:
                assert session.cont(target).reached, target
            return [(e.name, e.detail) for e in session.events() if e.kind == "link-map"]


@pytest.mark.parametrize("variant", ["glibc-O2", "musl-O2"])
def test_dlopen_after_a_stop_at_entry(fixtures_dir, variant):
    """The demo dlopens its memfd copy after main: seen from entry on as
    from the first instruction on."""
    program = fixtures_dir / "execsolib" / variant / "libexecsolib.so"
    straight = link_map_events(program, ["a"], "exit")
    assert any(name == "loaded" for name, _ in straight), straight
    assert link_map_events(program, ["a"], "entry", "exit") == straight
    assert link_map_events(program, ["a"], "entry", "main", "exit") == straight
