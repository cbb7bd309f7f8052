"""Tabs that change while stepping are patched, not rebuilt (issue 6: a
step with the Maps tab up cost 50 ms when the table was rebuilt for every
pc, one with Relocations up 20-30 ms): what they show must be what a
rebuild would show. On the committed glibc recording, where ld.so maps and
relocates libc."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.maps import MapsPane, _pc_row
from loaderdbg_tui.relocations import BAR_WIDTH, RelocationsPane, matches, progress_bar

from tuihelp import run_pilot, settle

RECORDING = Path(__file__).resolve().parents[2] / "recordings" / "execsolib-glibc-entry.ldbg"


@pytest.fixture
def glibc():
    from loaderdbg.record.replay import ReplaySession

    if not RECORDING.is_file():
        pytest.fail(f"{RECORDING} is missing: run `make recordings`", pytrace=False)
    session = ReplaySession(str(RECORDING))
    yield session
    session.close()


def _highlighted_rows(maps: MapsPane) -> list[int]:
    height = maps.layout_plan.height
    return sorted({maps.row_of_line(i) for i, line in enumerate(maps.body.lines)
                   if "reverse" in str(line.style)}) if height else []


def test_maps_tab_follows_pc_into_another_mapping(glibc):
    """The jump to ld.so moves pc from the exec-solib's text to ld.so's: the
    highlighted row follows, rows restyled in place."""
    entry = next(e.step for e in glibc.events() if e.kind == "milestone" and e.name == "ldso-entry")

    async def scenario(pilot):
        app = pilot.app
        app.run_command(f"goto {entry - 1}")
        await settle(pilot)
        app.screen.show_tab("tab-maps")
        await pilot.pause()
        maps = app.screen.query_one(MapsPane)
        before = _pc_row(app.view.snapshot.maps, app.view.pc)
        assert _highlighted_rows(maps) == [before]
        rebuilds = []
        original = maps.show
        maps.show = lambda *a, **k: rebuilds.append(1) or original(*a, **k)
        await pilot.press("f7")
        await settle(pilot)
        await pilot.pause()
        after = _pc_row(app.view.snapshot.maps, app.view.pc)
        assert after != before and "ld" in (app.view.snapshot.maps[after].object or "")
        assert _highlighted_rows(maps) == [after]
        assert not rebuilds
    run_pilot(LoaderdbgApp(glibc), scenario, size=(160, 48))


@pytest.mark.parametrize("needle", ["", "libc"])
def test_relocations_tab_patched_while_ld_so_relocates(glibc, needle):
    """With a filter too: the slots written stay in it, and the table is
    patched, not filtered again."""
    async def scenario(pilot):
        app = pilot.app
        app.run_command("goto 62000")
        await settle(pilot)
        app.screen.show_tab("tab-relocs")
        await pilot.pause()
        pane = app.screen.query_one(RelocationsPane)
        pane.query_one("#reloc-filter", Input).value = needle
        await pilot.pause()
        patched = []
        original = pane._patch
        pane._patch = lambda *a: patched.append(original(*a)) or patched[-1]
        for _ in range(40):
            await pilot.press("f7")
            await settle(pilot)
        await pilot.pause()
        assert any(patched), "no step applied a relocation"
        shown = [line.plain for line in pane.table.lines]
        if needle:
            height = pane.row_height
            rows = [" ".join(shown[first:first + height]) for first in range(0, len(shown), height)]
            assert rows and all(needle in row for row in rows)
        # What a filter of every row keeps, in order (the search's own
        # remembered matches are not asked).
        kept = [r for r in app.view.snapshot.relocations if matches(r, needle)]
        assert len(shown) == len(kept) * pane.row_height
        assert all(f"{r.address:#x}" in line for r, line in zip(kept, shown[::pane.row_height]))
        summary = str(pane.query_one("#reloc-summary", Static).content)
        pane.draw(app.view, None)  # built from scratch
        await pilot.pause()
        assert [line.plain for line in pane.table.lines] == shown
        assert str(pane.query_one("#reloc-summary", Static).content) == summary
        assert "libc.so.6" in summary and "(ld.so)" in summary
    run_pilot(LoaderdbgApp(glibc), scenario, size=(160, 48))


def test_progress_bar_cells():
    assert progress_bar(0, 10).plain == "━" * BAR_WIDTH
    assert [str(span.style) for span in progress_bar(0, 10).spans] == ["grey30"]
    half = progress_bar(5, 10)
    assert half.cell_len == BAR_WIDTH and str(half.spans[0].style) == "green"
    assert str(progress_bar(10, 10).spans[0].style) == "bold green"
    assert progress_bar(3, 0).cell_len == BAR_WIDTH


def test_elf_tab_follows_the_process_to_its_crash(rdxbug_recording):
    """The ELF tab redraws only when what it shows changes; the hand-off
    line depends on whether the process is alive, crashed or reached
    ld.so's entry, so those count as changes."""
    from loaderdbg.record.replay import ReplaySession
    from loaderdbg_tui.elf import ElfPane

    session = ReplaySession(str(rdxbug_recording))
    try:
        async def scenario(pilot):
            app = pilot.app
            elf = app.screen.query_one(ElfPane)
            await pilot.pause()
            assert "press l to get there" in "\n".join(line.plain for line in elf.lines)
            # F5 runs to the end of the recording, the crash at pc 0; one step
            # back and forth again: only "alive"/"crashed" changes.
            for key, crashed in (("f5", True), ("shift+f7", False), ("f7", True)):
                await pilot.press(key)
                await settle(pilot)
                await pilot.pause()
                assert app.view.crashed == crashed
                text = "\n".join(line.plain for line in elf.lines)
                if crashed:
                    assert "never reached ld.so's entry" in text and "press l" not in text, key
                else:
                    assert "press l to get there" in text, key
        run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
    finally:
        session.close()
