"""Relocations tab: per object total/applied/pending/lazy with a progress
bar, and a filterable table of every relocation with its state.

While ld.so relocates, each step may flip one entry: the table is patched
cell by cell instead of rebuilt when the set of entries is unchanged."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from itertools import accumulate, chain, compress, islice, repeat
from operator import add, contains, is_, is_not, ne, or_, sub
from typing import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Input, Static

from loaderdbg.snapshot import ObjectRelocations, RelocationTable
from loaderdbg_tui.command_line import PaneInput
from loaderdbg_tui.describe import hex_short
from loaderdbg_tui.fit import Column, Layout, plan, shrink
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


UNDEFINED_WEAK = "nothing (weak)"


def _bound_text(binding) -> str:
    """object:symbol@version, or "nothing (weak)" for an undefined weak."""
    version = f"@{binding.version}" if binding.version else ""
    where = binding.object.rsplit("/", 1)[-1] if binding.object else None
    return f"{where}:{binding.symbol}{version}" if where else UNDEFINED_WEAK


def _bound_or_why_of(binding, reason: str | None) -> str:
    """What the slot binds to (object:symbol@version; "nothing" for an
    undefined weak), then why its state is what it is when that needs
    saying (every unknown says why)."""
    parts = []
    if binding is not None:
        parts.append(_bound_text(binding))
    if reason:
        parts.append(reason)
    return " — ".join(parts)


def _type_cell(type_name: str) -> str:
    return type_name.replace("R_X86_64_", "")


def _addend_cell(addend: int | None) -> str:
    return "" if addend is None else f"{addend:#x}"


def relocation_row(reloc) -> tuple[str, ...]:
    """A relocation's cells, in COLUMNS order."""
    return (reloc.object, f"{reloc.address:#x}", _type_cell(reloc.type_name), reloc.symbol or "",
            _addend_cell(reloc.addend), reloc.state, hex_short(reloc.current), hex_short(reloc.expected),
            _bound_or_why_of(reloc.binding, reloc.reason))


def _widest_number(cell: Callable[[int | None], str], numbers: Sequence) -> int:
    if len(numbers) > 1:
        try:  # in C when every value is a number (a None among them cannot be compared)
            return max(len(cell(max(numbers))), len(cell(min(numbers))))
        except TypeError:
            pass
    present = [number for number in numbers if number is not None]
    extremes = [max(present), min(present)] if present else []
    if len(present) < len(numbers):
        extremes.append(None)
    return max(map(len, map(cell, extremes)), default=0)


def _widest_text(cell: Callable[[str], str], texts: Sequence) -> int:
    return max(map(len, map(cell, set(texts))), default=0)


