"""Keys never trap the user (issue 17.3): `:` reaches the command line from
any input, Escape leaves an input, tabs have hotkeys (Alt+1…9, `tab NAME`),
and a key that cannot work here says why on the status line."""

from __future__ import annotations

from textual.widgets import Input

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.command_line import CommandLine
from loaderdbg_tui.goto_screen import GotoScreen
from loaderdbg_tui.main_screen import MainScreen

from tuihelp import log_text, run_pilot, settle, status_text, type_command


def test_colon_reaches_the_command_line_from_the_relocations_filter(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        screen = app.screen
        screen.show_tab("tab-relocs")
        await pilot.pause()
        field = screen.query_one("#reloc-filter", Input)
        field.focus()
        await pilot.press("l", "i", "b", "c")
        assert field.value == "libc"
        await pilot.press("colon")
        await pilot.pause()
        command = screen.query_one(CommandLine)
        assert command.has_focus and field.value == "libc"
        await pilot.press("i", "n", "f", "o", "space", "a", "u", "x", "v", "enter")
        await settle(pilot)
        assert "(ldbg) info auxv" in log_text(app)
        assert "AT_ENTRY" in log_text(app)

    run_pilot(LoaderdbgApp(session), scenario)


def test_escape_leaves_the_filter_and_the_command_line(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        screen = app.screen
        screen.show_tab("tab-relocs")
        await pilot.pause()
        screen.query_one("#reloc-filter", Input).focus()
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.focused, Input)
        assert app.focused is not None and app.focused.id == "reloc-table"
        await pilot.press("colon")
        await pilot.pause()
        assert isinstance(app.focused, CommandLine)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.focused, Input)
        # Keys work again once out: l runs to ld.so's entry.
        await pilot.press("l")
        await settle(pilot)
        assert app.view.stage.name == "ldso-entry"

    run_pilot(LoaderdbgApp(session), scenario)


def test_tabs_have_hotkeys_and_names(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        screen = app.screen
        ids = screen.tab_ids()
        assert ids[:2] == ["tab-code", "tab-stack"]
        await pilot.press("alt+4")
        await pilot.pause()
        assert screen.active_tab() == ids[3]
        await pilot.press("alt+1")
        await pilot.pause()
        assert screen.active_tab() == "tab-code"
        await type_command(pilot, "tab maps")
        assert screen.active_tab() == "tab-maps"
        await type_command(pilot, "tab rel")
        assert screen.active_tab() == "tab-relocs"
        await type_command(pilot, "tab nosuch")
        assert "no tab 'nosuch'" in log_text(app)

    run_pilot(LoaderdbgApp(session), scenario)


def test_wide_layout_tabs_by_number(demo):
    session, _ = demo

    async def scenario(pilot):
        screen = pilot.app.screen
        ids = screen.tab_ids()
        assert ids[0] == "tab-elf"
        await pilot.press("alt+3")
        await pilot.pause()
        assert screen.active_tab() == ids[2]
        await pilot.press("alt+0")  # no tenth tab at this width: it says so
        await pilot.pause()
        assert f"no tab 10 here: this layout has {len(ids)}" in status_text(pilot.app)

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_g_after_a_continue_says_why(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("l")  # a continue: the step count is unknown now
        await settle(pilot)
        assert not app.view.position_exact
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen) and not isinstance(app.screen, GotoScreen)
        assert "goto needs the step count, unknown after a continue" in status_text(app)
        await pilot.press("shift+f7")
        await pilot.pause()
        assert "step back needs a recording: loaderdbg record" in status_text(app)

    run_pilot(LoaderdbgApp(session), scenario)


def test_output_view_scrolls_searches_and_lets_go(demo):
    """Output wider than the log (vmmap at 80 columns) opens full width: /
    searches, n goes to the next match, Escape returns; `:` from it goes
    straight to the command line."""
    from loaderdbg_tui.output_view import OutputScreen

    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "vmmap")
        view = app.screen
        assert isinstance(view, OutputScreen)
        await pilot.press("slash", *"stack", "enter")
        await pilot.pause()
        lines = view.plain
        assert "[stack]" in lines[view.view.cursor]
        await pilot.press("slash", *"r-xp", "enter")
        await pilot.pause()
        first = view.view.cursor
        assert "r-xp" in lines[first]
        await pilot.press("n")
        await pilot.pause()
        assert view.view.cursor != first and "r-xp" in lines[view.view.cursor]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        await type_command(pilot, "vmmap")
        assert isinstance(app.screen, OutputScreen)
        await pilot.press("colon")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen) and isinstance(app.focused, CommandLine)

    run_pilot(LoaderdbgApp(session), scenario)
