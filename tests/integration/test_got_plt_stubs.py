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
    objects = {obj.name: obj for obj in snapshot.objects}
    lazy = [slot for slot in snapshot.got if slot.state == "lazy"]
    assert len(lazy) >= 10
    labels: dict[str, dict[int, str]] = {}  # by object name
    for slot in lazy:
        name, _, offset = slot.target.partition("@plt")
        assert name == slot.symbol and offset in ("", "+0x6"), slot
        obj = objects[slot.object]
        entry = slot.current - obj.base - int(offset[1:] or "0", 16)
        if obj.name not in labels:
            labels[obj.name] = _plt_labels(obj.path, obj.elf_offset, tmp_path)
        assert labels[obj.name].get(entry) == slot.symbol, (slot, obj.path, hex(entry))
