"""Source text in the TUI (issue 15.7) on the -O0 exec-solib demo, its
sources given as a --source-dir would give them: the disassembly title says
`file:line  <the line>`, and gdb's `list` shows ten lines around pc, around
line N, around a function; without line information or the file it says why."""

from __future__ import annotations

import os

from rich.console import Console

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.disassembly import DisassemblyPane

from tuihelp import EXECSOLIB, REPO, live_session, log_text, run_pilot, settle, type_command

DEMO_O0 = EXECSOLIB / "glibc-O0" / "libexecsolib.so"
SOURCES = REPO / "tests" / "fixtures" / "execsolib"


def test_title_and_list_show_the_source_of_execsolib_bootstrap():
    source = (SOURCES / "bootstrap.c").read_text().splitlines()
    start = next(n for n, text in enumerate(source, 1) if text.startswith("execsolib_bootstrap("))
    seen = {}

    async def scenario(pilot):
        app = pilot.app
        await type_command(pilot, "list")  # at the first instruction: the demo's own start.S
        await settle(pilot)
        seen["first line"] = app.session.source_line(app.view.pc)
        seen["at first"] = log_text(app)
        await type_command(pilot, "until execsolib_bootstrap")
        await settle(pilot)
        await type_command(pilot, "stepi 40")
        await settle(pilot)
        session = app.session
        line = session.source_line(app.view.pc)
        seen["line"] = line
        seen["title"] = str(app.screen.query_one(DisassemblyPane).border_title)
        for command in ("list", "list 3", "list execsolib_bootstrap"):
            before = len(app.log_lines)
            await type_command(pilot, command)
            await settle(pilot)
            seen[command] = log_text_since(app, before)
        session.source_directories = ()
        before = len(app.log_lines)
        await type_command(pilot, "list")
        await settle(pilot)
        seen["not found"] = log_text_since(app, before)

    with live_session(DEMO_O0) as (session, _):
        session.source_directories = (str(SOURCES),)
        run_pilot(LoaderdbgApp(session, title=None), scenario, size=(160, 48))

    line = seen["line"]
    assert line is not None and line.file == "./bootstrap.c"
    assert seen["title"] == f"disassembly · bootstrap.c:{line.line}  {source[line.line - 1].strip()}"

    def numbered(first: int, last: int, text=source) -> list[str]:
        return [f"{n:<8}{text[n - 1].expandtabs(4)}".rstrip() for n in range(first, last + 1)]

    first = seen["first line"]
    assert first is not None and first.file.endswith("start.S")
    start_s = (SOURCES / "start.S").read_text().splitlines()
    listed = [row.rstrip() for row in seen["at first"].splitlines() if row.strip()]
    assert listed == ["(ldbg) list", *numbered(max(1, first.line - 5), first.line + 4, start_s)]
    assert seen["not found"].splitlines()[1] == (f"./bootstrap.c:{line.line}: the source file is not found "
                                                 "(give its directory with --source-dir)")

    listed = [row.rstrip() for row in seen["list"].splitlines() if row.strip()]
    assert listed == ["(ldbg) list", *numbered(line.line - 5, line.line + 4)]
    listed = [row.rstrip() for row in seen["list 3"].splitlines() if row.strip()]
    assert listed == ["(ldbg) list 3", *numbered(1, 10)]
    listed = [row.rstrip() for row in seen["list execsolib_bootstrap"].splitlines() if row.strip()]
    # The function's first instruction is its opening brace's line, as gdb's `list FUNC` centres.
    function_line = start + 1
    assert listed == ["(ldbg) list execsolib_bootstrap", *numbered(function_line - 5, function_line + 4)]


def log_text_since(app, first: int) -> str:
    """The log's lines from the first-th on, as plain text (log_text's way)."""
    console = Console(width=200, record=True, file=open(os.devnull, "w"), color_system=None)
    for renderable in app.log_lines[first:]:
        console.print(renderable)
    return console.export_text()
