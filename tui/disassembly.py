"""Disassembly pane: instructions around pc with symbol labels and
<+offset>s, breakpoint marks, and the current instruction's memory operands
resolved to addresses and values. The selected line is what `b` toggles."""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical

from loaderdbg_tui.describe import split_symbol
from loaderdbg_tui.fit import shrink
from loaderdbg_tui.lines_view import LinesView
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.view import OperandValue, StopView

WIDE_LISTING = 70  # columns from which the <+offset> column is shown
PC_MARK = Text("▶", style="bold green")
BP_MARK = Text("●", style="bold red")
PC_BP_MARK = Text.assemble(("●", "bold red"), ("▶", "bold green"))
ADDRESS_WIDTH = 14


def operand_line(operand: OperandValue) -> Text:
    """`[rsp - 8] @0x7fffffffe6d8 = 0x1 (write)`."""
    text = Text()
    text.append(operand.text, style="bold")
    if operand.address is None:
        text.append(" (address unknown)", style="dim")
        return text
    text.append(f" @{operand.address:#x}")
    if operand.access == "address":
        if operand.symbol:
            text.append(f" <{operand.symbol}>", style="cyan")
        return text
    if operand.data is None:
        text.append(" unreadable", style="red")
    else:
        size = operand.size or len(operand.data)
        if size in (1, 2, 4, 8) and len(operand.data) >= size:
            value = int.from_bytes(operand.data[:size], "little")
            text.append(f" = {value:#x}", style="yellow")
        else:
            text.append(f" = {operand.data.hex(' ')}", style="yellow")
        if operand.symbol:
            text.append(f" <{operand.symbol}>", style="cyan")
    text.append(f" ({operand.access})", style="dim")
    return text


_FOLDS: dict[tuple[int, int], tuple[Text, tuple[Text, Text | None]]] = {}
_SYMBOL = re.compile(r"  <[^>]*>$")


CODE_INDENT = 2 + 1 + ADDRESS_WIDTH + 1  # mark, space, address, space
# A folded line's operands are indented less than the code above them
# rather than cut, down to this.
MIN_FOLD_INDENT = 2


def code_indent(offset_width: int) -> int:
    """Where an instruction's code starts, with an <+offset> column of
    offset_width (0: none)."""
    return CODE_INDENT + (offset_width + 1 if offset_width else 0)


def fold(line: Text, room: int, indent: int = CODE_INDENT) -> tuple[Text, Text | None]:
    """An instruction's line in room cells: whole if it fits; else the
    target's <symbol> shrinks, then the operands after the last ", " that
    fits (or else after the last space, the mnemonic's at least) go to a
    second line, under the code or, where they do not fit there, further
    left: a number is never cut. Remembered per line: the same lines come
    back at every step."""
    if room <= 0 or line.cell_len <= room:
        return line, None
    known = _FOLDS.get((id(line), room))
    if known is not None and known[0] is line:
        return known[1]
    plain = line.plain
    symbol = _SYMBOL.search(plain)
    code_end = symbol.start() if symbol else len(plain)
    if code_end + 2 <= room:  # the code, a space, then the <symbol> shrunk to "…"
        result = (shrink(line, room, "end"), None)
    elif code_end <= room:  # an ellipsis would touch the code's last number
        result = (line[:code_end], None)
    else:
        cut = plain.rfind(", ", 0, room - 1)
        if cut > indent:
            first, after = line[:cut + 1], cut + 2
        else:
            cut = plain.rfind(" ", indent + 1, room + 1)
            first, after = line[:cut], cut + 1
        if cut <= indent:
            result = (line, None)  # no place to fold: the pane scrolls sideways
        else:
            rest = line[after:]
            # The code whole, and room for a shrunk <symbol>'s " …" after it.
            code = code_end - after + (2 if symbol else 0)
            rest = Text(" " * max(MIN_FOLD_INDENT, min(indent, room - code))) + rest
            result = (first, shrink(rest, room, "end") if rest.cell_len > room else rest)
    if len(_FOLDS) > 4096:
        _FOLDS.clear()
    _FOLDS[(id(line), room)] = (line, result)
    return result


