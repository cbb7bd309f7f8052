"""Relocations tab: per object total/applied/pending/lazy with a progress
bar, and a filterable table of every relocation with its state.

While ld.so relocates, each step may flip one entry: the table is patched
cell by cell instead of rebuilt when the set of entries is unchanged."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import OrderedDict
from functools import partial
from itertools import compress, repeat
from operator import attrgetter, contains, is_, is_not
from typing import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Input, Static

from loaderdbg_tui.command_line import PaneInput
from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.fit import GAP, INDENT, Column, Layout, plan, shrink
from loaderdbg_tui.pane import ViewPane
from loaderdbg_tui.lines_view import LazyLines, LinesView
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
# Rows (and their lines) kept made: those near the screen, many times over.
ROWS_KEPT = 8192
BINDINGS_KEPT = 1 << 16
# Needles whose matches are kept: a filter typed, then deleted key by key.
NEEDLES_KEPT = 64
# The filter's search texts are made ahead in slices of this many relocations
# (a few milliseconds each), this many seconds apart, starting once the
# table's redraw is on screen.
SEARCH_SLICE = 10000
SEARCH_PAUSE = 0.005
SEARCH_START = 0.3
# More entries changed than this at one stop, and the table is made anew
# rather than patched row by row.
PATCH_LIMIT = 2048


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


def _bound_text(binding) -> str:
    """object:symbol@version, or "nothing (weak)" for an undefined weak."""
    version = f"@{binding.version}" if binding.version else ""
    where = binding.object.rsplit("/", 1)[-1] if binding.object else None
    return f"{where}:{binding.symbol}{version}" if where else "nothing (weak)"


def _bound_or_why(reloc) -> str:
    """What the slot binds to (object:symbol@version; "nothing" for an
    undefined weak), then why its state is what it is when that needs
    saying (every unknown says why)."""
    parts = []
    if reloc.binding is not None:
        parts.append(_bound_text(reloc.binding))
    if reloc.reason:
        parts.append(reloc.reason)
    return " — ".join(parts)


def _type_cell(type_name: str) -> str:
    return type_name.replace("R_X86_64_", "")


def _addend_cell(addend: int | None) -> str:
    return "" if addend is None else f"{addend:#x}"


def relocation_row(reloc) -> tuple[str, ...]:
    """A relocation's cells, in COLUMNS order."""
    return (reloc.object, f"{reloc.address:#x}", _type_cell(reloc.type_name), reloc.symbol or "",
            _addend_cell(reloc.addend), reloc.state, hex_short(reloc.current), hex_short(reloc.expected),
            _bound_or_why(reloc))


class ColumnWidths:
    """Each column's widest cell over a whole table of relocations, without
    making its rows: a plain cell is one attribute formatted (its widest is
    that of its distinct values, or of the extremes of a number), and what a
    slot binds to is the same text for every slot bound to one definition
    (the engine hands out one Binding per definition: remembered here)."""

    def __init__(self) -> None:
        self._bound: dict[int, object] = {}  # id(binding) -> binding, for the bindings measured
        self._bound_widths: dict[int, int] = {}  # id(binding) -> its text's width

    def of(self, relocations: Sequence) -> list[int]:
        def values(name: str) -> list:
            return list(map(attrgetter(name), relocations))

        def widest_number(cell: Callable[[int | None], str], numbers: list) -> int:
            present = list(filter(partial(is_not, None), numbers))
            extremes = [max(present), min(present)] if present else []
            if len(present) < len(numbers):
                extremes.append(None)
            return max(map(len, map(cell, extremes)), default=0)

        def widest_text(cell: Callable[[str], str], texts: list) -> int:
            return max(map(len, map(cell, set(texts))), default=0)

        reasons = values("reason")
        bindings = values("binding")
        return [
            widest_text(str, values("object")),
            widest_number(lambda a: f"{a:#x}", values("address")),
            widest_text(_type_cell, values("type_name")),
            widest_text(lambda symbol: symbol or "", values("symbol")),
            widest_number(_addend_cell, values("addend")),
            widest_text(str, values("state")),
            widest_number(hex_short, values("current")),
            widest_number(hex_short, values("expected")),
            self._widest_bound_or_why(relocations, bindings, reasons),
        ]

    def _widest_bound_or_why(self, relocations: Sequence, bindings: list, reasons: list) -> int:
        # A slot without a reason shows its binding alone ("" without one);
        # the few with a reason are measured one by one.
        alone = list(filter(None, compress(bindings, map(is_, reasons, repeat(None)))))
        distinct = dict(zip(map(id, alone), alone))
        widths = self._bound_widths
        if len(widths) > BINDINGS_KEPT:
            widths.clear()
            self._bound.clear()
        # A binding kept in _bound is alive: no other object has its id.
        for key in distinct.keys() - widths.keys():
            binding = self._bound[key] = distinct[key]
            widths[key] = len(_bound_text(binding))
        widest = max(map(widths.__getitem__, distinct), default=0)
        for reloc in compress(relocations, map(is_not, reasons, repeat(None))):
            widest = max(widest, len(_bound_or_why(reloc)))
        return widest


