"""Relocations tab: per object total/applied/pending/lazy with a progress
bar, and a filterable table of every relocation with its state.

While ld.so relocates, each step may flip one entry: the table is patched
cell by cell instead of rebuilt when the set of entries is unchanged."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static

from loaderdbg_tui.command_line import PaneInput
from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.fit import Column, Layout, plan, shrink
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.lines_view import LinesView
from loaderdbg_tui.view import StopView

STATE_STYLES = {"applied": "green", "pending": "yellow", "lazy": "cyan", "unknown": "dim"}
BAR_WIDTH = 20
MIN_BAR_WIDTH = 6
MIN_NAME_WIDTH = 10
COLUMNS = (Column("object", free=True, shrink="left", minimum=8), Column("slot"), Column("type"),
           Column("symbol", free=True), Column("addend"), Column("state"), Column("now"), Column("expected"),
           Column("bound to / why", free=True))
# Cells patched in place should fit (a wider one rebuilds the table): room
# for a user-space address and any state.
HEX_COLUMNS = {"now": 14, "expected": 14, "state": 7}
STATE_COLUMN = [c.name for c in COLUMNS].index("state")


SUMMARY_COLUMNS = ("applied", "pending", "lazy", "unknown", "total")


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> Text:
    """A bar of `width` cells, done/total of it filled."""
    filled = 0 if total <= 0 else width if done >= total else max(0, done * width // total)
    bar = Text()
    bar.append("━" * filled, style="bold green" if filled == width else "green")
    bar.append("━" * (width - filled), style="grey30")
    return bar


def summary_text(view: StopView, width: int = 1000) -> Text:
    """Per object: a progress bar and the totals, in aligned columns, in
    width cells: the counts whole, the bar and then the names shrink. Text,
    not a Rich Table: it is drawn again on each step that applies a
    relocation, and a Table with bars costs milliseconds to lay out."""
    objects = view.snapshot.objects
    if not objects:
        return Text("no objects mapped yet", style="dim")
    names = [obj.name + (" (ld.so)" if obj.is_ldso else "") for obj in objects]
    counts = [(o.totals.applied, o.totals.pending, o.totals.lazy, o.totals.unknown, o.totals.total)
              for o in objects]
    widths = [max(len(label), *(len(str(row[i])) for row in counts)) for i, label in enumerate(SUMMARY_COLUMNS)]
    numbers = sum(2 + w for w in widths)
    name_width = max(len("object"), *map(len, names))
    bar_width = max(MIN_BAR_WIDTH, min(BAR_WIDTH, width - numbers - 2 - name_width))
    name_width = max(MIN_NAME_WIDTH, min(name_width, width - numbers - 2 - bar_width))
    text = Text("object".ljust(name_width) + "  " + "progress"[:bar_width].ljust(bar_width), style="bold")
    for label, width in zip(SUMMARY_COLUMNS, widths):
        text.append("  " + label.rjust(width), style="bold")
    for obj, name, row in zip(objects, names, counts):
        text.append("\n")
        shown = shrink(name, name_width, "left")
        text.append_text(shown)
        text.append(" " * (name_width - shown.cell_len) + "  ")
        text.append_text(progress_bar(obj.totals.applied + obj.totals.lazy, obj.totals.total, bar_width))
        for value, width in zip(row, widths):
            text.append("  " + str(value).rjust(width))
    return text


def _bound_or_why(reloc) -> str:
    """What the slot binds to (object:symbol@version; "nothing" for an
    undefined weak), then why its state is what it is when that needs
    saying (every unknown says why)."""
    parts = []
    binding = reloc.binding
    if binding is not None:
        version = f"@{binding.version}" if binding.version else ""
        where = binding.object.rsplit("/", 1)[-1] if binding.object else None
        parts.append(f"{where}:{binding.symbol}{version}" if where else "nothing (weak)")
    if reloc.reason:
        parts.append(reloc.reason)
    return " — ".join(parts)


def matches(reloc, needle: str) -> bool:
    if not needle:
        return True
    haystack = f"{reloc.object} {reloc.type_name} {reloc.symbol or ''} {reloc.state} {reloc.address:#x}".lower()
    return all(word in haystack for word in needle.lower().split())


class RelocationsPane(ViewPane, Vertical):
    """Relocation progress per object, and the entries."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "relocations"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._widths: list[int] = []
        self._layout: Layout | None = None  # the columns' places at the table's width
        self._lines: dict[tuple[str, ...], list[Text]] = {}  # row -> its lines, for this layout
        self._rows: dict[int, tuple] = {}  # id(state) -> (state, its row): states are reused while unchanged
        self._drawn_needle: str | None = None
        self._line_of: list[int | None] = []  # relocation index -> its row in the table (None: filtered out)

    def compose(self) -> ComposeResult:
        yield Static(id="reloc-summary")
        yield PaneInput(placeholder="filter: object, type, symbol, state (e.g. libc pending)", id="reloc-filter")
        yield Static(id="reloc-header")
        yield LinesView(id="reloc-table")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "reloc-filter":
            event.stop()
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "reloc-filter":
            event.stop()

    @property
    def row_height(self) -> int:
        """Lines per relocation at the table's width (2 where a row wraps)."""
        return self._layout.height if self._layout is not None else 1

    @property
    def table(self) -> LinesView:
        return self.query_one("#reloc-table", LinesView)

    def draw(self, view: StopView, previous: StopView | None) -> None:
        if previous is None or previous.snapshot.objects != view.snapshot.objects:
            # Totals move on nearly every step while ld.so relocates; the
            # summary's height only with the number of objects (a layout of
            # the screen costs tens of milliseconds).
            same_rows = previous is not None and len(previous.snapshot.objects) == len(view.snapshot.objects)
            self.query_one("#reloc-summary", Static).update(summary_text(view, self._room()), layout=not same_rows)
        needle = self.query_one("#reloc-filter", Input).value
        relocations = view.snapshot.relocations
        # The engine hands back the same state objects while no slot changed,
        # so this comparison is mostly identity checks: a step that writes no
        # slot costs no table work at all.
        if previous is not None and needle == self._drawn_needle and self.table.lines:
            if previous.snapshot.relocations == relocations:
                return
            if self._patch(previous.snapshot.relocations, relocations, needle):
                return
        self._drawn_needle = needle
        rows_by_state = self._rows
        if len(rows_by_state) > 4 * len(relocations) + 1024:
            rows_by_state.clear()
        rows = []
        line_of: list[int | None] = []
        for reloc in relocations:
            if not matches(reloc, needle):
                line_of.append(None)
                continue
            hit = rows_by_state.get(id(reloc))
            if hit is None or hit[0] is not reloc:
                hit = rows_by_state[id(reloc)] = (reloc, self._row(reloc))
            line_of.append(len(rows))
            rows.append(hit[1])
        self._line_of = line_of
        # Columns as wide as their widest cell; the hex ones always fit a
        # 64-bit value, so a slot being written does not shift the table.
        widths = [max([len(column.name), HEX_COLUMNS.get(column.name, 0), *(len(row[i]) for row in rows)])
                  for i, column in enumerate(COLUMNS)]
        layout = plan(COLUMNS, widths, self._room())
        if widths != self._widths or layout != self._layout:
            self._widths, self._layout, self._lines = widths, layout, {}
            self.query_one("#reloc-header", Static).update(Text("\n").join(layout.header()),
                                                           layout=layout.height > 1)
        self.table.set_lines([line for row in rows for line in self._line_for(row)])
        total = len(view.snapshot.relocations)
        self.set_titles(subtitle=f"{len(rows)} of {total}" if needle else f"{total} entries")

    def _patch(self, before: tuple, after: tuple, needle: str) -> bool:
        """Patch the lines of the entries that changed (a step while ld.so
        relocates flips one or two of thousands); False when the table must
        be built again: other entries, one that enters or leaves the filter,
        or a cell wider than its column."""
        if len(before) != len(after) or len(self._line_of) != len(after):
            return False
        changes: dict[int, Text] = {}
        for index, (old, new) in enumerate(zip(before, after)):
            if old is new:
                continue
            line_index = self._line_of[index]
            if (line_index is None) != (not matches(new, needle)):
                return False
            if line_index is None:
                continue
            row = self._row(new)
            if any(len(cell) > width for cell, width in zip(row, self._widths)):
                return False
            self._rows[id(new)] = (new, row)
            first = line_index * self._layout.height
            for offset, line in enumerate(self._line_for(row)):
                changes[first + offset] = line
        self.table.replace_lines(changes)
        return True

    def _room(self) -> int:
        """The width the table is laid out at (the scrollbar's column kept free)."""
        table = self.table
        return max(1, (table.size.width or self.size.width) - table.styles.scrollbar_size_vertical)

    def _line_for(self, row: tuple[str, ...]) -> list[Text]:
        """row's lines in the current layout, made once."""
        lines = self._lines.get(row)
        if lines is None:
            cells = [Text(cell, style=STATE_STYLES.get(cell, "")) if index == STATE_COLUMN else cell
                     for index, cell in enumerate(row)]
            lines = self._lines[row] = self._layout.lines_of(cells)
        return lines

    @staticmethod
    def _row(reloc) -> tuple[str, ...]:
        addend = "" if reloc.addend is None else f"{reloc.addend:#x}"
        return (reloc.object, f"{reloc.address:#x}", reloc.type_name.replace("R_X86_64_", ""),
                reloc.symbol or "", addend, reloc.state, hex_short(reloc.current), hex_short(reloc.expected),
                _bound_or_why(reloc))
