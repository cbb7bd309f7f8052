"""What the query commands print into the log pane (x, info auxv, vmmap, got,
explain…), as Rich renderables. Functions that take a session call it, so
they run in a thread worker; the others only read the StopView."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from loaderdbg.decode.registers import format_flags
from loaderdbg.session import MILESTONE_TITLES, Capability

from loaderdbg.printable import printable
from loaderdbg_tui.commands import HELP_LINES, Command, CommandError, ExamineFormat, PrintSpec
from loaderdbg_tui.describe import hex_short, split_symbol, step_text
from loaderdbg_tui.fit import Column, FittedTable
from loaderdbg_tui.registers import REGISTER_ORDER
from loaderdbg_tui.view import StopView, shown_source

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


REGISTER_COLUMNS = (Column("name"), Column("value"), Column("natural"),
                    Column("points at", free=True, shrink="left"))
# Registers gdb shows as addresses (hex and <symbol>), not as integers.
POINTER_REGISTERS = frozenset({"rip", "rsp", "rbp", "pc", "sp", "fp", "x29", "x30"})
SEGMENT_REGISTERS = frozenset({"cs", "ss", "ds", "es", "fs", "gs"})


def ordered_registers(regs) -> list[str]:
    """gdb's order for the arch; whatever else it has after."""
    order = REGISTER_ORDER.get(regs.arch, ())
    return [n for n in order if n in regs] + [n for n in regs.names() if n not in order]


def signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def natural_value(name: str, value: int, regs, symbol: str | None = None) -> str:
    """gdb's natural column: flags decoded, addresses in hex with <symbol>,
    the rest as signed integers."""
    tables = regs.tables
    if name == tables.flag_register:
        return format_flags(value, tables)
    if name in POINTER_REGISTERS or name == tables.pc_register or name == tables.sp_register:
        return f"{value:#x}" + (f" <{symbol}>" if symbol else "")
    if name in SEGMENT_REGISTERS:
        return str(value)
    return str(signed64(value))


def registers_report(view: StopView, names: tuple[str, ...] = ()) -> FittedTable | Text:
    """`info registers [REG…]`: gdb's order and columns (name, hex, natural),
    and what each points at."""
    regs = view.registers
    if regs is None:
        return Text("no registers (the process is gone)", style="yellow")
    wanted = ordered_registers(regs)
    if names:
        unknown = [n for n in names if n not in regs and n not in ("pc", "sp", "fp")]
        if unknown:
            return Text(f"Invalid register `{unknown[0]}'", style="red")
        aliases = {"pc": regs.tables.pc_register, "sp": regs.tables.sp_register}
        wanted = [aliases.get(n, n) for n in names]
    rows, styles = [], []
    pc_name = regs.tables.pc_register
    for name in wanted:
        value = regs[name]
        note = view.register_notes.get(name, "")
        symbol = note if name == pc_name and note and not note.startswith("[") else None
        rows.append((name, f"{value:#x}", natural_value(name, value, regs, symbol), note if symbol is None else ""))
        styles.append("bold yellow" if name in view.changed else "")
    return _fitted("registers", REGISTER_COLUMNS, rows, styles)


BREAKPOINT_COLUMNS = (Column("Num"), Column("Type"), Column("Disp"), Column("Enb"), Column("Address"),
                      Column("What", free=True))


def breakpoints_report(session, view: StopView, numbers: dict[int, int],
                       temporary: frozenset[int] = frozenset(),
                       watchpoints: dict[int, tuple[int, int, str, str]] | None = None,
                       hardware: bool = False) -> FittedTable | Text:
    """gdb's `info breakpoints`: number, disposition (del for tbreak),
    address and symbol (the session symbolises: call from a worker), then
    the watchpoints."""
    watchpoints = watchpoints or {}
    if not view.breakpoints and not watchpoints:
        return Text("No breakpoints or watchpoints. (`b NAME`, `b *ADDR`, `tbreak`, or the `b` key "
                    "on a disassembly line)")
    rows = []
    for address in sorted(view.breakpoints, key=lambda a: numbers.get(a, 1 << 30)):
        symbol = session.symbolize(address)
        rows.append((str(numbers.get(address, "?")), "breakpoint", "del" if address in temporary else "keep",
                     "y", f"{address:#018x}", f"<{symbol}>" if symbol else ""))
    for number, (address, size, spelled, access) in sorted(watchpoints.items()):
        kind = WATCHPOINT_TYPES[access] if hardware else "watchpoint"
        rows.append((str(number), kind, "keep", "y", f"{address:#018x}", f"{size} bytes ({spelled})"))
    return _fitted("", BREAKPOINT_COLUMNS, rows, ["red"] * len(rows))


