"""Recording and replay, measured against a raw C single-step loop (issue 5).

    .venv/bin/python bench/record.py [--quick] [--repeat N] [--json]

In one run, side by side:
- steps/s of `record` (loaderdbg.record.recorder.record_program) versus a
  raw C PTRACE_SINGLESTEP + GETREGS loop this script builds, over the same
  number of steps of the same program, pinned to one CPU and unpinned, for
  the glibc exec-solib demo and /bin/true recorded to `entry`;
  target: >= 0.5x the C rate pinned;
- bytes per step of those recordings (target <= 16, stored ELF files included);
- a 1,000,000-step recording (`python3 -c pass` until step:1000000): the
  recorder's peak RSS, then in a fresh process a ReplaySession's peak RSS
  (target < 300 MB each), `goto` to 100 random steps (p50, max; target
  max <= 50 ms) and `step_back` after each (target <= 5 ms).

Rates are the best of --repeat runs (the machine is shared; the best run is
the least disturbed one). Recorder rates count the whole record_program call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from loaderdbg.process.tracee import LaunchSpec  # noqa: E402
from loaderdbg.record.recorder import record_program  # noqa: E402

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}

RAW_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/user.h>
#include <sys/personality.h>
#include <time.h>
extern char **environ;
/* raw MAXSTEPS PROG ARGS...: single-step PROG from its first instruction,
   GETREGS after every step, at most MAXSTEPS steps; prints "steps seconds". */
int main(int argc, char **argv) {
    long max = atol(argv[1]);
    pid_t pid = fork();
    if (pid == 0) {
        personality(ADDR_NO_RANDOMIZE);
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        execve(argv[2], argv + 2, environ);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD);
    ptrace(PTRACE_CONT, pid, 0, 0);
    waitpid(pid, &status, 0);
    /* Out of execve first, as loaderdbg's launch does: from the exec event
       a step would only finish the syscall, executing nothing. */
    ptrace(PTRACE_SYSCALL, pid, 0, 0);
    waitpid(pid, &status, 0);
    struct user_regs_struct regs;
    struct timespec a, b;
    long steps = 0;
    int sig = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    while (steps < max) {
        if (ptrace(PTRACE_SINGLESTEP, pid, 0, sig) < 0) break;
        if (waitpid(pid, &status, 0) < 0 || WIFEXITED(status) || WIFSIGNALED(status)) break;
        sig = WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status);
        ptrace(PTRACE_GETREGS, pid, 0, &regs);
        steps++;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%ld %.6f\n", steps, (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    kill(pid, SIGKILL);
    return 0;
}
"""

SEEK = r"""
import json, random, resource, statistics, sys, time
sys.path.insert(0, sys.argv[2])
from loaderdbg.record.replay import ReplaySession
t = time.perf_counter()
replay = ReplaySession(sys.argv[1])
opened = time.perf_counter() - t
rng = random.Random(2024)
gotos, backs = [], []
for _ in range(100):
    step = rng.randrange(replay.last_step + 1)
    t = time.perf_counter(); replay.goto(step); gotos.append(time.perf_counter() - t)
    t = time.perf_counter(); replay.step_back(); backs.append(time.perf_counter() - t)
t = time.perf_counter(); replay.snapshot(); snap = time.perf_counter() - t
print(json.dumps({"open_ms": opened * 1e3, "goto_p50_ms": statistics.median(gotos) * 1e3,
                  "goto_max_ms": max(gotos) * 1e3, "step_back_p50_ms": statistics.median(backs) * 1e3,
                  "step_back_max_ms": max(backs) * 1e3, "snapshot_ms": snap * 1e3,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

RECORD_1M = r"""
import sys
sys.path.insert(0, sys.argv[2])
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
import os
null = os.open(os.devnull, os.O_WRONLY)
spec = LaunchSpec(path="/usr/bin/python3", argv=("python3", "-c", "pass"), env={"PATH": "/usr/bin:/bin", "LANG": "C"},
                  stdout_fd=null, stderr_fd=null)
