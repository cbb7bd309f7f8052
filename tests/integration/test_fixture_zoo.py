"""The fixture zoo (tests/fixtures/zoo) builds what loaderdbg's other tests rely on.

These tests run every zoo program for real and check, with readelf, the ELF
property each one exists to provide (no PT_INTERP, IRELATIVE, PT_TLS,
PT_GNU_SFRAME, lazy JUMP_SLOTs, ...). If a toolchain change quietly drops one
of those properties, this file fails instead of the tests that depend on it.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / "build/fixtures/zoo"
PROGRAMS = [
    "hello-glibc", "hello-musl", "hello-static", "hello-static-pie", "ifunc-tls",
    "sframe", "dlmopen", "threads", "lazy", "spawner",
]
LIBS = ["libzoo-ns.so"]
TIMEOUT = 5.0
SPAWNED_RE = re.compile(rb"^spawned pid=(\d+) status=(exited:\d+|signaled:\d+)$")


@pytest.fixture(scope="module")
def zoo() -> Path:
    missing = [n for n in PROGRAMS + LIBS if not (BUILD / n).is_file()]
    if missing:
        pytest.fail(f"fixture zoo not built ({', '.join(missing)} missing in {BUILD}); "
                    f"run `make fixtures` first")
    not_exec = [n for n in PROGRAMS if not os.access(BUILD / n, os.X_OK)]
    assert not not_exec, f"not executable: {not_exec}"
    return BUILD


def _env() -> dict[str, str]:
    # LD_BIND_NOW / LD_PRELOAD from the caller would change what these test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env["LC_ALL"] = "C"
    return env


def readelf(*args: str | Path) -> str:
    exe = shutil.which("readelf")
    if exe is None:
        pytest.fail("readelf not found (binutils); run `make sysdeps`")
    return subprocess.run([exe, "-W", *map(str, args)], check=True, capture_output=True,
                          text=True, timeout=TIMEOUT).stdout


def elf_type(path: Path) -> str:
    m = re.search(r"^\s*Type:\s+(\S+)", readelf("-h", path), re.M)
    assert m, f"no ELF type in readelf -h {path}"
    return m.group(1)


def segment_types(path: Path) -> set[str]:
    out = readelf("-l", path)
    table = out.split("Program Headers:", 1)[1].split("Section to Segment mapping", 1)[0]
    return {line.split()[0] for line in table.splitlines()
            if line.strip() and not line.lstrip().startswith(("Type", "[", "0x"))}


def interpreter(path: Path) -> str | None:
    m = re.search(r"\[Requesting program interpreter: (.*)\]", readelf("-l", path))
    return m.group(1) if m else None


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(path), *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_env(), stdin=subprocess.DEVNULL)


class Lines:
    """Read whole lines from a pipe with a deadline (never blocks forever)."""

    def __init__(self, pipe) -> None:
        self.fd = pipe.fileno()
        self.buf = b""

    def readline(self, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for a line; have {self.buf!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    raise AssertionError(f"EOF while waiting for a line; have {self.buf!r}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line


@contextmanager
def started(*argv: str | Path, stderr=subprocess.DEVNULL):
    """Popen with pipes; the process is always killed and reaped on exit."""
    proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=stderr, env=_env())
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=TIMEOUT)
        finally:
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    try:
                        f.close()
                    except BrokenPipeError:
                        pass


def task_comms(pid: int) -> list[str]:
    comms = []
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            comms.append(comm.read_text().strip())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return sorted(comms)


# ---------------------------------------------------------------- run + output

@pytest.mark.parametrize("name, expected", [
    ("hello-glibc", "hello from glibc\n"),
    ("hello-musl", "hello from musl\n"),
    ("hello-static", "hello from static\n"),
    ("hello-static-pie", "hello from static-pie\n"),
    ("ifunc-tls", "ifunc=2 tls=42\n"),
    ("sframe", "sframe ok\n"),
    ("lazy", "lazy ok\n"),
])
def test_program_output(zoo: Path, name: str, expected: str) -> None:
    res = run(zoo / name)
    assert (res.returncode, res.stdout, res.stderr) == (0, expected, "")


# ---------------------------------------------------------------- ELF shape

def test_hello_glibc_is_dynamic_pie(zoo: Path) -> None:
    assert elf_type(zoo / "hello-glibc") == "DYN"
    assert interpreter(zoo / "hello-glibc") == "/lib64/ld-linux-x86-64.so.2"


def test_hello_musl_uses_musl_loader(zoo: Path) -> None:
    assert interpreter(zoo / "hello-musl") == "/lib/ld-musl-x86_64.so.1"


def test_hello_static_is_exec_without_interp(zoo: Path) -> None:
    path = zoo / "hello-static"
    assert elf_type(path) == "EXEC"
    segs = segment_types(path)
    assert "INTERP" not in segs and "DYNAMIC" not in segs, segs


def test_hello_static_pie_is_dyn_without_interp(zoo: Path) -> None:
    path = zoo / "hello-static-pie"
    assert elf_type(path) == "DYN"
    segs = segment_types(path)
    # No loader, but a PT_DYNAMIC: the program relocates itself.
    assert "INTERP" not in segs and "DYNAMIC" in segs, segs


def test_ifunc_tls_has_irelative_and_tls(zoo: Path) -> None:
    path = zoo / "ifunc-tls"
    assert "R_X86_64_IRELATIVE" in readelf("-r", path)
    assert "TLS" in segment_types(path)


def test_sframe_has_gnu_sframe_segment(zoo: Path) -> None:
    path = zoo / "sframe"
    assert "GNU_SFRAME" in segment_types(path)
    assert re.search(r"\]\s+\.sframe\s", readelf("-S", path))


def test_lazy_has_jump_slots_and_no_bind_now(zoo: Path) -> None:
    path = zoo / "lazy"
    slots = re.findall(r"R_X86_64_JUMP_SLOT\s+\S+\s+(\w+)", readelf("-r", path))
    assert len(set(slots)) >= 3, slots
    dyn = readelf("-d", path)
    assert "(BIND_NOW)" not in dyn
    # readelf: "(FLAGS)  BIND_NOW" for DT_FLAGS, "(FLAGS_1)  Flags: NOW PIE" for DT_FLAGS_1.
    flags = re.findall(r"\(FLAGS(?:_1)?\)\s+(?:Flags:)?(.*)$", dyn, re.M)
    assert flags, "expected at least DT_FLAGS_1 (PIE)"
    for words in flags:
        assert not {"NOW", "BIND_NOW"} & set(words.split()), words


# ---------------------------------------------------------------- live processes

def test_dlmopen_waits_with_library_in_new_namespace(zoo: Path) -> None:
    with started(zoo / "dlmopen") as proc:
        out = Lines(proc.stdout)
        assert out.readline() == b"dlmopen ok"
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert str(zoo / "libzoo-ns.so") in maps
        # A new namespace gets its own libc copy: two offset-0 mappings of libc.
        libc_bases = {line.split()[0] for line in maps.splitlines()
                      if line.split()[-1].endswith("/libc.so.6") and line.split()[2] == "00000000"}
        assert len(libc_bases) == 2, libc_bases
        proc.stdin.write(b"still here\n")
        proc.stdin.flush()
        time.sleep(0.05)
        assert proc.poll() is None, "dlmopen exited before stdin EOF"
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0


def test_threads_names_workers(zoo: Path) -> None:
    with started(zoo / "threads") as proc:
        assert Lines(proc.stdout).readline() == b"threads ready"
        assert task_comms(proc.pid) == ["threads", "worker-1", "worker-2", "worker-3"]
        assert proc.poll() is None, "threads should sleep until killed"


def _spawn_lines(proc, n: int) -> list[tuple[bytes, ...]]:
    out = Lines(proc.stdout)
    got = []
    for _ in range(n):
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        line = out.readline()
        m = SPAWNED_RE.match(line)
        assert m, line
        got.append(m.groups())
    return got


def test_spawner_runs_prog_per_stdin_line(zoo: Path) -> None:
    with started(zoo / "spawner", "/bin/true") as proc:
        got = _spawn_lines(proc, 2)
        assert [status for _, status in got] == [b"exited:0", b"exited:0"]
        assert got[0][0] != got[1][0], "each line must fork a new child"
        # Multi-threaded parent: main + the named helper thread.
        deadline = time.monotonic() + TIMEOUT
        while (comms := task_comms(proc.pid)) != ["spawner", "spawner-helper"]:
            assert time.monotonic() < deadline, comms
            time.sleep(0.01)
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0


@pytest.mark.parametrize("argv, status", [
    (["/bin/sh", "-c", "kill -SEGV $$"], b"signaled:11"),
    (["/bin/sh", "-c", "exit 3"], b"exited:3"),
    (["/nonexistent/prog"], b"exited:127"),
])
def test_spawner_reports_child_status(zoo: Path, argv: list[str], status: bytes) -> None:
    with started(zoo / "spawner", *argv) as proc:
        [(_, got)] = _spawn_lines(proc, 1)
        assert got == status
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0


def test_spawner_execsolib_argv_layout(zoo: Path) -> None:
    # echo prints argv[1:] joined by spaces: "", PROG, "entry_symbol".
    with started(zoo / "spawner", "--execsolib-argv", "/bin/echo") as proc:
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        out = Lines(proc.stdout)
        assert out.readline() == b" /bin/echo entry_symbol"
        assert SPAWNED_RE.match(out.readline()).group(2) == b"exited:0"
        assert proc.wait(timeout=TIMEOUT) == 0


def test_spawner_execsolib_argv0(zoo: Path) -> None:
    # coreutils prefixes its diagnostics with argv[0]; sleep rejects "" as a duration.
    with started(zoo / "spawner", "--execsolib-argv", "/bin/sleep",
                 stderr=subprocess.PIPE) as proc:
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        line = Lines(proc.stdout).readline()
        assert SPAWNED_RE.match(line).group(2) == b"exited:1", line
        assert proc.wait(timeout=TIMEOUT) == 0
        assert proc.stderr.read().startswith(b"execsolib-helper: ")


def test_spawner_every_spawns_without_stdin(zoo: Path) -> None:
    with started(zoo / "spawner", "--every", "0.05", "/bin/true") as proc:
        proc.stdin.close()  # EOF must not stop periodic mode
        out = Lines(proc.stdout)
        pids = set()
        for _ in range(2):
            m = SPAWNED_RE.match(out.readline())
            assert m and m.group(2) == b"exited:0"
            pids.add(m.group(1))
        assert len(pids) == 2
        assert proc.poll() is None, "periodic mode runs until killed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == -signal.SIGTERM