# gdb's words: `info breakpoints` types, and what a stop at one says.
WATCHPOINT_TYPES = {"write": "hw watchpoint", "read": "read watchpoint", "access": "acc watchpoint"}
WATCHPOINT_TITLES = {"write": "Hardware watchpoint", "read": "Hardware read watchpoint",
                     "access": "Hardware access (read/write) watchpoint"}


def watchpoint_title(number: int, access: str, hardware: bool) -> str:
    return f"{WATCHPOINT_TITLES[access] if hardware else 'Watchpoint'} {number}"


def watched_value(data: bytes | None) -> str:
    """A watched range's value as gdb prints an integer of its length (hex
    here), bytes for other lengths."""
    if data is None:
        return "<unreadable>"
    if len(data) in (1, 2, 4, 8):
        return f"{int.from_bytes(data, 'little'):#x}"
    return " ".join(f"{b:02x}" for b in data)


def watch_hit(number: int, access: str, hardware: bool, address: int, size: int,
              old: bytes | None, new: bytes | None, by=None) -> Text:
    """gdb's stop at a watchpoint: `Hardware watchpoint 2: ADDR`, then Old
    value and New value (a read: Value); ``by``, in a recording, is the
    step whose instruction changed it (dataflow's StepInstruction)."""
    out = Text(f"{watchpoint_title(number, access, hardware)}: [{address:#x}, +{size})\n\n", style="red")
    if access == "read" or (access == "access" and old == new):
        out.append(f"Value = {watched_value(new)}\n")
    else:
        out.append(f"Old value = {watched_value(old)}\n")
        out.append(f"New value = {watched_value(new)}\n")
    if by is not None:
        out.append(f"changed by step {by.step}: {by.text} at {by.where()}\n", style="dim")
    return out


LIBRARY_COLUMNS = (Column("From"), Column("To"), Column("Syms Read"), Column("Shared Object Library",
                                                                             free=True, shrink="left"))


def sharedlibrary_report(view: StopView) -> FittedTable | Text:
    """gdb's `info sharedlibrary`: each loaded object's code (its
    executable mappings' range) and its path."""
    snap = view.snapshot
    main = {entry.name for entry in snap.link_map if entry.kind == "main"}
    rows = []
    for obj in snap.objects:
        code = [m.entry for m in snap.maps if m.object == obj.name and "x" in m.entry.perms]
        if not code:
            continue
        start, end = min(e.start for e in code), max(e.end for e in code)
        label = obj.path + ("  (ld.so)" if obj.is_ldso else "") + ("  (main program)" if obj.name in main else "")
        rows.append((f"{start:#018x}", f"{end:#018x}", "Yes", label))
    if not rows:
        return Text("No shared libraries loaded at this time.")
    return _fitted("", LIBRARY_COLUMNS, rows)


def info_symbol(session, view: StopView | None, command: Command) -> Text:
    """gdb's `info symbol ADDR`: "NAME + OFF in MAPPING of OBJECT"."""
    registers = view.registers if view is not None else None
    address = command.address.resolve(registers, session.resolve)
    symbol = session.symbolize(address)
    mapping = next((m for m in view.snapshot.maps if m.entry.start <= address < m.entry.end), None) \
        if view is not None else None
    name, offset = split_symbol(symbol)
    if symbol and mapping is not None and _object_offset(view, mapping, name, address - offset):
        symbol = None  # symbolize's "lazy+0x1030": in the object, but no symbol there
    if not symbol:
        where = f" (in {mapping.object or mapping.entry.path or 'an anonymous mapping'}" if mapping else ""
        if where and name and mapping.object == name:
            where += f"+{offset:#x}"
        return Text(f"No symbol matches {command.address.text}.{where}{')' if where else ''}")
    out = Text(f"{name} + {offset}" if offset else name, style="bold")
    if mapping is not None:
        section = (mapping.segment or "").split()
        out.append(f" in {' '.join(section[:2])}" if section else "")
        if mapping.entry.path:
            out.append(f" of {mapping.entry.path}")
    return out


def _object_offset(view: StopView, mapping, name: str | None, start: int) -> bool:
    """Whether symbolize's answer named no symbol but the object holding
    the address (``lazy+0x1030``: the offset from its first mapped page),
    where gdb says No symbol matches."""
    if name is None or name != mapping.object:
        return False
    first = min((m.entry.start for m in view.snapshot.maps if m.object == name), default=None)
    return first == start


