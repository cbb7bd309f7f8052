"""Pilot tests of the command line (gdb words) against a live demo run."""

from __future__ import annotations

import re

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.command_line import CommandLine
from loaderdbg_tui.output_view import OutputScreen

from tuihelp import log_text, run_pilot, status_text, type_command


def test_si_n_steps_n_instructions(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "si 3", keystrokes=True)
        assert app.view.position == 3 and session.position == 3
        assert "(ldbg) si 3" in log_text(app)
        await type_command(pilot, "si")
        assert app.view.position == 4
        # The command line keeps a history.
        assert app.screen.query_one(CommandLine).history[-2:] == ["si 3", "si"]

    run_pilot(LoaderdbgApp(session), scenario)


def test_ni_steps_over(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        call = next(i for i in app.view.listing if i.is_call)
        await type_command(pilot, f"until addr:{call.address:#x}")
        assert app.view.pc == call.address
        await type_command(pilot, "ni")
        assert app.view.pc == call.next_address

    run_pilot(LoaderdbgApp(session), scenario)


def test_x_examines_memory_at_register_addresses(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        sp = app.view.registers.sp
        stack = app.view.snapshot.stack
        await type_command(pilot, "x/4gx $sp")
        text = log_text(app)
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{sp:#x}:"))
        assert line.split()[1] == "0x0000000000000001"  # argc
        assert line.split()[2] == f"{stack.argv[0].pointer:#018x}"  # argv[0]
        assert f"{sp + 16:#x}:" in text
        await type_command(pilot, "x/s " + hex(stack.argv[0].pointer))
        assert f'"{stack.argv[0].text}"' in log_text(app)
        await type_command(pilot, "x/2i $pc")
        assert re.search(rf"=> {app.view.pc:#x} <execsolib_start>:\s+xor ebp, ebp", log_text(app))
        await type_command(pilot, "x/8bx $rsp+8")
        assert f"{sp + 8:#x}:" in log_text(app)
        await type_command(pilot, "x/2wx $rsp")
        assert f"{sp:#x}:  0x00000001  0x00000000" in log_text(app)
        await type_command(pilot, "x/4gx 0x10")
        assert "cannot read memory at 0x10" in log_text(app)
        await type_command(pilot, "x/4gx $nosuch")
        assert "no register $nosuch" in log_text(app)

    run_pilot(LoaderdbgApp(session), scenario)


def test_vmmap_lists_annotated_maps(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "vmmap")
        text = log_text(app)
        assert "[stack]" in text and "libexecsolib.so" in text
        # Wider than the log at 80 columns: it opens in the output view too;
        # Escape returns, to the log brought forward (narrow screen).
        assert isinstance(app.screen, OutputScreen)
        assert any("[stack]" in line for line in app.screen.plain)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen.active_tab() == "tab-log"

    run_pilot(LoaderdbgApp(session), scenario)


def test_starti_relaunches(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        first_pid = session.pid
        await type_command(pilot, "si 5")
        assert app.view.position == 5
        await type_command(pilot, "starti")
        assert session.pid != first_pid
        assert app.view.position == 0 and app.view.stop.kind == "launch"
        assert f"pid {session.pid}" in status_text(app)

    run_pilot(LoaderdbgApp(session), scenario)


def test_b_star_address_and_continue(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        call = next(i for i in app.view.listing if i.is_call and i.branch_target)
        await type_command(pilot, f"b *{call.branch_target:#x}")
        assert call.branch_target in session.breakpoints()
        await type_command(pilot, "info breakpoints")
        assert re.search(rf"1\s+breakpoint\s+keep\s+y\s+{call.branch_target:#018x}", log_text(app))
        await type_command(pilot, "c")
        assert app.view.pc == call.branch_target
        await type_command(pilot, f"delete *{call.branch_target:#x}")
        assert call.branch_target not in session.breakpoints()
        # By name, looked up with Session.resolve (dynamic symbols, then .symtab).
        name = call.target_symbol.split("+")[0]
        assert session.resolve(name) == call.branch_target
        await type_command(pilot, f"b {name}")
        assert session.breakpoints() == {call.branch_target}
        assert re.search(rf"Breakpoint \d+ at {call.branch_target:#x} <{name}>", log_text(app))
        await type_command(pilot, f"x/1i {name}")
        assert f"{call.branch_target:#x} <{name}>:" in log_text(app)
        await type_command(pilot, f"delete {name}")
        assert not session.breakpoints()
        await type_command(pilot, "b no_such_symbol_here")
        assert "no symbol 'no_such_symbol_here'" in log_text(app)
        await type_command(pilot, f"b *{name}+4")
        assert session.breakpoints() == {call.branch_target + 4}

    run_pilot(LoaderdbgApp(session), scenario)


def test_info_auxv_until_and_explain(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "info auxv")
        text = log_text(app)
        assert "AT_PHDR" in text and "AT_ENTRY" in text and "AT_RANDOM" in text
        kernel_entry = next(e.value for e in app.view.snapshot.auxv_kernel if e.name == "AT_ENTRY")
        await type_command(pilot, "until ldso-entry")
        assert app.view.stage.name == "ldso-entry"
        await type_command(pilot, "info auxv")
        text = log_text(app).split("(ldbg) info auxv")[-1]
        entry_line = next(ln for ln in text.splitlines() if ln.lstrip().startswith("AT_ENTRY "))
        assert hex(kernel_entry) in entry_line  # the kernel's value, next to the rewritten one
        await type_command(pilot, "explain")
        text = log_text(app)
        assert "memfd_create" in text and "jump to ld.so" in text
        assert "Hand-off check at ld.so's entry passes" in text
        await type_command(pilot, "run-to syscall:brk")
        assert app.view.stop.kind == "syscall"
        await type_command(pilot, "until nowhere")
        assert 'Function "nowhere" not defined' in log_text(app)
        assert app.view.stop.kind == "syscall"  # it did not run

    run_pilot(LoaderdbgApp(session), scenario)


def test_bad_commands_say_why(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "frobnicate")
        assert "unknown command 'frobnicate'" in log_text(app)
        await type_command(pilot, "rsi")
        assert "needs a recording" in log_text(app)
        assert app.view.position == 0

    run_pilot(LoaderdbgApp(session), scenario)


def test_letters_typed_on_the_command_line_are_not_keys(demo):
    """`l`, `e`, `b`, `q` typed into the command line are text, not actions;
    the `quit` command quits."""
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("colon", "q", "l", "e", "b")
        await pilot.pause()
        assert app.screen.query_one(CommandLine).value == "qleb"
        assert app.is_running and app.view.position == 0 and app.busy is None
        await pilot.press("escape")
        assert not isinstance(app.focused, CommandLine)
        await type_command(pilot, "quit")  # and `quit` quits
        assert not app.is_running

    app = LoaderdbgApp(session)
    run_pilot(app, scenario)
    assert app.return_value == 0