def search_text(reloc) -> str:
    """What a filter's words are looked for in."""
    return f"{reloc.object} {reloc.type_name} {reloc.symbol or ''} {reloc.state} {reloc.address:#x}".lower()


def matches(reloc, needle: str) -> bool:
    if not needle:
        return True
    haystack = search_text(reloc)
    return all(word in haystack for word in needle.lower().split())


class RelocationSearch:
    """The filter, over plain strings: each relocation's search text is
    made once per table (ahead of need, a slice at a time: prepare), a
    needle's matches are the indices of the relocations it keeps, narrowed
    from those of a shorter needle while it is typed, and remembered while
    it is deleted key by key."""

    def __init__(self) -> None:
        self._relocations: Sequence = ()
        self._texts: list[str] = []  # search_text of _relocations[:len(_texts)]
        self._found: OrderedDict[tuple[str, ...], array] = OrderedDict()

    def matching(self, relocations: Sequence, needle: str) -> Sequence[int] | None:
        """The ascending indices of the relocations needle keeps; None for
        all of them (a needle with no words)."""
        words = tuple(needle.lower().split())
        if not words:
            return None
        self._use(relocations)
        found = self._found.get(words)
        if found is not None:
            self._found.move_to_end(words)
            return found
        texts = self._search_texts()
        # Every word of a remembered needle within one of ours: it kept all
        # that ours keeps (and maybe more). From the fewest such, unless they
        # are most of the table: a scan of every text is quicker then.
        wider = [kept for other, kept in self._found.items()
                 if all(any(word in mine for mine in words) for word in other)]
        kept = min(wider, key=len, default=None)
        rest = words
        if kept is None or len(kept) > len(texts) // 2:
            kept = array("I", compress(range(len(texts)), map(contains, texts, repeat(words[0]))))
            rest = words[1:]
        for word in rest:
            kept = array("I", compress(kept, map(contains, map(texts.__getitem__, kept), repeat(word))))
        self._found[words] = kept
        while len(self._found) > NEEDLES_KEPT:
            self._found.popitem(last=False)
        return kept

    def prepare(self, relocations: Sequence, count: int) -> bool:
        """Make the search texts of up to count more of relocations; True
        once they all have theirs."""
        self._use(relocations)
        done = len(self._texts)
        self._texts.extend(map(search_text, relocations[done:done + count]))
        return len(self._texts) == len(relocations)

    def patched(self, before: Sequence, after: Sequence, changed: Sequence[int], needle: str,
                kept: Sequence[int] | None) -> None:
        """after is before but at the indices changed (a step wrote those
        slots), and needle keeps kept of them: after is searched from now
        on. Other needles' matches are forgotten (a text may read another
        state now)."""
        if self._relocations is before:
            texts = self._texts
            for index in changed:
                if index < len(texts):
                    texts[index] = search_text(after[index])
        else:
            self._texts = []
        self._relocations = after
        self._found.clear()
        words = tuple(needle.lower().split())
        if words and kept is not None:
            self._found[words] = kept

    def _use(self, relocations: Sequence) -> None:
        if relocations is not self._relocations:
            self._relocations = relocations
            self._texts = []
            self._found.clear()

    def _search_texts(self) -> list[str]:
        self.prepare(self._relocations, len(self._relocations))
        return self._texts


class _RowLines:
    """Rows' lines at one layout, each made once: the same Text for an
    unchanged row keeps its rendering in the LinesView."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._lines: dict[tuple[str, ...], list[Text]] = {}

    def of(self, row: tuple[str, ...]) -> list[Text]:
        lines = self._lines.get(row)
        if lines is None:
            if len(self._lines) > ROWS_KEPT:
                self._lines.clear()
            cells = [Text(cell, style=STATE_STYLES.get(cell, "")) if index == STATE_COLUMN else cell
                     for index, cell in enumerate(row)]
            lines = self._lines[row] = self.layout.lines_of(cells)
        return lines

    @property
    def width(self) -> int:
        """The widest a row's line can be: its cells padded to their columns."""
        return max(INDENT * bool(number) + sum(width for _, width in slots) + GAP * (len(slots) - 1)
                   for number, slots in enumerate(self.layout.lines))


