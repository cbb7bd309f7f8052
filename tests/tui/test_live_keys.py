"""Pilot tests of the keys against a live run of the exec-solib demo."""

from __future__ import annotations

import re

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.disassembly import BP_MARK, DisassemblyPane
from loaderdbg_tui.registers import CHANGED, RegistersPane
from loaderdbg_tui.status import StatusLine
from loaderdbg_tui.timeline import Timeline

from tuihelp import log_text, run_pilot, settle, status_text, type_command


def _changed_names(pane: RegistersPane, view) -> set[str]:
    """Register names whose line carries the changed highlight."""
    text = pane.render_registers(view)
    names = set()
    for span in text.spans:
        if str(span.style) == CHANGED:
            line_start = text.plain.rfind("\n", 0, span.start) + 1
            names.add(text.plain[line_start:span.start].split()[0])
    return names


def test_first_stop_is_explained_and_reverse_says_why(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        status = status_text(app)
        assert "kernel entry" in status
        assert "step 0" in status
        assert f"pid {session.pid}" in status
        assert "first instruction" in status
        timeline = app.screen.query_one(Timeline)
        assert [m.name for m in timeline.markers][:2] == ["kernel-entry", "ldso-entry"]
        assert timeline.markers[0].here and not timeline.markers[1].reached
        # A live session cannot go back: Shift+F7 / Shift+F5 say why on the
        # status line (a key that cannot work never does nothing), until the
        # next stop.
        await pilot.press("shift+f7")
        await settle(pilot)
        assert app.view.position == 0
        assert "step back needs a recording: loaderdbg record" in status_text(app)
        await pilot.press("shift+f5")
        await settle(pilot)
        assert "reverse continue needs a recording" in status_text(app)
        await pilot.press("f7")
        await settle(pilot)
        assert "needs a recording" not in status_text(app)

    run_pilot(LoaderdbgApp(session), scenario)


def test_f7_steps_and_highlights_changed_registers(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("f7")
        await settle(pilot)
        assert app.view.position == 1 and session.position == 1
        assert "step 1" in status_text(app)
        pane = app.screen.query_one(RegistersPane)
        assert app.view.changed and _changed_names(pane, app.view) == set(app.view.changed)
        # Step to `mov r12, rsp` (the second instruction of execsolib_start;
        # the engine's first step may only finish execve), then over it.
        mov = app.view.listing[1]
        assert mov.text == "mov r12, rsp"
        while app.view.pc != mov.address:
            await pilot.press("f7")
            await settle(pilot)
            assert app.view.position <= 3
        await pilot.press("f7")
        await settle(pilot)
        changed = _changed_names(pane, app.view)
        assert {"r12", "rip"} <= changed and "rbp" not in changed

    run_pilot(LoaderdbgApp(session), scenario)


def test_f8_steps_over_a_call(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        call = next(i for i in app.view.listing if i.is_call)
        while app.view.pc != call.address:
            await pilot.press("f7")
            await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        assert app.view.pc == call.next_address
        assert app.view.stop.kind in ("target", "step")

    run_pilot(LoaderdbgApp(session), scenario)


def test_l_runs_to_ldso_entry(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("l")
        await settle(pilot)
        status = status_text(app)
        assert "jump to ld.so" in status and "reached ldso-entry" in status
        assert "step ?" in status  # a continue: the step count is unknown
        markers = app.screen.query_one(Timeline).markers
        names = [m.name for m in markers]
        for milestone in ("kernel-entry", "self-relocation-done", "memfd-create", "argv-rewritten",
                          "ldso-mapped", "auxv-rewritten", "ldso-entry"):
            assert milestone in names
        here = [m.name for m in markers if m.here]
        assert here == ["ldso-entry"]
        assert app.view.snapshot.handoff.checked and app.view.snapshot.handoff.ok
        # l again: already there, nothing runs.
        await pilot.press("l")
        await settle(pilot)
        assert "already at jump to ld.so" in log_text(app)

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_e_runs_to_at_entry_and_got_shows_the_slots(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("e")
        await settle(pilot)
        assert "AT_ENTRY reached" in status_text(app)
        assert app.view.stage.name == "at-entry" and app.view.stage.here
        assert app.view.snapshot.link_map  # ld.so has filled in r_debug
        # The GOT is filled in now.
        await type_command(pilot, "got")
        text = log_text(app)
        assert "GOT slots" in text
        assert "JUMP_SLOT" in text or "GLOB_DAT" in text
        assert re.search(r"\b(resolved|applied|lazy|pending)\b", text)

    run_pilot(LoaderdbgApp(session), scenario)


def test_b_toggles_a_breakpoint_on_the_selected_line(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        pane = app.screen.query_one(DisassemblyPane)
        await pilot.press("down", "down")
        address = pane.selected_address()
        assert address is not None and address != app.view.pc
        await pilot.press("b")
        await settle(pilot)
        assert address in session.breakpoints()
        assert address in app.view.breakpoints
        assert pane.line_for(address).plain.startswith(BP_MARK.plain)
        assert pane.selected_address() == address  # the cursor stayed on the line
        await pilot.press("b")
        await settle(pilot)
        assert address not in session.breakpoints()
        assert pane.line_for(address).plain.startswith("  ")

    run_pilot(LoaderdbgApp(session), scenario)


def test_f5_continues_to_a_breakpoint(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        call = next(i for i in app.view.listing if i.is_call and i.branch_target)
        session.add_breakpoint(call.branch_target)
        await pilot.press("f5")
        await settle(pilot)
        assert app.view.pc == call.branch_target
        assert app.view.stop.kind == "breakpoint"
        assert "Breakpoint" in status_text(app)

    run_pilot(LoaderdbgApp(session), scenario)


def test_help_then_q_quits(demo):
    session, _ = demo
    app = LoaderdbgApp(session)

    async def scenario(pilot):
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "MainScreen"
        await pilot.press("q")
        await pilot.pause()

    run_pilot(app, scenario)
    assert app.return_value == 0
    assert not app.is_running


def test_g_goes_forward_to_a_step(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("g")
        await pilot.pause()
        await pilot.press("5", "enter")
        await settle(pilot)
        assert app.view.position == 5

    run_pilot(LoaderdbgApp(session), scenario)


def test_timeline_runs_ahead_and_offers_starti_behind(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        timeline = app.screen.query_one(Timeline)
        timeline.focus()
        await pilot.press("right", "enter")  # jump to ld.so: still ahead
        await settle(pilot)
        assert app.view.stage.name == "ldso-entry" and app.view.stage.here
        first_pid = session.pid
        timeline.focus()
        await pilot.press("home", "enter")  # kernel entry: behind us
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("y")
        await settle(pilot)
        assert session.pid != first_pid
        assert app.view.position == 0 and app.view.stage.name == "kernel-entry"

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_layout_follows_the_width(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        assert not app.screen.wide
        assert app.screen.query("#tab-code")
        await pilot.resize_terminal(160, 48)
        await pilot.pause(0.1)
        await settle(pilot)
        assert app.screen.wide
        assert app.screen.query("#top")
        registers = app.screen.query_one(RegistersPane)
        assert registers._drawn_view is app.view  # redrawn after the recompose
        assert app.screen.query_one(StatusLine).plain

    run_pilot(LoaderdbgApp(session), scenario)
