"""A GdbServer on a target, over a socket pair, driven packet by packet the
way gdb drives it (for what gdb itself cannot be made to do on cue, such
as a Ctrl-C at a chosen moment). Imported as a plain module, as the other
helpers here."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from typing import Iterator

from loaderdbg.gdb_remote.packets import PacketReader, frame
from loaderdbg.serve.server import GdbServer
from loaderdbg.serve.transport import Channel, Connection


class Wire:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = PacketReader()

    def send(self, payload: bytes) -> None:
        self.sock.sendall(frame(payload))

    def send_raw(self, data: bytes) -> None:
        """Bytes outside any packet: gdb's Ctrl-C is a bare 0x03."""
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """The next packet's payload (socket.timeout per the socket's)."""
        while True:
            for packet in self._reader.packets():
                if packet.kind == "packet":
                    return packet.payload
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self._reader.feed(data)


@contextmanager
def serving(target) -> Iterator[Wire]:
    """The server on ``target`` in its own thread, no-ack mode on; closed
    (and the target with it) however the test ends, the server thread
    checked gone."""
    ours, theirs = socket.socketpair()
    server = threading.Thread(target=Connection(GdbServer(target), Channel(theirs.fileno(), theirs.fileno())).serve,
                              daemon=True)
    server.start()
    wire = Wire(ours)
    try:
        wire.send(b"QStartNoAckMode")
        assert wire.reply() == b"OK"
        yield wire
    finally:
        ours.close()
        server.join(timeout=10)
        theirs.close()
        target.close()
    assert not server.is_alive()
