"""Caches that keep a step cheap (issue 6) must not change what is shown:
the disassembly windows remembered per session (view.py) are dropped when
the code bytes or the loaded objects change, and a LinesView whose line
count changes updates its scrollbar without a screen layout."""

from __future__ import annotations

import asyncio
import contextlib

from rich.text import Text
from textual import events
from textual.app import App

from loaderdbg.arch import get_arch
from loaderdbg.decode.disasm import disassemble
from loaderdbg.snapshot import ObjectSummary

from loaderdbg_tui import view as view_module
from loaderdbg_tui.lines_view import LinesView

from tuihelp import count_layouts

BASE = 0x401000


class CodeSession:
    """Memory with code at BASE; counts disassemble calls."""

    def __init__(self) -> None:
        self.arch = get_arch("x86_64")
        self.memory = bytearray(b"\x90" * 0x400)
        self.calls = 0

    def read_memory(self, addr: int, size: int) -> bytes | None:
        offset = addr - BASE
        if offset < 0 or offset + size > len(self.memory):
            return None
        return bytes(self.memory[offset:offset + size])

    def symbolize(self, addr: int) -> str | None:
        return f"code+{addr - BASE:#x}" if addr > BASE else "code"

    def disassemble(self, addr: int, count: int = 16):
        self.calls += 1
        self.last_request = (addr, count)
        offset = addr - BASE
        return disassemble(bytes(self.memory[offset:offset + count * 15]), addr, self.arch,
                           count=count, symbolize=self.symbolize)


class Snap:
    def __init__(self, objects=()) -> None:
        self.objects = objects


def test_cached_window_reused_only_while_code_and_objects_are_unchanged():
    session = CodeSession()
    first = view_module._CachedCode(session, Snap()).disassemble(BASE, 40)
    assert session.calls == 1
    again = view_module._CachedCode(session, Snap()).disassemble(BASE, 40)
    assert again is first and session.calls == 1
    # A byte written inside the window: disassembled again, and it shows.
    session.memory[5] = 0xCC
    changed = view_module._CachedCode(session, Snap()).disassemble(BASE, 40)
    assert session.calls == 2 and changed != first
    assert changed == tuple(session.disassemble(BASE, 40))
    # Another set of loaded objects (symbols may differ): not reused.
    loaded = (ObjectSummary("lib", "/lib", 0x7000, 0, None, False, None),)
    view_module._CachedCode(session, Snap(loaded)).disassemble(BASE, 40)
    assert session.calls == 4  # 3 = the comparison above


def test_listing_equals_uncached_one_along_a_walk():
    session = CodeSession()
    session.memory[0x40:0x45] = bytes.fromhex("e8 00 00 00 00")  # a call among nops
    previous = ()
    for pc in [BASE, BASE + 1, BASE + 0x30, BASE + 0x45, BASE + 0x200, BASE + 0x30, BASE + 0x10, BASE]:
        cached = view_module._listing(view_module._CachedCode(session, Snap()), pc, previous)
        fresh = view_module._listing(session, pc, previous)
        assert cached == fresh, hex(pc)
        assert any(insn.address == pc for insn in cached)
        previous = cached


class Lines(App):
    def compose(self):
        yield LinesView(id="lines")


@contextlib.asynccontextmanager
async def lines_on_screen(app: App, count: int):
    """app on a 40x10 screen, its LinesView holding `count` lines."""
    async with app.run_test(size=(40, 10)) as pilot:
        view = app.query_one(LinesView)
        view.set_lines([Text(f"line {i}") for i in range(count)])
        await pilot.pause()
        yield pilot, view


def test_line_count_change_updates_scrollbar_without_layout():
    async def run() -> None:
        app = Lines()
        async with lines_on_screen(app, 30) as (pilot, lines):
            assert lines.show_vertical_scrollbar
            layouts = count_layouts(app.screen)
            lines.set_lines([Text(f"line {i}") for i in range(45)])
            await pilot.pause()
            assert not layouts
            assert lines.virtual_size.height == 45
            assert lines.vertical_scrollbar.window_virtual_size == 45
            lines.move_to(44)
            await pilot.pause()
            assert lines.scroll_offset.y == 45 - lines.scrollable_content_region.height
            # Few enough lines that the scrollbar goes: a real layout.
            lines.set_lines([Text("one")])
            await pilot.pause()
            assert layouts and not lines.show_vertical_scrollbar
            assert lines.scroll_offset.y == 0
    asyncio.run(run())


