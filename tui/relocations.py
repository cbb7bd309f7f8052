"""Relocations tab: per object total/applied/pending/lazy with a progress
bar, and a filterable table of every relocation with its state.

While ld.so relocates, each step may flip one entry: the table is patched
cell by cell instead of rebuilt when the set of entries is unchanged."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static

from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.lines_view import LinesView
from loaderdbg_tui.view import StopView

STATE_STYLES = {"applied": "green", "pending": "yellow", "lazy": "cyan", "unknown": "dim"}
BAR_WIDTH = 20
COLUMNS = ("object", "slot", "type", "symbol", "addend", "state", "now", "expected")
# Cells patched in place must fit: room for any 64-bit value and any state.
HEX_COLUMNS = {"now": 18, "expected": 18, "state": 7}
STATE_COLUMN = COLUMNS.index("state")


SUMMARY_COLUMNS = ("applied", "pending", "lazy", "unknown", "total")


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> Text:
    """A bar of `width` cells, done/total of it filled."""
    filled = 0 if total <= 0 else width if done >= total else max(0, done * width // total)
    bar = Text()
    bar.append("━" * filled, style="bold green" if filled == width else "green")
    bar.append("━" * (width - filled), style="grey30")
    return bar


def summary_text(view: StopView) -> Text:
    """Per object: a progress bar and the totals, in aligned columns. Text,
    not a Rich Table: it is drawn again on each step that applies a
    relocation, and a Table with bars costs milliseconds to lay out."""
    objects = view.snapshot.objects
    if not objects:
        return Text("no objects mapped yet", style="dim")
    names = [obj.name + (" (ld.so)" if obj.is_ldso else "") for obj in objects]
    counts = [(o.totals.applied, o.totals.pending, o.totals.lazy, o.totals.unknown, o.totals.total)
              for o in objects]
    name_width = max(len("object"), *map(len, names))
    widths = [max(len(label), *(len(str(row[i])) for row in counts)) for i, label in enumerate(SUMMARY_COLUMNS)]
    text = Text("object".ljust(name_width) + "  " + "progress".ljust(BAR_WIDTH), style="bold")
    for label, width in zip(SUMMARY_COLUMNS, widths):
        text.append("  " + label.rjust(width), style="bold")
    for obj, name, row in zip(objects, names, counts):
        text.append("\n" + name.ljust(name_width) + "  ")
        text.append_text(progress_bar(obj.totals.applied + obj.totals.lazy, obj.totals.total))
        for value, width in zip(row, widths):
            text.append("  " + str(value).rjust(width))
    return text


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
        self._lines: dict[tuple[str, ...], Text] = {}  # row -> its line, for these widths
        self._rows: dict[int, tuple] = {}  # id(state) -> (state, its row): states are reused while unchanged
        self._drawn_needle: str | None = None
        self._line_of: list[int | None] = []  # relocation index -> its line in the table (None: filtered out)

    def compose(self) -> ComposeResult:
        yield Static(id="reloc-summary")
        yield Input(placeholder="filter: object, type, symbol, state (e.g. libc pending)", id="reloc-filter")
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
    def table(self) -> LinesView:
        return self.query_one("#reloc-table", LinesView)

    def draw(self, view: StopView, previous: StopView | None) -> None:
        if previous is None or previous.snapshot.objects != view.snapshot.objects:
            # Totals move on nearly every step while ld.so relocates; the
            # summary's height only with the number of objects (a layout of
            # the screen costs tens of milliseconds).
            same_rows = previous is not None and len(previous.snapshot.objects) == len(view.snapshot.objects)
            self.query_one("#reloc-summary", Static).update(summary_text(view), layout=not same_rows)
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
        widths = [max([len(label), HEX_COLUMNS.get(label, 0), *(len(row[i]) for row in rows)])
                  for i, label in enumerate(COLUMNS)]
        header = Text("  ".join(label.ljust(width) for label, width in zip(COLUMNS, widths)), style="bold")
        self.query_one("#reloc-header", Static).update(header, layout=False)
        if widths != self._widths:
            self._widths, self._lines = widths, {}
        self.table.set_lines([self._line_for(row) for row in rows])
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
            changes[line_index] = self._line_for(row)
        self.table.replace_lines(changes)
        return True

    def _line_for(self, row: tuple[str, ...]) -> Text:
        """row's line at the current column widths, made once."""
        line = self._lines.get(row)
        if line is None:
            line = self._lines[row] = self._line(row, self._widths)
        return line

    @staticmethod
    def _line(row: tuple[str, ...], widths: list[int]) -> Text:
        line = Text()
        for index, (cell, width) in enumerate(zip(row, widths)):
            if index:
                line.append("  ")
            line.append(cell.ljust(width), style=STATE_STYLES.get(cell, "") if index == STATE_COLUMN else "")
        return line

    @staticmethod
    def _row(reloc) -> tuple[str, ...]:
        addend = "" if reloc.addend is None else f"{reloc.addend:#x}"
        return (reloc.object, f"{reloc.address:#x}", reloc.type_name.replace("R_X86_64_", ""),
                reloc.symbol or "", addend, reloc.state, hex_short(reloc.current), hex_short(reloc.expected))
