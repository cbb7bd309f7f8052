"""Snapshot.relocations on a real process (issue 19): a RelocationTable
whose objects are the snapshot's, the same table again while no slot was
written (a reader comparing tables compares identities), and a new one
that says which rows changed once ld.so has relocated."""

from __future__ import annotations

import os

from loaderdbg.analysis.relocations import ObjectRelocations, RelocationTable
from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession


def test_tables_across_stops(fixtures_dir):
    demo = fixtures_dir / "execsolib" / "glibc-O2" / "libexecsolib.so"
    with open(os.devnull, "w") as sink:
        spec = launch_spec(str(demo), ["hello"], aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as session:
            assert session.cont("ldso-entry").reached
            before = session.snapshot()
            table = before.relocations
            assert isinstance(table, RelocationTable) and len(table) > 100
            assert [part.object for part in table.per_object] == [o.name for o in before.objects]
            assert all(isinstance(part, ObjectRelocations) for part in table.per_object)
            assert [len(part) for part in table.per_object] == [o.totals.total for o in before.objects]
            assert session.snapshot().relocations is table  # nothing ran: the very same table
            session.step()  # ld.so's first instruction writes no slot
            assert session.snapshot().relocations is table
            assert session.cont("entry").reached
            after = session.snapshot().relocations
            assert session.cont("main").reached
            at_main = session.snapshot().relocations
    assert after is not table and after != table
    assert after.changed_rows(table) is None  # libraries were mapped since: not the same objects
    # The same objects: the rows that differ, as told row by row.
    assert at_main.changed_rows(after) == [i for i, (a, b) in enumerate(zip(at_main, after)) if a != b]
    assert at_main.changed_rows(after) and at_main != after  # a lazy PLT slot was bound on the way to main
    libc = next(part for part in after.per_object if part.object.startswith("libc.so"))
    assert set(libc.column("state")) <= {"applied", "lazy", "unknown"} and "applied" in libc.column("state")
    assert sum(part.column("state").count("pending") for part in table.per_object) > 0


def test_two_sessions_keep_their_own_derived_views(fixtures_dir):
    """What a snapshot derives from the relocation tables (the table, the
    GOT and ifunc views, the maps annotation) is kept by each session's
    stop state, not process-wide: snapshots of two programs taken in turn
    each get their own again, not a view recomputed because the other
    session's snapshot came between."""
    demo = fixtures_dir / "execsolib" / "glibc-O2" / "libexecsolib.so"
    static = fixtures_dir / "zoo" / "hello-static"
    with open(os.devnull, "w") as sink:
        specs = [launch_spec(str(path), ["x"], aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
                 for path in (demo, static)]
        with LiveSession(specs[0]) as first, LiveSession(specs[1]) as second:
            assert first.cont("entry").reached and second.cont("entry").reached
            a1, b1 = first.snapshot(), second.snapshot()
            a2, b2 = first.snapshot(), second.snapshot()
    for one, two in ((a1, a2), (b1, b2)):
        assert two.relocations is one.relocations
        assert two.got is one.got and two.ifuncs is one.ifuncs and two.maps is one.maps
    assert a1.got and a1.got is not b1.got
