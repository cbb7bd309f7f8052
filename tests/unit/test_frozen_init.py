"""dict_init: a frozen dataclass built by filling its __dict__ behaves as
the one dataclasses builds (fields, defaults, equality, hash, replace,
frozenness), and refuses classes it cannot build that way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from loaderdbg.decode.elf import DynSymbol, Relocation
from loaderdbg.decode.frozen_init import dict_init


@dataclass(frozen=True)
class Plain:
    a: int
    b: str
    c: tuple | None = None
    d: str = "d"


@dict_init
@dataclass(frozen=True)
class Fast:
    a: int
    b: str
    c: tuple | None = None
    d: str = "d"


def test_same_values_defaults_and_keywords():
    for args, kwargs in (((1, "x"), {}), ((1, "x", (2,)), {}), ((1,), {"b": "y", "d": "e"}),
                         ((), {"a": 3, "b": "z", "c": None})):
        assert dataclasses.astuple(Fast(*args, **kwargs)) == dataclasses.astuple(Plain(*args, **kwargs))
        assert repr(Fast(*args, **kwargs)).removeprefix("Fast") == repr(Plain(*args, **kwargs)).removeprefix("Plain")


def test_equality_hash_replace_and_frozen():
    one, same, other = Fast(1, "x"), Fast(1, "x"), Fast(1, "y")
    assert one == same and hash(one) == hash(same) and one != other
    assert dataclasses.replace(one, b="y") == other
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Fast(1)  # b is required
    with pytest.raises(TypeError):
        Fast(1, "x", e=3)  # no such field


def test_the_hot_classes_keep_their_signature():
    reloc = Relocation(0x10, 8, "R_X86_64_RELATIVE", None, 0, 0x20, "RELA")
    assert reloc.symbol_version is None and reloc.addend == 0x20
    assert DynSymbol("f", 1, 2, "FUNC", "GLOBAL", True).visibility == "DEFAULT"


def test_refuses_what_it_cannot_build():
    @dataclass
    class Mutable:
        a: int

    @dataclass(frozen=True)
    class Factory:
        a: list = field(default_factory=list)

    @dataclass(frozen=True)
    class PostInit:
        a: int

        def __post_init__(self):
            pass

    for cls in (Mutable, Factory, PostInit):
        with pytest.raises(TypeError):
            dict_init(cls)
