#!/usr/bin/env python3
"""Single-stepping and run-to benchmarks for the engine (issue 4, "Benchmark").

    .venv/bin/python bench/stepping.py [--steps N] [--unpinned-steps N]
                                       [--profile] [--program PATH ARGS...]

1. Single-step the glibc exec-solib demo from `first` towards `entry`
   (AT_ENTRY as ld.so sees it) with
     - the engine's step loop: ``Inferior.step()`` called on the tracer
       thread, the same loop LiveSession.step(n) runs (syscall decoding,
       milestone checks, event bookkeeping);
     - the process layer alone: ``Tracee.step()`` (ptrace + waitpid + stop
       classification, no Inferior bookkeeping), to see where time goes;
     - a raw C loop: PTRACE_SINGLESTEP + waitpid + PTRACE_GETREGS, compiled
       by this script into a temporary directory;
   each pinned to one CPU (sched_setaffinity, like `taskset -c 0`; the
   tracer thread and the tracee inherit it) and unpinned. Every loop stops
   at the same pc (AT_ENTRY, found with the engine's breakpoints first) or
   after the same number of steps, whichever comes first, and prints steps,
   µs/step and the engine/C rate ratio (target: engine >= 0.7x C rate, i.e.
   engine µs/step <= C µs/step / 0.7).
2. Run-to with breakpoints: wall time of `loaderdbg inspect --json --at entry`
   (a new Python process), of LiveSession(...).cont("entry") in-process, and
   of running the program natively to completion.
3. With --profile: cProfile of the engine's step loop (pinned), top entries.

All runs use ASLR off and the same argv and environment, so every loop
executes the same instructions. Unpinned stepping is ~5-10x slower on this
kind of VM (PTRACE_NOTES.md), so it is capped (--unpinned-steps).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loaderdbg.inspect_command import launch_spec  # noqa: E402
from loaderdbg.live import LiveSession  # noqa: E402
from loaderdbg.process.stops import StopKind  # noqa: E402

DEMO = ROOT / "build/fixtures/execsolib/glibc-O2/libexecsolib.so"

C_STEPPER = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* stepper MAX_STEPS STOP_PC PROG ARGV0 ARGS...
 * Launches PROG like loaderdbg does (ADDR_NO_RANDOMIZE, TRACEME, SIGSTOP,
 * TRACEEXEC|EXITKILL, stopped at the exec event), completes execve, then
 * SINGLESTEP + waitpid + GETREGS until rip == STOP_PC or MAX_STEPS: every
 * step is one instruction, as in gdb's `starti; si N`.
 * Prints: steps elapsed_ns final_rip */
int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: stepper MAX STOP_PC PROG ARGV0 [ARGS...]\n");
		return 2;
	}
	long max = strtol(argv[1], 0, 0);
	unsigned long stop_pc = strtoul(argv[2], 0, 0);
	pid_t pid = fork();
	if (pid == 0) {
		personality(ADDR_NO_RANDOMIZE);
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		kill(getpid(), SIGSTOP);
		execv(argv[3], argv + 4);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, __WALL);
	ptrace(PTRACE_SETOPTIONS, pid, 0,
	       PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL);
	ptrace(PTRACE_CONT, pid, 0, 0);
	waitpid(pid, &status, __WALL);
	if (!WIFSTOPPED(status) || (status >> 16) != PTRACE_EVENT_EXEC) {
		fprintf(stderr, "no exec stop: %#x\n", status);
		return 1;
	}
	/* The exec event stop is still inside execve: finish the syscall first
	 * (its syscall-exit stop), or the first SINGLESTEP reports that exit
	 * (si_code TRAP_BRKPT, rip unchanged) instead of executing anything. */
	ptrace(PTRACE_SYSCALL, pid, 0, 0);
	waitpid(pid, &status, __WALL);
	if (!WIFSTOPPED(status) || WSTOPSIG(status) != (SIGTRAP | 0x80)) {
		fprintf(stderr, "no execve syscall-exit stop: %#x\n", status);
		return 1;
	}
	struct user_regs_struct regs;
	struct timespec t0, t1;
	long steps = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (steps < max) {
		if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0) == -1) { perror("SINGLESTEP"); break; }
		if (waitpid(pid, &status, __WALL) == -1) { perror("waitpid"); break; }
		if (!WIFSTOPPED(status)) break;
		steps++;
		if (ptrace(PTRACE_GETREGS, pid, 0, &regs) == -1) { perror("GETREGS"); break; }
		if (regs.rip == stop_pc) break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
	printf("%ld %lld %#llx\n", steps, ns, (unsigned long long)regs.rip);
	kill(pid, SIGKILL);
	ptrace(PTRACE_CONT, pid, 0, 0); /* in case it sits in a ptrace-stop */
	while (waitpid(pid, &status, __WALL) > 0 && !WIFEXITED(status) && !WIFSIGNALED(status))
		ptrace(PTRACE_CONT, pid, 0, 0);
	return 0;
}
"""


