"""Helpers for the TUI tests: live sessions on the exec-solib demo (always
closed, so the suite-wide no-orphans guard stays quiet) and a Pilot runner.
Imported as a plain module (tests/tui is on sys.path under pytest's default
import mode; there is deliberately no __init__.py: a package here would be
named `tui`, like the source directory).

No pytest-asyncio here: each Pilot scenario runs under asyncio.run."""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Awaitable, Callable, Iterator

import pytest

from loaderdbg.inspect_command import launch_spec
from loaderdbg.live import LiveSession

REPO = Path(__file__).resolve().parents[2]
EXECSOLIB = REPO / "build" / "fixtures" / "execsolib"
DEMO = EXECSOLIB / "glibc-O2" / "libexecsolib.so"
RDXBUG = EXECSOLIB / "rdxbug" / "libexecsolib.so"
# A small fixed environment: the stack layout (and so every stack address on
# screen) then does not depend on who runs the tests.
FIXED_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb"}
SETTLE_TIMEOUT = 15.0


def fixture_binary(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"fixture {path.relative_to(REPO)} is not built: run `make fixtures`", pytrace=False)
    return path


@contextmanager
def live_session(path: Path, *, program: str | None = None) -> Iterator[tuple[LiveSession, int]]:
    """A LiveSession on path (launched via `program`, e.g. a symlink, if
    given) with the tracee's stdout/stderr on a pipe; yields (session,
    read end of the pipe). Always closed."""
    fixture_binary(path)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    spec = launch_spec(program or str(path), [], aslr=False, stdout_fd=write_end, stderr_fd=write_end)
    spec = replace(spec, env=dict(FIXED_ENV))
    try:
        session = LiveSession(spec)
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    os.close(write_end)
    try:
        yield session, read_end
    finally:
        try:
            session.close()
        finally:
            os.close(read_end)


async def settle(pilot, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until the app has a view, nothing moves the target, and no
    worker is left running; then let the messages land. (Polls with plain
    sleeps: each Pilot.pause() renders a whole frame.)"""
    app = pilot.app
    deadline = time.monotonic() + timeout
    await asyncio.sleep(0)
    while True:
        running = [w for w in app.workers if not w.is_finished]
        if app.view is not None and app.busy is None and not running:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the app did not settle in {timeout}s (busy: {app.busy}, workers: {running})")
        await asyncio.sleep(0.005)
    await pilot.pause()


async def until(pilot, condition: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until condition() holds, then settle. For what settle alone
    cannot see coming: Pilot.press returns once the app looks idle, which
    on a loaded machine can be before a key's message has travelled from a
    dialog or the command line to the app and started anything."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.005)
    await settle(pilot)


async def press_to_stop(pilot, *keys: str) -> None:
    """Press keys that move the target, and wait for the stop they lead to
    (a new view), then settle."""
    app = pilot.app
    before = app.view
    await pilot.press(*keys)
    await until(pilot, lambda: app.view is not before, f"a new stop after {' '.join(keys)}")


def run_pilot(app, scenario: Callable[..., Awaitable[None]], size: tuple[int, int] = (80, 24)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await scenario(pilot)
    asyncio.run(main())


async def type_command(pilot, line: str, *, keystrokes: bool = False) -> None:
    """Enter a line on the command line: focus it with `:` as a user would,
    fill it in (key by key with keystrokes=True: slower), press Enter."""
    from loaderdbg_tui.command_line import CommandLine
    from loaderdbg_tui.main_screen import MainScreen

    if not isinstance(pilot.app.screen, MainScreen):
        await pilot.press("colon")  # from the output view too
        await pilot.pause()
    field = pilot.app.screen.query_one(CommandLine)
    if not field.has_focus:
        await pilot.press("colon")
    if keystrokes:
        await pilot.press(*_keys(line))
    else:
        field.value = line
    await pilot.press("enter")
    # The app empties the field when it takes the line, and starts the
    # command's work (a worker or a motion, which settle waits for) then.
    await until(pilot, lambda: field.value == "", f"the command line taking {line!r}")


def _keys(text: str) -> list[str]:
    names = {" ": "space", "/": "slash", "$": "dollar_sign", "*": "asterisk", "+": "plus",
             "-": "minus", ":": "colon", "_": "underscore", ".": "full_stop"}
    return [names.get(ch, ch) for ch in text]


def log_text(app) -> str:
    """Everything in the log, as plain text."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open(os.devnull, "w"), color_system=None)
    for renderable in app.log_lines:
        console.print(renderable)
    return console.export_text()


def status_text(app) -> str:
    from loaderdbg_tui.status import StatusLine

    return app.screen.query_one(StatusLine).plain


def screen_lines(app) -> list[str]:
    """What the terminal shows now, one string per row. Textual's public
    screenshot is an SVG; the compositor's strips are the same cells as
    plain text."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def count_layouts(screen) -> list[int]:
    """A list that grows by one each time ``screen`` is laid out from now
    on (Textual's Screen._refresh_layout): whether a change needed a layout
    or only a repaint."""
    layouts: list[int] = []
    original = screen._refresh_layout

    def counting(*args, **kwargs):
        layouts.append(1)
        return original(*args, **kwargs)
    screen._refresh_layout = counting
    return layouts
