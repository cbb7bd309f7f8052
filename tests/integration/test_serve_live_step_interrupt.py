"""gdb's Ctrl-C (a bare 0x03) during a live `stepi` that does not end by
itself: the thread our stop cut out of read(2) runs it again inside the
step, and it blocks. serve read no packet while a step ran, so gdb's
Ctrl-C went unread and gdb hung with the server; a step is watched for it
as a continue is."""

from __future__ import annotations

import os
import socket
import threading
import time

from loaderdbg.gdb_remote.packets import PacketReader, frame
from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.serve.live_target import LiveTarget
from loaderdbg.serve.server import GdbServer
from loaderdbg.serve.transport import Channel, Connection


def test_ctrl_c_ends_a_stepi_blocked_in_read(fixtures_dir):
    program = str(fixtures_dir / "threads" / "blocked_reader")
    sink = os.open(os.devnull, os.O_WRONLY)
    session = LiveSession(LaunchSpec(path=program, argv=(program, "worker"), env={"PATH": "/usr/bin:/bin"},
                                     stdout_fd=sink, stderr_fd=sink))
    os.close(sink)
    session.cont("sym:marker")
    reason = session.cont("sym:marker")
    reader_tid = next(t.tid for t in session.threads() if t.tid != reason.thread)
    session.select_thread(reader_tid)
    target = LiveTarget(session)
    ours, theirs = socket.socketpair()
    server = threading.Thread(target=Connection(GdbServer(target), Channel(theirs.fileno(), theirs.fileno())).serve,
                              daemon=True)
    server.start()
    reader = PacketReader()

    def reply() -> bytes:
        while True:
            for packet in reader.packets():
                if packet.kind == "packet":
                    return packet.payload
            data = ours.recv(65536)
            assert data
            reader.feed(data)
    try:
        ours.sendall(frame(b"QStartNoAckMode"))
        assert reply() == b"OK"
        ours.sendall(frame(f"vCont;s:{reader_tid:x}".encode()))
        ours.settimeout(0.5)
        try:
            early = reply()
        except socket.timeout:
            early = None
        assert early is None, early  # blocked in read: no stop yet
        ours.settimeout(10)
        ours.sendall(b"\x03")
        stop = reply()
        assert stop.startswith((b"T02", b"T13", b"T11")), stop  # a stop, not a hang
        assert f"thread:{reader_tid:x}".encode() in stop or b"thread:p" in stop, stop
        assert target.session.alive
        ours.sendall(frame(b"k"))
    finally:
        ours.close()
        server.join(timeout=10)
        theirs.close()
        target.close()
    assert not server.is_alive()
