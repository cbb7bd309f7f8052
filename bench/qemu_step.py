#!/usr/bin/env python3
"""Single steps of an aarch64 program through qemu-user's gdb stub: the
qemu target (loaderdbg/process/qemu_target.py) against gdb-multiarch's
`stepi` on the same program, argv and environment, in the same run.

    .venv/bin/python bench/qemu_step.py [--steps N] [--program PATH ARGS...]

Rows (µs per step, over the same N instructions from the first one):
  target step+regs   QemuTarget.step() then registers_raw(), as the engine
                     steps (it reads pc after every step)
  stub floor         one `s` packet and its reply on our connection, no
                     registers: the round trip every step pays
  gdb-multiarch      `stepi N` timed inside gdb (its Python), on its own
                     qemu and the same Unix-socket stub
and the wall time of a continue to the exit with syscall stops (every
`svc #0` a stub breakpoint) against qemu running the program alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loaderdbg.process.qemu_target import DEFAULT_SYSROOT, find_qemu, launch, qemu_command  # noqa: E402
from loaderdbg.process.stops import StopKind  # noqa: E402
from loaderdbg.process.stub_client import StubConnection  # noqa: E402
from loaderdbg.process.tracee import LaunchSpec  # noqa: E402

PROBE = ROOT / "build" / "fixtures" / "qemu" / "probe"
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def spec_for(argv: list[str]) -> LaunchSpec:
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    return LaunchSpec(argv[0], (Path(argv[0]).name, *argv[1:]), dict(ENV), stdout_fd=devnull)


def target_steps(spec: LaunchSpec, steps: int) -> float:
    target = launch(spec)
    try:
        target.registers_raw()
        start = time.perf_counter()
        for _ in range(steps):
            if target.step().kind is not StopKind.STEP:
                raise SystemExit(f"the program stopped stepping early: {target.last_stop.describe()}")
            target.registers_raw()
        return (time.perf_counter() - start) / steps * 1e6
    finally:
        target.close()


def stub_floor(spec: LaunchSpec, steps: int) -> float:
    """Bare `s` round trips on a stub of our own (no target bookkeeping)."""
    workdir = tempfile.mkdtemp(prefix="qemu-bench-")
    try:
        command, env = qemu_command(spec, find_qemu(), DEFAULT_SYSROOT, workdir)
        qemu = subprocess.Popen(["setarch", "-R", *command], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            connection = StubConnection(connect_unix(os.path.join(workdir, "stub")))
            connection.request(b"?")
            start = time.perf_counter()
            for _ in range(steps):
                connection.request(b"s")
            elapsed = time.perf_counter() - start
            connection.close()
            return elapsed / steps * 1e6
        finally:
            qemu.kill()
            qemu.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def gdb_stepi(spec: LaunchSpec, steps: int) -> float:
    workdir = tempfile.mkdtemp(prefix="qemu-bench-")
    try:
        command, env = qemu_command(spec, find_qemu(), DEFAULT_SYSROOT, workdir)
        qemu = subprocess.Popen(["setarch", "-R", *command], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            sock = os.path.join(workdir, "stub")
            wait_for(sock)
            timer = ("python import time; t = time.perf_counter(); "
                     f"gdb.execute('stepi {steps}', to_string=True); "
                     "print('ELAPSED', time.perf_counter() - t)")
            result = subprocess.run(
                ["gdb-multiarch", "-nx", "-batch", "-ex", "set architecture aarch64",
                 "-ex", f"target remote {sock}", "-ex", timer, "-ex", "kill"],
                capture_output=True, text=True, timeout=600)
        finally:
            qemu.kill()
            qemu.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    line = next((line for line in result.stdout.splitlines() if line.startswith("ELAPSED")), None)
    if line is None:
        raise SystemExit(f"gdb-multiarch did not time its stepi:\n{result.stdout}{result.stderr}")
    return float(line.split()[1]) / steps * 1e6


def run_with_syscall_stops(spec: LaunchSpec) -> tuple[float, int]:
    target = launch(spec)
    try:
        start = time.perf_counter()
        stops = 0
        while target.resume(syscalls=True).kind is StopKind.SYSCALL:
            stops += 1
        return time.perf_counter() - start, stops
    finally:
        target.close()


def run_alone(spec: LaunchSpec) -> float:
    start = time.perf_counter()
    subprocess.run([find_qemu(), "-L", DEFAULT_SYSROOT, spec.path, *spec.argv[1:]],
                   env=ENV, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def connect_unix(path: str):
    import socket
    wait_for(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def wait_for(path: str) -> None:
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"qemu's stub never listened at {path}")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--program", nargs=argparse.REMAINDER,
                        help="aarch64 program and its arguments (default: the qemu probe fixture)")
    options = parser.parse_args()
    for tool in ("qemu-aarch64", "gdb-multiarch"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (make sysdeps)")
    if options.program:
        argv = options.program
    else:
        subprocess.run(["make", "-s", "-C", str(ROOT / "tests" / "fixtures" / "qemu"),
                        f"OUT={PROBE.parent}"], check=True)
        argv = [str(PROBE), "exit", "0"]
    spec = spec_for(argv)
    steps = options.steps
    print(f"program: {' '.join(argv)}; {steps} steps from the first instruction")
    ours = target_steps(spec, steps)
    floor = stub_floor(spec, steps)
    gdb = gdb_stepi(spec, steps)
    print(f"  target step+regs  {ours:8.1f} µs/step")
    print(f"  stub floor (s)    {floor:8.1f} µs/step")
    print(f"  gdb-multiarch     {gdb:8.1f} µs/step   (target is {gdb / ours:.1f}x gdb's rate)")
    wall, stops = run_with_syscall_stops(spec)
    alone = run_alone(spec)
    print(f"  to the exit with {stops} syscall stops: {wall * 1e3:.0f} ms "
          f"(qemu alone, launch included: {alone * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
