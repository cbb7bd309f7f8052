"""TUI latency: time from an F7 key press to the finished redraw after the
step, p50/p95 over N steps (default 200). A script, not a test.

    .venv/bin/python bench/tui.py                     # live demo (exec-solib)
    .venv/bin/python bench/tui.py --replay FILE.ldbg  # a recording (issue 5)
    .venv/bin/python bench/tui.py --size 200x50 --steps 500
    .venv/bin/python bench/tui.py --replay FILE.ldbg --until step:62000 --tab relocs

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
    spec = replace(launch_spec(str(program), [], aslr=False, stdout_fd=write_end, stderr_fd=write_end),
                   env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    session = LiveSession(spec)
    os.close(write_end)
    return session, read_end


async def measure(session, output_fd, steps: int, size: tuple[int, int], until: str | None,
                  tab: str | None = None) -> list[float]:
    from loaderdbg_tui.app import LoaderdbgApp
    from loaderdbg_tui.view import session_alive

    app = LoaderdbgApp(session, output_fd=output_fd)
    frames: list[float] = []
    original_display = app._display

    def display(screen, renderable):
        original_display(screen, renderable)
        if renderable is not None:
            frames.append(time.perf_counter())
    app._display = display

    async def idle(pilot) -> None:
        while app.busy is not None or app.view is None:
            await asyncio.sleep(0.001)
        await pilot.pause()

    latencies: list[float] = []
    async with app.run_test(size=size) as pilot:
        await idle(pilot)
        if until:
            app.run_command(f"until {until}")
            await asyncio.sleep(0.01)
            await idle(pilot)
        if tab:
            if not app.screen.show_tab(f"tab-{tab}"):
                sys.exit(f"bench/tui.py: no tab {tab!r} at {size[0]}x{size[1]}")
            await pilot.pause()
        await asyncio.sleep(0.2)
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
            while True:
                count = len(frames)
                await asyncio.sleep(SETTLE)
                if len(frames) == count:
                    break
            if frames:
                latencies.append(frames[-1] - start)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay", metavar="FILE", help="a recording to replay (issue 5)")
    parser.add_argument("--program", default=str(DEMO), help="program to launch live (default: the demo)")
    parser.add_argument("--until", default="ldso-entry", help="stop target to run to before stepping "
                        "(default ldso-entry: ld.so's loop, with relocations changing)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", default="160x48", help="terminal size, WxH")
    parser.add_argument("--tab", help="tab to have up while stepping: elf, relocs, maps, linkmap, "
                        "syscalls, threads, events, output (and code, stack, log under 120 columns)")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
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


if __name__ == "__main__":
    sys.exit(main())
