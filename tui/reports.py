"""What the query commands print into the log pane (x, info auxv, vmmap, got,
explain…), as Rich renderables. Functions that take a session call it, so
they run in a thread worker; the others only read the StopView."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from loaderdbg.session import MILESTONE_TITLES

from loaderdbg_tui.commands import HELP_LINES, Command, CommandError, ExamineFormat
from loaderdbg_tui.describe import hex_short, hex_word, step_text
from loaderdbg_tui.fit import Column, FittedTable
from loaderdbg_tui.view import StopView

SEVERITY_STYLES = {"ok": "green", "warning": "yellow", "error": "bold red"}
STATE_STYLES = {"applied": "green", "resolved": "green", "pending": "yellow", "lazy": "cyan",
                "unknown": "dim"}
GOT_TYPES = ("JUMP_SLOT", "GLOB_DAT")
MAX_STRING = 256
PAGE = 4096
ITEMS_PER_LINE = {1: 8, 2: 8, 4: 4, 8: 2}


def _fitted(title: str, columns: tuple[Column, ...], rows: list[tuple], styles: list[str] | None = None
            ) -> FittedTable:
    """Every str cell as plain Text: data ("[stack]", "[ PF ZF ]") must never
    be read as Rich markup."""
    cells = [tuple(Text(cell) if isinstance(cell, str) else cell for cell in row) for row in rows]
    return FittedTable(title, columns, cells, styles)


# -- x/NFU ---------------------------------------------------------------------
def format_items(address: int, data: bytes, fmt: ExamineFormat) -> list[str]:
    """gdb's x layout: `0xADDR:` then items, ITEMS_PER_LINE[unit] a line."""
    unit = fmt.unit
    per_line = ITEMS_PER_LINE[unit]
    items = []
    for offset in range(0, len(data) - len(data) % unit, unit):
        raw = data[offset:offset + unit]
        if fmt.kind == "d":
            items.append(str(int.from_bytes(raw, "little", signed=True)))
        elif fmt.kind == "u":
            items.append(str(int.from_bytes(raw, "little")))
        else:
            items.append(f"{int.from_bytes(raw, 'little'):#0{unit * 2 + 2}x}")
    lines = []
    for index in range(0, len(items), per_line):
        lines.append(f"{address + index * unit:#x}:  " + "  ".join(items[index:index + per_line]))
    return lines


def examine(session, view: StopView | None, command: Command) -> Text:
    fmt = command.examine or ExamineFormat()
    registers = view.registers if view is not None else None
    address = command.address.resolve(registers, session.resolve)
    out = Text()
    if fmt.kind == "i":
        instructions = session.disassemble(address, fmt.count)
        if not instructions:
            raise CommandError(f"cannot read memory at {address:#x}")
        pc = view.pc if view is not None else None
        for insn in instructions:
            marker = "=> " if insn.address == pc else "   "
            symbol = f" <{insn.symbol}>" if insn.symbol else ""
            out.append(f"{marker}{insn.address:#x}{symbol}:  {insn.text}\n",
                       style="bold" if insn.address == pc else "")
        return out
    if fmt.kind == "s":
        cursor = address
        for _ in range(fmt.count):
            raw, terminated = read_cstring(session, cursor, MAX_STRING)
            if raw is None:
                raise CommandError(f"cannot read memory at {cursor:#x}")
            out.append(f"{cursor:#x}:  ")
            out.append(quote(raw) + ("" if terminated else "..."), style="green")
            out.append("\n")
            cursor += len(raw) + 1
        return out
    size = fmt.count * fmt.unit
    data = session.read_memory(address, size)
    if data is None:
        raise CommandError(f"cannot read memory at {address:#x}")
    out.append("\n".join(format_items(address, data, fmt)) + "\n")
    return out


def read_cstring(session, address: int, limit: int) -> tuple[bytes | None, bool]:
    """The NUL-terminated string at address, read a page at a time so a
    string that ends near the end of a mapping still reads. Returns (bytes
    without the NUL, whether a NUL was found); (None, False) if unreadable."""
    out = b""
    cursor = address
    while len(out) < limit:
        chunk = min(limit - len(out), PAGE - cursor % PAGE)
        data = session.read_memory(cursor, chunk)
        if not data:
            return (out if out else None), False
        nul = data.find(b"\0")
        if nul >= 0:
            return out + data[:nul], True
        out += data
        cursor += len(data)
    return out, False


def quote(raw: bytes) -> str:
    """gdb-style "text": printable UTF-8 as is, \\" and \\\\ escaped, other
    bytes and control characters as \\xNN / \\n."""
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return '"' + "".join(out) + '"'


# -- info ------------------------------------------------------------------------
AUXV_COLUMNS = (Column("name"), Column("value"), Column("kernel gave"), Column("type", right=True),
                Column("decoded", free=True))