s = record_program(spec, sys.argv[1], "step:1000000", progress=False)
print(s.steps, s.steps_per_second, s.bytes_per_step, s.divergences)
"""


def build_raw(work: Path) -> Path:
    source = work / "raw_step.c"
    source.write_text(RAW_C)
    binary = work / "raw_step"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def pinned_to(cpu: int | None):
    def preexec():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return preexec


def c_rate(raw: Path, program: list[str], steps: int, cpu: int | None) -> float:
    out = subprocess.run([str(raw), str(steps), *program], env=ENV, capture_output=True, text=True, check=True,
                         preexec_fn=pinned_to(cpu)).stdout.split()
    done, seconds = int(out[0]), float(out[1])
    return done / seconds


def record_rate(program: list[str], until: str, output: str, pin: bool):
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        spec = LaunchSpec(path=program[0], argv=tuple(program), env=dict(ENV), stdout_fd=null, stderr_fd=null)
        return record_program(spec, output, until, progress=False, pin=pin)
    finally:
        os.close(null)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1M-step recording")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    cpus = os.sched_getaffinity(0)
    cpu = min(cpus)
    results: dict = {"machine": os.uname().release, "cpus": len(cpus), "programs": []}
    with tempfile.TemporaryDirectory(prefix="loaderdbg-bench-") as tmp:
        work = Path(tmp)
        raw = build_raw(work)
        demo = str(REPO / "build/fixtures/execsolib/glibc-O2/libexecsolib.so")
        for label, program in (("glibc exec-solib demo", [demo, "hello", "world"]), ("/bin/true", ["/bin/true"])):
            row: dict = {"program": label, "until": "entry"}
            for mode, pin in (("pinned", True), ("unpinned", False)):
                repeat = options.repeat if pin else 1
                best = None
                for _ in range(repeat):
                    summary = record_rate(program, "entry", str(work / "bench.ldbg"), pin)
                    if best is None or summary.steps_per_second > best.steps_per_second:
                        best = summary
                steps = best.steps
                c_best = max(c_rate(raw, program, steps, cpu if pin else None) for _ in range(repeat))
                row[mode] = {"steps": steps, "record_steps_per_s": round(best.steps_per_second),
                             "c_steps_per_s": round(c_best), "ratio": round(best.steps_per_second / c_best, 3),
                             "bytes_per_step": round(best.bytes_per_step, 2), "divergences": best.divergences}
            results["programs"].append(row)
            if not options.json:
                for mode in ("pinned", "unpinned"):
                    r = row[mode]
                    print(f"{label:24} {mode:8} {r['steps']:>8,} steps: record {r['record_steps_per_s']:>7,}/s  "
                          f"raw C {r['c_steps_per_s']:>7,}/s  ratio {r['ratio']:.2f}  {r['bytes_per_step']:.1f} B/step  "
                          f"divergences {r['divergences']}")
        if not options.quick:
            path = work / "python-1m.ldbg"
            child = subprocess.Popen([sys.executable, "-c", RECORD_1M, str(path), str(REPO)], stdout=subprocess.PIPE,
                                     text=True)
            out, _ = child.communicate()
            # The largest waited-for child: the recorder (its tracee is far smaller).
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            steps, rate, per_step, divergences = out.split()
            seek = json.loads(subprocess.run([sys.executable, "-c", SEEK, str(path), str(REPO)], capture_output=True,
                                             text=True, check=True).stdout)
            results["million"] = {"steps": int(steps), "record_steps_per_s": round(float(rate)),
                                  "bytes_per_step": round(float(per_step), 2), "divergences": int(divergences),
                                  "recorder_rss_mb": round(rss, 1), **{k: round(v, 2) for k, v in seek.items()}}
            if not options.json:
                m = results["million"]
                print(f"python3 -c pass, {m['steps']:,} steps: record {m['record_steps_per_s']:,}/s, "
                      f"{m['bytes_per_step']} B/step, recorder RSS {m['recorder_rss_mb']} MB, "
                      f"divergences {m['divergences']}")
                print(f"  replay: open {m['open_ms']:.0f} ms, goto x100 p50 {m['goto_p50_ms']:.1f} ms "
                      f"max {m['goto_max_ms']:.1f} ms, step_back p50 {m['step_back_p50_ms']:.2f} ms "
                      f"max {m['step_back_max_ms']:.2f} ms, snapshot {m['snapshot_ms']:.0f} ms, "
                      f"RSS {m['rss_mb']:.0f} MB")
    if options.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
