"""Typing into the command line repaints it without laying the screen out
(its size is its CSS's, not its text's), and a line longer than the field
still scrolls to its cursor (issue 19: every key of a big program's screen
paid a layout and a second frame)."""

from __future__ import annotations

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.command_line import CommandLine

from tuihelp import count_layouts, run_pilot, settle


def test_a_typed_key_lays_nothing_out_and_a_long_line_scrolls(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await pilot.press(":")
        await settle(pilot)
        field = app.screen.query_one(CommandLine)
        assert field.has_focus
        layouts = count_layouts(app.screen)
        await pilot.press("i", "n", "f", "o")
        await settle(pilot)
        assert field.value == "info" and not layouts
        field.value = "x " * 60
        await pilot.press("end", "y")
        await settle(pilot)
        assert field.value.endswith("y") and field.scroll_offset.x > 0
        assert field.size.height == 1
    run_pilot(LoaderdbgApp(session), scenario, size=(80, 24))