def auxv_report(view: StopView) -> FittedTable | Text:
    """The auxv as ld.so sees it; beside each entry rewritten since the
    kernel wrote it, ✎ and the kernel's value."""
    stack = view.snapshot.stack
    if stack is None:
        return Text("no initial stack (the process is gone?)", style="yellow")
    kernel = {e.type: e for e in view.snapshot.auxv_kernel}
    rows, styles = [], []
    for entry in stack.auxv:
        changed = entry.type in view.snapshot.auxv_changed
        before = kernel.get(entry.type)
        was = ("✎ " + (hex_short(before.value) if before else "(absent)")) if changed else ""
        rows.append((entry.name, hex_short(entry.value), was, str(entry.type), entry.decoded))
        styles.append("yellow" if changed else "")
    return _fitted(f"auxv at {stack.auxv_address:#x}", AUXV_COLUMNS, rows, styles)


REGISTER_COLUMNS = (Column("name"), Column("value"), Column("decimal", right=True),
                    Column("points at", free=True, shrink="left"))


def registers_report(view: StopView) -> FittedTable | Text:
    regs = view.registers
    if regs is None:
        return Text("no registers (the process is gone)", style="yellow")
    rows, styles = [], []
    for name, value in regs.items():
        rows.append((name, hex_word(value), str(value) if value < 1 << 32 else "",
                     view.register_notes.get(name, "")))
        styles.append("bold yellow" if name in view.changed else "")
    return _fitted("registers", REGISTER_COLUMNS, rows, styles)


def breakpoints_report(view: StopView) -> Text:
    if not view.breakpoints:
        return Text("no breakpoints; `b NAME`, `b *ADDR` or the `b` key on a disassembly line sets one")
    out = Text()
    for address in sorted(view.breakpoints):
        out.append(f"● {address:#x}\n", style="red")
    return out


MAP_COLUMNS = (Column("start"), Column("end"), Column("perms"), Column("offset"),
               Column("object", free=True, shrink="left"), Column("segment", free=True, minimum=6),
               Column("path", free=True, shrink="left"))


def map_row(annotation) -> tuple[str, ...]:
    entry = annotation.entry
    return (hex_short(entry.start), hex_short(entry.end), entry.perms, hex_short(entry.offset),
            annotation.object or "", annotation.segment or "", entry.path)


def vmmap_report(view: StopView) -> FittedTable:
    pc = view.pc
    rows, styles = [], []
    for annotation in view.snapshot.maps:
        entry = annotation.entry
        here = pc is not None and entry.start <= pc < entry.end
        rows.append(map_row(annotation))
        styles.append("bold reverse" if here else ("green" if "x" in entry.perms else ""))
    return _fitted("memory maps", MAP_COLUMNS, rows, styles)


GOT_COLUMNS = (Column("object", free=True, shrink="left"), Column("slot"), Column("type"),
               Column("symbol", free=True), Column("now"), Column("state"), Column("points at", free=True))


def got_report(session, view: StopView) -> FittedTable | Text:
    """JUMP_SLOT/GLOB_DAT slots: the snapshot's GOT view when the engine
    provides one (targets already symbolised), else from the relocations
    (symbolising here, through the session: call from a worker)."""
    slots = getattr(view.snapshot, "got", ())
    rows = []
    if slots:
        rows = [(s.object, s.address, s.type_name, s.symbol, s.current, s.target or "", s.state) for s in slots]
    else:
        for reloc in view.snapshot.relocations:
            if reloc.type_name.endswith(GOT_TYPES):
                target = session.symbolize(reloc.current) or "" if reloc.current else ""
                rows.append((reloc.object, reloc.address, reloc.type_name, reloc.symbol, reloc.current,
                             target, reloc.state))
    if not rows:
        return Text("no JUMP_SLOT or GLOB_DAT relocations in the loaded objects yet")
    return _fitted("GOT slots", GOT_COLUMNS, [
        (obj, hex_short(address), type_name.replace("R_X86_64_", ""), symbol or "", hex_short(current),
         Text(state, style=STATE_STYLES.get(state, "")), target)
        for obj, address, type_name, symbol, current, target, state in rows])


THREAD_COLUMNS = (Column("tid"), Column("name", free=True, minimum=6), Column("state"), Column("fs_base"),
                  Column("sigmask", free=True, minimum=6), Column("pending", free=True, minimum=6),
                  Column("stop", free=True))


def threads_report(view: StopView) -> FittedTable:
    return _fitted("threads", THREAD_COLUMNS, [
        (str(thread.tid), thread.name, thread.state, hex_short(thread.fs_base),
         " ".join(thread.sigmask) or "-", " ".join(thread.sigpend + thread.shdpnd) or "-", thread.stop)
        for thread in view.snapshot.threads])


LINK_MAP_COLUMNS = (Column("ns"), Column("name", free=True, shrink="left"), Column("l_addr"), Column("l_ld"),
                    Column("kind"))


