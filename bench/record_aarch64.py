#!/usr/bin/env python3
"""Recording an aarch64 program through qemu-user's gdb stub
(loaderdbg/record/guest_recorder.py) against stepping it alone, over the
same N instructions from the first one, in the same run.

    .venv/bin/python bench/record_aarch64.py [--steps N] [--program PATH ARGS...]

Rows (steps a second, best of --repeat):
  step+regs          QemuTarget.step() then registers_raw(): what every
                     recorded step costs at least (the stub's round trips)
  record unpinned    `record --until step:N` as the CLI runs it (the default)
  record pinned      the same with the recorder (and qemu, which inherits it)
                     on one CPU, as the x86 recorder runs
and each recording's file size per step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loaderdbg.process.tracee import LaunchSpec  # noqa: E402
from loaderdbg.record.guest_recorder import record_guest_program  # noqa: E402
from qemu_step import target_steps  # noqa: E402  (this directory: bench/)

DEMO = ROOT / "build" / "fixtures" / "execsolib" / "aarch64-glibc-O2" / "libexecsolib.so"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def spec_for(argv: list[str]) -> LaunchSpec:
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    return LaunchSpec(argv[0], (argv[0], *argv[1:]), dict(ENV), stdout_fd=devnull)


def stepping(spec: LaunchSpec, steps: int) -> float:
    """Steps a second of QemuTarget.step() + registers_raw() alone (bench/qemu_step.py's loop)."""
    return 1e6 / target_steps(spec, steps)


def recording(spec: LaunchSpec, steps: int, pin: bool, directory: str) -> tuple[float, float]:
    path = os.path.join(directory, f"bench-{pin}.ldbg")
    summary = record_guest_program(spec, path, f"step:{steps}", progress=False, pin=pin)
    if summary.steps != steps:
        raise SystemExit(f"the recording ended early: {summary.stop_reason.description}")
    return summary.loop_steps_per_second, summary.bytes_per_step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--program", nargs="+", default=[str(DEMO), "a", "b"])
    options = parser.parse_args()
    spec = spec_for(options.program)
    rows: dict[str, list[float]] = {"step+regs": [], "record unpinned": [], "record pinned": []}
    sizes: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="loaderdbg-bench-") as directory:
        for _ in range(options.repeat):  # interleaved: load moves every row alike
            rows["step+regs"].append(stepping(spec, options.steps))
            for pin in (False, True):
                name = "record pinned" if pin else "record unpinned"
                rate, size = recording(spec, options.steps, pin, directory)
                rows[name].append(rate)
                sizes[name] = size
    floor = max(rows["step+regs"])
    print(f"{options.steps:,} steps of {Path(options.program[0]).name}, best of {options.repeat} "
          f"(load {os.getloadavg()[0]:.1f})")
    for name, rates in rows.items():
        best = max(rates)
        extra = f", {sizes[name]:.1f} B/step" if name in sizes else ""
        print(f"  {name:<16} {best:>8,.0f} steps/s  {best / floor:.2f}x step+regs{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