class ColumnWidths:
    """Each column's widest cell over a snapshot's RelocationTable, read by
    its columns (its rows are made only when read): a plain cell is one
    column's value formatted (its widest is that of its distinct values, or
    of the extremes of a number), and what a slot binds to is the same
    text for every slot bound to one definition (the engine hands out one
    Binding per definition: remembered here). An object's part of the table is measured once while
    it is the same part (a stop that writes no slot of the object hands it
    back: each part is the same instance from stop to stop while the
    object's slots do not change)."""

    def __init__(self) -> None:
        self._bound: dict[int, object] = {}  # id(binding) -> binding, for the bindings measured
        self._bound_widths: dict[int, int] = {}  # id(binding) -> its text's width
        self._parts: dict[int, tuple[ObjectRelocations, list[int]]] = {}  # id(part) -> (part, its widths)

    def of(self, relocations: RelocationTable) -> list[int]:
        known = self._parts
        measured = {}
        for part in relocations.per_object:
            hit = known.get(id(part))
            # A part kept in _parts is alive: no other part has its id.
            widths = hit[1] if hit is not None and hit[0] is part else self._of_part(part)
            measured[id(part)] = (part, widths)
        self._parts = measured  # only the current table's parts are kept
        return [max(column, default=0) for column in zip(*(widths for _, widths in measured.values()))] \
            or [0] * len(COLUMNS)

    def _of_part(self, part: ObjectRelocations) -> list[int]:
        values = part.column

        return [
            _widest_text(str, values("object")),
            _widest_number(lambda a: f"{a:#x}", values("address")),
            _widest_text(_type_cell, values("type_name")),
            _widest_text(lambda symbol: symbol or "", values("symbol")),
            _widest_number(_addend_cell, values("addend")),
            _widest_text(str, values("state")),
            _widest_number(hex_short, values("current")),
            _widest_number(hex_short, values("expected")),
            self._widest_bound_or_why(values("binding"), values("reason")),
        ]

    def _widest_bound_or_why(self, bindings: Sequence, reasons: Sequence) -> int:
        # A slot without a reason shows its binding alone ("" without one);
        # the few with a reason are measured one by one.
        without_reason = len(reasons) == reasons.count(None)  # nearly always
        alone = [binding for binding in (bindings if without_reason else compress(
            bindings, map(is_, reasons, repeat(None)))) if binding is not None]
        distinct = dict(zip(map(id, alone), alone))
        widths = self._bound_widths
        if len(widths) > BINDINGS_KEPT:
            widths.clear()
            self._bound.clear()
        # A binding kept in _bound is alive: no other object has its id.
        new = [distinct[key] for key in distinct if key not in widths]
        for binding in new:
            key = id(binding)
            self._bound[key] = binding
            widths[key] = len(_bound_text(binding))
        widest = max(map(widths.__getitem__, distinct), default=0)
        if without_reason:
            return widest
        for index in compress(range(len(reasons)), map(is_not, reasons, repeat(None))):
            widest = max(widest, len(_bound_or_why_of(bindings[index], reasons[index])))
        return widest


def search_text(reloc) -> str:
    """What a filter's words are looked for in."""
    return f"{reloc.object} {reloc.type_name} {reloc.symbol or ''} {reloc.state} {reloc.address:#x}".lower()


def _run_text_of(object: str, type_name: str, symbol: str | None, state: str) -> str:
    """search_text of a row up to its address: the same for the rows of a
    run. (The address's text is in lower case already, and lowering the
    rest alone changes no letter: what follows it starts with a space.)"""
    return f"{object} {type_name} {symbol or ''} {state}".lower()


def _address_text(address: int) -> str:
    """The end of search_text: the address."""
    return f"{address:#x}"


def matches(reloc, needle: str) -> bool:
    if not needle:
        return True
    haystack = search_text(reloc)
    return all(word in haystack for word in needle.lower().split())


# A word with another character than these is never within an address's
# "0x..." (the end of a search text, after a space): it is in a row's text
# if and only if it is in the text of the row's run.
HEX_CHARACTERS = frozenset("-0123456789abcdefx")
IN_EVERY_ADDRESS = frozenset(("0", "x", "0x"))
RUN_FIELDS = ("object", "type_name", "symbol", "state")


def looked_for(needle: str) -> tuple[str, ...]:
    """needle's words that a row's search text may lack, lowered: "0", "x"
    and "0x" are in every row's address. A row is kept when it holds them
    all."""
    return tuple(word for word in needle.lower().split() if word not in IN_EVERY_ADDRESS)


class RowRuns(Sequence[int]):
    """Ascending row indices kept as runs of rows in a row: lengths[j]
    rows from firsts[j]. Made in the time of its runs, not of its rows
    (the filter "l" keeps gdb's 150,950 rows, in some 20,000 runs)."""

    def __init__(self, firsts: list[int], lengths: list[int]) -> None:
        self._firsts = firsts
        self._lengths = lengths
        self._positions = list(accumulate(lengths))  # the rows kept up to each run's end

    def __len__(self) -> int:
        return self._positions[-1] if self._positions else 0

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        run = bisect_right(self._positions, index)
        return self._firsts[run] + index - (self._positions[run - 1] if run else 0)

    def __iter__(self):
        return chain.from_iterable(map(range, self._firsts, map(add, self._firsts, self._lengths)))