def link_map_report(view: StopView) -> FittedTable | Text:
    if not view.snapshot.link_map:
        return Text("link_map is empty: ld.so has not set up r_debug yet")
    return _fitted("link_map", LINK_MAP_COLUMNS, [
        (str(entry.namespace), entry.name or "(main program)", hex_short(entry.l_addr), hex_short(entry.l_ld),
         entry.kind)
        for entry in view.snapshot.link_map])


def events_report(view: StopView) -> Text:
    out = Text()
    for event in view.snapshot.events:
        if event.kind == "syscall":
            continue
        step = str(event.step) if event.exact and event.step >= 0 else "~"
        style = "bold red" if event.name == "crash" else ("bold" if event.kind == "milestone" else "")
        title = MILESTONE_TITLES.get(event.name, event.name)
        out.append(f"{step:>9}  {title:22} {event.detail}\n", style=style)
    return out


def explain_report(view: StopView) -> Group:
    """Until the explainer exists (analysis/), the milestones so far, the
    stop in plain words, and the hand-off findings."""
    parts: list = []
    header = Text()
    header.append("What happened so far\n", style="bold underline")
    parts.append(header)
    parts.append(events_report(view))
    stop = Text()
    stop.append(f"Now (step {step_text(view.position, view.position_exact)}): ", style="bold")
    stop.append(view.words.headline + "\n", style=SEVERITY_STYLES.get(view.words.severity, ""))
    if view.words.detail:
        stop.append(view.words.detail + "\n")
    parts.append(stop)
    parts.append(handoff_text(view))
    return Group(*parts)


def handoff_text(view: StopView) -> Text:
    report = view.snapshot.handoff
    out = Text()
    if not report.checked:
        reached = any(e.kind == "milestone" and e.name == "ldso-entry" for e in view.snapshot.events)
        if view.crashed and not reached:
            out.append("Hand-off check: not run (the process never reached ld.so's entry).\n", style="dim")
        elif not view.alive or view.crashed:
            out.append("Hand-off check: not run here (it runs at ld.so's entry).\n", style="dim")
        else:
            out.append("Hand-off check: not run here (it runs at ld.so's entry; press l to get there).\n",
                       style="dim")
        return out
    verdict = ("passes", "green") if report.ok else ("FAILS", "bold red")
    out.append("Hand-off check at ld.so's entry ", style="bold")
    out.append(verdict[0] + "\n", style=verdict[1])
    for finding in report.findings:
        out.append(f"  {finding.severity:7} ", style=SEVERITY_STYLES.get(finding.severity, ""))
        out.append(f"{finding.check:16} {finding.message}\n")
    return out


def help_report() -> Table:
    """Words wrap in the second column (help is read, not scanned)."""
    table = Table(title="commands", title_justify="left", box=None, pad_edge=False, expand=False)
    table.add_column("command", no_wrap=True)
    table.add_column("what it does", ratio=1)
    for spelling, words in HELP_LINES:
        table.add_row(Text(spelling), Text(words))
    return table


def who_wrote(session, view: StopView | None, command: Command) -> Text:
    """`who`: the step before this one that last wrote a register or a range
    of memory, from the recording's write index (rr's "reverse-watch", one
    answer at a time)."""
    position = session.position
    out = Text()
    if command.address is None:
        try:
            found = session.last_register_write(command.target)
        except ValueError:
            raise CommandError(f"no register ${command.target}") from None
        if found is None:
            out.append(f"${command.target}: no step before {position} wrote it; "
                       "it holds what it had at the first instruction")
            return out
        out.append(f"${found.register} = {found.new:#x}", style="bold")
        out.append(f"  written by step {found.step}: ")
        out.append(f"`{found.by.text}`", style="cyan")
        out.append(f" at {found.by.where()}  (was {found.old:#x})\n")
        out.append(f"goto {found.step} to stand before it", style="dim")
        return out
    registers = view.registers if view is not None else None
    address = command.address.resolve(registers, session.resolve)
    size = command.count
    found = session.last_memory_write(address, size)
    span = f"[{address:#x}, +{size})"
    if found is None:
        out.append(f"{span}: no step before {position} wrote it; "
                   "its bytes are as the recording's first memory image has them")
        return out
    out.append(span, style="bold")
    if found.kind == "instruction":
        out.append(f"  written by step {found.step}: ")
        out.append(f"`{found.by.text}`", style="cyan")
        out.append(f" at {found.by.where()}")
    elif found.kind == "kernel":
        out.append(f"  written by the kernel at step {found.step}: {found.syscall or 'a signal or rseq update'}")
    elif found.kind == "page":
        out.append(f"  mapped or replaced at step {found.step}: {found.syscall or found.by.text}")
    else:
        out.append(f"  changed without a recorded write by step {found.step} (a divergence)", style="red")
    value = found.value(address, min(size, 8))
    if value is not None:
        out.append(f"  value {value:#x}")
    out.append(f"\ngoto {found.step} to stand before it", style="dim")
    return out
