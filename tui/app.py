"""LoaderdbgApp: the Textual front end on one Session (live or replayed).

Threading (DESIGN.md §8): session calls block while the engine's tracer
thread works, so motions run on the app's motion thread and other
queries in Textual thread workers; both post messages (messages.py)
and only the App's handlers touch state and widgets.

Stepping is coalesced: while a step and its snapshot are in flight, further
F7 presses add up, and run as one ``step(n)`` when the first is done; so a
held key never queues hundreds of snapshots or redraws.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from functools import partial
from pathlib import Path
from typing import Callable

from rich.console import Group, RenderableType
from rich.measure import measure_renderables
from rich.text import Text
from textual import on
from textual.app import App
from textual.binding import Binding
from textual.widgets import Input

from loaderdbg.errors import LoaderdbgError, UsageError
from loaderdbg.job_thread import JobThread
from loaderdbg.session import MILESTONE_TITLES, Capability
from loaderdbg.targets import MILESTONE_OF_TARGET, TARGET_OF_MILESTONE

from loaderdbg.printable import printable
from loaderdbg_tui import reports
from loaderdbg_tui.command_line import CommandLine
from loaderdbg_tui.commands import Command, CommandError, parse_command, signal_name
from loaderdbg_tui.confirm_screen import ConfirmScreen
from loaderdbg_tui.describe import step_text
from loaderdbg_tui.fit import FittedTable
from loaderdbg_tui.disassembly import DisassemblyPane
from loaderdbg_tui.goto_screen import GotoScreen
from loaderdbg_tui.help_screen import HelpScreen
from loaderdbg_tui.lines_view import LinesView
from loaderdbg_tui.log import LogPane
from loaderdbg_tui.main_screen import WIDE, MainScreen
from loaderdbg_tui.idle_gc import IdleCollector
from loaderdbg_tui.messages import BreakpointsChanged, CommandOutput, ListingsAhead, ViewReady
from loaderdbg_tui.output_view import OutputScreen
from loaderdbg_tui.palette import LoaderdbgCommands
from loaderdbg_tui.program_output import ProgramOutputPane
from loaderdbg_tui.status import StatusLine
from loaderdbg_tui.threads import ThreadsPane, current_thread, thread_number
from loaderdbg_tui.timeline import Timeline
from loaderdbg_tui.view import StopView, build_view, prefetch_listings, session_alive

# The event loop, the motion thread and the engine's tracer thread hand work
# to each other for every step; with CPython's default 5 ms GIL switch
# interval a thread woken by a handoff can wait that long while another
# runs Python. 0.5 ms keeps a step's handoffs short.
SWITCH_INTERVAL = 0.0005
BUSY_AFTER = 0.15      # seconds before the busy indicator shows (no flicker on quick steps)
MAX_LOG_LINES = 2000
MAX_OUTPUT_LINES = 10000
QUIET_STOPS = frozenset({"step", "target"})
# A table longer than this goes to the log up to here (the output view has it all).
LOG_TABLE_ROWS = 300
OUTPUT_VIEW_LINES = 4  # output longer than this (at the log's width) and wider than the log opens the output view

# Actions that move the target, and what a session must be able to do for them.
NEEDS_REVERSE = frozenset({"step_back", "reverse_cont"})
MOVES = frozenset({"step", "step_over", "cont", "run_to", "step_back", "reverse_cont", "goto"})
PRIORITY_MOVES = frozenset({"step", "step_over", "cont", "step_back", "reverse_cont"})
NEEDS_RECORDING = ("{what} needs a recording: loaderdbg record -o FILE PROG, then loaderdbg replay FILE")
# gdb's record-full replay does the same: history has its signals already.
RECORDED_SIGNALS = "{what}: a recording replays the signals it recorded; it cannot be given others"
# Keys of the main screen only (another screen up has its own meaning for them).
SCREEN_KEYS = MOVES | {"toggle_breakpoint"}


class LoaderdbgApp(App[int]):
    """The loaderdbg TUI on ``session``."""

    # Absolute: a relative CSS_PATH is resolved next to the file of the
    # App subclass (a test's subclass would not find it).
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "loaderdbg"
    COMMANDS = App.COMMANDS | {LoaderdbgCommands}
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        # Footer order: what works everywhere first, so that on 80 columns
        # it is the recordings-only keys that fall off the end, not q.
        # The motion keys are priority bindings: the App takes them before
        # the key travels to the focused widget and back up (~1 ms of a
        # ~14 ms step). No widget uses F-keys; a dialog keeps them
        # (check_action).
        Binding("f7", "step", "Step", key_display="F7", priority=True),
        Binding("f8", "step_over", "Over", key_display="F8", priority=True),
        Binding("f5", "cont", "Cont", key_display="F5", priority=True),
        Binding("l", "run_to('ldso-entry')", "ld.so"),
        Binding("e", "run_to('at-entry')", "entry"),
        Binding("g", "goto", "Goto"),
        Binding("b", "toggle_breakpoint", "Break"),
        # Priority: `:` reaches the command line from any input (the
        # relocations filter, a search) and from the output view.
        Binding("colon", "focus_command", "Cmd", show=False, priority=True),
        Binding("escape", "leave_command", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("shift+f7", "step_back", "Back", key_display="⇧F7", priority=True),
        Binding("shift+f5", "reverse_cont", "RCont", key_display="⇧F5", priority=True),
        Binding("ctrl+c", "interrupt", "Interrupt", show=False, priority=True),
    ]

    def __init__(self, session, title: str | None = None, *, output_fd: int | None = None) -> None:
        super().__init__()
        self.session = session
        self.capabilities = frozenset(session.capabilities)
        self.target_label = title
        program = printable(os.path.basename(str(session.program or "")))
        self.title = title or (f"loaderdbg — {program}" if program else "loaderdbg")
        self.output_fd = output_fd
        self.view: StopView | None = None
        self.log_lines: list[RenderableType] = []
        self.output_lines: list[str] = []
        self.history: list[str] = []
        self.busy: str | None = None
        self._busy_kind: str | None = None
        self._backlog = 0
        self._busy_timer = None
        self._generation = 0
        # One long-lived thread runs the motions in order (they never
        # overlap: _motion refuses or coalesces a second one). A Textual
        # thread worker per step cost the event loop a task, an executor
        # hand-off and three Worker.StateChanged messages, ~1 ms of a step.
        self._motions: JobThread | None = None  # started with the first motion
        self._garbage = IdleCollector()
        self._output_partial = ""
        self.breakpoint_numbers: dict[int, int] = {}  # address -> gdb's number
        self.temporary_breakpoints: set[int] = set()
        self._next_breakpoint = 1
        self.value_count = 0  # print's $N
        # number -> (address, size, as typed, access: write | read | access)
        self.watchpoints: dict[int, tuple[int, int, str, str]] = {}

    # -- hooks -----------------------------------------------------------------
    def present_volatile(self, kind: str, text: str) -> str:
        """How values that differ between runs (pid, AT_RANDOM bytes, the
        machine's AT_HWCAP…) are shown. Snapshot tests override this to mask
        them; kinds are "pid", "auxv:AT_NAME" and "path" (a file path)."""
        return text

    # -- lifecycle ---------------------------------------------------------------
    def on_mount(self) -> None:
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))
        self._garbage.install()
        self.push_screen(MainScreen(wide=self.size.width >= WIDE))
        if self.output_fd is not None:
            asyncio.get_running_loop().add_reader(self.output_fd, self._read_output)
        self._motion("start", None)

    def on_unmount(self) -> None:
        self._stop_reading_output()
        if self._motions is not None:
            self._motions.stop(timeout=0)
        previous = getattr(self, "_switch_interval", None)
        if previous is not None:
            sys.setswitchinterval(previous)
        self._garbage.uninstall()

    def _main_screen(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    # -- program output ------------------------------------------------------------
    def _read_output(self) -> None:
        try:
            data = os.read(self.output_fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the pty's other side is closed
            data = b""
        if not data:
            self._stop_reading_output()
            return
        text = self._output_partial + data.decode("utf-8", "replace")
        *lines, self._output_partial = text.split("\n")
        lines = [line.rstrip("\r") for line in lines]  # a pty writes \r\n
        self.output_lines.extend(lines)
        del self.output_lines[:-MAX_OUTPUT_LINES]
        screen = self._main_screen()
        if screen is not None and lines:
            for pane in screen.query(ProgramOutputPane):
                for line in lines:
                    pane.write_output(line)

    def _stop_reading_output(self) -> None:
        if self.output_fd is None:
            return
        try:
            asyncio.get_running_loop().remove_reader(self.output_fd)
        except (RuntimeError, ValueError, OSError):
            pass

    # -- motion ----------------------------------------------------------------------
    def _motion(self, label: str, job: Callable[[], object] | None, kind: str | None = None) -> bool:
        """Run job (a session call that moves the target) in a thread worker,
        then decode the new stop; refuse if something else is running."""
        if self.busy is not None:
            if kind is not None and kind == self._busy_kind:
                self._backlog += 1
                return True
            self.bell()
            self.log_line(Text(f"busy ({self.busy}); Ctrl+C interrupts it", style="yellow"))
            return False
        self.busy = label
        self._busy_kind = kind
        self._busy_timer = self.set_timer(BUSY_AFTER, self._show_busy)
        self._generation += 1
        if self._motions is None:
            self._motions = JobThread("loaderdbg-motion")
        self._motions.submit(partial(self._motion_worker, label, job, self._generation))
        return True

    def _show_busy(self) -> None:
        screen = self._main_screen()
        if self.busy is not None and screen is not None:
            for status in screen.query(StatusLine):
                status.set_busy(self.busy)

    def _motion_worker(self, label: str, job: Callable[[], object] | None, generation: int) -> None:
        error = None
        if job is not None:
            try:
                job()
            except LoaderdbgError as err:
                error = str(err)
            except NotImplementedError as err:
                error = str(err) or "this session cannot do that"
            except Exception as err:  # shown, never swallowed silently
                error = f"{type(err).__name__}: {err}"
        view = None
        try:
            view = build_view(self.session, self.view, generation)
        except Exception as err:
            note = f"cannot decode the stop: {type(err).__name__}: {err}"
            error = f"{error}; {note}" if error else note
        self.post_message(ViewReady(view, label, error))

    def on_view_ready(self, message: ViewReady) -> None:
        if self._busy_timer is not None:
            self._busy_timer.stop()
            self._busy_timer = None
        self.busy = None
        kind = self._busy_kind
        self._busy_kind = None
        if message.view is not None:
            first = self.view is None
            self.view = message.view
            self._show(message.view)
            if self.temporary_breakpoints:
                self._temporary_hit(message.view)
            if first:
                # Textual, the ELF caches and the first snapshot are long-lived:
                # out of the collector's sight, a full collection while
                # stepping takes milliseconds instead of tens of them.
                gc.freeze()
        self._report(message, kind)
        if self._backlog and kind is not None and self.view is not None and self.view.alive:
            count, self._backlog = self._backlog, 0
            self._step_kind(kind, count)
        else:
            self._backlog = 0
        # After this frame is on screen, not before: the work would delay
        # the frame. (With a backlog the next motion is already under way:
        # only the garbage collection is done then.)
        self.call_after_refresh(self._between_keys, message.view, self._generation)

    def _between_keys(self, view: StopView | None, generation: int) -> None:
        """Work that is better done before the next key than during it:
        the garbage collection due, and the code the next step may show."""
        self._garbage.collect()
        if (view is not None and view.alive and self._motions is not None
                and generation == self._generation and self.busy is None):
            self._motions.submit(self._prefetch_job, view, generation)

    def _prefetch_job(self, view: StopView, generation: int) -> None:
        """Runs on the motion thread, so never beside a motion; skipped if
        one was asked for since (its view will be a different stop)."""
        if generation != self._generation:
            return
        try:
            windows = prefetch_listings(self.session, view)
        except LoaderdbgError:
            return  # a guess that could not be read: the step will say so if it matters
        except Exception as err:  # a bug, but in a guess: the step itself is not hurt
            note = f"(internal) preparing the next step's code failed: {type(err).__name__}: {err}"
            self.post_message(CommandOutput(Text(note, style="dim red")))
            return
        if windows:
            self.post_message(ListingsAhead(generation, windows))

    def on_listings_ahead(self, message: ListingsAhead) -> None:
        screen = self._main_screen()
        if message.generation != self._generation or self.busy is not None or screen is None:
            return
        for pane in screen.view_targets()[1]:
            if isinstance(pane, DisassemblyPane) and pane.is_shown():
                pane.lay_out_ahead(message.windows)

    def _report(self, message: ViewReady, kind: str | None) -> None:
        """Say in the log how a motion ended. A plain step is in the status
        line already; a log line for each would also cost a log redraw."""
        view = message.view
        if message.error:
            label = "cannot show the first stop" if message.label == "start" else message.label
            self.log_line(Text(f"{label}: {message.error}", style="bold red"))
            if message.label != "start":
                self.notify(message.error, title=message.label, severity="error", timeout=4)
            return
        if view is None or message.label == "start":
            return
        if kind is not None and not view.crashed and view.stop.kind in QUIET_STOPS:
            return
        where = step_text(view.position, view.position_exact)
        self.log_line(Text(f"{message.label} → step {where}: {view.words.headline}",
                           style="red" if view.crashed else "dim"))

    def _show(self, view: StopView) -> None:
        screen = self._main_screen()
        if screen is None:
            return
        statuses, panes, timelines = screen.view_targets()
        with self.batch_update():
            for status in statuses:
                status.set_busy(None)
                status.show_view(view)
            for pane in panes:
                pane.show_view(view)
            for timeline in timelines:
                timeline.show_view(view)

    # -- what the session can do --------------------------------------------------------
    def _alive(self) -> bool:
        return session_alive(self.session)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in SCREEN_KEYS and self.screen is not self._main_screen():
            return False  # a dialog or the output view is up: the key is its to handle
        if action == "focus_command":
            return self.screen is self._main_screen() or isinstance(self.screen, OutputScreen)
        # A key greyed out in the footer still runs its action, which says
        # why it cannot work here (a disabled binding would do nothing).
        return True

    def refuse(self, why: str) -> None:
        """A key or command that cannot work here says why (DESIGN.md §9):
        on the status line until the next stop, and in the log."""
        self.bell()
        screen = self._main_screen()
        if screen is not None:
            for status in screen.query(StatusLine):
                status.say(why)
        self.log_line(Text(why, style="yellow"))

    def _session_can(self, action: str) -> bool | None:
        if action in NEEDS_REVERSE and Capability.REVERSE not in self.capabilities:
            return None  # shown greyed out
        if action == "goto":
            if Capability.REVERSE in self.capabilities:
                return True
            return True if self._alive() and (self.view is None or self.view.position_exact) else None
        if action in MOVES and not self._alive():
            return None
        if action == "toggle_breakpoint" and Capability.BREAKPOINTS not in self.capabilities:
            return None
        return True

    # -- keys -------------------------------------------------------------------------------
    def action_step(self) -> None:
        self._step_kind("step", 1)

    def action_step_over(self) -> None:
        self._step_kind("next", 1)

    def action_step_back(self) -> None:
        self._step_kind("back", 1)

    def _step_kind(self, kind: str, count: int) -> None:
        if self.busy is not None and self._busy_kind == kind:
            self._backlog += count
            return
        if kind == "back" and Capability.REVERSE not in self.capabilities:
            self.refuse(NEEDS_RECORDING.format(what="step back"))
            return
        if kind != "back" and not self._alive():
            self._gone()
            return
        session = self.session
        jobs = {
            "step": (f"si {count}" if count > 1 else "si", lambda: session.step(count)),
            "next": (f"ni {count}" if count > 1 else "ni", lambda: _step_over(session, count)),
            "back": (f"rsi {count}" if count > 1 else "rsi", lambda: session.step_back(count)),
        }
        label, job = jobs[kind]
        self._switch_to_code()
        self._motion(label, job, kind=kind)

    def action_cont(self) -> None:
        self._continue()

    def _continue(self, label: str = "continue", first: Callable[[], object] | None = None) -> None:
        """c, after first() (on the motion thread, before the run)."""
        if not self._alive():
            self._gone()
            return
        if self.watchpoints:
            self._cont_watched(label, first)
            return
        self._switch_to_code()

        def job() -> object:
            if first is not None:
                first()
            return self.session.cont(None)
        self._motion(label, job)

    def action_reverse_cont(self) -> None:
        if Capability.REVERSE not in self.capabilities:
            self.refuse(NEEDS_RECORDING.format(what="reverse continue"))
            return
        if self.watchpoints:
            self._reverse_to_watched()
            return
        self._switch_to_code()
        self._motion("reverse continue", lambda: self.session.reverse_cont(None))

    def action_run_to(self, milestone: str) -> None:
        self.run_to_milestone(milestone)

    def run_to_milestone(self, milestone: str) -> None:
        """Go to a milestone: goto its step in a recording; on a live
        process run to it if it is ahead, else offer to relaunch."""
        view = self.view
        target = TARGET_OF_MILESTONE.get(milestone)
        title = MILESTONE_TITLES.get(milestone, milestone)
        seen = None
        if view is not None:
            seen = next((e for e in view.snapshot.events if e.kind == "milestone" and e.name == milestone), None)
        session = self.session
        if Capability.TIMELINE in self.capabilities:
            # Ahead or behind, the recording knows when it happened.
            seen = next((e for e in session.events() if e.kind == "milestone" and e.name == milestone), seen)
            if seen is not None and seen.exact and seen.step >= 0:
                self._motion(f"goto {title}", lambda: session.goto(seen.step))
            elif target is not None:
                self._motion(f"run to {target}", lambda: session.cont(target))
            else:
                self.log_line(Text(f"{title}: not in this recording", style="yellow"))
            return
        if seen is not None:
            marker = next((m for m in view.markers if m.name == milestone), None)
            if marker is not None and marker.here:
                self.log_line(Text(f"already at {title}", style="dim"))
                return
            self.push_screen(
                ConfirmScreen(f"{title} is behind us: a live process cannot go back.\n"
                              f"Relaunch it (starti){' and run to ' + title if target else ''}?",
                              yes="Relaunch", no="Stay"),
                partial(self._relaunch_to, target, title))
            return
        if target is None:
            self.log_line(Text(f"{title} has no stop target; it shows up when it happens", style="yellow"))
            return
        if not self._alive():
            self._gone()
            return
        self._switch_to_code()
        self._motion(f"run to {target}", lambda: session.cont(target))

    def _relaunch_to(self, target: str | None, title: str, answer: bool | None) -> None:
        if not answer:
            return
        session = self.session

        def job() -> None:
            session.restart()
            if target is not None:
                session.cont(target)
        self._motion(f"starti, run to {target}" if target else "starti", job)

    def action_goto(self) -> None:
        view = self.view
        if Capability.REVERSE not in self.capabilities:
            if not self._alive():
                self._gone()
                return
            if view is not None and not view.position_exact:
                self.refuse("goto needs the step count, unknown after a continue: starti relaunches "
                            "(then goto N), or record the run: loaderdbg record -o FILE PROG")
                return
        current = step_text(view.position, view.position_exact) if view else "?"
        note = "" if Capability.REVERSE in self.capabilities else "Live: forward only."
        self.push_screen(GotoScreen(current, note), self._goto)

    def _goto(self, step: int | None) -> None:
        if step is None:
            return
        self._switch_to_code()
        self._motion(f"goto {step}", lambda: self.session.goto(step))

    def action_toggle_breakpoint(self) -> None:
        if Capability.BREAKPOINTS not in self.capabilities:
            self.refuse("this session cannot set breakpoints")
            return
        screen = self._main_screen()
        panes = screen.query(DisassemblyPane) if screen is not None else ()
        address = panes.first().selected_address() if panes else None
        if address is None:
            self.log_line(Text("no disassembly line selected", style="yellow"))
            return
        self.toggle_breakpoint(address)

    def toggle_breakpoint(self, where: int | Callable[[], int], *, want: bool | None = None,
                          temporary: bool = False) -> None:
        """Set (want True), remove (False) or flip the breakpoint at where
        (an address, or a callable that works it out in the worker);
        temporary: deleted when hit (tbreak)."""
        session = self.session

        def work() -> None:
            try:
                address = where() if callable(where) else where
                present = address in session.breakpoints()
                added = removed = None
                if want is False or (want is None and present):
                    session.remove_breakpoint(address)
                    note = f"at {address:#x} removed" if present else f"no breakpoint at {address:#x}"
                    removed = address if present else None
                elif present:
                    note = f"at {address:#x} already set"
                else:
                    armed = session.add_breakpoint(address)
                    symbol = session.symbolize(address)
                    note = f"at {address:#x}" + (f" <{symbol}>" if symbol else "")
                    if not armed:
                        note += " (not mapped yet: armed when it is)"
                    added = address
                self.post_message(BreakpointsChanged(frozenset(session.breakpoints()), note, added=added,
                                                     removed=removed, temporary=temporary))
            except CommandError as err:
                self.post_message(CommandOutput(Text(str(err), style="red"), error=True))
            except Exception as err:
                self.post_message(CommandOutput(Text(f"breakpoint: {err}", style="red"), error=True))
        self.run_worker(work, thread=True, group="breakpoints", exit_on_error=False)

    def on_breakpoints_changed(self, message: BreakpointsChanged) -> None:
        note = message.note
        if message.added is not None or message.removed is not None or note.startswith("at "):
            address = message.added if message.added is not None else message.removed
            if message.added is not None and message.temporary:
                self.temporary_breakpoints.add(message.added)
            self._number_breakpoints(message.breakpoints | {address} if address is not None else message.breakpoints)
            number = self.breakpoint_numbers.get(address) if address is not None else None
            kind = "Temporary breakpoint" if address in self.temporary_breakpoints else "Breakpoint"
            note = f"{kind} {number} {note}" if number is not None else f"Breakpoint {note}"
        self._number_breakpoints(message.breakpoints)
        self.log_line(Text(note, style="red" if "removed" not in note else "dim"))
        if self.view is not None:
            self.view = self.view.with_breakpoints(message.breakpoints)
            self._show(self.view)

    def _number_breakpoints(self, present: frozenset[int]) -> None:
        """gdb's breakpoint numbers: given in the order they are set, never reused."""
        for address in sorted(present - self.breakpoint_numbers.keys()):
            self.breakpoint_numbers[address] = self._next_breakpoint
            self._next_breakpoint += 1
        for address in self.breakpoint_numbers.keys() - present:
            del self.breakpoint_numbers[address]
            self.temporary_breakpoints.discard(address)

    def _temporary_hit(self, view: StopView) -> None:
        """A temporary breakpoint (tbreak) goes once the program stops there."""
        pc = view.pc
        if pc in self.temporary_breakpoints and view.stop.kind == "breakpoint":
            number = self.breakpoint_numbers.get(pc)
            self.log_line(Text(f"Temporary breakpoint {number}, {pc:#x} deleted", style="dim"))
            self.toggle_breakpoint(pc, want=False)

    def action_interrupt(self) -> None:
        if self.busy is None:
            self.notify("Nothing is running. Press q to quit.", timeout=3)
            return
        if Capability.INTERRUPT not in self.capabilities:
            self.notify("this session cannot be interrupted", severity="warning")
            return
        self.session.interrupt()
        self.log_line(Text(f"interrupting {self.busy}…", style="yellow"))

    async def action_quit(self) -> None:
        if self.busy is not None:
            if Capability.INTERRUPT in self.capabilities:
                self.session.interrupt()
        self.exit(0)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_focus_command(self) -> None:
        screen = self._main_screen()
        if screen is None:
            return
        if isinstance(self.screen, OutputScreen):
            self.screen.dismiss(None)
        field = screen.query_one(CommandLine)
        if field.has_focus:
            field.insert_text_at_cursor(":")  # a colon typed in a command
        else:
            field.focus()

    def action_leave_command(self) -> None:
        """Escape leaves any input: to the list beside it (the relocations
        filter's table), else to the listing if it is shown."""
        screen = self._main_screen()
        field = self.focused
        if screen is None or not isinstance(field, Input):
            return
        node = field.parent
        while node is not None and node is not screen:
            lists = [w for w in node.query(LinesView) if w.can_focus and w.display]
            if lists:
                lists[0].focus()
                return
            node = node.parent
        listing = screen.query_one("#listing")
        if listing.region.width:
            listing.focus()
        else:
            screen.set_focus(None)

    def _gone(self) -> None:
        self.refuse("the process is gone; starti relaunches it")

    def _switch_to_code(self) -> None:
        screen = self._main_screen()
        if screen is not None and not screen.wide and screen.active_tab() == "tab-log":
            screen.show_tab("tab-code")

    # -- timeline -------------------------------------------------------------------------------
    def on_timeline_selected(self, message: Timeline.Selected) -> None:
        self.run_to_milestone(message.marker.name)

    # -- command line ----------------------------------------------------------------------------
    @on(Input.Submitted, "#command")
    def _command_submitted(self, event: Input.Submitted) -> None:
        line = event.value
        field = event.input
        if isinstance(field, CommandLine):
            field.remember(line.strip())
        field.value = ""
        self.run_command(line)

    def run_command(self, line: str) -> None:
        try:
            command = parse_command(line)
        except CommandError as err:
            self.log_line(Text(f"(ldbg) {line.strip()}", style="bold"))
            self.log_line(Text(str(err), style="red"), show=True)
            return
        if command is None:
            return
        self.log_line(Text(f"(ldbg) {command.text}", style="bold"))
        handler = getattr(self, f"_cmd_{command.verb.replace('-', '_')}")
        handler(command)

    # motion commands
    def _cmd_step(self, command: Command) -> None:
        self._step_kind("step", command.count)

    def _cmd_next(self, command: Command) -> None:
        self._step_kind("next", command.count)

    def _cmd_step_back(self, command: Command) -> None:
        self._step_kind("back", command.count)

    def _cmd_continue(self, command: Command) -> None:
        self.action_cont()

    def _cmd_signal(self, command: Command) -> None:
        """gdb's `signal SIG`: continue, the current thread receiving SIG in
        place of the signal it stopped with (`signal 0`: nothing)."""
        signum = command.numbers[0]
        if Capability.SIGNALS not in self.capabilities:
            self.refuse(RECORDED_SIGNALS.format(what=command.text))
            return
        self._continue(f"signal {signal_name(signum)}",
                       lambda: self.session.set_resume_signal(signum or None))

    def _cmd_queue_signal(self, command: Command) -> None:
        """gdb's `queue-signal SIG`: what the current thread receives when it
        next runs (a step, a continue), said without running it."""
        signum = command.numbers[0]
        if Capability.SIGNALS not in self.capabilities:
            self.refuse(RECORDED_SIGNALS.format(what=command.text))
            return
        if not self._alive():
            self._gone()
            return

        def job() -> None:
            self.session.set_resume_signal(signum or None)
            said = f"delivers {signal_name(signum)}" if signum else "delivers no signal"
            self.post_message(CommandOutput(Text(f"the next resume {said}", style="dim")))
        # On the motion thread, in order with the motions around it.
        self._motion(command.text, job)

    def _cmd_reverse_continue(self, command: Command) -> None:
        if Capability.REVERSE not in self.capabilities:
            self.refuse(NEEDS_RECORDING.format(what="reverse continue"))
            return
        if self.watchpoints and command.target is None:
            self._reverse_to_watched()
            return
        self._motion("reverse continue", lambda: self.session.reverse_cont(command.target))

    # watchpoints: live, the debug registers (watch, rwatch, awatch; four at
    # most); in a recording the write index (watch only, any number: c on to
    # the next change, rc back to the last write)
    def _cmd_watch(self, command: Command) -> None:
        self._watch(command, "write")

    def _cmd_rwatch(self, command: Command) -> None:
        self._watch(command, "read")

    def _cmd_awatch(self, command: Command) -> None:
        self._watch(command, "access")

    def _watch(self, command: Command, access: str) -> None:
        verb = command.text.split()[0]
        hardware = Capability.WATCHPOINTS in self.capabilities
        if not hardware and Capability.HISTORY not in self.capabilities:
            self.refuse(f"{verb} needs hardware watchpoints (the debug registers), which this session cannot "
                        "set, or a recording: loaderdbg record -o FILE PROG, then watch ADDR, c and rc")
            return
        if not hardware and access != "write":
            self.refuse(f"{verb}: a recording keeps what each step wrote, not what it read (the recorder "
                        "decodes stores only), so it cannot find a read; watch ADDR works here, "
                        f"{verb} on a live process")
            return
        registers = self.view.registers if self.view else None
        session = self.session
        size = command.count

        def work() -> None:
            try:
                address = command.address.resolve(registers, session.resolve)
                if hardware:
                    session.add_watchpoint(address, size, access)
            except (CommandError, LoaderdbgError) as err:
                self.post_message(CommandOutput(Text(str(err), style="red"), error=True))
                return
            self.call_from_thread(self._add_watchpoint, address, size, command.address.text, access, hardware)
        self.run_worker(work, thread=True, group="breakpoints", exit_on_error=False)

    def _add_watchpoint(self, address: int, size: int, spelled: str, access: str, hardware: bool) -> None:
        number = self._next_breakpoint
        self._next_breakpoint += 1
        self.watchpoints[number] = (address, size, spelled, access)
        if hardware:
            self.log_line(Text(f"{reports.watchpoint_title(number, access, True)}: [{address:#x}, +{size}) "
                               f"({spelled})", style="red"), show=True)
        else:
            self.log_line(Text(f"Watchpoint {number}: [{address:#x}, +{size}) ({spelled}); c stops at the next "
                               "step that changes it, rc at the last step that wrote it", style="red"), show=True)

    def _cont_watched(self, label: str = "continue", first: Callable[[], object] | None = None) -> None:
        """c with watchpoints. A recording: on to the first later step that
        changes a watched byte (a breakpoint on the way stops first), or as
        c. Live: the debug registers stop the run; as gdb's watch, a write
        that leaves the value as it was runs on."""
        session = self.session
        watched = dict(self.watchpoints)
        hardware = Capability.WATCHPOINTS in self.capabilities

        def job() -> None:
            if first is not None:
                first()
            if hardware:
                while True:
                    old = {number: session.read_memory(address, size)
                           for number, (address, size, _, _) in watched.items()}
                    session.cont(None)
                    hit = session.watchpoint_hit()
                    number = next((n for n, (address, size, _, access) in watched.items()
                                   if hit == (address, size, access)), None)
                    if number is None:
                        return
                    address, size, _spelled, access = watched[number]
                    new = session.read_memory(address, size)
                    # gdb's rules: watch reports a change only; x86 has no
                    # read-only condition, so rwatch passes over a changed value
                    # (that access was a write).
                    unchanged = new == old[number]
                    if (access == "write" and unchanged) or (access == "read" and not unchanged):
                        continue
                    self._report_watch(number, access, True, address, size, old[number], new, None)
                    return
            found = []
            for number, (address, size, _spelled, _access) in watched.items():
                change = session.next_memory_change(address, size)
                if change is not None:
                    found.append((change.step, number, change))
            if not found:
                self.post_message(CommandOutput(Text("no later change to a watched range: continue", style="dim")))
                session.cont(None)
                return
            step, number, change = min(found, key=lambda f: (f[0], f[1]))
            address, size, _spelled, access = watched[number]
            old = session.read_memory(address, size)
            session.cont(f"step:{step + 1}")
            if session.position == step + 1:  # not stopped earlier at a breakpoint
                new = session.read_memory(address, size)
                self._report_watch(number, access, False, address, size, old, new, change.by)
        self._switch_to_code()
        self._motion(label, job)

    def _report_watch(self, number: int, access: str, hardware: bool, address: int, size: int,
                      old: bytes | None, new: bytes | None, by) -> None:
        self.post_message(CommandOutput(reports.watch_hit(number, access, hardware, address, size, old, new, by)))

    def _reverse_to_watched(self) -> None:
        """rc with watchpoints: back to the latest step before this one that
        wrote any watched bytes (standing before that write), else as rc."""
        session = self.session
        watched = dict(self.watchpoints)

        def job() -> None:
            found = []
            for number, (address, size, _spelled, _access) in watched.items():
                write = session.last_memory_write(address, size)
                if write is not None:
                    found.append((write.step, number, address, size))
            if not found:
                self.post_message(CommandOutput(Text("no earlier write to a watched range: reverse continue",
                                                     style="dim")))
                session.reverse_cont(None)
                return
            step, number, address, size = max(found)
            self.post_message(CommandOutput(Text(f"Watchpoint {number}: [{address:#x}, +{size}) written by "
                                                 f"step {step} (standing before it)", style="red")))
            session.goto(step)
        self._switch_to_code()
        self._motion("reverse continue", job)

    def _cmd_starti(self, command: Command) -> None:
        if Capability.RESTART not in self.capabilities:
            if Capability.REVERSE in self.capabilities:
                self._motion("goto 0", lambda: self.session.goto(0))
            else:
                self.log_line(Text("this session cannot relaunch", style="yellow"), show=True)
            return
        self._switch_to_code()
        self._motion("starti", self.session.restart)

    def _cmd_until(self, command: Command) -> None:
        target = command.target
        if target is None:
            self._until_next()
            return
        milestone = MILESTONE_OF_TARGET.get(target)
        if milestone is not None:
            self.run_to_milestone(milestone)
            return
        if not self._alive():
            self._gone()
            return
        self._switch_to_code()
        session = self.session
        location = command.address

        def job() -> None:
            if location is not None and session.resolve(location.symbols[0]) is None:
                raise UsageError(f'Function "{location.symbols[0]}" not defined in the objects loaded so far '
                                 f"(until sym:{location.symbols[0]} waits for it in a library loaded later)")
            session.cont(target)
        self._motion(f"run to {target}", job)

    def _until_next(self) -> None:
        """gdb's bare `until`: `ni`, except that a jump back (a loop's end)
        runs on to the instruction after it instead of round the loop."""
        view = self.view
        if not self._alive():
            self._gone()
            return
        insn = next((i for i in view.listing if i.address == view.pc), None) if view is not None else None
        if insn is not None and insn.is_jump and insn.branch_target is not None and insn.branch_target < insn.address:
            after = insn.address + insn.size
            self._switch_to_code()
            self._motion(f"until {after:#x}", lambda: self.session.cont(f"addr:{after:#x}"))
            return
        self._step_kind("next", 1)

    def _cmd_goto(self, command: Command) -> None:
        self._goto(command.count)

    def _cmd_tab(self, command: Command) -> None:
        screen = self._main_screen()
        if screen is None:
            return
        tab_id = screen.find_tab(command.target or "")
        if tab_id is None:
            labels = ", ".join(screen.tab_labels().values())
            self.log_line(Text(f"no tab {command.target!r}: tabs here are {labels}", style="red"), show=True)
            return
        screen.show_tab(tab_id)

    def _cmd_quit(self, command: Command) -> None:
        self.run_worker(self.action_quit())

    # breakpoints
    def _cmd_break(self, command: Command) -> None:
        self._breakpoint_command(command, want=True)

    def _cmd_tbreak(self, command: Command) -> None:
        self._breakpoint_command(command, want=True, temporary=True)

    def _cmd_clear(self, command: Command) -> None:
        self._breakpoint_command(command, want=False)

    def _cmd_delete(self, command: Command) -> None:
        """gdb's delete: the breakpoints numbered, or all of them."""
        by_number = {number: address for address, number in self.breakpoint_numbers.items()}
        if not command.numbers:
            addresses = sorted(self.breakpoint_numbers) or sorted(self.view.breakpoints if self.view else ())
            if not addresses and not self.watchpoints:
                self.log_line(Text("no breakpoints to delete", style="yellow"), show=True)
            self._drop_watchpoints(list(self.watchpoints))
        else:
            addresses = []
            for number in command.numbers:
                if number in by_number:
                    addresses.append(by_number[number])
                elif number in self.watchpoints:
                    self._drop_watchpoints([number])
                    self.log_line(Text(f"Watchpoint {number} deleted", style="dim"))
                else:
                    self.log_line(Text(f"No breakpoint number {number}.", style="red"), show=True)
        for address in addresses:
            self.toggle_breakpoint(address, want=False)

    def _drop_watchpoints(self, numbers: list[int]) -> None:
        """Forget watchpoints; live, free their debug registers too."""
        dropped = [self.watchpoints.pop(number) for number in numbers]
        if dropped and Capability.WATCHPOINTS in self.capabilities:
            session = self.session

            def work() -> None:
                for address, size, _spelled, access in dropped:
                    session.remove_watchpoint(address, size, access)
            self.run_worker(work, thread=True, group="breakpoints", exit_on_error=False)

    def _breakpoint_command(self, command: Command, *, want: bool, temporary: bool = False) -> None:
        registers = self.view.registers if self.view else None
        session = self.session
        resolve = session.resolve
        if not command.address.symbols:
            try:
                address = command.address.resolve(registers)
            except CommandError as err:
                self.log_line(Text(str(err), style="red"), show=True)
                return
            self.toggle_breakpoint(address, want=want, temporary=temporary)
            return
        # A symbol is looked up through the session (the tracer thread):
        # in the breakpoint worker, never on the event loop.
        self.toggle_breakpoint(lambda: command.address.resolve(registers, resolve), want=want,
                               temporary=temporary)

    # queries on the current view (no session call: run here)
    def _from_view(self, report: Callable[[StopView], RenderableType], title: str = "") -> None:
        if self.view is None:
            self.log_line(Text("no stop decoded yet", style="yellow"), show=True)
            return
        self.show_output(report(self.view), title)

    def _cmd_auxv(self, command: Command) -> None:
        self._from_view(reports.auxv_report, command.text)

    def _cmd_registers(self, command: Command) -> None:
        names = tuple((command.target or "").split())
        self._from_view(partial(reports.registers_report, names=names), command.text)

    def _cmd_breakpoints(self, command: Command) -> None:
        view, numbers, temporary = self.view, dict(self.breakpoint_numbers), frozenset(self.temporary_breakpoints)
        if view is None:
            return
        self._number_breakpoints(view.breakpoints | frozenset(numbers))
        numbers = dict(self.breakpoint_numbers)
        watched = dict(self.watchpoints)
        hardware = Capability.WATCHPOINTS in self.capabilities
        self._query(lambda: reports.breakpoints_report(self.session, view, numbers, temporary, watched, hardware),
                    command.text)

    def _cmd_sharedlibrary(self, command: Command) -> None:
        self._from_view(reports.sharedlibrary_report, command.text)

    def _cmd_symbol(self, command: Command) -> None:
        view = self.view
        self._query(lambda: reports.info_symbol(self.session, view, command), command.text)

    def _cmd_print(self, command: Command) -> None:
        view = self.view
        self.value_count += 1
        number = self.value_count
        self._query(lambda: reports.print_value(self.session, view, command, number), command.text)

    def _cmd_list(self, command: Command) -> None:
        view = self.view
        self._query(lambda: reports.source_listing(self.session, view, command), command.text)

    def _cmd_backtrace(self, command: Command) -> None:
        view = self.view
        self._query(lambda: reports.backtrace_report(self.session, view, command), command.text)

    def _cmd_finish(self, command: Command) -> None:
        """gdb's finish: run to the return address of the current frame
        (found by unwinding), live or in a recording."""
        view = self.view
        if view is None or view.registers is None:
            self.refuse("The program is not being run.")
            return
        if not self._alive():
            self._gone()
            return
        session = self.session

        def job() -> None:
            frames = session.backtrace(2)
            if len(frames) < 2:
                raise UsageError('"finish" not meaningful in the outermost frame.')
            self.post_message(CommandOutput(Text.assemble("Run till exit from ", reports.frame_line(frames[0]))))
            session.cont(f"addr:{frames[1].pc:#x}")
        self._switch_to_code()
        self._motion("finish", job)

    def _cmd_disassemble(self, command: Command) -> None:
        view = self.view
        self._query(lambda: reports.disassemble_function(self.session, view, command), command.text)

    def _cmd_vmmap(self, command: Command) -> None:
        self._from_view(reports.vmmap_report, command.text)

    def _cmd_threads(self, command: Command) -> None:
        view = self.view
        self._query(lambda: reports.threads_report(self.session, view), command.text)

    def _cmd_thread(self, command: Command) -> None:
        """gdb's `thread N` (N as `info threads` numbers them, or a tid);
        alone, which thread is current."""
        threads = self.view.snapshot.threads if self.view is not None else ()
        numbered = current_thread(threads)
        if command.count == 0:
            if numbered is None and threads:
                numbered = (1, threads[0])
            if numbered is None:
                self.refuse("No thread selected (the process is gone)")
            else:
                self.show_output(Text(f"[Current thread is {numbered[0]} (LWP {numbered[1].tid})]"),
                                 command.text)
            return
        tid = thread_number(threads, command.count)
        if tid is None:
            self.refuse(f"Invalid thread ID: {command.count} (info threads lists them)")
            return
        self.select_thread(tid)

    def on_threads_pane_chosen(self, message: ThreadsPane.Chosen) -> None:
        self.select_thread(message.tid)

    def select_thread(self, tid: int) -> None:
        """Make thread ``tid`` current: registers, stack, code and the next
        step are its own from then on."""
        if Capability.THREADS not in self.capabilities:
            self.refuse("selecting a thread needs a launched x86-64 program (loaderdbg run): a recording "
                        "has one thread, an attached session steps its main one")
            return
        threads = self.view.snapshot.threads if self.view is not None else ()
        number = next((n for n, t in enumerate(threads, 1) if t.tid == tid), None)
        session = self.session

        def job() -> None:
            session.select_thread(tid)
            self.post_message(CommandOutput(Text(f"[Switching to thread {number} (LWP {tid})]")))
        self._motion(f"thread {number}", job)

    def _cmd_link_map(self, command: Command) -> None:
        self._from_view(reports.link_map_report, command.text)

    def _cmd_events(self, command: Command) -> None:
        self._from_view(reports.events_report, command.text)

    def _cmd_explain(self, command: Command) -> None:
        self._from_view(reports.explain_report, command.text)

    def _cmd_help(self, command: Command) -> None:
        self.show_output(reports.help_report(), command.text)

    # queries that read the target (thread worker)
    def _cmd_examine(self, command: Command) -> None:
        self._query(lambda: reports.examine(self.session, self.view, command), command.text)

    def _cmd_who(self, command: Command) -> None:
        if Capability.HISTORY not in self.capabilities:
            self.log_line(Text("who needs a recording: `loaderdbg record -o FILE PROG`, then "
                               "`loaderdbg replay FILE`", style="yellow"), show=True)
            return
        view = self.view
        self._query(lambda: reports.who_wrote(self.session, view, command), command.text)

    def _cmd_got(self, command: Command) -> None:
        if self.view is None:
            return
        view = self.view
        self._query(lambda: reports.got_report(self.session, view), command.text)

    def _query(self, produce: Callable[[], RenderableType], title: str = "") -> None:
        def work() -> None:
            try:
                self.post_message(CommandOutput(produce(), echo=title))
            except CommandError as err:
                self.post_message(CommandOutput(Text(str(err), style="red"), error=True))
            except Exception as err:
                self.post_message(CommandOutput(Text(f"{type(err).__name__}: {err}", style="red"), error=True))
        self.run_worker(work, thread=True, group="query", exit_on_error=False)

    def on_command_output(self, message: CommandOutput) -> None:
        if message.error:
            self.log_line(message.renderable, show=True)
        else:
            self.show_output(message.renderable, message.echo or "")

    def show_output(self, renderable: RenderableType, title: str) -> None:
        """A command's output: in the log, and in the full-width output view
        too when it is wider than the log pane (rows would wrap there). A
        table longer than LOG_TABLE_ROWS rows goes to the output view
        whole, and to the log up to there (the log lays out all it holds,
        and a GOT of thousands of slots took seconds)."""
        table = isinstance(renderable, FittedTable)
        if table and len(renderable.rows) > LOG_TABLE_ROWS:
            self.log_line(Group(renderable.first_rows(LOG_TABLE_ROWS), Text(
                f"… the first {LOG_TABLE_ROWS:,} of {len(renderable.rows):,} rows: "
                f"{f'`{title}`' if title else 'the command'} again shows them all", style="dim")), show=True)
            screen = self._main_screen()
            if screen is not None and self.screen is screen:
                self.push_screen(OutputScreen(title or "output", renderable))
            return
        self.log_line(renderable, show=True)
        screen = self._main_screen()
        if screen is None or self.screen is not screen:
            return
        logs = screen.query(LogPane)
        if not logs:
            return
        room = logs.first().room()
        natural = measure_renderables(self.console, self.console.options, [renderable]).maximum
        if natural <= room:
            return
        # A sentence or two just wraps in the log; a table or a listing is
        # better read at full width.
        if table or len(self.console.render_lines(renderable, self.console.options.update(width=room, height=None),
                                                  pad=False)) > OUTPUT_VIEW_LINES:
            self.push_screen(OutputScreen(title or "output", renderable))

    # -- log -----------------------------------------------------------------------------------------
    def log_line(self, renderable: RenderableType, *, show: bool = False) -> None:
        """Add to the log pane; show=True brings the log tab forward on a
        narrow screen."""
        self.log_lines.append(renderable)
        if len(self.log_lines) > MAX_LOG_LINES:
            del self.log_lines[:len(self.log_lines) - MAX_LOG_LINES]
        screen = self._main_screen()
        if screen is None:
            return
        for pane in screen.query(LogPane):
            pane.write(renderable)
        if show and not screen.wide:
            screen.show_tab("tab-log")

    # -- palette -----------------------------------------------------------------------------------
    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        entries = [
            ("Step one instruction", "F7 · si", "step", self.action_step),
            ("Step over", "F8 · ni", "step_over", self.action_step_over),
            ("Continue", "F5 · c", "cont", self.action_cont),
            ("Step back", "Shift+F7 · rsi (recordings)", "step_back", self.action_step_back),
            ("Reverse continue", "Shift+F5 · rc (recordings)", "reverse_cont", self.action_reverse_cont),
            ("Run to ld.so entry", "l · until ldso-entry", "run_to",
             partial(self.run_to_milestone, "ldso-entry")),
            ("Run to AT_ENTRY", "e · until entry", "run_to", partial(self.run_to_milestone, "at-entry")),
            ("Run to main", "until main", "run_to", partial(self.run_to_milestone, "main")),
            ("Go to step…", "g · goto N", "goto", self.action_goto),
            ("Relaunch (starti)", "starti", "", partial(self.run_command, "starti")),
            ("Show auxv", "info auxv", "", partial(self.run_command, "info auxv")),
            ("Show memory maps", "vmmap", "", partial(self.run_command, "vmmap")),
            ("Show GOT", "got", "", partial(self.run_command, "got")),
            ("Explain", "explain: milestones and hand-off check", "", partial(self.run_command, "explain")),
            ("Help", "?", "", self.action_help),
        ]
        return [(name, words, callback) for name, words, action, callback in entries
                if not action or self._session_can(action) is True]


def _step_over(session, count: int) -> None:
    for _ in range(count):
        reason = session.step_over()
        if reason is None or reason.kind not in ("step", "target"):
            return


def run_app(session, *, title: str | None = None, output_fd: int | None = None) -> int:
    """Run the TUI on session until the user quits; the caller closes the
    session afterwards. Returns an exit code (0 ok, 1 if the app failed)."""
    app = LoaderdbgApp(session, title, output_fd=output_fd)
    result = app.run()
    if isinstance(result, int):
        return result
    return app.return_code or 0
