import pytest

from loaderdbg.errors import UsageError
from loaderdbg.targets import Target, parse_target


@pytest.mark.parametrize("text,expected", [
    ("first", Target("first")),
    ("ldso-entry", Target("ldso-entry")),
    ("entry", Target("entry")),
    ("main", Target("main")),
    ("exit", Target("exit")),
    ("signal", Target("signal")),
    ("syscall", Target("syscall")),
    ("syscall:mmap", Target("syscall", name="mmap")),
    ("sym:main", Target("sym", name="main")),
    ("addr:0x401000", Target("addr", value=0x401000)),
    ("step:123", Target("step", value=123)),
])
def test_parse_and_spell_back(text, expected):
    target = parse_target(text)
    assert target == expected
    assert parse_target(str(target)) == target


@pytest.mark.parametrize("text", ["", "start", "addr:", "addr:zz", "step:-1", "sym:", "foo:bar"])
def test_bad_targets_name_the_accepted_forms(text):
    with pytest.raises(UsageError) as err:
        parse_target(text)
    assert "target" in str(err.value)
