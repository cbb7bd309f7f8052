"""Regenerate the sample recordings in recordings/ (`make recordings`):

    python -m loaderdbg.record.samples recordings [--fixtures build/fixtures]

Each sample is recorded from a fixture built by `make fixtures`, with a
fixed, minimal environment (a sample must not carry the environment of the
machine that made it), then replayed and verified; a divergence fails the
run. The samples open with no ptrace, so the TUI's tests and the docs can
use them anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.record.recorder import record_program
from loaderdbg.record.replay import ReplaySession

REPO = Path(__file__).resolve().parents[2]
SAMPLE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb"}
SAMPLE_ARGS = ("hello", "world")


@dataclass(frozen=True)
class Sample:
    name: str
    fixture: str
    until: str
    what: str


SAMPLES = (
    Sample("execsolib-glibc-entry.ldbg", "execsolib/glibc-O2/libexecsolib.so", "entry",
           "the glibc exec-solib demo from its first instruction to AT_ENTRY"),
    Sample("execsolib-musl-entry.ldbg", "execsolib/musl-O2/libexecsolib.so", "entry",
           "the musl exec-solib demo from its first instruction to AT_ENTRY"),
    Sample("execsolib-rdxbug-crash.ldbg", "execsolib/rdxbug/libexecsolib.so", "exit",
           "the rdxbug variant until it dies of SIGSEGV at rip 0"),
)


def sample_spec(fixtures: Path, sample: Sample) -> LaunchSpec:
    path = str((fixtures / sample.fixture).resolve())
    null = os.open(os.devnull, os.O_WRONLY)
    return LaunchSpec(path=path, argv=(path, *SAMPLE_ARGS), env=dict(SAMPLE_ENV), stdout_fd=null, stderr_fd=null)


def generate(out_dir: Path, fixtures: Path, *, quiet: bool = False) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for sample in SAMPLES:
        program = fixtures / sample.fixture
        if not program.is_file():
            raise SystemExit(f"samples: {program} is not built; run `make fixtures`")
        output = out_dir / sample.name
        spec = sample_spec(fixtures, sample)
        try:
            summary = record_program(spec, str(output), sample.until, progress=False, level=19, file_level=19)
        finally:
            os.close(spec.stdout_fd)
        if summary.divergences:
            raise SystemExit(f"samples: {output}: {summary.divergences} bytes changed without a recorded write")
        with ReplaySession(str(output)) as replay:
            report = replay.verify()
        if not report.ok:
            raise SystemExit(f"samples: {output}: {report.describe()}")
        if not quiet:
            print(f"{output}: {summary.steps:,} steps, {summary.file_bytes / 1e3:.0f} kB, "
                  f"{summary.stop_reason.description}")
        written.append(output)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaderdbg.record.samples", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", nargs="?", default=str(REPO / "recordings"))
    parser.add_argument("--fixtures", default=str(REPO / "build" / "fixtures"))
    options = parser.parse_args(argv)
    generate(Path(options.out_dir), Path(options.fixtures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
