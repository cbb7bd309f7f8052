"""Big programs (issue 19), each row against its reference in the same run.

    .venv/bin/python bench/scale.py [--repeat N] [--quick] [--json]
                                    [--replay FILE.ldbg] [--no-replay] [--no-install]

Rows, pinned (sched_setaffinity to CPU 0, as `taskset -c 0`; the tracer
thread, the tracee and child commands inherit it) and unpinned:

- gdb: `loaderdbg inspect --json --at entry /usr/bin/gdb --version`, the
  whole command, against `readelf -rW` over the same objects (the snapshot's
  object paths) in one process: the ratio. In process: launch + cont('entry'),
  the snapshot (µs a relocation), snapshot_to_json + write_json to /dev/null
  as inspect writes it (relocation_rows=True). In process the cyclic
  collector stays on, as in the TUI (the CLI's inspect runs without it).
- the glibc demo: the whole `inspect --json --at entry` command as a
  user's install runs it (the `loaderdbg` script of this tree built as a
  wheel and installed in build/bench/installed/: the issue's goal), and as
  the development venv runs it (`python -m loaderdbg`), against
  `python -c pass` (the interpreter's own start) and the import of
  loaderdbg.cli + loaderdbg.inspect_command in a fresh interpreter.
- the demo: LiveSession launch + cont('entry') (breakpoints, no stepping)
  against running the program natively to its exit.
- the snapshot of a 1,000,000-step `python3 -c pass` recording at its last
  step (ReplaySession.goto + snapshot); the recording is made once into
  build/bench/ (or --replay FILE), --no-replay skips the row.
- the scaling curve: the big fixture's ¼, ½ and 1× executables (5, 10, 20
  generated libraries: tests/fixtures/big/generate.py, built on first use)
  with the same in-process phases and readelf, per relocation and per object.

Times are the best of --repeat runs (the machine is shared; the best run is
the least disturbed one), in ms: wall clock, and CPU (user + system: of the
command and its children for a command, of this process's threads for the
in-process phases), which load from other work on the machine moves less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stepping import affinity  # noqa: E402  (bench/ is the script's own directory)

from loaderdbg.inspect_command import launch_spec  # noqa: E402
from loaderdbg.live import LiveSession  # noqa: E402
from loaderdbg.snapshot_json import snapshot_to_json, write_json  # noqa: E402

DEMO = REPO / "build" / "fixtures" / "execsolib" / "glibc-O2" / "libexecsolib.so"
DEMO_ARGS = ["hello", "world"]
BIG = REPO / "build" / "fixtures" / "big"
BIG_SCALES = (("¼", "big-quarter"), ("½", "big-half"), ("1×", "big-full"))
GDB = ["/usr/bin/gdb", "--version"]
MILLION = REPO / "build" / "bench" / "python3-1M.ldbg"


def best_of(repeat: int, measure) -> tuple[float, float]:
    """The smallest wall and the smallest CPU time of ``repeat`` runs of
    measure() (each (wall, cpu) in seconds), in ms."""
    runs = [measure() for _ in range(repeat)]
    return min(w for w, _ in runs) * 1e3, min(c for _, c in runs) * 1e3


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], **kwargs) -> tuple[float, float]:
    c0 = children_cpu()
    t0 = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   stdin=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - t0, children_cpu() - c0


INSPECT_ARGS = ["inspect", "--json", "--at", "entry", "--tracee-output", os.devnull]


def inspect_command(program: list[str]) -> list[str]:
    return [sys.executable, "-m", "loaderdbg", *INSPECT_ARGS, *program]


def installed_loaderdbg() -> Path:
    """The `loaderdbg` script of a normal (wheel) install of this tree, as a
    user's `pip install` makes it, in build/bench/installed/ (made again each
    run, from a copy of the tree, so the checkout gets no build files).

    The development venv's editable install puts setuptools' import finder
    in every interpreter start (pathlib, importlib.util: ~8 ms on a quiet
    machine); a user's install has none. Its dependencies come from the
    development venv (a .pth naming its site-packages), so nothing is
    downloaded but the build backend pip builds the wheel with."""
    import shutil
    import sysconfig
    import tempfile
    target = REPO / "build" / "bench" / "installed"
    print(f"installing this tree as a wheel into {target} (each run)…", file=sys.stderr)
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    python = target / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="loaderdbg-wheel-") as scratch:
        source = Path(scratch) / "src"
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "tests", "bench", "__pycache__", "*.egg-info", "*.so"))
        built = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                                str(source)], capture_output=True, text=True)
        if built.returncode != 0:
            raise OSError(f"pip install of the tree failed: {built.stderr.strip().splitlines()[-1:]}")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "loaderdbg-bench-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return target / "bin" / "loaderdbg"


def phases(program: list[str], repeat: int) -> dict:
    """In process: launch + cont('entry'), snapshot, JSON; best of each."""
    best = {key: float("inf") for key in ("cont_ms", "snapshot_ms", "json_ms", "cont_cpu_ms",
                                          "snapshot_cpu_ms", "json_cpu_ms")}
    info = {}
    with open(os.devnull, "w") as sink:
        for _ in range(repeat):
            spec = launch_spec(program[0], program[1:], aslr=False, stdout_fd=sink.fileno(),
                               stderr_fd=sink.fileno())
            t0, c0 = time.perf_counter(), time.process_time()
            with LiveSession(spec) as session:
                reason = session.cont("entry")
                if not reason.reached:
                    raise SystemExit(f"bench: {program[0]}: entry not reached: {reason.description}")
                t1, c1 = time.perf_counter(), time.process_time()
                snapshot = session.snapshot()
                t2, c2 = time.perf_counter(), time.process_time()
            t2b, c2b = time.perf_counter(), time.process_time()  # closing the session is not the JSON's
            write_json(snapshot_to_json(snapshot, relocation_rows=True), sink.write, end="\n")
            sink.flush()
            t3, c3 = time.perf_counter(), time.process_time()
            for key, value in (("cont_ms", t1 - t0), ("snapshot_ms", t2 - t1), ("json_ms", t3 - t2b),
                               ("cont_cpu_ms", c1 - c0), ("snapshot_cpu_ms", c2 - c1), ("json_cpu_ms", c3 - c2b)):
                best[key] = min(best[key], value * 1e3)
            info = {"objects": len(snapshot.objects), "relocations": len(snapshot.relocations),
                    "paths": sorted({o.path for o in snapshot.objects if o.path and os.path.isfile(o.path)})}
    return best | info


def program_rows(label: str, program: list[str], repeat: int) -> dict:
    row = phases(program, repeat)
    row["label"] = label
    row["command_ms"], row["command_cpu_ms"] = best_of(repeat, lambda: timed(inspect_command(program), cwd=REPO))
    row["readelf_ms"], row["readelf_cpu_ms"] = best_of(repeat, lambda: timed(["readelf", "-rW", *row["paths"]]))
    relocations, objects = max(row["relocations"], 1), max(row["objects"], 1)
    row["snapshot_us_per_relocation"] = row["snapshot_ms"] * 1e3 / relocations
    row["snapshot_cpu_us_per_relocation"] = row["snapshot_cpu_ms"] * 1e3 / relocations
    row["cont_and_snapshot_cpu_us_per_relocation"] = (row["cont_cpu_ms"] + row["snapshot_cpu_ms"]) * 1e3 / relocations
    row["command_cpu_us_per_relocation"] = row["command_cpu_ms"] * 1e3 / relocations
    row["command_cpu_ms_per_object"] = row["command_cpu_ms"] / objects
    row["ratio_to_readelf"] = row["command_ms"] / row["readelf_ms"]
    row["cpu_ratio_to_readelf"] = row["command_cpu_ms"] / max(row["readelf_cpu_ms"], 1e-3)
    del row["paths"]
    return row


def demo_rows(repeat: int, installed: Path | None) -> dict:
    python = sys.executable
    startup = best_of(repeat, lambda: timed([python, "-c", "pass"]))
    imports = best_of(repeat, lambda: timed([python, "-c", "import loaderdbg.cli, loaderdbg.inspect_command"],
                                            cwd=REPO))
    command = best_of(repeat, lambda: timed(inspect_command([str(DEMO), *DEMO_ARGS]), cwd=REPO))
    # Out of the checkout, so nothing but the install can be imported.
    as_installed = best_of(repeat, lambda: timed([str(installed), *INSPECT_ARGS, str(DEMO), *DEMO_ARGS],
                                                 cwd="/")) if installed else (float("nan"), float("nan"))
    native = best_of(repeat * 4, lambda: timed([str(DEMO), *DEMO_ARGS]))

    def cont() -> tuple[float, float]:
        with open(os.devnull, "w") as sink:
            spec = launch_spec(str(DEMO), DEMO_ARGS, aslr=False, stdout_fd=sink.fileno(),
                               stderr_fd=sink.fileno())
            t0, c0 = time.perf_counter(), time.process_time() + children_cpu()
            with LiveSession(spec) as session:
                session.cont("entry")
                return time.perf_counter() - t0, time.process_time() + children_cpu() - c0
    launch_cont = best_of(repeat, cont)
    return {"command_ms": command[0], "command_cpu_ms": command[1],
            "installed_command_ms": as_installed[0], "installed_command_cpu_ms": as_installed[1],
            "python_start_ms": startup[0],
            "python_start_cpu_ms": startup[1], "import_ms": imports[0], "import_cpu_ms": imports[1],
            "launch_cont_ms": launch_cont[0], "launch_cont_cpu_ms": launch_cont[1], "native_ms": native[0],
            "cont_to_native": launch_cont[0] / native[0]}


def replay_row(path: Path, repeat: int) -> dict:
    from loaderdbg.record.replay import ReplaySession
    if not path.is_file():
        from loaderdbg.process.tracee import LaunchSpec
        from loaderdbg.record.recorder import record_program
        print(f"recording 1,000,000 steps of python3 -c pass into {path} (once)…", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(os.devnull, "w") as sink:
            spec = LaunchSpec(path="/usr/bin/python3", argv=("python3", "-c", "pass"),
                              env={"PATH": "/usr/bin:/bin", "LANG": "C"},
                              stdout_fd=sink.fileno(), stderr_fd=sink.fileno())
            record_program(spec, str(path), "step:1000000", progress=False)
    runs = []
    steps = 0
    for _ in range(repeat):
        with ReplaySession(str(path)) as replay:
            steps = replay.last_step
            t0, c0 = time.perf_counter(), time.process_time()
            replay.goto(steps)  # from step 0: checks every keyframe it crosses
            t1, c1 = time.perf_counter(), time.process_time()
            replay.snapshot()
            runs.append((t1 - t0, c1 - c0, time.perf_counter() - t1, time.process_time() - c1))
    return {"steps": steps, "goto_ms": min(r[0] for r in runs) * 1e3, "goto_cpu_ms": min(r[1] for r in runs) * 1e3,
            "snapshot_ms": min(r[2] for r in runs) * 1e3, "snapshot_cpu_ms": min(r[3] for r in runs) * 1e3}


def ensure_big() -> None:
    if all((BIG / name).is_file() for _, name in BIG_SCALES):
        return
    print("building the big fixture (tests/fixtures/big/generate.py, once)…", file=sys.stderr)
    subprocess.run([sys.executable, str(REPO / "tests" / "fixtures" / "big" / "generate.py"), str(BIG)],
                   check=True)


def measure(pin: bool, args) -> dict:
    repeat = args.repeat
    out: dict = {}
    with affinity({0} if pin else None):
        out["demo"] = demo_rows(repeat * 2, args.installed)
        if os.access(GDB[0], os.X_OK):
            out["gdb"] = program_rows("gdb --version", GDB, max(1, repeat // 2) if args.quick else repeat)
        out["scale"] = [program_rows(label, [str(BIG / name)], 1 if args.quick else repeat)
                        for label, name in BIG_SCALES]
        if not args.no_replay:
            try:
                out["replay"] = replay_row(Path(args.replay) if args.replay else MILLION, repeat)
            except Exception as err:  # the other rows stand without it
                out["replay_error"] = f"{type(err).__name__}: {err}"
    return out


def report(pin: str, m: dict) -> None:
    d = m["demo"]
    print(f"\n== {pin} ==")
    print(f"demo inspect --json --at entry, installed (a wheel's `loaderdbg`): {d['installed_command_ms']:.0f} ms, "
          f"cpu {d['installed_command_cpu_ms']:.0f} (goal <= 150); in the development venv (python -m loaderdbg, "
          f"setuptools' editable finder at start): {d['command_ms']:.0f} ms, cpu {d['command_cpu_ms']:.0f} "
          f"(python -c pass {d['python_start_ms']:.0f}, cpu {d['python_start_cpu_ms']:.0f}; "
          f"import cli+inspect_command {d['import_ms']:.0f}, cpu {d['import_cpu_ms']:.0f})")
    print(f"demo launch + cont('entry'): {d['launch_cont_ms']:.1f} ms (cpu {d['launch_cont_cpu_ms']:.1f}) "
          f"vs native run {d['native_ms']:.2f} ms: {d['cont_to_native']:.0f}x (goal <= 10x)")
    rows = ([m["gdb"]] if "gdb" in m else []) + m["scale"]
    print("wall ms [cpu ms]; per relocation and per object from cpu; c+s: cont and snapshot together, a relocation "
          "(the objects ld.so mapped are parsed in one or the other)")
    print(f"{'program':<14} {'objs':>4} {'relocs':>7} {'command':>13} {'readelf':>9} {'ratio':>11} "
          f"{'cont':>11} {'snapshot':>11} {'µs/reloc':>8} {'c+s':>5} {'json':>11} {'cmd µs/reloc':>12} {'ms/obj':>7}")
    for r in rows:
        print(f"{r['label']:<14} {r['objects']:>4} {r['relocations']:>7} "
              f"{r['command_ms']:>6.0f} [{r['command_cpu_ms']:>4.0f}] "
              f"{r['readelf_ms']:>4.0f} [{r['readelf_cpu_ms']:>3.0f}] "
              f"{r['ratio_to_readelf']:>4.1f}x [{r['cpu_ratio_to_readelf']:>4.1f}x] "
              f"{r['cont_ms']:>5.0f} [{r['cont_cpu_ms']:>4.0f}] "
              f"{r['snapshot_ms']:>5.0f} [{r['snapshot_cpu_ms']:>4.0f}] "
              f"{r['snapshot_cpu_us_per_relocation']:>8.2f} {r['cont_and_snapshot_cpu_us_per_relocation']:>5.2f} "
              f"{r['json_ms']:>5.0f} [{r['json_cpu_ms']:>4.0f}] "
              f"{r['command_cpu_us_per_relocation']:>12.2f} {r['command_cpu_ms_per_object']:>7.1f}")
    if "replay_error" in m:
        print(f"replay row failed: {m['replay_error']}")
    if "replay" in m:
        print(f"snapshot of a {m['replay']['steps']:,}-step python3 replay at its end: "
              f"{m['replay']['snapshot_ms']:.0f} ms, cpu {m['replay']['snapshot_cpu_ms']:.0f} (goal <= 100); "
              f"goto there from step 0 {m['replay']['goto_ms']:.0f} ms, cpu {m['replay']['goto_cpu_ms']:.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of the big programs, pinned only")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON too")
    parser.add_argument("--replay", help="a 1M-step recording to snapshot (default: made once in build/bench/)")
    parser.add_argument("--no-replay", action="store_true", help="skip the replay row")
    parser.add_argument("--no-install", action="store_true",
                        help="skip the installed command's row (it builds and installs a wheel)")
    args = parser.parse_args()
    if not DEMO.is_file():
        raise SystemExit("bench: fixtures missing: run `make fixtures`")
    # The commands measured start as a user's do: writing their bytecode and
    # the code dataclasses compile (loaderdbg/compile_cache.py) on the first
    # run. A development shell's PYTHONDONTWRITEBYTECODE would have every run
    # compile them afresh.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    ensure_big()
    args.installed = None
    if not args.no_install:
        try:
            args.installed = installed_loaderdbg()
        except (OSError, subprocess.CalledProcessError) as err:  # the other rows stand without it
            print(f"bench: no installed row: {err}", file=sys.stderr)
    results = {}
    for pin in (("pinned", True),) if args.quick else (("pinned", True), ("unpinned", False)):
        results[pin[0]] = measure(pin[1], args)
        report(pin[0], results[pin[0]])
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
