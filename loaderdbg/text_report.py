"""Human-readable snapshot for `inspect` without --json (rich tables)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from loaderdbg.snapshot import Snapshot


def _hex(value: int | None) -> str:
    return "-" if value is None else f"{value:#x}"


# A pipe or file has no width; rich would assume 80 and cut addresses short.
UNBOUNDED_WIDTH = 200


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=UNBOUNDED_WIDTH)


def print_snapshot(snap: Snapshot, console: Console | None = None) -> None:
    console = console or _console()
    step = str(snap.step) if snap.step_exact else "? (after a continue)"
    # Paths and stop sentences are copied by users: never break them mid-word.
    console.print(f"[bold]{snap.program}[/]  pid {snap.pid}  step {step}", soft_wrap=True)
    console.print(f"stop: {snap.stop.description}", soft_wrap=True)

    if snap.registers is not None:
        regs = Table(title="registers", show_header=False, box=None)
        names = [n for n in snap.registers.names() if n not in ("ds", "es", "fs", "gs")]
        # A register value is never worth truncating: as many name/value
        # pairs a row as the terminal fits (a pipe gets 80 columns: two).
        per_row = max(1, min(4, console.width // 30))
        for _ in range(per_row):
            regs.add_column(no_wrap=True)
            regs.add_column(no_wrap=True, min_width=18)
        for row in range(0, len(names), per_row):
            cells = []
            for name in names[row:row + per_row]:
                cells += [name, _hex(snap.registers[name])]
            regs.add_row(*cells)
        console.print(regs)
        console.print(f"eflags: {' '.join(snap.registers.flags)}")

    if snap.stack is not None:
        stack = Table(title=f"initial stack at {snap.stack.sp:#x}")
        stack.add_column("slot", no_wrap=True)
        stack.add_column("value", overflow="fold")
        stack.add_row("argc", str(snap.stack.argc))
        for i, arg in enumerate(snap.stack.argv):
            stack.add_row(f"argv[{i}]", f"{_hex(arg.pointer)} → {arg.text!r}")
        stack.add_row("envp", f"{len(snap.stack.envp)} strings")
        kernel = {e.type: e for e in snap.auxv_kernel}
        for entry in snap.stack.auxv:
            mark = ""
            if entry.type in snap.auxv_changed:
                before = kernel.get(entry.type)
                mark = f"  [yellow](kernel gave {_hex(before.value) if before else 'nothing'})[/]"
            stack.add_row(entry.name, f"{entry.decoded}{mark}")
        console.print(stack)

    objects = Table(title="objects")
    objects.add_column("object", overflow="fold")
    objects.add_column("base", no_wrap=True)
    for column in ("relocations", "applied", "pending", "lazy", "unknown"):
        objects.add_column(column, justify="right")
    with_paths = console.width >= 140  # a narrow terminal gets the names only
    if with_paths:
        objects.add_column("path", overflow="fold")
    for obj in snap.objects:
        t = obj.totals
        cells = [obj.name + (" (ld.so)" if obj.is_ldso else ""), _hex(obj.base), str(t.total),
                 str(t.applied), str(t.pending), str(t.lazy), str(t.unknown)]
        objects.add_row(*cells, *([obj.path or ""] if with_paths else []))
    console.print(objects)

    maps = Table(title="maps")
    # Addresses stay whole; names wrap (fold) when the terminal is narrow.
    for column in ("start", "end", "perms", "offset"):
        maps.add_column(column, no_wrap=True)
    # The object's name stands for its path (the objects table has paths).
    maps.add_column("object or path", overflow="fold")
    maps.add_column("segment", overflow="fold")
    for a in snap.maps:
        e = a.entry
        maps.add_row(_hex(e.start), _hex(e.end), e.perms, _hex(e.offset), a.object or e.path,
                     a.segment or "")
    console.print(maps)

    if snap.handoff.checked:
        verdict = "[green]passes[/]" if snap.handoff.ok else "[red]fails[/]"
        console.print(f"hand-off check {verdict}")
        for finding in snap.handoff.findings:
            colour = {"ok": "green", "warning": "yellow", "error": "red"}[finding.severity]
            console.print(f"  [{colour}]{finding.severity:7}[/] {finding.message}")

    milestones = [e for e in snap.events if e.kind in ("milestone", "signal", "link-map", "fork", "thread")]
    if milestones:
        console.print("[bold]milestones[/]")
        for event in milestones:
            where = str(event.step) if event.exact and event.step >= 0 else "~"
            console.print(f"  {where:>8}  {event.name:22} {event.detail}")
