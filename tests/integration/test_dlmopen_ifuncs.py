"""A library loaded twice (dlmopen's new namespace gets its own libc.so.6):
the two copies share a name, so the ifunc view took the resolver's base
from the name and put every resolver of one copy in the other. Each
resolver must be in the copy that holds its IRELATIVE slot, and named
there as in the other copy (the same code, another base)."""

from __future__ import annotations

from loaderdbg.live import LiveSession


def test_each_copys_ifunc_resolvers_are_its_own(dlmopen_process):
    with LiveSession.attach(dlmopen_process.pid) as session:
        snapshot = session.snapshot()
        libcs = sorted(obj.base for obj in snapshot.objects if obj.name == "libc.so.6")
        assert len(libcs) == 2
        copy_of = lambda addr: max(base for base in libcs if base <= addr)  # noqa: E731
        names = {}
        for choice in snapshot.ifuncs:
            if choice.object != "libc.so.6":
                continue
            base = copy_of(choice.address)
            assert copy_of(choice.resolver) == base, choice
            names.setdefault(choice.resolver - base, set()).add(choice.resolver_name)
        assert names and all(len(found) == 1 for found in names.values()), names