def print_value(session, view: StopView | None, command: Command, number: int) -> Text:
    """gdb's `print`: a register, $reg+off, a number, a symbol, or the
    integer of a C type at an address (`p *(int *)$rsp`); history $N."""
    spec = command.value or PrintSpec()
    registers = view.registers if view is not None else None
    expression = command.address
    value = expression.resolve(registers, session.resolve)
    out = Text(f"${number} = ", style="bold")
    if spec.cast is not None:
        data = session.read_memory(value, spec.size)
        if data is None or len(data) < spec.size:
            raise CommandError(f"Cannot access memory at address {value:#x}")
        integer = int.from_bytes(data, "little", signed=spec.signed and spec.fmt != "u" and spec.fmt != "x")
        if spec.fmt == "x":
            out.append(f"{integer:#x}")
        elif spec.size == 1 and spec.cast.endswith("char"):
            out.append(f"{integer} {quote(bytes([integer & 0xFF])).replace(chr(34), chr(39))}")
        else:
            out.append(str(integer))
        return out
    registers_named = [t for _, t in expression.terms if isinstance(t, str)]
    pointer = bool(expression.symbols) or any(
        name in POINTER_REGISTERS or (registers is not None and name in (registers.tables.pc_register,
                                                                            registers.tables.sp_register))
        for name in registers_named)
    if spec.fmt == "x":
        out.append(f"{value:#x}")
    elif spec.fmt == "u":
        out.append(str(value))
    elif spec.fmt == "d":
        out.append(str(signed64(value)))
    elif len(expression.terms) == 1 and registers_named and registers is not None \
            and registers_named[0] == registers.tables.flag_register:
        out.append(format_flags(value, registers.tables))
    elif pointer:
        symbol = session.symbolize(value)
        code = symbol is not None and view is not None and any(
            m.entry.start <= value < m.entry.end and "x" in m.entry.perms for m in view.snapshot.maps)
        if expression.symbols and len(expression.terms) == 1:
            if not code:
                raise CommandError(f"'{expression.symbols[0]}' has unknown type; cast it to its declared type")
            out.append("{<text variable, no debug info>} ", style="dim")
        elif code:
            out.append("(void (*)()) ", style="dim")
        else:
            out.append("(void *) ", style="dim")
        out.append(f"{value:#x}")
        if symbol:
            out.append(f" <{symbol}>", style="cyan")
    else:
        out.append(str(signed64(value)))
    return out


def frame_line(frame) -> Text:
    """gdb's `#1  0x00007ffff7fc9b78 in _dl_start () from /lib64/ld-linux-x86-64.so.2`."""
    name, _ = split_symbol(frame.symbol)
    out = Text(f"#{frame.number:<3}", style="bold")
    out.append(f"{frame.pc:#018x}", style="")
    out.append(" in ")
    out.append(f"{name or '??'} ()", style="cyan" if name else "dim")
    if frame.path:
        out.append(f" from {frame.path}", style="dim")
    return out


def backtrace_report(session, view: StopView | None, command: Command) -> Text:
    """gdb's `bt [N]`: frames unwound with .eh_frame CFI, frame pointers where
    an object has none for a pc."""
    if view is None or view.registers is None:
        raise CommandError("No stack.")
    counted = bool(command.text.split()[1:])
    frames = session.backtrace(command.count if counted else BACKTRACE_LIMIT + 1)
    more = not counted and len(frames) > BACKTRACE_LIMIT
    out = Text()
    for frame in frames[:BACKTRACE_LIMIT]:
        out.append_text(frame_line(frame))
        out.append("\n")
    if more:
        out.append("(More stack frames follow...)\n", style="dim")
    return out


