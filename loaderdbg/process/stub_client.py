"""A client's end of one GDB remote protocol connection (qemu-user's stub).

One request, one reply, in order: the stub answers every packet it gets
(an empty payload for one it does not know), and a resume's reply is the
stop that ended it. Framing is loaderdbg/gdb_remote/packets.py's; this
module only owns the socket, the acks and a retransmission on ``-``.
"""

from __future__ import annotations

import socket

from loaderdbg.gdb_remote.packets import Packet, PacketReader, frame


class StubClosed(EOFError):
    """The stub's end of the connection went away (qemu exited or died)."""


class StubConnection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = PacketReader()
        self._pending: list[Packet] = []
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # A step is one small packet each way: without this, Nagle and
            # delayed ACKs cost ~44 ms per step instead of ~0.4 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def fileno(self) -> int:
        return self._sock.fileno()

    def request(self, payload: bytes) -> bytes:
        """Send one packet and return the payload of the stub's reply."""
        wire = frame(payload)
        self._send(wire)
        while True:
            item = self._next()
            if item.kind == "nack":
                self._send(wire)
            elif item.kind == "packet":
                if not item.checksum_ok:
                    self._send(b"-")
                    continue
                self._send(b"+")
                return item.payload
            # '+' for our packet and stray 0x03s need nothing.

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as err:
            raise StubClosed(f"gdb stub connection lost: {err.strerror or err}") from None

    def _next(self) -> Packet:
        while not self._pending:
            try:
                data = self._sock.recv(65536)
            except OSError as err:
                raise StubClosed(f"gdb stub connection lost: {err.strerror or err}") from None
            if not data:
                raise StubClosed("gdb stub closed the connection")
            self._reader.feed(data)
            self._pending.extend(self._reader.packets())
        return self._pending.pop(0)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
