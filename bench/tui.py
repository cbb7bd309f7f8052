"""TUI latency: time from an F7 key press to the finished redraw after the
step, p50/p95 over N steps (default 200). A script, not a test.

    .venv/bin/python bench/tui.py                     # live demo (exec-solib)
    .venv/bin/python bench/tui.py --replay FILE.ldbg  # a recording (issue 5)
    .venv/bin/python bench/tui.py --size 200x50 --steps 500
    .venv/bin/python bench/tui.py --replay FILE.ldbg --until step:62000 --tab relocs

Two more modes (issue 19), on a big program:

    .venv/bin/python bench/tui.py --mode entry --program /usr/bin/gdb --args --version
    .venv/bin/python bench/tui.py --mode relocs --program /usr/bin/gdb --args --version

--mode entry launches the program as `loaderdbg run` does (stopped at its
first instruction), presses `e` (run to AT_ENTRY) and times it to the
finished redraw, --repeat times (a launch each), split into the session's
part (the continue, and the snapshot, on the motion thread) and the TUI's
(the rest of the view built on that thread, then the widgets and frames on
the event loop). Target: the whole <= 1 s. --tab names a tab to have up.

--mode relocs runs to AT_ENTRY (--until), brings the relocations tab up,
and times each key to its finished redraw: scrolling the table (down, page
down, end, home) and typing each filter of --filter (comma-separated) one
key at a time, then deleting it key by key. Target: p95 <= 16 ms a key,
with gdb's ~151k rows. The filters are typed for the first time (what a
filter found is remembered: typed again it costs less), and one of them
has words that may be within an address (hex digits: every row's text is
searched, not runs of rows).

How it measures: the app runs headless (Textual's own renderer, compositor
and frame pacing; only the terminal write is skipped). Each step posts an
F7 key event and records the time; App._display, which Textual calls with
every finished frame, records frame times. A step is done when its view has
been applied and no further frame follows for SETTLE seconds; its latency is
the time of its last frame. Textual paces frames at TEXTUAL_FPS (60 by
default), so up to 1/60 s of each latency is waiting for the next frame.
Target (issue 6): p95 <= 16 ms on a replay of a >= 1,000,000-step recording.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "build/fixtures/execsolib/glibc-O2/libexecsolib.so"
SETTLE = 0.05
DEFAULT_FILTER = "libc jump,gdb glob_dat,0x7fff,lazy libstdc"
SCROLL_KEYS = ["down"] * 20 + ["pagedown"] * 20 + ["end", "home"] * 5 + ["pagedown"] * 5 + ["up"] * 10


def open_session(args):
    if args.replay:
        try:
            from loaderdbg.record.replay import ReplaySession  # issue 5
        except ImportError:
            sys.exit("bench/tui.py: ReplaySession is not available yet (loaderdbg.record); run without --replay")
        return ReplaySession(args.replay), None
    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.live import LiveSession

    program = Path(args.program)
    if not program.is_file():
        sys.exit(f"bench/tui.py: {program} is not built: run `make fixtures`")
    read_end, write_end = os.pipe()
    spec = replace(launch_spec(str(program), list(args.args), aslr=False, stdout_fd=write_end,
                               stderr_fd=write_end),
                   env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    session = LiveSession(spec)
    os.close(write_end)
    return session, read_end


def framed_app(session, output_fd):
    """The app, with the time of each finished frame appended to its
    .frames (App._display is called with every frame Textual renders)."""
    from loaderdbg_tui.app import LoaderdbgApp

    app = LoaderdbgApp(session, output_fd=output_fd)
    app.frames = []
    app.frame_cpu = {}  # frame time -> CPU time of the process then
    original_display = app._display

    def display(screen, renderable):
        original_display(screen, renderable)
        if renderable is not None:
            now = time.perf_counter()
            app.frames.append(now)
            app.frame_cpu[now] = time.process_time()
    app._display = display
    return app


async def idle(app, pilot) -> None:
    while app.busy is not None or app.view is None:
        await asyncio.sleep(0.001)
    await pilot.pause()


async def settled(app) -> float | None:
    """The time of the last frame once no frame follows for SETTLE seconds
    (None: no frame at all)."""
    while True:
        count = len(app.frames)
        await asyncio.sleep(SETTLE)
        if len(app.frames) == count:
            return app.frames[-1] if app.frames else None


async def prepare(app, pilot, until: str | None, tab: str | None, size: tuple[int, int]) -> None:
    await idle(app, pilot)
    if until:
        app.run_command(f"until {until}")
        await asyncio.sleep(0.01)
        await idle(app, pilot)
    if tab:
        if not app.screen.show_tab(f"tab-{tab}"):
            sys.exit(f"bench/tui.py: no tab {tab!r} at {size[0]}x{size[1]}")
        await pilot.pause()
    await asyncio.sleep(0.2)


async def measure(session, output_fd, steps: int, size: tuple[int, int], until: str | None,
                  tab: str | None = None) -> list[float]:
    from loaderdbg_tui.view import session_alive

    app = framed_app(session, output_fd)
    frames = app.frames
    latencies: list[float] = []
    async with app.run_test(size=size) as pilot:
        await prepare(app, pilot, until, tab, size)
        for _ in range(steps):
            if not session_alive(session):
                print(f"the process ended after {len(latencies)} steps", file=sys.stderr)
                break
            generation = app.view.generation
            frames.clear()
            start = time.perf_counter()
            app.simulate_key("f7")
            while app.view is None or app.view.generation == generation or app.busy is not None:
                await asyncio.sleep(0.0005)
            # The redraw is finished when no frame follows for SETTLE seconds.
            last = await settled(app)
            if last is not None:
                latencies.append(last - start)
    return latencies


class Timed:
    """Wall and CPU (user+sys, the whole process) time spent inside a
    callable, summed over its calls (called on the motion thread)."""

    def __init__(self, function) -> None:
        self.function = function
        self.wall = self.cpu = 0.0
        self.end = self.end_cpu = 0.0

    def __call__(self, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.end, self.end_cpu = time.perf_counter(), time.process_time()
            self.wall += self.end - wall
            self.cpu += self.end_cpu - cpu


async def measure_entry(session, output_fd, size: tuple[int, int], tab: str | None) -> dict[str, float]:
    """Press `e` at the first instruction; the time to the finished redraw,
    and its parts (seconds): cont and snapshot are the session's; view is
    the rest of build_view (the TUI's work on the motion thread); screen is
    from the view built to the last frame (the event loop's). The *_cpu
    parts are the process's CPU time (user+sys, every thread) in them."""
    import loaderdbg_tui.app as app_module

    app = framed_app(session, output_fd)
    cont = session.cont = Timed(session.cont)
    snapshot = session.snapshot = Timed(session.snapshot)
    build = Timed(app_module.build_view)
    app_module.build_view = build
    try:
        async with app.run_test(size=size) as pilot:
            await prepare(app, pilot, None, tab, size)
            for timer in (cont, snapshot, build):
                timer.wall = timer.cpu = 0.0
            generation = app.view.generation
            app.frames.clear()
            cpu, start = time.process_time(), time.perf_counter()
            app.simulate_key("e")
            while app.view is None or app.view.generation == generation or app.busy is not None:
                await asyncio.sleep(0.0005)
            last = await settled(app)
            cpu = time.process_time() - cpu
            if app.view.stop.kind != "target" and "entry" not in app.view.words.headline.lower():
                print(f"warning: stopped at {app.view.words.headline!r}", file=sys.stderr)
    finally:
        app_module.build_view = build.function
    total = (last or build.end) - start
    screen_cpu = (app.frame_cpu[last] if last else build.end_cpu) - build.end_cpu
    return {
        "total": total, "cpu": cpu,
        "cont": cont.wall, "snapshot": snapshot.wall,
        "view": build.wall - snapshot.wall, "screen": (last or build.end) - build.end,
        "tui": total - cont.wall - snapshot.wall,
        "cont_cpu": cont.cpu, "snapshot_cpu": snapshot.cpu, "view_cpu": build.cpu - snapshot.cpu,
        "screen_cpu": screen_cpu, "tui_cpu": build.cpu - snapshot.cpu + screen_cpu,
    }


async def measure_relocs(session, output_fd, size: tuple[int, int], until: str | None,
                         needles: str) -> dict[str, list[float]]:
    """Per key latency (seconds) with the relocations tab up: scrolling the
    table, then typing each of needles (comma-separated) into the filter and
    deleting it; and the process's CPU time (user+sys) in each."""
    from textual import events
    from textual.widgets import Input

    from loaderdbg_tui.relocations import RelocationsPane

    app = framed_app(session, output_fd)
    results: dict[str, list[float]] = {"scroll": [], "type": [], "delete": []}
    cpu: dict[str, list[float]] = {kind: [] for kind in results}

    async def key(name: str, char: str | None, kind: str) -> None:
        app.frames.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        event = events.Key(name, char)
        event.set_sender(app)
        app._driver.send_message(event)
        last = await settled(app)
        if last is None:
            print(f"warning: no frame after {name!r}", file=sys.stderr)
        else:
            results[kind].append(last - start)
            cpu[kind].append(app.frame_cpu[last] - start_cpu)

    async with app.run_test(size=size) as pilot:
        await prepare(app, pilot, until, "relocs", size)
        pane = app.screen.query_one(RelocationsPane)
        shown = len(session.snapshot().relocations)
        pane.table.focus()
        await asyncio.sleep(0.2)
        for name in SCROLL_KEYS:
            await key(name, None, "scroll")
        pane.query_one("#reloc-filter", Input).focus()
        await asyncio.sleep(0.2)
        for needle in needles.split(","):
            for char in needle:
                await key("space" if char == " " else char, char, "type")
            subtitle = str(pane.border_subtitle)
            for _ in needle:
                await key("backspace", None, "delete")
            print(f"{shown} relocations; filter {needle!r}: {subtitle}", file=sys.stderr)
    return results, cpu


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    ms = sorted(1000 * x for x in seconds)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return statistics.median(ms), p95, ms[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay", metavar="FILE", help="a recording to replay (issue 5)")
    parser.add_argument("--mode", choices=("step", "entry", "relocs"), default="step",
                        help="step: F7 latency (default); entry: `e` from the first instruction; "
                        "relocs: keys in the relocations tab")
    parser.add_argument("--program", default=str(DEMO), help="program to launch live (default: the demo)")
    parser.add_argument("--repeat", type=int, default=3, help="--mode entry: launches to time")
    parser.add_argument("--filter", default=DEFAULT_FILTER,
                        help="--mode relocs: the filters to type, comma-separated (default %(default)r)")
    parser.add_argument("--until", help="stop target to run to before stepping (default ldso-entry: ld.so's "
                        "loop, with relocations changing) or before the keys of --mode relocs (default entry)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", default="160x48", help="terminal size, WxH")
    parser.add_argument("--tab", help="tab to have up while stepping: elf, relocs, maps, linkmap, "
                        "syscalls, threads, events, output (and code, stack, log under 120 columns)")
    parser.add_argument("--args", nargs=argparse.REMAINDER, default=[],
                        help="the program's arguments (the rest of the command line)")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    if args.mode == "entry":
        return main_entry(args, (width, height))
    if args.mode == "relocs":
        return main_relocs(args, (width, height))
    args.until = args.until or "ldso-entry"
    session, output_fd = open_session(args)
    try:
        latencies = asyncio.run(measure(session, output_fd, args.steps, (width, height), args.until, args.tab))
    finally:
        session.close()
        if output_fd is not None:
            os.close(output_fd)
    if not latencies:
        print("no steps measured", file=sys.stderr)
        return 1
    ms = sorted(1000 * x for x in latencies)
    p50 = statistics.median(ms)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    source = args.replay or f"live {Path(args.program).name}"
    where = f", {args.tab} tab" if args.tab else ""
    print(f"TUI step latency ({source}, {args.size}{where}, {len(ms)} steps after {args.until or 'first'}): "
          f"p50 {p50:.1f} ms  p95 {p95:.1f} ms  max {ms[-1]:.1f} ms  (target p95 <= 16 ms)")
    return 0


def run_with_session(args, coroutine):
    session, output_fd = open_session(args)
    try:
        return asyncio.run(coroutine(session, output_fd))
    finally:
        session.close()
        if output_fd is not None:
            os.close(output_fd)


def main_entry(args, size: tuple[int, int]) -> int:
    runs = [run_with_session(args, lambda session, fd: measure_entry(session, fd, size, args.tab))
            for _ in range(args.repeat)]
    name = " ".join([Path(args.program).name, *args.args])
    where = f", {args.tab} tab" if args.tab else ""
    print(f"TUI `e` from the first instruction to AT_ENTRY ({name}, {args.size}{where}), "
          f"median of {len(runs)} launches, ms (wall, then CPU user+sys of the process):")
    for part, say in (("total", "key to the finished redraw"),
                      ("cont", "  session: cont('at-entry')"), ("snapshot", "  session: snapshot()"),
                      ("tui", "  TUI: all the rest"), ("view", "    view built besides the snapshot"),
                      ("screen", "    widgets and frames")):
        walls = [1000 * run[part] for run in runs]
        cpus = [1000 * run["cpu" if part == "total" else f"{part}_cpu"] for run in runs]
        print(f"  {say:<36} wall {statistics.median(walls):7.1f}  CPU {statistics.median(cpus):7.1f}"
              f"   (wall {', '.join(f'{v:.0f}' for v in walls)})")
    print("  target: total <= 1000 ms")
    return 0


def main_relocs(args, size: tuple[int, int]) -> int:
    until = args.until or "entry"
    results, cpu = run_with_session(args, lambda session, fd: measure_relocs(session, fd, size, until,
                                                                              args.filter))
    name = " ".join([Path(args.program).name, *args.args])
    print(f"TUI keys in the relocations tab ({name} at {until}, {args.size}), ms a key "
          f"(wall; CPU user+sys of the process):")
    everything, everything_cpu = [], []
    for kind, latencies in results.items():
        everything.extend(latencies)
        everything_cpu.extend(cpu[kind])
        if latencies:
            p50, p95, top = percentiles(latencies)
            c50, c95, _ = percentiles(cpu[kind])
            print(f"  {kind:<7} {len(latencies):3} keys  p50 {p50:7.1f}  p95 {p95:7.1f}  max {top:7.1f}"
                  f"   CPU p50 {c50:7.1f}  p95 {c95:7.1f}")
    p50, p95, top = percentiles(everything)
    c50, c95, _ = percentiles(everything_cpu)
    print(f"  all     {len(everything):3} keys  p50 {p50:7.1f}  p95 {p95:7.1f}  max {top:7.1f}"
          f"   CPU p50 {c50:7.1f}  p95 {c95:7.1f}  (target p95 <= 16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