def source_listing(session, view: StopView | None, command: Command) -> Text:
    """gdb's `list`: ten source lines around pc's line (`list`), around line
    N of pc's file (`list N`) or around a function's first line (`list
    NAME`), from the source file when it is found (--source-dir)."""
    if command.target:
        address = session.resolve(command.target)
        if address is None:
            raise CommandError(f'Function "{command.target}" not defined.')
    elif view is None or view.pc is None:
        raise CommandError("No registers.")
    else:
        address = view.pc
    line = session.source_line(address)
    if line is None:
        raise CommandError(f"No line number information available for address {address:#x}.")
    found = session.source_file(line)
    if found is None:
        raise CommandError(f"{printable(line.file)}:{line.line}: the source file is not found "
                           "(give its directory with --source-dir)")
    center = command.count or line.line
    first = max(1, center - LIST_SIZE // 2)
    last = min(len(found.lines), first + LIST_SIZE - 1)
    if first > last:
        raise CommandError(f"Line number {center} out of range; \"{printable(found.path)}\" has "
                           f"{len(found.lines)} lines.")
    out = Text()
    for number in range(first, last + 1):
        marked = number == line.line and not command.count
        out.append(f"{number:<8}", style="bold" if marked else "dim")
        out.append(shown_source(found.lines[number - 1]), style="bold" if marked else "")
        out.append("\n")
    return out


LIST_SIZE = 10  # gdb's listsize
BACKTRACE_LIMIT = 64  # frames `bt` shows without a count (a runaway unwind ends somewhere)
DISASSEMBLY_LIMIT = 512  # instructions read for one function at most


def disassemble_function(session, view: StopView | None, command: Command) -> Text:
    """gdb's `disassemble [ADDR]`: the function around pc or ADDR, from its
    symbol to where the next one starts, `=>` at pc."""
    registers = view.registers if view is not None else None
    pc = view.pc if view is not None else None
    if command.address is None:
        if pc is None:
            raise CommandError("No registers.")
        address = pc
    else:
        address = command.address.resolve(registers, session.resolve)
    name, offset = split_symbol(session.symbolize(address))
    if name is None:
        raise CommandError(f"No function contains specified address. (x/16i {address:#x} lists the code there)")
    start = address - offset
    out = Text(f"Dump of assembler code for function {name}:\n")
    shown = 0
    cursor = start
    while shown < DISASSEMBLY_LIMIT:
        batch = session.disassemble(cursor, 64)
        if not batch:
            break
        ended = False
        for insn in batch:
            insn_name, insn_offset = split_symbol(insn.symbol)
            if insn.address != start and (insn_name != name):
                ended = True
                break
            here = insn.address == pc
            out.append("=> " if here else "   ", style="bold green" if here else "")
            out.append(f"{insn.address:#018x} <+{insn_offset}>:\t", style="bold" if here else "dim")
            out.append(insn.text, style="bold" if here else "")
            if insn.target_symbol:
                out.append(f" <{insn.target_symbol}>", style="cyan")
            out.append("\n")
            shown += 1
            cursor = insn.address + insn.size
        if ended:
            break
    out.append("End of assembler dump.")
    return out


MAP_COLUMNS = (Column("start"), Column("end"), Column("perms"), Column("offset"),
               Column("object", free=True, shrink="left"), Column("segment", free=True, minimum=6),
               Column("path", free=True, shrink="left"))


def map_row(annotation) -> tuple[str, ...]:
    entry = annotation.entry
    return (hex_short(entry.start), hex_short(entry.end), entry.perms, hex_short(entry.offset),
            printable(annotation.object or ""), annotation.segment or "", printable(entry.path))


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


GDB_THREAD_COLUMNS = (Column(" "), Column("Id", right=True), Column("Target Id", free=True),
                      Column("Frame", free=True))


def threads_report(session, view: StopView) -> FittedTable | Text:
    """gdb's `info threads`: `* 1    Thread 0x… (LWP tid) "name" 0x… in
    symbol`, numbered as `thread N` takes them; Thread 0x… is the thread's
    TLS base (glibc's pthread_t). Symbolises through the session: call
    from a worker."""
    threads = view.snapshot.threads
    if not threads:
        return Text("No threads.")
    several = any(thread.current is not None for thread in threads)
    rows = []
    for number, thread in enumerate(threads, 1):
        current = thread.current if several else thread.tid == threads[0].tid
        pc = thread.pc if thread.pc is not None else (view.pc if current else None)
        target = (f"Thread {thread.fs_base:#x} " if thread.fs_base else "") + \
            f"(LWP {thread.tid}) \"{printable(thread.name)}\""
        if pc is None:
            frame = f"({thread.stop})"
        else:
            where = session.symbolize(pc)
            frame = f"{pc:#018x}" + (f" in {where}" if where else "")
        rows.append(("*" if current else "", str(number), target, frame))
    return _fitted("", GDB_THREAD_COLUMNS, rows)


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
        out.append(f"{step:>9}  {title:22} {printable(event.detail)}\n", style=style)
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
    # In a recording of several threads, the thread that executed the step.
    threaded = Capability.THREADS in session.capabilities
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
        out.append(f"  written by step {found.step}{_in_thread(found, threaded)}: ")
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
        out.append(f"  written by step {found.step}{_in_thread(found, threaded)}: ")
        out.append(f"`{found.by.text}`", style="cyan")
        out.append(f" at {found.by.where()}")
    elif found.kind == "kernel":
        out.append(f"  written by the kernel at step {found.step}{_in_thread(found, threaded)}: "
                   f"{found.syscall or 'a signal or rseq update'}")
    elif found.kind == "page":
        out.append(f"  mapped or replaced at step {found.step}: {found.syscall or found.by.text}")
    else:
        out.append(f"  changed without a recorded write by step {found.step} (a divergence)", style="red")
    value = found.value(address, min(size, 8))
    if value is not None:
        out.append(f"  value {value:#x}")
    out.append(f"\ngoto {found.step} to stand before it", style="dim")
    return out


def _in_thread(found, threaded: bool) -> str:
    return f" (thread {found.thread})" if threaded and found.thread is not None else ""
