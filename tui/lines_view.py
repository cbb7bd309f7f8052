"""LinesView: a scrollable list of Rich Text lines with a cursor row, drawn
line by line (Textual's line API). Replacing lines redraws only the ones
that changed, which is what stepping needs: the disassembly and the stack
change by a line or two per step, and a DataTable re-renders every visible
cell on any update."""

from __future__ import annotations

from typing import Callable, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip


# Rendered lines kept by Text identity, at least: enough for a few windows
# of code rendered ahead (render_ahead) besides the lines on screen.
LINE_STRIPS_KEPT = 1024


class LazyLines(Sequence[Text]):
    """Lines made when first asked for: a list too long to lay out whole
    (gdb's 150,000 relocations) of which LinesView makes only the lines on
    screen. make(index) must give the same Text for a line that did not
    change (the view keeps a line's rendering by its identity); width is
    the widest line's, known without making them."""

    def __init__(self, count: int, width: int, make: Callable[[int], Text]) -> None:
        self._count = count
        self.width = width
        self._make = make

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._make(i) for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        return self._make(index)


class LinesView(ScrollView, can_focus=True):
    """Lines of text, one of them the cursor (selected) line."""

    COMPONENT_CLASSES = {"lines-view--cursor"}
    DEFAULT_CSS = """
    LinesView {
        background: $surface;
    }
    LinesView > .lines-view--cursor {
        background: $block-cursor-blurred-background;
    }
    LinesView:focus > .lines-view--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    """
    BINDINGS = [
        Binding("up", "move(-1)", show=False),
        Binding("down", "move(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "move(-1000000)", show=False),
        Binding("end", "move(1000000)", show=False),
    ]

    def __init__(self, *, show_cursor: bool = True, stable_width: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.show_cursor = show_cursor
        self._cursor = 0
        # Never narrow the virtual width (no relayout when a long line goes).
        self.stable_width = stable_width
        self.lines: list[Text] | LazyLines = []
        self.keys: list[str | None] = []
        self._strips: dict[int, Strip] = {}
        # id(line) -> (line, (cursor, base style), unpadded strip, padding style)
        self._line_strips: dict[int, tuple] = {}
        self._base_style = None
        self._widths: dict[int, tuple[Text, int]] = {}
        self._width = 0

    # -- content ------------------------------------------------------------
    def set_lines(self, lines: Sequence[Text], keys: list[str | None] | None = None) -> None:
        """Show lines: a list, or LazyLines (made as they come into view)."""
        old = self.lines
        lazy = isinstance(lines, LazyLines)
        self.lines = lines if lazy else list(lines)
        self.keys = list(keys) if keys is not None else [None] * len(lines)
        width = lines.width if lazy else max(map(self._cell_len, self.lines), default=0)
        if self.stable_width:
            width = max(width, self._width)
        resized = len(old) != len(self.lines) or width != self._width
        if resized:
            self._strips.clear()
            self._width = width
            self._set_virtual_size(Size(width, len(self.lines)))
        if resized and self.scroll_offset.x:
            self.refresh()  # scrolled sideways: the padding may show
            self._clamp_cursor()
            return
        # Repaint only the visible lines that changed: a line that stayed
        # (the same Text) looks the same whatever the new count or width
        # (strips are padded past the view), and a full repaint of a pane
        # costs milliseconds of Textual's per-line work.
        scroll_y = self.scroll_offset.y
        height = self.size.height
        changed = []
        for index in range(scroll_y, scroll_y + height):
            before = old[index] if index < len(old) else None
            after = self.lines[index] if index < len(self.lines) else None
            if before is after:
                continue
            if before is not None and after is not None and before == after:
                continue
            self._strips.pop(index, None)
            changed.append(index)
        if len(changed) > height // 2:
            self.refresh()  # one region instead of many (each costs Textual ~50 µs)
        else:
            for index in changed:
                self.refresh_lines(index)
        if not resized:
            # Lines out of view drop their strips too (they may come into view).
            for index in [i for i in self._strips if not scroll_y <= i < scroll_y + height]:
                if old[index] is not self.lines[index]:
                    del self._strips[index]
        self._clamp_cursor()

    def replace_lines(self, changes: dict[int, Text]) -> None:
        """Replace some lines in place, the count unchanged: for a long list
        where a step changes a few (set_lines goes over every line)."""
        width = self._width
        for index, line in changes.items():
            self.lines[index] = line
            self._strips.pop(index, None)
            width = max(width, self._cell_len(line))
        if width != self._width:
            self._width = width
            self._strips.clear()
            self._set_virtual_size(Size(width, len(self.lines)))
            self.refresh()
            return
        scroll_y = self.scroll_offset.y
        for index in changes:
            if scroll_y <= index < scroll_y + self.size.height:
                self.refresh_lines(index)

    def _cell_len(self, line: Text) -> int:
        """line.cell_len, remembered per Text (it measures the joined text
        again on each call, and most lines are the same from step to step)."""
        known = self._widths.get(id(line))
        if known is not None and known[0] is line:
            return known[1]
        if len(self._widths) > self._kept():
            self._widths.clear()
        width = line.cell_len
        self._widths[id(line)] = (line, width)
        return width

    def _kept(self) -> int:
        """How many lines' renderings and widths to keep: a few for each
        line of a list, the ones near the screen of LazyLines."""
        if isinstance(self.lines, LazyLines):
            return LINE_STRIPS_KEPT
        return max(4 * len(self.lines) + 256, LINE_STRIPS_KEPT)

    def _clamp_cursor(self) -> None:
        if self.cursor >= len(self.lines):
            self.cursor = max(0, len(self.lines) - 1)

    def _set_virtual_size(self, size: Size) -> None:
        """Set the scrollable size. Widget.virtual_size is a layout reactive:
        each change relayouts the whole screen (tens of milliseconds, and a
        second frame). A new listing only changes the line count or width by
        a little, which moves a scrollbar thumb and nothing else; so unless a
        scrollbar appears or goes, or the widget sizes itself from its
        content, update the scrollbars in place and skip the layout."""
        old = self.virtual_size
        if old == size:
            return
        if not self._layout_free(old, size):
            self.virtual_size = size
            return
        self.set_reactive(LinesView.virtual_size, size)
        # Textual's _scroll_update, for the scrollbar whose dimension changed
        # only (a scrollbar repaints its whole length).
        width, height = self.container_size
        if size.height != old.height and self.show_vertical_scrollbar and self.styles.scrollbar_size_vertical:
            bar = self.vertical_scrollbar
            bar.window_virtual_size = size.height
            bar.window_size = height - self.scrollbar_size_horizontal
            bar.refresh()
        if size.width != old.width and self.show_horizontal_scrollbar and self.styles.scrollbar_size_horizontal:
            bar = self.horizontal_scrollbar
            bar.window_virtual_size = size.width
            bar.window_size = width - self.scrollbar_size_vertical
            bar.refresh()
        self.scroll_x = self.validate_scroll_x(self.scroll_x)
        self.scroll_y = self.validate_scroll_y(self.scroll_y)

    def _layout_free(self, old: Size, new: Size) -> bool:
        if not self.is_mounted or not self.container_size:
            return False
        styles = self.styles
        if (styles.width is not None and styles.width.is_auto) or (
                styles.height is not None and styles.height.is_auto):
            return False
        width, height = self.container_size
        checks = (
            (styles.overflow_x, old.width, new.width, width, styles.scrollbar_size_vertical),
            (styles.overflow_y, old.height, new.height, height, styles.scrollbar_size_horizontal),
        )
        for overflow, before, after, room, other_bar in checks:
            if overflow != "auto":
                continue  # hidden or scroll: the scrollbar does not depend on the size
            # Textual shows a scrollbar when the content exceeds the room,
            # or the room left by the other scrollbar: same side of both.
            for limit in (room, room - other_bar):
                if (before > limit) != (after > limit):
                    return False
        return True

    @property
    def cursor_key(self) -> str | None:
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    def move_to(self, index: int, *, center: bool = False) -> None:
        """Put the cursor on line index and scroll it into view."""
        self.cursor = max(0, min(index, len(self.lines) - 1))
        self._scroll_to_cursor(center=center)

    # -- cursor -------------------------------------------------------------------
    @property
    def cursor(self) -> int:
        return self._cursor

    @cursor.setter
    def cursor(self, new: int) -> None:
        """A plain property, not a reactive: it is set on every step, and
        only the two lines it moves between are repainted."""
        old, self._cursor = self._cursor, new
        scroll_y = self.scroll_offset.y
        for index in (old, new):
            self._strips.pop(index, None)
            if scroll_y <= index < scroll_y + self.size.height:
                self.refresh_lines(index)  # refresh_lines takes the line's index, not its row

    def _scroll_to_cursor(self, *, center: bool = False) -> None:
        top = self._top_for_cursor(self.cursor, center=center)
        if top is not None and top != self.scroll_offset.y:
            self.scroll_to(y=top, animate=False, immediate=True)

    def _top_for_cursor(self, cursor: int, *, center: bool) -> int | None:
        """The first visible line once cursor is in view."""
        height = self.scrollable_content_region.height or self.size.height
        top = self.scroll_offset.y
        if height <= 0:
            return None
        if center and not top <= cursor < top + height:
            return max(0, cursor - height // 3)
        if cursor < top:
            return cursor
        if cursor >= top + height:
            return cursor - height + 1
        return top

    def action_move(self, delta: int) -> None:
        if self.lines:
            self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.size.height - 1))

    def on_click(self, event: events.Click) -> None:
        index = self.scroll_offset.y + event.y
        if 0 <= index < len(self.lines):
            self.cursor = index

    # -- drawing ------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style = None
        self._strips.clear()
        self._line_strips.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        base = self._base_style
        if base is None:
            # rich_style walks the ancestors (a good part of a line's cost):
            # once per style update, not per line.
            base = self._base_style = self.rich_style
        if index >= len(self.lines):
            return Strip.blank(width, base)
        strip = self._strips.get(index)
        if strip is None:
            cursor = self.show_cursor and index == self.cursor
            strip, style = self._line_strip(self.lines[index], cursor, base)
            strip = strip.extend_cell_length(max(self._width, width), style)
            if len(self._strips) > self._kept():
                self._strips.clear()  # scrolled through a long list: keep what is near
            self._strips[index] = strip
        return strip.crop(scroll_x, scroll_x + width)

    def _line_strip(self, line: Text, cursor: bool, base: Style) -> tuple[Strip, Style]:
        """line rendered (unpadded), and the style to pad it with. A line
        that only moved (a listing window shifted by a few instructions:
        the pane hands over the same Text objects) keeps its strip:
        rendering Text is most of a frame's cost."""
        known = self._line_strips.get(id(line))
        if known is not None and known[0] is line and known[1] == (cursor, base):
            return known[2], known[3]
        segments = list(line.render(self.app.console, end=""))
        style = base
        if cursor:
            style = base + self.get_component_rich_style("lines-view--cursor")
            segments = list(Segment.apply_style(segments, base, self.get_component_rich_style(
                "lines-view--cursor")))
        else:
            segments = list(Segment.apply_style(segments, base))
        strip = Strip(segments, line.cell_len)
        if len(self._line_strips) > self._kept():
            self._line_strips.clear()
        self._line_strips[id(line)] = (line, (cursor, base), strip, style)
        return strip, style

    def render_ahead(self, lines: list[Text], cursor: int) -> None:
        """Render now the visible part of lines that may be set next with
        the cursor on line cursor (and scrolled there as move_to would), so
        that the frame which shows them only copies strips."""
        base = self._base_style
        top = self._top_for_cursor(cursor, center=True)
        if base is None or top is None or not self.is_mounted:
            return
        height = self.scrollable_content_region.height or self.size.height
        for index in range(top, min(len(lines), top + height)):
            self._line_strip(lines[index], self.show_cursor and index == cursor, base)
        for line in lines:
            self._cell_len(line)

    def on_resize(self, event: events.Resize) -> None:
        self._strips.clear()
        self._line_strips.clear()