# Rows kept in fewer runs than this are kept as runs (RowRuns), found a run
# at a time; more, and one by one.
FEW_RUNS = 4096


def _rows_of_flags(flags: bytearray) -> Sequence[int]:
    """The indices of the rows flagged 1 in flags (a byte a row)."""
    runs = flags.count(b"\0\1") + (flags[:1] == b"\1")
    if runs > FEW_RUNS:
        return array("I", compress(range(len(flags)), flags))
    firsts, lengths = [], []
    first = flags.find(1)
    while first >= 0:
        end = flags.find(0, first)
        if end < 0:
            end = len(flags)
        firsts.append(first)
        lengths.append(end - first)
        first = flags.find(1, end)
    return RowRuns(firsts, lengths)


class RelocationSearch:
    """The filter. A row's search text is the text of its run (the rows in
    a row with the same object, type, symbol and state: gdb's 150,950 rows
    make some 20,000 runs), a space, and its address ("0x..."); a word,
    having no space, is in it when it is in one of the two. A word that
    cannot be in an address (HEX_CHARACTERS) is looked for in each run's
    text once and keeps whole runs; one that can is looked for in each
    row's address text besides. Runs and address texts are made ahead of
    need a slice at a time (prepare); a needle's matches are narrowed from
    those of a shorter one while it is typed, and remembered while it is
    deleted key by key."""

    def __init__(self) -> None:
        self._relocations = RelocationTable()
        self._columns: dict[str, Sequence] = {}
        self._addresses: list[str] = []  # the address text of _relocations[:len(_addresses)]
        self._run_firsts: list[int] = []  # the first row of each run, over _relocations[:_runs_made]
        self._run_texts: list[str] = []  # each run's _run_text_of
        self._runs_made = 0
        self._lengths: list[int] | None = None  # each run's rows, once asked for
        self._row_runs: list[int] | None = None  # each row's run, once asked for
        # By the words looked for (looked_for): the rows they keep, and the
        # runs they keep where they were searched by runs (else None).
        self._found: OrderedDict[tuple[str, ...], tuple[Sequence[int], list[int] | None]] = OrderedDict()

    def matching(self, relocations: RelocationTable, needle: str) -> Sequence[int] | None:
        """The ascending indices of the relocations needle keeps; None for
        all of them (a needle with no words)."""
        if not needle.lower().split():
            return None
        self._use(relocations)
        words = looked_for(needle)
        found = self._found.get(words)
        if found is not None:
            self._found.move_to_end(words)
            return found[0]
        if not words:
            kept = RowRuns([0], [len(relocations)]) if relocations else RowRuns([], [])
            self._remember(words, kept, None)
        elif any(HEX_CHARACTERS.issuperset(word) for word in words):
            kept = self._rows_matching(words)
            self._remember(words, kept, None)
        else:
            kept = self._runs_matching(words)
        return kept

    def _remember(self, words: tuple[str, ...], kept: Sequence[int], runs: list[int] | None) -> None:
        self._found[words] = (kept, runs)
        while len(self._found) > NEEDLES_KEPT:
            self._found.popitem(last=False)

    def _runs_matching(self, words: tuple[str, ...]) -> RowRuns:
        """The rows of the runs whose text holds every word (none of them
        can be within an address); remembered."""
        self._make_runs(len(self._relocations))
        texts = self._run_texts
        # From the runs of a remembered needle whose every word is within
        # one of ours (it kept all that ours keeps), the fewest such,
        # unless they are most of the runs.
        wider = [runs for other, (_, runs) in self._found.items()
                 if runs is not None and all(any(word in mine for mine in words) for word in other)]
        runs = min(wider, key=len, default=None)
        rest = words
        if runs is None or len(runs) > len(texts) // 2:
            runs = list(compress(range(len(texts)), map(contains, texts, repeat(words[0]))))
            rest = words[1:]
        for word in rest:
            runs = list(compress(runs, map(contains, map(texts.__getitem__, runs), repeat(word))))
        kept = RowRuns(list(map(self._run_firsts.__getitem__, runs)),
                       list(map(self._run_lengths().__getitem__, runs)))
        self._remember(words, kept, runs)
        return kept

    def _rows_matching(self, words: tuple[str, ...]) -> Sequence[int]:
        total = len(self._relocations)
        self._make_runs(total)
        self._make_addresses(total)
        addresses, run_texts = self._addresses, self._run_texts
        hex_words = [word for word in words if HEX_CHARACTERS.issuperset(word)]
        others = tuple(word for word in words if word not in hex_words)
        # kept: rows that keep every word looked for so far (bound), or
        # more: those of a remembered needle whose every word is within
        # one of ours, a place to start from.
        if others:
            kept, bound = self._runs_matching(others), True
        else:
            kept, bound = min([kept for other, (kept, _) in self._found.items()
                               if all(any(word in mine for mine in words) for word in other)],
                              key=len, default=None), False
        for word in hex_words:
            in_run = list(map(contains, run_texts, repeat(word)))
            if kept is None or len(kept) > total // 2:
                # Every address searched (quicker than picking most of them).
                hits = bytearray(map(contains, addresses, repeat(word)))
                for first, length in zip(compress(self._run_firsts, in_run), compress(self._run_lengths(), in_run)):
                    hits[first:first + length] = b"\1" * length
                kept = (array("I", compress(kept, map(hits.__getitem__, kept))) if bound and kept is not None
                        else _rows_of_flags(hits))
            else:
                row_runs = self._runs_of_rows()
                kept = array("I", compress(kept, map(or_, map(in_run.__getitem__, map(row_runs.__getitem__, kept)),
                                                     map(contains, map(addresses.__getitem__, kept), repeat(word)))))
            bound = True
        return kept

    def _run_lengths(self) -> list[int]:
        if self._lengths is None:
            firsts = self._run_firsts
            self._lengths = list(map(sub, chain(islice(firsts, 1, None), (self._runs_made,)), firsts))
        return self._lengths

    def _runs_of_rows(self) -> list[int]:
        """Each row's run."""
        if self._row_runs is None:
            self._row_runs = list(chain.from_iterable(map(repeat, range(len(self._run_firsts)),
                                                          self._run_lengths())))
        return self._row_runs

    def prepare(self, relocations: RelocationTable, count: int) -> bool:
        """Make the runs, then the address texts, of up to count more of
        relocations; True once they all have theirs."""
        self._use(relocations)
        total = len(relocations)
        runs = min(count, total - self._runs_made)
        self._make_runs(self._runs_made + runs)
        self._make_addresses(min(total, len(self._addresses) + count - runs))
        return len(self._addresses) == total

    def _make_addresses(self, end: int) -> None:
        """The address texts of _relocations[:end]."""
        start = len(self._addresses)
        if end > start:
            self._addresses.extend(map(_address_text, self._column("address")[start:end]))

    def _make_runs(self, end: int) -> None:
        """The runs of _relocations[:end]."""
        start = self._runs_made
        if end <= start:
            return
        columns = [self._column(name) for name in RUN_FIELDS]
        # A run starts where any of its fields differs from the row before.
        starts = None
        for values in columns:
            before = values[start - 1:end - 1] if start else [object(), *values[:end - 1]]
            differs = map(ne, values[start:end], before)
            starts = differs if starts is None else map(or_, starts, differs)
        new = list(compress(range(start, end), starts))
        objects, types, symbols, states = columns
        self._run_texts.extend(_run_text_of(objects[row], types[row], symbols[row], states[row]) for row in new)
        self._run_firsts.extend(new)
        self._runs_made = end
        self._lengths = self._row_runs = None

    def patched(self, before: RelocationTable, after: RelocationTable, changed: Sequence[int], needle: str,
                kept: Sequence[int] | None) -> None:
        """after is before but at the indices changed (a step wrote those
        slots), and needle keeps kept of them: after is searched from now
        on. Other needles' matches are forgotten (a text may read another
        state now)."""
        if self._relocations is before:
            self._relocations = after
            self._columns = {}
            addresses = self._addresses
            for index in changed:
                reloc = after[index]
                if index < len(addresses):
                    addresses[index] = _address_text(reloc.address)
                if index < self._runs_made:
                    self._patch_run(index, reloc)
        else:
            self._use(after)
        self._found.clear()  # runs may have been split: their numbers moved
        if needle.lower().split() and kept is not None:
            self._remember(looked_for(needle), kept, None)

    def _patch_run(self, row: int, reloc) -> None:
        """row reads reloc now: it is a run of its own unless its run's text
        is still its own, or the run before or after it reads the same (a
        step through ld.so's relocation of a run of pending slots then
        moves one run's edge, row by row, rather than making a run of each
        row)."""
        text = _run_text_of(reloc.object, reloc.type_name, reloc.symbol, reloc.state)
        firsts, texts = self._run_firsts, self._run_texts
        run = bisect_right(firsts, row) - 1
        if texts[run] == text:
            return
        self._lengths = self._row_runs = None
        end = firsts[run + 1] if run + 1 < len(firsts) else self._runs_made
        if row + 1 < end:  # the rows after it stay in a run with the old text
            firsts.insert(run + 1, row + 1)
            texts.insert(run + 1, texts[run])
        if row > firsts[run]:
            run += 1
            firsts.insert(run, row)
            texts.insert(run, text)
        else:
            texts[run] = text
        # row alone is run `run` now: joined to the run after it, then to
        # the one before it, where they read the same.
        if run + 1 < len(firsts) and texts[run + 1] == text:
            del firsts[run + 1], texts[run + 1]
        if run > 0 and texts[run - 1] == text:
            del firsts[run], texts[run]

    def _use(self, relocations: RelocationTable) -> None:
        if relocations is not self._relocations:
            self._relocations = relocations
            self._columns = {}
            self._addresses = []
            self._run_firsts = []
            self._run_texts = []
            self._runs_made = 0
            self._lengths = self._row_runs = None
            self._found.clear()

    def _column(self, name: str) -> Sequence:
        values = self._columns.get(name)
        if values is None:
            values = self._columns[name] = self._relocations.column(name)
        return values


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
        return self.layout.width


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
        self._widths_of: RelocationTable | None = None  # the relocations _widths were measured over
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

    def _draw_table(self, relocations: RelocationTable, needle: str) -> None:
        self._drawn_needle = needle
        self._shown = self._search.matching(relocations, needle)
        if relocations is not self._widths_of:
            # Columns as wide as their widest cell in the whole table, the
            # filter's or not (typing one does not move them); the hex ones
            # always fit a 64-bit value, so a slot being written does not
            # shift the table.
            self._widths_of = relocations
            measured = self._column_widths.of(relocations)
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

    def _show_rows(self, relocations: RelocationTable) -> None:
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

    def _patch(self, before: RelocationTable, after: RelocationTable, needle: str) -> bool:
        """Take the entries that changed (a step while ld.so relocates flips
        one or two of thousands; the lines on screen are made again if they
        are among them); False when the table must be built again: other
        entries, one that enters or leaves the filter, or a cell wider than
        its column."""
        if len(before) != len(after) or self._row_lines is None:
            return False
        changed = after.changed_rows(before)
        if changed is None or len(changed) > PATCH_LIMIT:
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