@contextmanager
def affinity(cpus: set[int] | None):
    """Pin the calling thread; threads and processes it creates inherit it."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class Quiet:
    def __init__(self, program: str, args: list[str]) -> None:
        self.devnull = os.open(os.devnull, os.O_WRONLY)
        self.session = LiveSession(launch_spec(program, args, aslr=False,
                                               stdout_fd=self.devnull, stderr_fd=self.devnull))

    def __enter__(self) -> LiveSession:
        return self.session

    def __exit__(self, *exc) -> None:
        try:
            self.session.close()
        finally:
            os.close(self.devnull)


def find_entry(program: str, args: list[str]) -> int:
    with Quiet(program, args) as session:
        reason = session.cont("entry")
        if not reason.reached:
            raise SystemExit(f"bench: {program}: entry not reached: {reason.description}")
        return session._tracer.call(lambda: session._inferior.tracee.pc)


def build_c_stepper(tmp: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("bench: no C compiler (gcc) for the raw stepper")
    (tmp / "stepper.c").write_text(C_STEPPER)
    exe = tmp / "stepper"
    subprocess.run([gcc, "-O2", "-o", str(exe), str(tmp / "stepper.c")], check=True)
    return exe


def run_c(stepper: Path, program: str, args: list[str], stop_pc: int, max_steps: int,
          pin: bool) -> tuple[int, float, int]:
    cmd = [str(stepper), str(max_steps), hex(stop_pc), os.path.abspath(program), program, *args]
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ),
                            timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"bench: C stepper failed ({result.returncode}): {result.stderr.strip()}")
    out = result.stdout.split()
    steps, ns, rip = int(out[0]), int(out[1]), int(out[2], 16)
    return steps, ns / 1e3, rip


def run_engine(program: str, args: list[str], stop_pc: int, max_steps: int, *,
               layer: str, profile: cProfile.Profile | None = None) -> tuple[int, float, int]:
    """Step on the tracer thread with Inferior.step() ("engine") or
    Tracee.step() ("tracee"); returns (steps, µs, final pc)."""
    with Quiet(program, args) as session:
        inferior = session._inferior

        def loop() -> tuple[int, float, int]:
            tracee = inferior.tracee
            step = inferior.step if layer == "engine" else tracee.step
            steps = 0
            if profile is not None:
                profile.enable()
            t0 = time.perf_counter_ns()
            while steps < max_steps:
                stop = step()
                if stop.kind is not StopKind.STEP and stop.kind is not StopKind.BREAKPOINT:
                    break
                steps += 1
                if tracee.pc == stop_pc:
                    break
            elapsed = time.perf_counter_ns() - t0
            if profile is not None:
                profile.disable()
            return steps, elapsed / 1e3, tracee.pc
        return session._tracer.call(loop)


def time_native(program: str, args: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([program, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def time_inspect_cli(program: str, args: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "loaderdbg", "inspect", "--json", "--at", "entry",
                        "--tracee-output", os.devnull, program, *args],
                       stdout=subprocess.DEVNULL, check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def time_cont_entry(program: str, args: list[str], repeat: int) -> tuple[float, float]:
    """(launch + cont('entry'), + snapshot) in ms, in-process."""
    best_cont = best_snap = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        with Quiet(program, args) as session:
            session.cont("entry")
            t1 = time.perf_counter()
            session.snapshot()
            t2 = time.perf_counter()
        best_cont = min(best_cont, t1 - t0)
        best_snap = min(best_snap, t2 - t1)
    return best_cont * 1e3, best_snap * 1e3


def row(label: str, steps: int, us: float) -> str:
    per = us / steps if steps else float("nan")
    return f"  {label:<28} {steps:>8} steps  {us / 1e6:8.2f} s  {per:8.2f} µs/step"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10**7,
                        help="cap on steps for pinned runs (default: all the way to entry)")
    parser.add_argument("--unpinned-steps", type=int, default=20000,
                        help="cap on steps for unpinned runs (default 20000; 0 skips them)")
    # Other work on a 2-CPU VM moves single rounds by ±30 %: take the best of a few.
    parser.add_argument("--pinned-rounds", type=int, default=3)
    parser.add_argument("--unpinned-rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the engine's step loop (pinned, --profile-steps steps)")
    parser.add_argument("--profile-steps", type=int, default=30000)
    parser.add_argument("--repeat", type=int, default=5, help="repeats for the run-to timings")
    parser.add_argument("--program", nargs=argparse.REMAINDER,
                        help="PROG ARGS... instead of the glibc demo")
    options = parser.parse_args()

    if options.program:
        program, args = options.program[0], options.program[1:]
    else:
        program, args = str(DEMO), ["a", "b"]
    if not os.path.isfile(program):
        print(f"bench: {program} missing (make fixtures)", file=sys.stderr)
        return 1
    cpu0 = {min(os.sched_getaffinity(0))}

    with affinity(cpu0):
        stop_pc = find_entry(program, args)
    print(f"program: {program} {' '.join(args)}")
    print(f"stepping from `first` to `entry` (pc {stop_pc:#x}), ASLR off; "
          f"{os.cpu_count()} CPUs, pinned = CPU {min(cpu0)}")

    with tempfile.TemporaryDirectory(prefix="loaderdbg-bench-") as tmp:
        stepper = build_c_stepper(Path(tmp))
        for label, pin, cap, rounds in (("pinned", True, options.steps, options.pinned_rounds),
                                        ("unpinned", False, options.unpinned_steps,
                                         options.unpinned_rounds)):
            if cap <= 0 or rounds <= 0:
                continue
            print(f"\n{label} (cap {cap} steps, best of {rounds} round(s), loops interleaved):")
            results: dict[str, list[tuple[int, float, int]]] = {"c": [], "engine": [], "tracee": []}
            with affinity(cpu0 if pin else None):
                for _ in range(rounds):
                    results["c"].append(run_c(stepper, program, args, stop_pc, cap, pin))
                    results["engine"].append(run_engine(program, args, stop_pc, cap,
                                                        layer="engine"))
                    results["tracee"].append(run_engine(program, args, stop_pc, cap,
                                                        layer="tracee"))
            best = {k: min(v, key=lambda r: r[1] / max(r[0], 1)) for k, v in results.items()}
            (c_steps, c_us, c_rip), (e_steps, e_us, e_rip), (t_steps, t_us, t_rip) = (
                best["c"], best["engine"], best["tracee"])
            print(row("raw C SINGLESTEP+GETREGS", c_steps, c_us))
            print(row("engine Inferior.step()", e_steps, e_us))
            print(row("process Tracee.step()", t_steps, t_us))
            if rounds > 1:
                spread = {k: [f"{us / max(n, 1):.1f}" for n, us, _ in v] for k, v in results.items()}
                print(f"  all rounds (µs/step): {spread}")
            reached = "reached entry" if c_rip == stop_pc else f"stopped at {c_rip:#x} (cap)"
            print(f"  C loop {reached}")
            if len({c_steps, e_steps, t_steps}) != 1 or len({c_rip, e_rip, t_rip}) != 1:
                print(f"  WARNING: the loops disagree (C/engine/Tracee): steps "
                      f"{c_steps}/{e_steps}/{t_steps}, pc {c_rip:#x}/{e_rip:#x}/{t_rip:#x}")
                if abs(e_steps - c_steps) <= 1:
                    print("  (one step apart: one loop stepped a stop that executes nothing, "
                          "e.g. the execve syscall-exit report; both leave execve first)")
            if c_steps and e_steps:
                c_rate, e_rate, t_rate = c_steps / c_us, e_steps / e_us, t_steps / t_us
                verdict = "meets" if e_rate >= 0.7 * c_rate else "MISSES"
                print(f"  rate ratio engine/C = {e_rate / c_rate:.2f} "
                      f"({verdict} the 0.7 target); Tracee-only/C = {t_rate / c_rate:.2f}")

    print("\nrun to `entry` with breakpoints (best of %d):" % options.repeat)
    with affinity(cpu0):
        native = time_native(program, args, options.repeat)
        cont_ms, snap_ms = time_cont_entry(program, args, options.repeat)
        cli = time_inspect_cli(program, args, options.repeat)
    print(f"  native run to completion           {native:8.1f} ms")
    print(f"  LiveSession launch + cont('entry') {cont_ms:8.1f} ms  ({cont_ms / native:.1f}x native)")
    print(f"  + snapshot()                       {snap_ms:8.1f} ms")
    print(f"  `loaderdbg inspect --json --at entry` (new process) {cli:8.1f} ms "
          f"({cli / native:.1f}x native)")

    if options.profile:
        profile = cProfile.Profile()
        with affinity(cpu0):
            steps, us, _ = run_engine(program, args, stop_pc, options.profile_steps,
                                      layer="engine", profile=profile)
        print(f"\ncProfile of Inferior.step() x {steps} (pinned; profiling inflates times):")
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(18)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
