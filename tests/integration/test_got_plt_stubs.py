"""A lazy GOT slot holds its own PLT stub until the first call: `got` names
it `symbol@plt+0x6`, as pwndbg does, where it said `libc.so.6+0x26036`.
Cross-checked with objdump, whose `<symbol@plt>` labels (BFD's synthetic
PLT symbols) must sit at the stub's entry, on real programs at AT_ENTRY."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession


def _plt_labels(path: str, elf_offset: int, scratch) -> dict[int, str]:
    """objdump -d's `<name@plt>:` entry labels of .plt, by link address
    (of the ELF image at elf_offset in the file: the demo carries its
    trampoline inside itself)."""
    if elf_offset:
        image = scratch / f"image-at-{elf_offset:#x}"
        with open(path, "rb") as handle:
            handle.seek(elf_offset)
            image.write_bytes(handle.read())
        path = str(image)
    listing = subprocess.run(["objdump", "-d", "-j", ".plt", path], capture_output=True, text=True).stdout
    return {int(address, 16): name for address, name in re.findall(r"^([0-9a-f]+) <(.+)@plt>:$", listing, re.M)}


@pytest.mark.parametrize("program", [
    ["/usr/bin/python3", "-c", "pass"],
    ["/usr/bin/perl", "-e", "1"],
    ["execsolib-demo"],
], ids=["python3", "perl", "demo"])
def test_lazy_slots_are_named_for_their_plt_stub_as_objdump_labels_it(program, fixtures_dir, tmp_path):
    if program == ["execsolib-demo"]:
        program = [str(fixtures_dir / "execsolib" / "glibc-O2" / "libexecsolib.so"), "hello"]
    with open(os.devnull, "w") as sink:
        spec = launch_spec(program[0], program[1:], aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as session:
            assert session.cont("entry").reached
            snapshot = session.snapshot()
            # What `info symbol`, disas and bt say there (the entry's code
            # decoded): the same name, reached without decoding.
            said = {slot.current: session.symbolize(slot.current) for slot in snapshot.got if slot.state == "lazy"}
    objects = {obj.name: obj for obj in snapshot.objects}
    lazy = [slot for slot in snapshot.got if slot.state == "lazy"]
    assert len(lazy) >= 10
    assert all(said[slot.current] == slot.target for slot in lazy)
    labels: dict[str, dict[int, str]] = {}  # by object name
    for slot in lazy:
        name, _, offset = slot.target.partition("@plt")
        assert name == slot.symbol and offset in ("", "+0x6"), slot
        obj = objects[slot.object]
        entry = slot.current - obj.base - int(offset[1:] or "0", 16)
        if obj.name not in labels:
            labels[obj.name] = _plt_labels(obj.path, obj.elf_offset, tmp_path)
        assert labels[obj.name].get(entry) == slot.symbol, (slot, obj.path, hex(entry))


@pytest.mark.parametrize("name", ["lazy", "lazy-ibt"])
def test_lazy_slots_are_named_as_gdb_names_their_address(name, fixtures_dir):
    """gdb's `info symbol` on the file at each lazy slot's link-time value:
    `puts@plt + 6 in section .plt` for a classic PLT, `No symbol matches`
    for IBT's (its `puts@plt` is the .plt.sec entry, and the lazy stub in
    .plt has no name). The stub was named `_init+0x30` there: crti's
    size-0 _init reached over .plt, to the next symbol."""
    program = str(fixtures_dir / "zoo" / name)
    with open(os.devnull, "w") as sink:
        spec = launch_spec(program, [], aslr=False, stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
        with LiveSession(spec) as session:
            assert session.cont("entry").reached
            snapshot = session.snapshot()
    base = next(obj.base for obj in snapshot.objects if obj.path == program)
    lazy = [slot for slot in snapshot.got if slot.state == "lazy" and slot.object == name]
    assert len(lazy) >= 4
    commands = [arg for slot in lazy for arg in ("-ex", f"info symbol {slot.current - base:#x}")]
    said = subprocess.run(["gdb", "-batch", "-nx", *commands, program], capture_output=True, text=True,
                          timeout=60).stdout.splitlines()
    assert len(said) == len(lazy), said
    for slot, line in zip(lazy, said):
        found = re.fullmatch(r"(\S+) \+ (\d+) in section \S+|(\S+) in section \S+|No symbol matches .*", line)
        assert found, line
        symbol, offset = (found[1], int(found[2])) if found[1] else (found[3], 0)
        if symbol is None:
            assert slot.target == f"{name}+{slot.current - base:#x}", (slot, line)
        else:
            assert slot.target == (f"{symbol}+{offset:#x}" if offset else symbol), (slot, line)
