"""GNU_UNIQUE symbols on a real process: ld.so keeps one definition per
name (do_lookup_unique), so a library's reference to its own unique datum
can bind to another library's. The zoo's `unique` program links
libunique-a.so then libunique-b.so, both defining unique_digits (as g++
does for an inline function's static) under their own versions; ld.so
relocates b first, b registers its definition, and a's GOT slot gets b's
too. (apt-config showed it: libapt-private's slots for std::to_chars'
digits held libapt-pkg's, which loaderdbg called "unknown".)"""

from __future__ import annotations

import re

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession


@pytest.fixture(scope="module")
def at_main(fixtures_dir, tmp_path_factory):
    program = fixtures_dir / "zoo" / "unique"
    output = tmp_path_factory.mktemp("unique") / "stdout"
    with open(output, "w") as sink:
        spec = launch_spec(str(program), [], aslr=True, stdout_fd=sink.fileno())
        with LiveSession(spec) as session:
            assert session.cont("main").reached
            snapshot = session.snapshot()
            assert session.cont("exit").reached
    return snapshot, output.read_text()


def test_both_libraries_bind_to_the_registered_definition(at_main):
    snapshot, printed = at_main
    seen = re.search(r"a sees (0x[0-9a-f]+), b sees (0x[0-9a-f]+) \(one\)", printed)
    assert seen, printed
    b = next(o for o in snapshot.objects if o.name == "libunique-b.so")
    slots = {r.object: r for r in snapshot.relocations if r.symbol == "unique_digits"}
    assert set(slots) == {"libunique-a.so", "libunique-b.so"}
    for slot in slots.values():
        assert slot.state == "applied", slot
        assert slot.current == int(seen.group(1), 16)  # what the program itself saw
        assert slot.binding.object == "libunique-b.so" and slot.binding.version == "UNIQUE_B"
        assert b.base <= slot.current < b.base + 0x10000


def test_nothing_left_unexplained_at_main(at_main):
    snapshot, _ = at_main
    states = {r.state for r in snapshot.relocations}
    assert states <= {"applied", "lazy"}, [r for r in snapshot.relocations if r.state not in ("applied", "lazy")]
