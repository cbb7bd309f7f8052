"""Stack pane: a window of words around sp once sp has left the initial
block (it stays put while sp moves inside it), then the initial stack as
exec left it, every slot annotated: argc, argv[i] → string, envp[i], auxv
entries by AT_ name with their decoded value. Entries that differ from the
kernel's original auxv are marked ✎ and show the kernel's value too."""

from __future__ import annotations

from rich.text import Text

from loaderdbg_tui.fit import shrink
from loaderdbg_tui.lines_view import LinesView
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.view import StopView

REWRITTEN = "bold yellow"
WITH_ADDRESS = 72  # pane width from which the slot addresses are shown
ADDRESS_WIDTH = 14
WORD_SLOT_WIDTH = len("…ffff")  # the widest label of a word at sp ("sp ▶" is 4)
CONTINUATION = 4  # indent of a value moved under its slot


def _volatile(app, kind: str, text: str) -> str:
    hook = getattr(app, "present_volatile", None)
    return hook(kind, text) if hook is not None else text


def _string(pointer: int, text: str | None, style: str) -> Text:
    shown = repr(text) if text is not None else "(unreadable)"
    return Text.assemble((f"{pointer:#x} ", "dim"), (f"→ {shown}", style))


class StackPane(ViewPane, LinesView):
    """The process stack, annotated."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "stack"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # (exec's block as decoded, layout) -> (its lines, slot width): a
        # push or a pop changes the words at sp, not the block, so its lines
        # are reused as the very same objects (set_lines skips them by identity).
        self._block: tuple[tuple, list[Text], int] | None = None

    @staticmethod
    def _key(view: StopView) -> tuple:
        snap = view.snapshot
        sp = view.registers.sp if view.registers is not None else None
        return (snap.stack, snap.auxv_changed, snap.auxv_kernel, view.stack_words, sp)

    def _room(self) -> int:
        """The width lines are laid out at (the scrollbar's column kept free)."""
        return max(1, self.size.width - self.styles.scrollbar_size_vertical)

    def draw(self, view: StopView, previous: StopView | None) -> None:
        if previous is not None and self._key(previous) == self._key(view) and self.lines:
            return
        with_address = self.size.width >= WITH_ADDRESS
        room = self._room()
        block_lines, slot_width = self._block_lines(view, with_address, room)
        words = [line for row in self.word_rows(view, with_address)
                 for line in self._line(row, with_address, slot_width, room)]
        stack = view.snapshot.stack
        title = f"stack · exec's block at {stack.sp:#x}" if stack is not None else "stack"
        self.set_titles(title=title if len(title) + 4 <= self.size.width else "stack")
        self.set_lines(words + block_lines)

    def _block_lines(self, view: StopView, with_address: bool, room: int) -> tuple[list[Text], int]:
        """Exec's block laid out, and the slot column's width (the words'
        labels are never wider than WORD_SLOT_WIDTH, so they never widen it)."""
        snap = view.snapshot
        stack = snap.stack
        sp = view.registers.sp if view.registers is not None else None
        # The block's first row says "argc ◀ sp" while sp is there.
        key = (stack, snap.auxv_changed, snap.auxv_kernel, with_address, bool(view.stack_words),
               stack is not None and sp == stack.sp, room)
        if self._block is None or self._block[0] != key:
            rows = self.block_rows(view)
            slot_width = max([WORD_SLOT_WIDTH] + [cells[1].cell_len for cells in rows])
            self._block = (key, [line for row in rows for line in self._line(row, with_address, slot_width, room)],
                           slot_width)
        return self._block[1], self._block[2]

    @staticmethod
    def _line(row: tuple, with_address: bool, slot_width: int, room: int) -> list[Text]:
        """A slot's line; where it does not fit, the value goes under the
        slot and what the kernel gave under that (numbers are never cut:
        only a string shrinks, at its end)."""
        address, slot, value = row[:3]
        extra = row[3] if len(row) > 3 else None
        line = Text(no_wrap=True, overflow="crop")
        if with_address:
            line.append_text(address)
            line.pad_right(ADDRESS_WIDTH + 1 - line.cell_len)
        line.append_text(slot)
        line.pad_right(slot_width + 1 - slot.cell_len)
        start = line.cell_len
        whole = value.copy()
        if extra is not None:
            whole.append("  ")
            whole.append_text(extra)
        if start + whole.cell_len <= room:
            line.append_text(whole)
            return [line]
        indent = min(start, CONTINUATION)
        lead = value.plain.split(" ", 1)[0]  # a pointer or a value: the part never cut
        if start + value.cell_len <= room:
            line.append_text(value)
            lines = [line]
        elif room - start > len(lead) + 1:  # a list or a string shrinks at its end, on the slot's line
            line.append_text(shrink(value, room - start))
            lines = [line]
        else:
            line.rstrip()
            indent = max(0, min(indent, room - len(lead) - 2))
            lines = [line, Text(" " * indent) + shrink(value, room - indent)]
        if extra is not None:
            if indent + extra.cell_len > room:  # "✎ kernel gave 0x…" → "✎ 0x…"
                extra = Text.assemble(extra[:1], extra[extra.plain.rfind(" "):])
                indent = min(indent, max(0, room - extra.cell_len))
            lines.append(Text(" " * indent) + extra)
        return lines

    def word_rows(self, view: StopView, with_address: bool) -> list[tuple[Text, Text, Text]]:
        """The window of words around sp. Labels do not depend on sp (the
        window stays put while sp moves, and so do its rows): sp's row is
        marked, the words above it (free stack) are dim, and without the
        address column a row is labelled by its address's low bits."""
        sp = view.registers.sp if view.registers is not None else None
        rows = []
        for address, value in view.stack_words:
            if address == sp:
                slot = Text("sp ▶", style="bold green")
            else:
                slot = Text("" if with_address else f"…{address & 0xFFFF:04x}", style="dim")
            shown = Text(f"{value:#018x}", style="dim" if sp is not None and address < sp else "")
            rows.append((Text(f"{address:#x}", style="dim"), slot, shown))
        return rows

    def block_rows(self, view: StopView) -> list[tuple[Text, ...]]:
        """(address, slot, value) or, for a rewritten auxv entry, (…, what the kernel gave)."""
        rows: list[tuple[Text, ...]] = []

        def add(address, slot, value) -> None:
            cells = (Text(address, style="dim") if isinstance(address, str) else address,
                     Text(slot) if isinstance(slot, str) else slot,
                     Text(value) if isinstance(value, str) else value)
            rows.append(cells)
        snap = view.snapshot
        stack = snap.stack
        sp = view.registers.sp if view.registers is not None else None
        if stack is None:
            add("", "", Text("no initial stack (the process is gone?)", style="dim"))
            return rows
        if view.stack_words:
            add("", Text("exec's block", style="bold underline"), "")
        slot = Text("argc ◀ sp", style="bold green") if sp == stack.sp else "argc"
        add(f"{stack.sp:#x}", slot, str(stack.argc))
        for index, arg in enumerate(stack.argv):
            add(f"{arg.pointer_address:#x}", f"argv[{index}]", _string(arg.pointer, arg.text, "green"))
        add(f"{stack.argv_address + 8 * len(stack.argv):#x}", "argv end", "NULL")
        for index, env in enumerate(stack.envp):
            add(f"{env.pointer_address:#x}", f"envp[{index}]", _string(env.pointer, env.text, "dim green"))
        add(f"{stack.envp_address + 8 * len(stack.envp):#x}", "envp end", "NULL")
        kernel = {entry.type: entry for entry in snap.auxv_kernel}
        for entry in stack.auxv:
            address = f"{entry.address:#x}" if entry.address is not None else ""
            decoded = _volatile(self.app, f"auxv:{entry.name}", entry.decoded)
            if entry.type in snap.auxv_changed:
                before = kernel.get(entry.type)
                was = _volatile(self.app, f"auxv:{entry.name}", f"{before.value:#x}") \
                    if before is not None else "absent"
                rows.append((Text(address, style="dim"), Text(f"{entry.name} ✎", style=REWRITTEN),
                             Text(decoded, style=REWRITTEN), Text(f"✎ kernel gave {was}", style="yellow")))
            else:
                add(address, entry.name, Text(decoded))
        return rows