def label_line(label: str, indent: int, room: int) -> Text:
    """A symbol's label over its instructions, at the code's indent; further
    left where it does not fit there, its name shrunk from the left past
    that (its offset whole)."""
    if room > 0 and indent + len(label) > room:
        indent = max(0, room - len(label))
        label = shrink(label, room - indent, "left").plain
    return Text(" " * indent + label, style="bold magenta")


def mark_of(here: bool, marked: bool) -> Text:
    mark = PC_BP_MARK if here and marked else PC_MARK if here else BP_MARK if marked else Text("")
    return mark.copy()


class OperandsView(LinesView, can_focus=False):
    """The current instruction and its memory operands, under the listing.
    Lines, not a Static: a step changes the "pc …" line and maybe an
    operand's value, and a Static would render all of it again. Not
    focusable: there is nothing to select, and focus must stay in the
    listing."""

    def show(self, lines: tuple[Text, ...], width: int) -> None:
        if width > 0:
            # Shrunk at the end (a <symbol> first), a number left out whole
            # rather than cut.
            lines = tuple(shrink(line, width, "end") for line in lines)
        self.set_lines(list(lines))


class DisassemblyPane(ViewPane, Vertical):
    """Instructions around pc."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "disassembly"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # One line per (instruction, pc here, breakpoint, layout): stepping
        # inside the same window rebuilds only the two lines pc moves between.
        self._line_cache: dict[tuple, Text] = {}
        self._operands_shown: tuple[tuple[Text, ...], int] | None = None  # (lines, width) as drawn
        # (listing, breakpoints, wide, lines, keys, rows by address, pc) as last drawn
        self._layout: tuple | None = None

    def compose(self) -> ComposeResult:
        yield LinesView(id="listing")
        yield OperandsView(id="operands", show_cursor=False)

    @property
    def listing(self) -> LinesView:
        return self.query_one("#listing", LinesView)

    def selected_address(self) -> int | None:
        key = self.listing.cursor_key
        if not key or key[0] not in "il":
            return None
        return int(key[1:], 16)

    def line_for(self, address: int) -> Text | None:
        listing = self.listing
        key = f"i{address:x}"
        return listing.lines[listing.keys.index(key)] if key in listing.keys else None

    def draw(self, view: StopView, previous: StopView | None) -> None:
        listing = self.listing
        same_stop = previous is not None and previous.pc == view.pc and previous.listing == view.listing
        wide = self.size.width >= WIDE_LISTING
        room = listing.size.width
        pc = view.pc
        cache = self._line_cache
        if len(cache) > 4096:
            cache.clear()
        layout = self._layout
        if (layout is not None and view.listing and layout[0] is view.listing
                and layout[1] == view.breakpoints and layout[2] == wide and layout[7] == room):
            # The same window (most steps): only the lines pc leaves and
            # enters change; the rest of the list is reused as it is.
            lines, keys, rows, drawn_pc = list(layout[3]), layout[4], layout[5], layout[6]
            for address in {drawn_pc, pc}:
                row = rows.get(address)
                if row is not None:
                    line = self._cached_line(row[1], address == pc, view.breakpoints, *row[2:])
                    lines[row[0]] = fold(line, room, code_indent(row[2]))[0]
        else:
            lines, keys, rows = self._layout_lines(view.listing, pc, view.breakpoints, wide, room)
        pc_line = rows[pc][0] if pc in rows else 0
        if not lines and pc is not None:
            lines.append(Text(f"   no code at pc {pc:#x}", style="bold red"))
            keys.append("none")
        self._layout = (view.listing, view.breakpoints, wide, lines, keys, rows, pc, room)
        listing.set_lines(lines, keys)
        if not same_stop:
            listing.move_to(pc_line, center=True)
        operands_view = self.query_one("#operands", OperandsView)
        operands = (self._operands_lines(view), operands_view.content_size.width)
        if operands != self._operands_shown:
            self._operands_shown = operands
            operands_view.show(*operands)
        count = len(view.breakpoints)
        self.set_titles(title=f"disassembly · {view.source}" if view.source else "disassembly",
                        subtitle=f"● {count} breakpoint{'s' if count != 1 else ''}" if count else "")

    def lay_out_ahead(self, windows) -> None:
        """Lay out (and have the listing render) the windows the next step
        may show: (pc, listing) pairs from view.prefetch_listings. A step
        into one of them then finds its lines made."""
        layout = self._layout
        if layout is None:
            return
        breakpoints, wide, room = layout[1], layout[2], layout[7]
        for pc, listing in windows:
            lines, _keys, rows = self._layout_lines(listing, pc, breakpoints, wide, room)
            if pc in rows:
                self.listing.render_ahead(lines, rows[pc][0])

    def _layout_lines(self, listing, pc: int | None, breakpoints: frozenset[int],
                      wide: bool, room: int) -> tuple[list[Text], list[str], dict]:
        """Every line of the listing, and where each instruction's line is."""
        last_name: str | None = None
        offsets = [split_symbol(insn.symbol) for insn in listing]
        offset_width = max((len(f"<+{off:#x}>") for name, off in offsets if name), default=0) if wide else 0
        indent = code_indent(offset_width)
        lines: list[Text] = []
        keys: list[str] = []
        rows: dict[int, tuple] = {}
        for insn, (name, offset) in zip(listing, offsets):
            if name is not None and name != last_name:
                label = f"{name}:" if offset == 0 else f"{name}+{offset:#x}:"
                lines.append(label_line(label, indent, room))
                keys.append(f"l{insn.address:x}")
            last_name = name
            rows[insn.address] = (len(lines), insn, offset_width, name, offset)
            line = self._cached_line(insn, insn.address == pc, breakpoints, offset_width, name, offset)
            first, rest = fold(line, room, indent)
            lines.append(first)
            keys.append(f"i{insn.address:x}")
            if rest is not None:  # the operands that did not fit, under the instruction
                lines.append(rest)
                keys.append(f"c{insn.address:x}")
        return lines, keys, rows

    def _cached_line(self, insn, here: bool, breakpoints: frozenset[int], offset_width: int,
                     name: str | None, offset: int) -> Text:
        # One line per (instruction, pc here, breakpoint, layout): stepping
        # inside the same window rebuilds only the two lines pc moves between.
        marked = insn.address in breakpoints
        key = (insn.address, insn.text, insn.target_symbol, insn.is_bad, here,
               marked, offset_width, name is not None, offset)
        line = self._line_cache.get(key)
        if line is None:
            line = self._line_cache[key] = self._line(insn, here, marked, offset_width, name, offset)
        return line

    @staticmethod
    def _line(insn, here: bool, marked: bool, offset_width: int, name: str | None, offset: int) -> Text:
        line = mark_of(here, marked)
        line.pad_right(2 - line.cell_len)
        line.append(" ")
        line.append(f"{insn.address:#x}".ljust(ADDRESS_WIDTH), style="bold" if here else "dim")
        line.append(" ")
        if offset_width:
            line.append((f"<+{offset:#x}>" if name else "").ljust(offset_width), style="dim")
            line.append(" ")
        line.append(insn.text, style="bold" if here else "red" if insn.is_bad else "")
        if insn.target_symbol:
            line.append(f"  <{insn.target_symbol}>", style="cyan")
        return line

    def _operands_lines(self, view: StopView) -> tuple[Text, ...]:
        if not view.alive:
            return (Text("the process is gone: nothing to disassemble", style="dim"),)
        if not view.listing:
            pc = view.pc
            where = f"pc {pc:#x}" if pc is not None else "pc"
            # Short lines, the facts first: on 80 columns each line is cut.
            lines = [Text(f"✖ {where}: not mapped, no code here.", style="bold red")]
            if pc is not None and pc < 0x1000:
                lines.append(Text("A jump or call went to a null (zeroed) address.", style="bold red"))
                if view.crashed:
                    lines.append(Text("The status line says where to look; explain for more.", style="dim"))
            return tuple(lines)
        lines = []
        insn = next((i for i in view.listing if i.address == view.pc), None)
        if insn is not None:
            line = Text()
            line.append("pc ", style="dim")
            line.append(insn.symbol or f"{insn.address:#x}", style="bold magenta")
            line.append(f"  {insn.text}")
            lines.append(line)
        if insn is not None and insn.is_syscall and view.registers is not None:
            tables = view.registers.tables
            number = view.registers.get(tables.syscall_number_register)
            name = tables.syscall_names.get(number, "?") if number is not None else "?"
            lines.append(Text(f"syscall {name} ({tables.syscall_number_register}={number})", style="bold"))
        lines.extend(operand_line(operand) for operand in view.operands)
        return tuple(lines) or (Text(),)
