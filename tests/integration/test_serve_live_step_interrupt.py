"""gdb's Ctrl-C (a bare 0x03) during a live `stepi` that does not end by
itself: the thread our stop cut out of read(2) runs it again inside the
step, and it blocks. serve read no packet while a step ran, so gdb's
Ctrl-C went unread and gdb hung with the server; a step is watched for it
as a continue is."""

from __future__ import annotations

import os
import socket

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.serve.live_target import LiveTarget

from rsp_wire import serving


def test_ctrl_c_ends_a_stepi_blocked_in_read(fixtures_dir, reader_in_read):
    program = str(fixtures_dir / "threads" / "blocked_reader")
    sink = os.open(os.devnull, os.O_WRONLY)
    session = LiveSession(LaunchSpec(path=program, argv=(program, "worker"), env={"PATH": "/usr/bin:/bin"},
                                     stdout_fd=sink, stderr_fd=sink))
    os.close(sink)
    reader_tid = reader_in_read(session)
    with serving(LiveTarget(session)) as wire:
        wire.send(f"vCont;s:{reader_tid:x}".encode())
        wire.sock.settimeout(0.5)
        try:
            early = wire.reply()
        except socket.timeout:
            early = None
        assert early is None, early  # blocked in read: no stop yet
        wire.sock.settimeout(10)
        wire.send_raw(b"\x03")
        stop = wire.reply()
        assert stop.startswith((b"T02", b"T13", b"T11")), stop  # a stop, not a hang
        assert f"thread:{reader_tid:x};".encode() in stop, stop
        assert session.alive
        wire.send(b"k")
