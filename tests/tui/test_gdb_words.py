"""gdb's words on the command line (issue 17.2), against a live demo run:
print, info registers/symbol/sharedlibrary/breakpoints, tbreak, delete,
disas, until LOCATION and the closest word for a mistyped one."""

from __future__ import annotations

import re

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import log_text, run_pilot, settle, type_command


def _since(app, command: str) -> str:
    return log_text(app).split(f"(ldbg) {command}")[-1]


def test_print_registers_memory_and_symbols(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        sp = app.view.registers.sp
        stack = app.view.snapshot.stack
        await type_command(pilot, "p $rsp")
        assert f"$1 = (void *) {sp:#x}" in _since(app, "p $rsp")
        await type_command(pilot, "p $rsp+8")
        assert f"$2 = (void *) {sp + 8:#x}" in _since(app, "p $rsp+8")
        await type_command(pilot, "p/x $rsp")
        assert f"$3 = {sp:#x}" in _since(app, "p/x $rsp")
        await type_command(pilot, "p *(int *)$rsp")  # argc
        assert f"$4 = {stack.argc}" in _since(app, "p *(int *)$rsp")
        await type_command(pilot, "p *(unsigned long *)($rsp+8)")  # argv[0]
        assert f"$5 = {stack.argv[0].pointer}" in _since(app, "p *(unsigned long *)($rsp+8)")
        await type_command(pilot, "p/x *(uint16_t *)$rsp")
        assert "$6 = 0x1" in _since(app, "p/x *(uint16_t *)$rsp")
        await type_command(pilot, "p execsolib_start")
        assert (f"$7 = {{<text variable, no debug info>}} {app.view.pc:#x} <execsolib_start>"
                in _since(app, "p execsolib_start"))
        await type_command(pilot, "p 0x10")
        assert "$8 = 16" in _since(app, "p 0x10")
        await type_command(pilot, "p *$rsp")
        assert "Attempt to take contents of a non-pointer value." in _since(app, "p *$rsp")
        await type_command(pilot, "p *(struct foo *)$rsp")
        assert 'No symbol "struct foo" in current context' in _since(app, "p *(struct foo *)$rsp")
        await type_command(pilot, "p *(long *)0x10")
        assert "Cannot access memory at address 0x10" in _since(app, "p *(long *)0x10")

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_info_registers_in_gdbs_order_and_info_symbol(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        pc = app.view.pc
        await type_command(pilot, "info registers")
        names = [line.split()[0] for line in _since(app, "info registers").splitlines()
                 if re.match(r"^[a-z][a-z0-9_]*\s+0x", line)]
        assert names[:18] == ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10",
                              "r11", "r12", "r13", "r14", "r15", "rip", "eflags"]
        await type_command(pilot, "info registers rip")
        assert re.search(rf"rip\s+{pc:#x}\s+{pc:#x} <execsolib_start>", _since(app, "info registers rip"))
        await type_command(pilot, "info registers nosuch")
        assert "Invalid register `nosuch'" in _since(app, "info registers nosuch")
        await type_command(pilot, "info symbol $pc")
        assert _since(app, "info symbol $pc").strip().startswith("execsolib_start in ")
        await type_command(pilot, "info symbol $pc+2")
        assert "execsolib_start + 2 in " in _since(app, "info symbol $pc+2")
        assert "libexecsolib.so" in _since(app, "info symbol $pc+2")
        await type_command(pilot, "info symbol 0x10")
        assert "No symbol matches 0x10." in _since(app, "info symbol 0x10")

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_disas_the_function_around_pc(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        pc = app.view.pc
        await type_command(pilot, "disas")
        text = _since(app, "disas")
        assert "Dump of assembler code for function execsolib_start:" in text
        assert re.search(rf"=> {pc:#018x} <\+0>:\s+xor ebp, ebp", text)
        assert "End of assembler dump." in text
        lines = [line for line in text.splitlines() if re.match(r"^(=>|  ) 0x", line)]
        assert len(lines) > 3
        # It ends where the function does: every line is <+offset> of it.
        call = next(i for i in app.view.listing if i.is_call and i.target_symbol)
        target = call.target_symbol.split("+")[0]
        await type_command(pilot, f"disas {target}")
        text = _since(app, f"disas {target}")
        assert f"Dump of assembler code for function {target}:" in text
        assert f"{call.branch_target:#018x} <+0>:" in text
        await type_command(pilot, "disas 0x10")
        assert "No function contains specified address." in _since(app, "disas 0x10")

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_tbreak_delete_and_info_breakpoints(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        calls = [i for i in app.view.listing if i.is_call and i.branch_target]
        first, second = calls[0], calls[1]
        await type_command(pilot, f"tbreak *{first.branch_target:#x}")
        await type_command(pilot, f"b *{second.branch_target:#x}")
        assert session.breakpoints() == {first.branch_target, second.branch_target}
        await type_command(pilot, "info breakpoints")
        text = _since(app, "info breakpoints")
        assert re.search(rf"1\s+breakpoint\s+del\s+y\s+{first.branch_target:#018x}\s+<", text)
        assert re.search(rf"2\s+breakpoint\s+keep\s+y\s+{second.branch_target:#018x}\s+<", text)
        await type_command(pilot, "c")
        assert app.view.pc == first.branch_target
        await settle(pilot)
        assert session.breakpoints() == {second.branch_target}  # the temporary one is gone
        assert "Temporary breakpoint 1, " in log_text(app)
        await type_command(pilot, "delete 7")
        assert "No breakpoint number 7." in log_text(app)
        await type_command(pilot, f"b *{first.branch_target:#x}")
        await type_command(pilot, "info breakpoints")
        assert re.search(rf"3\s+breakpoint\s+keep\s+y\s+{first.branch_target:#018x}",
                         _since(app, "info breakpoints"))  # numbers are never reused
        await type_command(pilot, "delete 2")
        assert session.breakpoints() == {first.branch_target}
        await type_command(pilot, "delete")
        assert session.breakpoints() == set()
        await type_command(pilot, "info breakpoints")
        assert "No breakpoints or watchpoints." in _since(app, "info breakpoints")

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_sharedlibrary_until_a_symbol_and_suggestions(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        call = next(i for i in app.view.listing if i.is_call and i.target_symbol)
        name = call.target_symbol.split("+")[0]
        await type_command(pilot, f"until {name}")
        assert app.view.pc == call.branch_target
        await type_command(pilot, "dissas")
        assert "unknown command 'dissas'; did you mean 'disas'?" in log_text(app)
        await type_command(pilot, "info sharedlibary")
        assert "did you mean info sharedlibrary?" in log_text(app)
        await pilot.press("escape", "e")
        await settle(pilot)
        await type_command(pilot, "info sharedlibrary")
        text = _since(app, "info sharedlibrary")
        libc = next(o for o in app.view.snapshot.objects if o.name == "libc.so.6")
        code = [m.entry for m in app.view.snapshot.maps if m.object == "libc.so.6" and "x" in m.entry.perms]
        assert re.search(rf"{min(e.start for e in code):#018x}\s+{max(e.end for e in code):#018x}\s+Yes\s+"
                         rf"{re.escape(libc.path)}", text)

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))


def test_bare_until_leaves_a_loop(demo):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        start = app.view.pc
        first = app.view.listing[[i.address for i in app.view.listing].index(start)]
        await type_command(pilot, "until")  # not a jump: as ni
        assert app.view.pc == first.address + first.size
        await type_command(pilot, "until execsolib_self_relocate")
        loop_end = next((i for i in session.disassemble(app.view.pc, 200)
                         if i.is_jump and i.branch_target is not None and i.branch_target < i.address), None)
        assert loop_end is not None, "no backward jump in execsolib_self_relocate"
        await type_command(pilot, f"until *{loop_end.address:#x}")
        assert app.view.pc == loop_end.address
        await type_command(pilot, "until")
        assert app.view.pc == loop_end.address + loop_end.size

    run_pilot(LoaderdbgApp(session), scenario, size=(160, 48))
