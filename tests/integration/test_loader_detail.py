"""Loader detail per object: flags, RELRO, TLS, SFrame, GOT and ifunc views."""

from __future__ import annotations

import os
import subprocess

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession


def snapshot_at(path, target):
    with LiveSession(launch_spec(str(path), [], aslr=False)) as s:
        reason = s.cont(target)
        assert reason.reached, reason
        return s.snapshot()


def by_name(snap, name):
    return next(o for o in snap.objects if o.name == name)


def test_ifunc_choice_and_tls_block(fixtures_dir):
    snap = snapshot_at(fixtures_dir / "zoo" / "ifunc-tls", "main")
    program = by_name(snap, "ifunc-tls")
    assert program.detail.tls is not None
    assert (program.detail.tls.init_size, program.detail.tls.size) == (4, 8)
    mine = [f for f in snap.ifuncs if f.object == "ifunc-tls"]
    assert len(mine) == 1
    assert mine[0].resolver_name == "zoo_pick" and mine[0].chosen_name == "zoo_pick_two"
    assert mine[0].state == "applied"


def test_sframe_header_decoded(fixtures_dir):
    snap = snapshot_at(fixtures_dir / "zoo" / "sframe", "entry")
    detail = by_name(snap, "sframe").detail
    assert detail.sframe is not None and detail.sframe.version in (1, 2)
    assert detail.sframe.num_fdes > 0
    readelf = subprocess.run(["readelf", "--sframe", str(fixtures_dir / "zoo" / "sframe")],
                             capture_output=True, text=True).stdout
    assert f"Num FDEs: {detail.sframe.num_fdes}" in readelf


def test_got_view_lazy_then_resolved(fixtures_dir):
    snap = snapshot_at(fixtures_dir / "zoo" / "lazy", "main")
    slots = {g.symbol: g for g in snap.got if g.object == "lazy" and g.type_name == "R_X86_64_JUMP_SLOT"}
    assert {"getenv", "puts", "qsort"} <= set(slots)
    assert all(slots[name].state == "lazy" for name in ("getenv", "puts", "qsort"))
    relro = by_name(snap, "lazy").detail.relro
    assert relro is not None and relro.protected
    assert "DF_1_NOW" not in by_name(snap, "lazy").detail.flags_1
    with LiveSession(launch_spec(str(fixtures_dir / "zoo" / "lazy"), [], aslr=False)) as session:
        session.cont("exit")
        after = session.snapshot()
    resolved = {g.symbol: g for g in after.got if g.object == "lazy"}
    # libc exports puts under two names at one address.
    assert resolved["puts"].state == "resolved" and resolved["puts"].target in ("puts", "_IO_puts")


def test_relro_not_yet_protected_at_ldso_entry(fixtures_dir):
    snap = snapshot_at("/bin/true", "ldso-entry")
    ldso = next(o for o in snap.objects if o.is_ldso)
    assert ldso.detail.relro is not None and not ldso.detail.relro.protected


# -- link_map changes while running (ld.so's r_brk hook) ----------------------

def link_map_events(path, args, target="exit", stdin=subprocess.DEVNULL):
    spec = launch_spec(str(path), args, aslr=False)
    with LiveSession(spec) as s:
        reason = s.cont(target)
        assert reason.reached, reason
        return [e for e in s.events() if e.kind == "link-map"]


def test_dlopen_of_the_memfd_copy_is_an_event(fixtures_dir):
    for variant in ("glibc-O2", "musl-O2"):
        events = link_map_events(fixtures_dir / "execsolib" / variant / "libexecsolib.so", ["a"])
        assert [e.name for e in events] == ["loaded"], (variant, events)
        assert events[0].detail.startswith("/proc/self/fd/") and "namespace 0" in events[0].detail


def test_dlmopen_namespace_additions_are_events(fixtures_dir):
    events = link_map_events(fixtures_dir / "zoo" / "dlmopen", [])
    loaded = {e.detail.split(" in namespace ")[0].rsplit("/", 1)[-1]: e.detail for e in events}
    assert "libzoo-ns.so" in loaded and "namespace 1," in loaded["libzoo-ns.so"]
    assert "libc.so.6" in loaded  # a new namespace gets its own libc



def test_a_thread_that_dlopens_is_not_killed_by_the_hook(tmp_path):
    """Every thread of a launched program is traced (all-stop): a thread's
    dlopen meets the r_brk int3 and is reported, never killed by it."""
    script = "import threading\nt = threading.Thread(target=lambda: __import__('_ctypes'))\n" \
             "t.start(); t.join(); print('ok')\n"
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        spec = launch_spec("/usr/bin/python3", ["-c", script], aslr=False, stdout_fd=fd, stderr_fd=fd)
        with LiveSession(spec) as s:
            reason = s.cont("exit")
            assert reason.reached and reason.kind == "target", reason
            kinds = {e.kind for e in s.events()}
    finally:
        os.close(fd)
    assert out.read_text() == "ok\n"
    assert "thread" in kinds


def test_got_read_after_the_program_moved_on_is_the_got_at_its_stop(fixtures_dir):
    """A snapshot names its GOT when first read; by then the program may
    have resolved the slots it showed lazy."""
    with LiveSession(launch_spec(str(fixtures_dir / "zoo" / "lazy"), [], aslr=False)) as session:
        session.cont("main")
        at_main = session.snapshot()
        session.cont("exit")
        at_exit = session.snapshot()
        late = {g.symbol: g for g in at_main.got if g.object == "lazy"}
        now = {g.symbol: g for g in at_exit.got if g.object == "lazy"}
    assert late["puts"].state == "lazy" and now["puts"].state == "resolved"
    assert late["puts"].current != now["puts"].current
    assert at_main.ifuncs == at_main.ifuncs and at_main != at_exit
