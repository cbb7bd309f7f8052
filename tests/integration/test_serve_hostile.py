"""`loaderdbg serve` against clients that go wrong: gdb killed with SIGKILL
in the middle of a session (a launched program must die with the server,
an attached one must be left running, untraced and not stopped), a second
TCP client while one is served, the port bound to loopback only, and a
live process's files: what vFile serves of them and what it does not."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loaderdbg.gdb_remote.packets import PacketReader, bytes_to_hex, frame

ROOT = Path(__file__).resolve().parents[2]
LOADERDBG = str(Path(sys.executable).with_name("loaderdbg"))
RDXBUG = ROOT / "recordings" / "execsolib-rdxbug-crash.ldbg"


def children(pid: int) -> list[int]:
    """The children of every thread of pid (the tracer thread forks the program)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def state(pid: int) -> tuple[str, int] | None:
    """(state letter, TracerPid), or None once the process is gone (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    letter = re.search(r"^State:\s+(\S)", status, flags=re.M).group(1)
    tracer = int(re.search(r"^TracerPid:\s+(\d+)", status, flags=re.M).group(1))
    return None if letter in "ZX" else (letter, tracer)


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
    except OSError:
        return []


def wait_for(predicate, what: str, seen=lambda: None, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what} ({seen()})")


def start_gdb(serve_args: list[str], commands: list[str]) -> subprocess.Popen:
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.fail("gdb is required: run `make sysdeps`", pytrace=False)
    args = [gdb, "-nx", "-batch", "-ex", "set remotetimeout 60",
            "-ex", f"target remote | {LOADERDBG} serve --stdio {' '.join(serve_args)}"]
    for command in commands:
        args += ["-ex", command]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def serve_of(gdb: subprocess.Popen) -> int:
    """The loaderdbg serve process gdb started, by its command line. gdb runs
    `target remote | CMD` through $SHELL -c (/bin/sh when SHELL is unset, as
    under CI): bash execs CMD, dash stays as its parent, so search below gdb."""
    return wait_for(lambda: next((pid for pid in descendants(gdb.pid) if "serve" in _argv(pid)), None),
                    "gdb to start loaderdbg serve",
                    lambda: [(pid, _argv(pid)) for pid in descendants(gdb.pid)])


def end(pid: int | None) -> None:
    """A server a failed test left behind: ended the way it ends its program."""
    if pid is not None and state(pid) is not None:
        os.kill(pid, signal.SIGTERM)


def test_gdb_killed_in_a_live_continue_takes_the_launched_program_with_it():
    gdb = start_gdb(["--live", "/bin/sleep", "600"], ["continue"])
    serve = None
    try:
        serve = serve_of(gdb)

        def running_program() -> int | None:
            return next((pid for pid in children(serve) if _argv(pid) == ["/bin/sleep", "600"]
                         and (state(pid) or ("", 0))[0] == "S"), None)

        program = wait_for(running_program, "the launched program to run (gdb's continue)",
                           lambda: [(pid, _argv(pid), state(pid)) for pid in children(serve)])
        gdb.kill()
        gdb.wait()
        wait_for(lambda: state(serve) is None, "loaderdbg serve to end after gdb's SIGKILL", timeout=20)
        assert state(program) is None  # killed, not left traced or running on
    finally:
        if gdb.poll() is None:
            gdb.kill()
            gdb.wait()
        end(serve)


@pytest.mark.parametrize("commands, when", [([], "stopped"), (["continue"], "in a continue")])
def test_gdb_killed_leaves_an_attached_process_running_untraced(commands, when):
    sleeper = subprocess.Popen(["/bin/sleep", "600"])
    gdb = serve = None
    try:
        wait_for(lambda: Path(f"/proc/{sleeper.pid}/exe").resolve().name == "sleep", "sleep to exec")
        gdb = start_gdb(["--pid", str(sleeper.pid)], commands)
        serve = serve_of(gdb)
        # Traced (TracerPid is the tracer thread of loaderdbg serve), then running or stopped.
        letter = "S" if commands else "t"
        wait_for(lambda: (state(sleeper.pid) or ("", 0))[1] != 0 and state(sleeper.pid)[0] == letter,
                 f"the attached process to be traced and {'run' if commands else 'stop'}")
        if not commands:
            time.sleep(0.5)  # gdb connected and is idle at the stop
        gdb.kill()
        gdb.wait()
        wait_for(lambda: state(serve) is None, f"loaderdbg serve to end after gdb's SIGKILL {when}", timeout=20)
        assert state(sleeper.pid) == ("S", 0), when  # running (asleep), not stopped, nobody tracing it
        assert sleeper.poll() is None
    finally:
        if gdb is not None and gdb.poll() is None:
            gdb.kill()
            gdb.wait()
        end(serve)
        sleeper.kill()
        sleeper.wait()


def _reply(sock: socket.socket, reader: PacketReader) -> bytes:
    while True:
        for packet in reader.packets():
            if packet.kind == "packet":
                return packet.payload
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        reader.feed(data)


def test_tcp_is_loopback_only_and_serves_one_client():
    server = subprocess.Popen([LOADERDBG, "serve", "--port", "0", str(RDXBUG)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", server.stderr.readline())
        assert found
        port = int(found.group(1))
        # The kernel's own table: the one socket on that port listens on 127.0.0.1 (0100007F), nowhere else.
        listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        local = [fields[1] for fields in listening if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port]
        assert local == ["0100007F:%04X" % port]
        six = [line for line in Path("/proc/net/tcp6").read_text().splitlines()[1:]
               if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port]
        assert six == []
        with socket.create_connection(("127.0.0.1", port), timeout=30) as first:
            reader = PacketReader()
            first.sendall(frame(b"QStartNoAckMode"))
            assert _reply(first, reader) == b"OK"
            # While the first is served, a second finds nobody listening.
            with socket.socket() as second:
                assert second.connect_ex(("127.0.0.1", port)) != 0
            first.sendall(frame(b"qRcmd," + bytes_to_hex(b"step")))
            assert bytes.fromhex(_reply(first, reader).decode()).startswith(b"step 0")
            first.sendall(frame(b"D"))
            assert _reply(first, reader) == b"OK"
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_live_vfile_serves_mapped_files_only():
    """--live serves the files the process maps (and its maps), nothing else
    of the host: /etc/shadow and /etc/passwd are not found; a mapped file
    is read piece by piece, at any offset, never past its end."""
    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.live import LiveSession
    from loaderdbg.serve.live_target import LiveTarget
    from loaderdbg.serve.server import GdbServer

    target = LiveTarget(LiveSession(launch_spec("/bin/sleep", ["30"], aslr=False)))
    try:
        server = GdbServer(target, log=lambda line: pytest.fail(line))

        def open_(path: bytes) -> bytes:
            return server.handle(b"vFile:open:%s,0,0" % bytes_to_hex(path))

        for path in (b"/etc/shadow", b"/etc/passwd", b"/proc/self/environ", b"/proc/%d/environ" % target.pid,
                     b"/proc/%d/mem" % target.pid, b"/nonexistent"):
            assert open_(path) == b"F-1,2", path
        ldso = next(m.path for m in target.session.maps() if "ld-linux" in m.path)
        fd = int(open_(ldso.encode())[1:], 16)
        size = os.stat(ldso).st_size
        # gdb's struct fio_stat: st_size is the 8 bytes after seven 4-byte fields.
        assert server.handle(b"vFile:fstat:%x" % fd)[4 + 28:4 + 36] == size.to_bytes(8, "big")
        with open(ldso, "rb") as handle:
            handle.seek(size - 3)
            tail = handle.read()
        assert server.handle(b"vFile:pread:%x,100,%x" % (fd, size - 3)) == b"F3;" + tail
        assert server.handle(b"vFile:pread:%x,100,%x" % (fd, size + 10)) == b"F0;"
        assert server.handle(b"vFile:pread:%x,10,ffffffffffffffffff" % fd) == b"F0;"
    finally:
        target.close()
    assert state(target.pid) is None


def test_gdb_kill_ends_an_attached_process_as_gdbserver_does():
    """`kill` in gdb on --pid: the process dies (quit and detach leave it running)."""
    sleeper = subprocess.Popen(["/bin/sleep", "600"])
    try:
        wait_for(lambda: Path(f"/proc/{sleeper.pid}/exe").resolve().name == "sleep", "sleep to exec")
        gdb = start_gdb(["--pid", str(sleeper.pid)], ["set confirm off", "kill"])
        assert gdb.wait(timeout=120) == 0
        assert sleeper.wait(timeout=20) == -signal.SIGKILL
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