class RelocationsPane(ViewPane, Vertical):
    """Relocation progress per object, and the entries: a table of tens of
    thousands (gdb has 150,950) of which only the rows on screen are laid
    out (LazyLines); a filter narrows a list of indices."""

    DEFAULT_CLASSES = "pane"
    BORDER_TITLE = "relocations"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._column_widths = ColumnWidths()
        self._search = RelocationSearch()
        self._widths: list[int] = []
        self._widths_of: Sequence | None = None  # the relocations _widths were measured over
        self._row_lines: _RowLines | None = None  # the current layout, and the lines made at it
        self._rows: dict[int, tuple] = {}  # id(state) -> (state, its row): states are reused while unchanged
        self._drawn_needle: str | None = None
        self._shown: Sequence[int] | None = None  # indices of the relocations shown (None: all)
        self._search_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="reloc-summary")
        yield PaneInput(placeholder="filter: object, type, symbol, state (e.g. libc pending)", id="reloc-filter",
                        on_change=self._filter_changed)
        yield Static(id="reloc-header")
        yield LinesView(id="reloc-table")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "reloc-filter":
            event.stop()  # drawn already, by _filter_changed

    def _filter_changed(self, needle: str) -> None:
        view = self.drawn_view
        if view is None or not self.is_shown():
            self.redraw()
        else:
            # The table alone: the summary does not depend on the filter
            # (and an update of it costs a layout of the screen).
            self._draw_table(view.snapshot.relocations, needle)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "reloc-filter":
            event.stop()

    @property
    def row_height(self) -> int:
        """Lines per relocation at the table's width (2 where a row wraps)."""
        return self._row_lines.layout.height if self._row_lines is not None else 1

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
        self._draw_table(relocations, needle)

    def _draw_table(self, relocations: Sequence, needle: str) -> None:
        self._drawn_needle = needle
        self._shown = self._search.matching(relocations, needle)
        if relocations is not self._widths_of:
            # Columns as wide as their widest cell in the whole table, the
            # filter's or not (typing one does not move them); the hex ones
            # always fit a 64-bit value, so a slot being written does not
            # shift the table.
            self._widths_of = relocations
            measured = self._column_widths.of(relocations) if relocations else [0] * len(COLUMNS)
            self._widths = [max(len(column.name), HEX_COLUMNS.get(column.name, 0), width)
                            for column, width in zip(COLUMNS, measured)]
        layout = plan(COLUMNS, self._widths, self._room())
        if self._row_lines is None or layout != self._row_lines.layout:
            self._row_lines = _RowLines(layout)
            self.query_one("#reloc-header", Static).update(Text("\n").join(layout.header()),
                                                           layout=layout.height > 1)
        self._show_rows(relocations)
        self._prepare_search()
        total = len(relocations)
        shown = total if self._shown is None else len(self._shown)
        self.set_titles(subtitle=f"{shown} of {total}" if needle else f"{total} entries")

    def _prepare_search(self) -> None:
        """Make the filter's search texts of the relocations shown, a slice
        at a time between frames, so that the first key typed into the
        filter does not wait for all of them."""
        if self._search_timer is not None:
            self._search_timer.stop()
            self._search_timer = None
        relocations = self._widths_of
        if self._search.prepare(relocations, 0):
            return  # made already (a step patched them)

        def slice_of_them() -> None:
            self._search_timer = None
            if relocations is self._widths_of and self.is_shown():
                if not self._search.prepare(relocations, SEARCH_SLICE):
                    self._search_timer = self.set_timer(SEARCH_PAUSE, slice_of_them)
        self._search_timer = self.set_timer(SEARCH_START, slice_of_them)

    def _show_rows(self, relocations: Sequence) -> None:
        """The table's lines: those of the relocations shown, made as they
        come on screen."""
        shown = self._shown
        row_lines = self._row_lines
        height = row_lines.layout.height
        row_of = self._row_of

        def line(index: int) -> Text:
            number, offset = divmod(index, height)
            return row_lines.of(row_of(relocations[number if shown is None else shown[number]]))[offset]

        count = len(relocations) if shown is None else len(shown)
        self.table.set_lines(LazyLines(count * height, row_lines.width if count else 0, line))

    def _patch(self, before: tuple, after: tuple, needle: str) -> bool:
        """Take the entries that changed (a step while ld.so relocates flips
        one or two of thousands; the lines on screen are made again if they
        are among them); False when the table must be built again: other
        entries, one that enters or leaves the filter, or a cell wider than
        its column."""
        if len(before) != len(after) or self._row_lines is None:
            return False
        changed = list(compress(range(len(after)), map(is_not, before, after)))
        if len(changed) > PATCH_LIMIT:
            return False  # a continue that relocated a library: measuring the table anew is quicker
        words = needle.lower().split()
        for index in changed:
            new = after[index]
            row = self._row_of(new)
            if any(len(cell) > width for cell, width in zip(row, self._widths)):
                return False
            if words:
                shown = self._shown
                position = bisect_left(shown, index)
                was_shown = position < len(shown) and shown[position] == index
                if was_shown != matches(new, needle):
                    return False
        self._search.patched(before, after, changed, needle, self._shown)
        self._widths_of = after  # the widths still hold: every new cell fits
        self._show_rows(after)
        self._prepare_search()
        return True

    def _room(self) -> int:
        """The width the table is laid out at (the scrollbar's column kept free)."""
        table = self.table
        return max(1, (table.size.width or self.size.width) - table.styles.scrollbar_size_vertical)

    def _row_of(self, reloc) -> tuple[str, ...]:
        """reloc's cells, made once per state."""
        hit = self._rows.get(id(reloc))
        if hit is None or hit[0] is not reloc:
            if len(self._rows) > ROWS_KEPT:
                self._rows.clear()
            hit = self._rows[id(reloc)] = (reloc, relocation_row(reloc))
        return hit[1]
