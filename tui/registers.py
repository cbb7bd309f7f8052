"""Registers pane: values in the arch's usual order, the ones changed since
the previous stop highlighted, eflags decoded, what pointers point at."""

from __future__ import annotations

from rich.text import Text
from loaderdbg_tui.lines_view import LinesView

from loaderdbg.decode.registers import format_flags

from loaderdbg_tui.fit import shrink
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.view import StopView

# Display order per arch (gdb's); anything else the arch has comes after.
REGISTER_ORDER = {
    "x86_64": ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
               "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
               "rip", "eflags", "fs_base", "gs_base", "cs", "ss", "ds", "es", "fs", "gs", "orig_rax"),
}
# Shown after a blank line: rarely interesting during startup.
QUIET_REGISTERS = frozenset({"cs", "ss", "ds", "es", "fs", "gs", "orig_rax", "gs_base"})
CHANGED = "bold black on yellow"
NAME_WIDTH = 8
NOTES_FROM = 34  # pane width from which "what it points at" is shown


def value_text(value: int, changed: bool) -> Text:
    """0x + 16 digits, leading zeros dim so the significant part stands out."""
    digits = f"{value:016x}"
    significant = digits.lstrip("0") or "0"
    text = Text("0x", style="dim")
    text.append("0" * (16 - len(significant)), style="dim")
    text.append(significant)
    if changed:
        text.stylize(CHANGED)
    return text


class RegistersPane(ViewPane, LinesView):
    """Registers of the current stop."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "registers"

    def __init__(self, **kwargs) -> None:
        super().__init__(show_cursor=False, stable_width=True, **kwargs)
        # (name, value, changed, note) -> its line: a step changes two or
        # three registers, the other lines are reused as they are.
        self._line_cache: dict[tuple, Text] = {}

    def draw(self, view: StopView, previous: StopView | None) -> None:
        lines = self.register_lines(view)
        self.set_lines(lines)
        if view.crashed and view.registers is not None:
            # After a crash rip is the first thing to look at: keep it on
            # screen even where the pane is shorter than the register list.
            pc_name = view.registers.tables.pc_register
            index = next((i for i, line in enumerate(lines) if line.plain.startswith(pc_name + " ")), None)
            if index is not None:
                self.call_after_refresh(self.move_to, index)

    def render_registers(self, view: StopView) -> Text:
        return Text("\n").join(self.register_lines(view))

    def register_lines(self, view: StopView) -> list[Text]:
        regs = view.registers
        if regs is None:
            return [Text("no registers:", style="dim"), Text("the process is gone", style="dim")]
        order = REGISTER_ORDER.get(regs.arch, ())
        names = [n for n in order if n in regs] + [n for n in regs.names() if n not in order]
        tables = regs.tables
        with_notes = self.size.width >= NOTES_FROM
        # What a note may take: the rest of the line after name and value
        # (a path or a symbol shrinks from the left, its +0x… offset whole).
        # (The scrollbar's column is counted out: it may show after this.)
        note_room = max(0, self.content_size.width - self.styles.scrollbar_size_vertical - NAME_WIDTH - 19)
        cache = self._line_cache
        if len(cache) > 4096:
            cache.clear()
        lines: list[Text] = []
        quiet_started = False
        for name in names:
            if name in QUIET_REGISTERS and not quiet_started:
                quiet_started = True
                lines.append(Text(""))
            value = regs[name]
            changed = name in view.changed
            note = view.register_notes.get(name) if with_notes else None
            if note is not None and len(note) > note_room:
                # "object segments" keeps the object (the list shrinks at its
                # end); a path or symbol+0x… keeps its end.
                side = "end" if " " in note else "left"
                note = shrink(note, note_room, side).plain if note_room > 1 else None
            alert = view.crashed and name == tables.pc_register
            key = (name, value, changed, note, alert)
            line = cache.get(key)
            if line is None:
                line = cache[key] = self._line(name, value, changed, note, tables)
                if alert:
                    line.stylize("bold white on red", 0, NAME_WIDTH + 18)
            lines.append(line)
        return lines

    @staticmethod
    def _line(name: str, value: int, changed: bool, note: str | None, tables) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(f"{name:<{NAME_WIDTH}}", style="bold" if changed else "")
        if name == tables.flag_register:
            flags = Text(f"{value:#x} {format_flags(value, tables)}")
            if changed:
                flags.stylize(CHANGED)
            out.append_text(flags)
        else:
            out.append_text(value_text(value, changed))
            if note:
                out.append(f" {note}", style="cyan" if name == tables.pc_register else "dim")
        return out
