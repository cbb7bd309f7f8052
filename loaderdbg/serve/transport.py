"""Bytes between gdb and the server: stdin/stdout (`target remote | loaderdbg
serve --stdio FILE`) or one TCP connection (`target remote :PORT`).

One client at a time, as gdbserver without --multi: when it goes, so does
the server (a --stdio server ends; a TCP one closes its port). gdb's Ctrl-C
(a bare 0x03) is looked for between packets and, while a continue runs, by
``interrupted()``, which reads what has arrived without waiting.
"""

from __future__ import annotations

import os
import select
import socket
from collections import deque
from typing import Callable

from loaderdbg.gdb_remote.packets import Packet, PacketReader, frame
from loaderdbg.serve.server import PACKET_SIZE, Disconnected, GdbServer


class Channel:
    """A pair of file descriptors (the same one for a socket)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd

    def read(self, timeout: float | None) -> bytes | None:
        """What has arrived (None: nothing within timeout); Disconnected at EOF."""
        if timeout is not None:
            ready, _, _ = select.select([self.read_fd], [], [], timeout)
            if not ready:
                return None
        try:
            data = os.read(self.read_fd, 65536)
        except (ConnectionResetError, BrokenPipeError):
            raise Disconnected from None
        if not data:
            raise Disconnected
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.write_fd, view)
                view = view[written:]
        except (ConnectionResetError, BrokenPipeError):
            raise Disconnected from None


# Items read ahead while a continue runs (gdb sends nothing then but
# Ctrl-C): past this many, a peer that floods is no longer read until the
# continue ends, so it cannot grow the queue without end.
MAX_READ_AHEAD = 64


class Connection:
    """The packet layer of one client: acks, retransmission, interrupts."""

    def __init__(self, server: GdbServer, channel: Channel) -> None:
        self.server = server
        self.channel = channel
        self.reader = PacketReader(max_payload=PACKET_SIZE * 4)
        self.pending: deque[Packet] = deque()
        self.last_sent: bytes | None = None

    def _pump(self, timeout: float | None) -> None:
        data = self.channel.read(timeout)
        if data is not None:
            self.reader.feed(data)
            self.pending.extend(self.reader.packets())

    def interrupted(self) -> bool:
        """Has gdb sent Ctrl-C? Packets that arrived meanwhile wait their turn."""
        if len(self.pending) < MAX_READ_AHEAD:
            self._pump(0)
        for packet in self.pending:
            if packet.kind == "interrupt":
                self.pending.remove(packet)
                return True
        return False

    def _send(self, data: bytes) -> None:
        self.channel.write(data)

    def serve(self) -> None:
        """Answer packets until the client detaches, kills or goes away."""
        server = self.server
        try:
            while not server.finished:
                while not self.pending:
                    self._pump(None)
                packet = self.pending.popleft()
                if packet.kind == "nack":
                    if self.last_sent is not None and not server.no_ack:
                        self._send(self.last_sent)
                    continue
                if packet.kind != "packet":
                    continue  # acks; a Ctrl-C while stopped (there is nothing to stop)
                if not packet.checksum_ok and not packet.oversized:
                    if not server.no_ack:
                        self._send(b"-")
                    continue
                if not server.no_ack:
                    self._send(b"+")
                reply = b"E01" if packet.oversized else server.handle(packet.payload, self.interrupted)
                for line in server.take_console():
                    self._send(frame(line))  # gdb acks each (acks are read past above)
                if reply is not None:
                    self.last_sent = frame(reply)
                    self._send(self.last_sent)
        except Disconnected:
            pass


def serve_stdio(server: GdbServer) -> None:
    Connection(server, Channel(0, 1)).serve()


def serve_tcp(server: GdbServer, host: str, port: int, announce: Callable[[str, int], None]) -> None:
    """Listen on host:port for one client, serve it, close the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1)
        announce(host, listener.getsockname()[1])
        client, _ = listener.accept()
    finally:
        listener.close()
    with client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = client.fileno()
        Connection(server, Channel(fd, fd)).serve()