def test_changed_line_repaints_when_scrolled():
    """A line changed while the view is scrolled down is repainted (the
    line's index, not its row, goes to refresh_lines), also when the line
    count changes at the same time (no full repaint then)."""
    async def run() -> None:
        app = Lines()
        async with app.run_test(size=(40, 10)) as pilot:
            lines = app.query_one(LinesView)
            content = [Text(f"line {i}") for i in range(50)]
            lines.set_lines(content)
            await pilot.pause()
            lines.move_to(40)
            await pilot.pause()
            assert lines.scroll_offset.y > 30
            content[38] = Text("CHANGED")
            lines.set_lines(content)
            await pilot.pause()
            assert "CHANGED" in app.export_screenshot()
            content = content[:39] + [Text("AGAIN")] + content[40:] + [Text("extra")]
            lines.set_lines(content)
            await pilot.pause()
            shot = app.export_screenshot()
            assert "AGAIN" in shot and "CHANGED" in shot
    asyncio.run(run())


class StackMemory:
    """Words equal to their address, readable in [low, high)."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def read_memory(self, addr: int, size: int) -> bytes | None:
        if addr < self.low or addr + size > self.high:
            return None
        return b"".join((a).to_bytes(8, "little") for a in range(addr, addr + size, 8))


def test_stack_window_stays_put_while_sp_moves_inside_it():
    from types import SimpleNamespace

    top = 0x7FFFFFFFF000
    memory = StackMemory(top - 0x10000, top)
    snapshot = SimpleNamespace(stack=SimpleNamespace(sp=top - 0x100))
    step = view_module.STACK_WORDS * 8

    def words(sp, previous=()):
        return view_module._stack_words(memory, SimpleNamespace(sp=sp), snapshot, previous)

    assert words(top - 0x100) == ()  # sp on exec's block: the block pane shows it
    sp = top - 0x400
    first = words(sp)
    start = sp - view_module.STACK_SLACK * 8
    assert [a for a, _ in first] == list(range(start, start + step, 8))
    assert all(value == address for address, value in first)
    # Pushes and pops inside the window: the same rows.
    for moved in (sp - 8, sp - 24, sp + 8 * 5, start + step - 8):
        assert words(moved, first)[0][0] == start
    # Leaving it (either way) or a misaligned sp moves the window.
    assert words(start - 8, first)[0][0] == start - 8 - view_module.STACK_SLACK * 8
    assert words(start + step, first)[0][0] == start + step - view_module.STACK_SLACK * 8
    assert words(sp + 4, first)[0][0] == sp + 4 - view_module.STACK_SLACK * 8
    # Nothing mapped above sp: the window starts at sp.
    assert words(memory.low, ())[0][0] == memory.low


def test_a_sliding_window_takes_known_instructions_and_disassembles_the_rest():
    session = CodeSession()
    first = view_module._CachedCode(session, Snap()).disassemble(BASE, 40)
    calls = session.calls
    slid = view_module._CachedCode(session, Snap()).disassemble(BASE + 10, 40)
    assert session.calls == calls + 1
    assert session.last_request == (BASE + 40, 10)  # only the instructions past the old window
    assert slid == tuple(session.disassemble(BASE + 10, 40))
    assert slid[:30] == first[10:]
    # A byte changed among the known ones: the whole window is decoded again.
    session.memory[20] = 0xCC
    again = view_module._CachedCode(session, Snap()).disassemble(BASE + 12, 40)
    assert again == tuple(session.disassemble(BASE + 12, 40))
    assert any(insn.mnemonic == "int3" for insn in again)


class CountingReplay:
    """A replay session that counts the disassembling it is asked for."""

    def __init__(self, path) -> None:
        from loaderdbg.record.replay import ReplaySession
        self.session = ReplaySession(str(path))
        self.calls = 0

    def disassemble(self, addr: int, count: int = 16):
        self.calls += 1
        return self.session.disassemble(addr, count)

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_the_next_pc_is_among_the_guesses_and_its_window_is_ready(rdxbug_recording):
    """Between keys the TUI disassembles the windows the next step may need
    (view.prefetch_listings). Along the self-relocation of the rdxbug demo
    (direct and indirect calls, returns, taken jumps), every next pc is one
    of likely_next_pcs, and a step that leaves the listing finds its window
    made: building its view disassembles nothing."""
    replay = CountingReplay(rdxbug_recording)
    try:
        replay.goto(5000)
        seen = {"call": 0, "ret": 0, "jump": 0, "new window": 0}
        view = view_module.build_view(replay, None, 0)
        for generation in range(1, 3000):
            if min(seen.values()) >= 3:
                break
            guesses = view_module.likely_next_pcs(view)
            view_module.prefetch_listings(replay, view)
            insn = next(i for i in view.listing if i.address == view.pc)
            replay.step()
            pc = replay.pc
            assert pc in guesses or pc == view.pc, (hex(view.pc), insn.text, hex(pc))  # pc == pc: rep
            for kind in ("call", "ret", "jump"):
                seen[kind] += kind in insn.groups and pc != insn.next_address
            calls = replay.calls
            next_view = view_module.build_view(replay, view, generation)
            if next_view.listing is not view.listing:
                seen["new window"] += 1
                assert replay.calls == calls, f"window at {pc:#x} was not disassembled ahead"
            view = next_view
        assert min(seen.values()) >= 3, seen
    finally:
        replay.close()


def test_lines_rendered_ahead_are_the_lines_shown():
    """LinesView.render_ahead renders the part of a list that will be in
    view once it is set and the cursor moved: the frame then shows the same
    strips as a view that rendered nothing ahead."""
    first = [Text(f"line {i}") for i in range(30)]
    second = [Text(f"next {i}", style="bold" if i % 3 else "") for i in range(40)]

    async def shown(ahead: bool) -> list[str]:
        app = Lines()
        async with app.run_test(size=(40, 10)) as pilot:
            view = app.query_one(LinesView)
            view.set_lines(first)
            await pilot.pause()
            if ahead:
                view.render_ahead(second, 25)
                assert len(view._line_strips) >= 10
            view.set_lines(second)
            view.move_to(25, center=True)
            await pilot.pause()
            return [str(line.text) for line in app.screen._compositor.render_strips()]

    assert asyncio.run(shown(True)) == asyncio.run(shown(False))


class ListingLike(App):
    CSS = "LinesView { scrollbar-size-vertical: 0; height: 1fr; }"

    def compose(self):
        yield LinesView(id="lines")


def test_a_listing_without_a_scrollbar_still_scrolls():
    """The disassembly listing hides its scrollbar (app.tcss): the wheel
    and the cursor keys still scroll it."""
    async def run() -> None:
        async with lines_on_screen(ListingLike(), 40) as (pilot, view):
            assert view.scrollbar_size_vertical == 0
            for _ in range(3):
                view.post_message(events.MouseScrollDown(view, 1, 1, 0, 1, 0, False, False, False))
            await pilot.pause()
            assert view.scroll_offset.y > 0
            view.focus()
            await pilot.press("end")
            await pilot.pause()
            assert view.cursor == 39 and view.scroll_offset.y >= 30
    asyncio.run(run())


def test_status_rows_follow_steps_in_the_narrow_layout(rdxbug_recording):
    """At 80 columns the status line has three rows: the headline, and the
    detail wrapped over two. The rows are drawn part by part (the headline
    each step, the detail when it changes); what is on screen must be what
    the view says."""
    from loaderdbg.record.replay import ReplaySession
    from loaderdbg_tui.app import LoaderdbgApp
    from tuihelp import run_pilot, settle

    session = ReplaySession(str(rdxbug_recording))
    try:
        async def scenario(pilot):
            app = pilot.app
            for expected in (1, 2, 3):
                await pilot.press("f7")
                await settle(pilot)
                await pilot.pause()
                screen = [str(line.text) for line in app.screen._compositor.render_strips()]
                assert f"step {expected} " in screen[0] + " "
                detail = app.view.words.detail or ""
                shown = " ".join(row.strip() for row in screen[1:3]).split()
                words = detail.split()
                assert shown and shown[:-1] == words[:len(shown) - 1], (screen[:3], detail)
        run_pilot(LoaderdbgApp(session), scenario, size=(80, 24))
    finally:
        session.close()
