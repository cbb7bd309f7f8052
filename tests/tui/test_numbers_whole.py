"""No number is ever cut (DESIGN.md §9, issue 17): every pane, tab and
command output at 80x24, 120x40 and 160x48, at the first instruction, at
ld.so's entry and at AT_ENTRY, from a copy of the demo at a long path (a checkout in a deep directory made the object column read
`libexecsolib.…`).

What is checked on the screen's text (every cell, as the terminal shows it):
- every hex number on screen is one the session knows, whole: a number cut
  by an ellipsis or by a pane's edge (`0x7ffff7fe…`) is not one of them;
- rows of the maps, relocations, GOT and auxv views hold their numbers,
  perms and states whole, on the row's line or the lines its row wrapped
  to (`start end` found → its perms and offset are there too);
- auxv entries rewritten since the kernel wrote them show the kernel's
  value beside them, with ✎.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from rich.console import Console

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.main_screen import MainScreen

from tuihelp import DEMO, fixture_binary, live_session, run_pilot, screen_lines, settle, type_command

SIZES = [(80, 24), (120, 40), (160, 48)]
HEX = re.compile(r"0x[0-9a-fA-F]+")
STATES = ("applied", "pending", "lazy", "unknown", "resolved")
# A relocation's row: its slot's address, then its type.
SLOT_ROW = re.compile(r"(0x[0-9a-fA-F]+)\s+\S*(RELATIVE|JUMP_SLOT|GLOB_DAT|IRELATIVE|64|DTPMOD64|TPOFF64)")
COMMANDS = ("vmmap", "got", "info auxv", "info registers", "info sharedlibrary", "info threads",
            "x/4gx $sp", "explain", "disas", "info symbol $pc", "p $rsp", "bt")


@pytest.fixture(scope="module")
def deep_demo(tmp_path_factory) -> Path:
    """The demo copied under a long directory, as in a checkout at a long path."""
    fixture_binary(DEMO)
    deep = tmp_path_factory.mktemp("checkout")
    for part in ("home", "someone-with-a-long-name", "src", "work-in-progress", "checkouts",
                 "loaderdbg-issue-17-a-long-branch-name", "build", "fixtures", "execsolib", "glibc-O2"):
        deep = deep / part
    deep.mkdir(parents=True)
    copy = deep / DEMO.name
    shutil.copy2(DEMO, copy)
    return copy


def _ints_and_hex(value, ints: set[int], texts: set[str], seen: set[int]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        ints.add(value)
        return
    if isinstance(value, str):
        texts.update(HEX.findall(value))
        return
    if isinstance(value, (bytes, bytearray, float)) or value is None:
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    if dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            _ints_and_hex(getattr(value, field.name, None), ints, texts, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _ints_and_hex(key, ints, texts, seen)
            _ints_and_hex(item, ints, texts, seen)
    elif isinstance(value, (tuple, list, set, frozenset, Sequence)):  # Sequence: a RelocationTable
        for item in value:
            _ints_and_hex(item, ints, texts, seen)
    elif hasattr(value, "items") and callable(value.items):  # Registers
        for name, item in value.items():
            _ints_and_hex(item, ints, texts, seen)


# What known_numbers and log_numbers worked out, by the identity of the
# (frozen) view or log line they read, kept with it so that the id is not
# reused: a stop's view is looked at after every tab and command, and the
# log only grows.
_numbers_of: dict[int, tuple[object, set[str]]] = {}


def _remembered(thing, work) -> set[str]:
    kept = _numbers_of.get(id(thing))
    if kept is None or kept[0] is not thing:
        kept = _numbers_of[id(thing)] = (thing, work(thing))
    return kept[1]


def known_numbers(app) -> set[str]:
    return _remembered(app.view, _view_numbers)


def _view_numbers(view) -> set[str]:
    """Every spelling of every number the view holds (#x, and zero-padded
    to 8, 16 hex digits as x/ and the registers print them)."""
    ints: set[int] = set()
    texts: set[str] = set()
    _ints_and_hex(view, ints, texts, set())
    for insn in view.listing:
        texts.update(HEX.findall(insn.text))
    stack = view.snapshot.stack
    if stack is not None:  # the slots' addresses ("argv end" is worked out, not stored)
        slots = 4 + len(stack.argv) + len(stack.envp) + 2 * len(stack.auxv)
        ints.update(stack.sp + 8 * index for index in range(slots))
    spelled = {text.lower() for text in texts}
    for value in ints:
        magnitude = abs(value)
        spelled.update({f"{magnitude:#x}", f"{magnitude:#018x}", f"{magnitude:#010x}"})
    return spelled


def log_numbers(app) -> set[str]:
    """The hex numbers in the log as log_text lays it out: each line is
    printed on its own, so its numbers are the same whatever came before."""
    numbers: set[str] = set()
    for renderable in app.log_lines:
        numbers |= _remembered(renderable, _line_numbers)
    return numbers


def _line_numbers(renderable) -> set[str]:
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return {number.lower() for number in HEX.findall(console.export_text())}


def cut_numbers(lines: list[str], known: set[str]) -> list[str]:
    """Hex numbers on screen that are not whole numbers of the view."""
    bad = []
    for row, line in enumerate(lines):
        for match in HEX.finditer(line):
            after = line[match.end():match.end() + 1]
            if match.group().lower() not in known or after == "…":
                bad.append(f"row {row}: {match.group()}{after!s} in {line.strip()!r}")
    return bad


def _near(lines: list[str], row: int) -> str:
    return "\n".join(lines[row:row + 3])


def incomplete_rows(app, lines: list[str]) -> tuple[list[str], int]:
    """Rows (maps, relocations, GOT, auxv) found on screen whose numbers,
    perms or state are not all there; and how many rows were checked."""
    snap = app.view.snapshot
    bad: list[str] = []
    checked = 0
    for annotation in snap.maps:
        entry = annotation.entry
        pattern = re.compile(rf"{entry.start:#x}\s+{entry.end:#x}\b")
        for row, line in enumerate(lines):
            if pattern.search(line):
                checked += 1
                near = _near(lines, row)
                if not re.search(rf"(?<!\S){re.escape(entry.perms)}(?!\S)", near) or f"{entry.offset:#x}" not in near:
                    bad.append(f"map {entry.start:#x}: perms {entry.perms} or offset {entry.offset:#x} "
                               f"missing near {line.strip()!r}")
    # A slot's state as the relocations or the GOT view name it (a slot may
    # be listed twice: an object and its memfd copy relocated apart).
    states: dict[int, set[str]] = {}
    for reloc in snap.relocations:
        states.setdefault(reloc.address, set()).add(reloc.state)
    for slot in getattr(snap, "got", ()):
        states.setdefault(slot.address, set()).add(slot.state)
    # One pass over the rows for every slot (a pattern per slot and row
    # recompiled thousands of times, past re's cache, took a minute).
    by_text = {f"{address:#x}": names for address, names in states.items()}
    found: set[tuple[str, int]] = set()
    for row, line in enumerate(lines):
        # Tried at every "0x", as a search for each slot would.
        start = line.find("0x")
        while start >= 0:
            match = SLOT_ROW.match(line, start)
            start = line.find("0x", start + 1)
            if match is None:
                continue
            slot = match.group(1)
            names = by_text.get(slot)
            if names is None or (slot, row) in found:
                continue
            found.add((slot, row))
            checked += 1
            near = _near(lines, row)
            if not any(re.search(rf"\b{state}\b", near) for state in names):
                bad.append(f"relocation {slot}: state {'/'.join(sorted(names))} not whole near {line.strip()!r}")
    kernel = {e.type: e for e in snap.auxv_kernel}
    if snap.stack is not None:
        for entry in snap.stack.auxv:
            if entry.type not in snap.auxv_changed:
                continue
            before = kernel.get(entry.type)
            for row, line in enumerate(lines):
                if re.search(rf"\b{entry.name}\b", line) and "✎" in _near(lines, row):
                    checked += 1
                    if before is not None and f"{before.value:#x}" not in _near(lines, row):
                        bad.append(f"{entry.name}: the kernel's {before.value:#x} missing near {line.strip()!r}")
    return bad, checked


async def _look(pilot, what: str, failures: list[str], size) -> int:
    app = pilot.app
    await pilot.pause()
    lines = screen_lines(app)
    # The log keeps what commands printed at earlier stops (and disas reads
    # past the listing): their numbers, laid out 200 columns wide, count too.
    known = known_numbers(app) | log_numbers(app)
    problems = cut_numbers(lines, known)
    rows, checked = incomplete_rows(app, lines)
    problems += rows
    if problems:
        failures.append(f"--- {size[0]}x{size[1]} {app.view.stage.name if app.view.stage else ''} {what}:\n"
                        + "\n".join(problems[:6]) + "\n" + "\n".join(lines))
    return checked


async def _leave_output_view(pilot) -> None:
    while not isinstance(pilot.app.screen, MainScreen):
        await pilot.press("escape")
        await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_no_number_is_cut(deep_demo, size):
    failures: list[str] = []
    rows_checked: dict[str, int] = {}
    _numbers_of.clear()
    with live_session(deep_demo) as (session, _):
        async def scenario(pilot):
            app = pilot.app
            for stop, stage in (("first", "kernel-entry"), ("l", "ldso-entry"), ("e", "at-entry")):
                if stop != "first":
                    await pilot.press("escape", stop)  # out of the command line, then the key
                    await settle(pilot)
                assert app.view.stage.name == stage
                screen = app.screen
                tabs = [pane.id for pane in screen.query("TabPane")]
                for tab in tabs:
                    screen.show_tab(tab)
                    await settle(pilot)
                    rows_checked[f"{stop} {tab}"] = await _look(pilot, f"tab {tab}", failures, size)
                if stop == "l":
                    continue  # the commands' output at two stops is enough (the tabs change at each)
                for command in COMMANDS:
                    await type_command(pilot, command)
                    rows_checked[f"{stop} {command}"] = await _look(pilot, f"after `{command}`", failures, size)
                    await _leave_output_view(pilot)
        run_pilot(LoaderdbgApp(session), scenario, size=size)
    assert not failures, "\n\n".join(failures[:5])
    # The row checks looked at something: these show rows at any size.
    for shown in ("e tab-maps", "e tab-relocs", "e vmmap", "e got", "e info auxv"):
        assert rows_checked[shown] > 0, f"{shown}: no row found on screen"
