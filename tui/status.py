"""Status line: where startup is (the current milestone, as a badge), the
program, pid or file, step ("?" after a continue), and the stop in plain
words. A crash turns it red and says what happened, first."""

from __future__ import annotations

import os

from rich.console import Group
from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import RichVisual, Visual, visualize
from textual.widget import _RenderCache
from textual.widgets import Static

from loaderdbg.session import Capability
from loaderdbg_tui.describe import step_text
from loaderdbg_tui.threads import current_thread
from loaderdbg_tui.view import StopView

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SEVERITY_CLASSES = {"error": "-crashed", "exited": "-exited", "warning": "-warning"}


class StatusLine(Static):
    """Two or three lines at the top of the screen."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._view: StopView | None = None
        self._busy: str | None = None
        self._note: str | None = None  # why a key did nothing, until the next stop
        self._frame = 0
        self._timer = None
        self.plain = ""
        self._shown: tuple[Text, Text] | None = None
        # part -> ((Text, width, rows, style), strips): a step changes the
        # first line (the step number); the detail under it (one row, or
        # two where the narrow layout lets it wrap) is drawn again only if
        # it changes, and only the changed rows are repainted.
        self._part_strips: dict[int, tuple[tuple, list[Strip]]] = {}

    def on_mount(self) -> None:
        view = getattr(self.app, "view", None)
        if view is not None:
            self.show_view(view)
        else:
            self.update(Text("starting…", style="dim"))

    def on_resize(self, event: events.Resize) -> None:
        # Whether the stop's words fit on the first row depends on the
        # width: a status line made anew (the screen recomposed across
        # the wide layout's width) had none yet when it first said them.
        self._render_status()

    def show_view(self, view: StopView) -> None:
        self._view = view
        self._note = None
        for cls in SEVERITY_CLASSES.values():
            self.remove_class(cls)
        severity_class = SEVERITY_CLASSES.get(view.words.severity)
        if severity_class:
            self.add_class(severity_class)
        self._render_status()

    def say(self, note: str | None) -> None:
        """Why a key or a command could not work here, on the first line
        (after the step) until the next stop."""
        if note != self._note:
            self._note = note
            self._render_status()

    def set_busy(self, label: str | None) -> None:
        if label == self._busy:
            return
        self._busy = label
        if label and self._timer is None:
            self._timer = self.set_interval(0.1, self._spin)
        elif not label and self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._render_status()

    def _spin(self) -> None:
        self._frame = (self._frame + 1) % len(SPINNER)
        self._render_status()

    def _render_status(self) -> None:
        view = self._view
        if view is None:
            return
        app = self.app
        where = Text()  # program, pid or file, step
        where.append(os.path.basename(view.program) or "?", style="bold")
        label = getattr(app, "target_label", None)
        if label and Capability.LIVE not in view.capabilities:
            # A recording: name the file (not the recorded pid); the CLI's
            # title is the whole command line, the file is its last word.
            where.append(f" · {os.path.basename(label.split()[-1])}")
        elif view.pid is not None:
            hook = getattr(app, "present_volatile", None)
            pid = hook("pid", str(view.pid)) if hook is not None else str(view.pid)
            where.append(f" · pid {pid}")
            numbered = current_thread(view.snapshot.threads)
            if numbered is not None:  # said only when there are several
                where.append(f" · thread {numbered[0]} (LWP {numbered[1].tid})")
        elif label:
            where.append(f" · {label}")
        where.append(" · step ")
        where.append(step_text(view.position, view.position_exact), style="bold")
        stage = view.stage
        headline = view.words.headline
        first = Text(no_wrap=True, overflow="crop")
        divergence = view.snapshot.divergence
        if divergence is not None:
            # The replay does not match its recording (ReplaySession.divergence): first, always.
            first.append(f" ⚠ REPLAY DIVERGES at step {divergence.step} ", style="bold white on red")
            first.append(" ")
        said = Text()  # what the stop is, after where
        if view.crashed:
            # What went wrong comes first: on 80 columns the rest may not fit.
            first.append(" ✖ CRASHED ", style="bold white on red")
            first.append(" ")
            said.append(headline.removeprefix("CRASHED: "), style="bold")
        else:
            if stage is not None:
                badge = stage.title if stage.here else f"after {stage.title}"
                first.append(f" {badge} ", style="bold black on cyan" if stage.here else "bold black on grey70")
                first.append(" ")
            said.append(headline, style="bold" if view.words.severity != "ok" else "")
        busy = Text(f"  {SPINNER[self._frame]} {self._busy}… (Ctrl+C interrupts)", style="bold yellow") \
            if self._busy else Text()
        if self._note:
            busy.append(f"  ⚠ {self._note}", style="bold yellow")
        second = Text(view.words.detail or "", style="" if view.crashed else "italic")
        room = self.content_size.width or 10**6
        order = (said, where) if view.crashed else (where, said)
        whole = first + order[0] + Text(" · ") + order[1] + busy
        if whole.cell_len <= room:
            first = whole
        else:
            # No number is cut (DESIGN.md §9): what the stop is moves to the
            # start of the rows under, which wrap at words.
            first = first + where + busy
            second = said + Text(": ") + second if second.plain else said
        self.plain = f"{first.plain}\n{second.plain}"
        if (first, second) != self._shown:
            previous, self._shown = self._shown, (first, second)
            # What Static.update keeps (render() stays the whole status),
            # without its repaint of every row.
            group = Group(first, second)
            self._Static__content = group
            self._Static__visual = visualize(self, group)
            width, height = self.size
            if height < len(self._shown):
                self.refresh()
                return
            if previous is None or previous[0] != first:
                self.refresh(Region(0, 0, width, 1))
            if previous is None or previous[1] != second:
                self.refresh(Region(0, 1, width, height - 1))

    def _render_content(self) -> None:
        """Static renders the Group of both parts; this renders each part
        the same way (the first line at this width, then the detail wrapped
        into the rows left) and keeps a part that did not change."""
        rows = self._shown
        width, height = self.size
        if rows is None or height < len(rows):
            super()._render_content()
            return
        style = self.visual_style
        strips = self._part(0, rows[0], width, 1, style) + self._part(1, rows[1], width, height - 1, style)
        self._render_cache = _RenderCache(self.size, strips)
        self._dirty_regions.clear()

    def _part(self, part: int, text: Text, width: int, height: int, style) -> list[Strip]:
        key = (text, width, height, style)
        known = self._part_strips.get(part)
        if known is not None and known[0] == key:
            return known[1]
        strips = list(Visual.to_strips(self, RichVisual(self, text), width, height, style))[:height]
        strips += [Strip.blank(width, style.rich_style)] * (height - len(strips))
        self._part_strips[part] = (key, strips)
        return strips
