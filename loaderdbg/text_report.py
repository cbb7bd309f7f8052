"""Human-readable snapshot for `inspect` without --json (rich tables)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from loaderdbg.printable import printable
from loaderdbg.snapshot import Snapshot


def _shown(text: str) -> str:
    """A string from the tracee or a recording, safe in rich markup: its
    control characters escaped, its brackets not taken for markup."""
    return escape(printable(text))


def _hex(value: int | None) -> str:
    return "-" if value is None else f"{value:#x}"


# A pipe or file has no width; rich would assume 80 and cut addresses short.
UNBOUNDED_WIDTH = 200


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=UNBOUNDED_WIDTH)


def print_snapshot(snap: Snapshot, console: Console | None = None, *, relocations: str | None = None) -> None:
    """``relocations``: list the relocations too, all of them ("all") or
    those in one state ("pending", "lazy", "applied", "unknown")."""
    console = console or _console()
    step = str(snap.step) if snap.step_exact else "? (after a continue)"
    if snap.divergence is not None:
        console.print(f"[bold red]{_shown(snap.divergence.headline)}[/]", soft_wrap=True)
    # Paths and stop sentences are copied by users: never break them mid-word.
    console.print(f"[bold]{_shown(snap.program)}[/]  pid {snap.pid}  step {step}", soft_wrap=True)
    console.print(f"stop: {_shown(snap.stop.description)}", soft_wrap=True)

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
        console.print(f"{'eflags' if snap.arch == 'x86_64' else 'nzcv'}: {' '.join(snap.registers.flags)}")

    if snap.stack is not None:
        _print_initial_stack(snap, console)

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
        cells = [_shown(obj.name) + (" (ld.so)" if obj.is_ldso else ""), _hex(obj.base), str(t.total),
                 str(t.applied), str(t.pending), str(t.lazy), str(t.unknown)]
        objects.add_row(*cells, *([_shown(obj.path or "")] if with_paths else []))
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
        maps.add_row(_hex(e.start), _hex(e.end), _shown(e.perms), _hex(e.offset), _shown(a.object or e.path),
                     _shown(a.segment or ""))
    console.print(maps)

    if snap.handoff.checked:
        verdict = "[green]passes[/]" if snap.handoff.ok else "[red]fails[/]"
        console.print(f"hand-off check {verdict}")
        for finding in snap.handoff.findings:
            colour = {"ok": "green", "warning": "yellow", "error": "red"}[finding.severity]
            console.print(f"  [{colour}]{finding.severity:7}[/] {_shown(finding.message)}")

    if relocations is not None:
        _print_relocations(snap, console, relocations)

    milestones = [e for e in snap.events if e.kind in ("milestone", "signal", "link-map", "fork", "thread")]
    if milestones:
        console.print("[bold]milestones[/]")
        for event in milestones:
            where = str(event.step) if event.exact and event.step >= 0 else "~"
            console.print(f"  {where:>8}  {_shown(event.name):22} {_shown(event.detail)}")


def _print_aligned(console: Console, title: str, header: tuple[str, ...] | None, rows: list[tuple[str, ...]],
                   styles: list[str | None] | None = None) -> None:
    """A table as aligned plain lines, each column as wide as its widest
    cell: nothing is cut. rich's Table costs about 100 µs a row and even a
    Text some 20 µs a line (both measure and wrap), which the 100,000
    arguments of one program turn into minutes: lines without a style
    go straight to the console's file. ``styles``: one per row, or None."""
    columns = len(header) if header else max((len(r) for r in rows), default=0)
    widths = [0] * columns
    for row in ([header] if header else []) + rows:
        for i, cell in enumerate(row[:-1]):  # the last column is not padded
            widths[i] = max(widths[i], cell_len(cell))

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(widths[i] + len(cell) - cell_len(cell)) for i, cell in enumerate(row[:-1])]
        return "  " + "  ".join([*cells, row[-1]]).rstrip()

    console.print(Text(title, style="bold"), soft_wrap=True)
    if header:
        console.print(Text(line(header), style="bold"), soft_wrap=True)
    plain: list[str] = []
    for index, row in enumerate(rows):
        style = styles[index] if styles else None
        if style is None:
            plain.append(line(row) + "\n")
            continue
        console.file.write("".join(plain))
        plain.clear()
        console.print(Text(line(row), style=style), soft_wrap=True)
    console.file.write("".join(plain))


def _print_initial_stack(snap: Snapshot, console: Console) -> None:
    stack = snap.stack
    rows = [("argc", str(stack.argc))]
    rows += [(f"argv[{i}]", f"{_hex(arg.pointer)} → {printable(repr(arg.text))}")
             for i, arg in enumerate(stack.argv)]
    rows.append(("envp", f"{len(stack.envp)} strings"))
    styles: list[str | None] = [None] * len(rows)
    kernel = {e.type: e for e in snap.auxv_kernel}
    for entry in stack.auxv:
        value = printable(entry.decoded)
        changed = entry.type in snap.auxv_changed
        if changed:
            before = kernel.get(entry.type)
            value += f"  (kernel gave {_hex(before.value) if before else 'nothing'})"
        rows.append((entry.name, value))
        styles.append("yellow" if changed else None)
    _print_aligned(console, f"initial stack at {stack.sp:#x}", None, rows, styles)


_LISTED_FIELDS = ("object", "address", "type_name", "symbol", "addend", "state", "current", "expected", "reason")


def _print_relocations(snap: Snapshot, console: Console, state: str) -> None:
    relocations = snap.relocations
    # From the columns: no RelocationState made per row (gdb's 150,000).
    listed = zip(*[relocations.column(name) for name in _LISTED_FIELDS])
    chosen = [r for r in listed if state == "all" or r[5] == state]
    what = "relocations" if state == "all" else f"{state} relocations"
    rows = []
    for obj, address, type_name, symbol, addend, r_state, current, expected, reason in chosen:
        symbol = printable(symbol or "")
        if addend:
            symbol += f"{'+' if addend >= 0 else '-'}{abs(addend):#x}" if symbol else _hex(addend)
        rows.append((printable(obj), _hex(address), type_name, symbol, r_state,
                     _hex(current), _hex(expected), printable(reason or "")))
    header = ("object", "address", "type", "symbol+addend", "state", "now", "expected", "")
    _print_aligned(console, f"{what}: {len(chosen)} of {len(relocations)}", header if rows else None, rows)
