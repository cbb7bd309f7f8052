"""compile_cache: the code dataclasses compile at every start, kept in one
file. A class made from the kept code is the class dataclasses makes; a
file that is damaged, from another Python or not writable changes nothing
but the time; the command writes it once and then compiles nothing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from loaderdbg import compile_cache
from loaderdbg.compile_cache import CompileCache


def make_classes():
    """Classes of each kind the engine makes, made again at each call."""
    @dataclass(frozen=True)
    class Point:
        x: int
        y: int = 2
        label: str = "p"

    @dataclass(frozen=True, order=True)
    class Ordered:
        a: int
        b: tuple = ()

    @dataclass
    class Mutable:
        items: list = dataclasses.field(default_factory=list)
        count: int = 0

    return Point, Ordered, Mutable


@pytest.fixture
def through(monkeypatch):
    """Make dataclasses take their code from ``cache`` for the test (and
    let it be written under PYTHONDONTWRITEBYTECODE too)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)

    def use(cache: CompileCache) -> None:
        monkeypatch.setattr(dataclasses, "exec", cache.exec, raising=False)
    return use


def generated(cls) -> dict[str, object]:
    return {name: getattr(cls, name) for name in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__",
                                                  "__delattr__", "__lt__")
            if name in cls.__dict__ and callable(cls.__dict__[name])}


def code_of(function) -> tuple:
    code = function.__code__
    return (code.co_code, code.co_consts, code.co_names, code.co_varnames, code.co_freevars,
            code.co_filename, code.co_qualname, function.__annotations__, function.__defaults__)


def test_a_class_made_from_kept_code_is_the_class_dataclasses_makes(tmp_path, through):
    fresh = make_classes()
    path = str(tmp_path / "code.marshal")
    first = CompileCache(path)
    through(first)
    make_classes()
    assert first.compiled > 10
    first.save()

    second = CompileCache(path)
    through(second)
    kept = make_classes()
    assert second.compiled == 0, "every method's code came from the file"
    for made, expected in zip(kept, fresh):
        assert generated(made).keys() == generated(expected).keys()
        for name, function in generated(made).items():
            # The annotations too: the text is compiled with dataclasses'
            # future flags, not those of compile_cache's own module.
            assert code_of(function) == code_of(generated(expected)[name]), name

    point_type, ordered_type, mutable_type = kept
    point = point_type(1)
    assert (point.x, point.y, point.label) == (1, 2, "p")
    assert point == point_type(1, 2, "p") and hash(point) == hash(point_type(1))
    assert repr(point).endswith("Point(x=1, y=2, label='p')")
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 3
    assert dataclasses.replace(point, y=5).y == 5
    assert ordered_type(1) < ordered_type(2)
    assert mutable_type().items == [] and mutable_type().items is not mutable_type().items


def test_a_damaged_file_or_one_from_another_python_is_compiled_afresh(tmp_path, through):
    path = tmp_path / "code.marshal"
    good = CompileCache(str(path))
    through(good)
    make_classes()
    good.save()
    header, _, body = path.read_bytes().partition(b"\n")
    for damaged in (header + b"\n" + body[: len(body) // 2],        # cut short
                    header.replace(b"3.", b"2.", 1) + b"\n" + body,  # another interpreter's
                    b"\x00\xff garbage",
                    b""):
        path.write_bytes(damaged)
        cache = CompileCache(str(path))
        assert cache.code == {}
        through(cache)
        point_type = make_classes()[0]
        assert point_type(4).x == 4
        assert cache.compiled > 10
    cache.save()
    assert CompileCache(str(path)).code.keys() == cache.code.keys(), "written whole again"


def test_nothing_is_written_where_it_cannot_be_or_must_not_be(tmp_path, through, monkeypatch):
    unwritable = CompileCache("/dev/null/loaderdbg/code.marshal")
    through(unwritable)
    make_classes()
    unwritable.save()  # no error: only the time is lost

    path = tmp_path / "code.marshal"
    cache = CompileCache(str(path))
    through(cache)
    make_classes()
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # PYTHONDONTWRITEBYTECODE, -B
    cache.save()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_exec_runs_in_the_namespaces_it_is_given(tmp_path):
    cache = CompileCache(str(tmp_path / "code.marshal"))
    scope: dict = {}
    cache.exec("value = 6 * 7", scope)
    assert scope["value"] == 42
    local: dict = {}
    cache.exec("other = value + 1", scope, local)
    assert local == {"other": 43}
    code = compile("ran = True", "<test>", "exec")
    cache.exec(code, scope)  # a code object passes through
    assert scope["ran"] is True


def test_the_file_lies_beside_the_package_bytecode_or_under_the_prefix(monkeypatch):
    package = os.path.dirname(compile_cache.__file__)
    name = f"dataclass-code.{sys.implementation.cache_tag}.marshal"
    monkeypatch.setattr(sys, "pycache_prefix", None)
    assert compile_cache.cache_path() == os.path.join(package, "__pycache__", name)
    monkeypatch.setattr(sys, "pycache_prefix", "/var/cache/py")
    assert compile_cache.cache_path() == os.path.join("/var/cache/py", package.lstrip("/"), name)


def test_the_command_writes_the_file_once_then_compiles_nothing(tmp_path):
    """The real command, twice, with the bytecode (and so the file) under a
    prefix of the test's own: the second run finds every text it needs."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPYCACHEPREFIX"] = str(tmp_path)
    command = [sys.executable, "-m", "loaderdbg", "inspect", "--json", "--at", "entry", "/bin/true"]

    def run() -> str:
        done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = run()
    files = list(tmp_path.rglob(f"dataclass-code.{sys.implementation.cache_tag}.marshal"))
    assert len(files) == 1
    written = files[0].stat().st_mtime_ns
    kept = CompileCache(str(files[0]))
    assert len(kept.code) > 100
    second = run()
    assert files[0].stat().st_mtime_ns == written, "the second run compiled nothing new, so wrote nothing"
    assert '"format": "loaderdbg.snapshot/1"' in first and '"format": "loaderdbg.snapshot/1"' in second
