"""The GDB remote serial protocol's framing, as bytes in and bytes out.

No sockets and no state beyond a reader's buffer: the server
(loaderdbg/serve/) and the qemu-user stub client
(loaderdbg/process/qemu_target.py) both speak through this module.

On the wire a packet is ``$payload#xx``: xx is the modulo-256 sum of the
payload bytes as sent, in two lowercase hex digits. Inside a payload ``#``,
``$``, ``}`` and ``*`` are sent as ``}`` followed by the byte XOR 0x20, and
a sender may run-length encode: ``c*n`` means c followed by ``ord(n) - 29``
more copies of c. Outside packets a peer sends ``+`` (got it), ``-``
(send it again) and a bare 0x03 byte (interrupt, gdb's Ctrl-C).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

ESCAPE = 0x7D  # '}'
ESCAPED = frozenset(b"#$}*")
RLE_MARK = 0x2A  # '*'
RLE_BIAS = 29
INTERRUPT = 0x03

# A payload longer than this is not buffered: the reader reports the packet
# as bad once its end arrives (gdb sends at most the PacketSize a stub
# announces; anything bigger is a broken or hostile peer).
MAX_PAYLOAD = 1 << 20


def checksum(payload: bytes) -> int:
    """The modulo-256 sum of the bytes as they go on the wire."""
    return sum(payload) & 0xFF


def escape_binary(data: bytes) -> bytes:
    """Escape ``#``, ``$``, ``}`` and ``*`` as ``}`` + (byte ^ 0x20)."""
    if not any(byte in ESCAPED for byte in data):
        return bytes(data)
    out = bytearray()
    for byte in data:
        if byte in ESCAPED:
            out.append(ESCAPE)
            out.append(byte ^ 0x20)
        else:
            out.append(byte)
    return bytes(out)


def unescape_binary(data: bytes) -> bytes:
    """Undo escape_binary. A trailing lone ``}`` is dropped (nothing to undo)."""
    if ESCAPE not in data:
        return bytes(data)
    out = bytearray()
    escaped = False
    for byte in data:
        if escaped:
            out.append(byte ^ 0x20)
            escaped = False
        elif byte == ESCAPE:
            escaped = True
        else:
            out.append(byte)
    return bytes(out)


def expand_rle(payload: bytes) -> bytes:
    """Expand gdb's run-length encoding: ``X*n`` is X repeated ord(n) - 29
    more times. A ``*`` with nothing before it, or at the very end, is kept
    as it is (a malformed run is data, not an error)."""
    if RLE_MARK not in payload:
        return bytes(payload)
    out = bytearray()
    i = 0
    n = len(payload)
    while i < n:
        byte = payload[i]
        if byte == RLE_MARK and out and i + 1 < n:
            count = payload[i + 1] - RLE_BIAS
            if count > 0:
                out += bytes((out[-1],)) * count
            i += 2
            continue
        out.append(byte)
        i += 1
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """``$payload#xx`` with the payload escaped (escape_binary)."""
    body = escape_binary(payload)
    return b"$" + body + b"#" + b"%02x" % checksum(body)


@dataclass(frozen=True)
class Packet:
    """One complete item read from a peer.

    kind: ``packet`` (``$...#xx``), ``ack`` (``+``), ``nack`` (``-``) or
    ``interrupt`` (a bare 0x03). For a packet, ``payload`` has its
    run-length encoding expanded and its escapes undone, and
    ``checksum_ok`` says whether the checksum sent matched the bytes
    received; ``oversized`` marks a packet longer than the reader's limit,
    whose payload was dropped (checksum_ok is False then).
    """

    kind: str
    payload: bytes = b""
    checksum_ok: bool = True
    oversized: bool = False


ACK = Packet("ack")
NACK = Packet("nack")
INTERRUPT_PACKET = Packet("interrupt")


class PacketReader:
    """Bytes from a peer in (any split), complete items out, in order.

    Bytes between items that are none of ``$``, ``+``, ``-`` and 0x03 are
    junk and skipped. Inside a packet every byte is payload until ``#``
    (0x03 included: it is data there), then two checksum characters.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._ready: list[Packet] = []
        # Inside a packet: the payload so far (None: between packets),
        # whether it overflowed, and the checksum characters after '#'
        # (None: still in the payload).
        self._payload: bytearray | None = None
        self._overflow = False
        self._sum: bytearray | None = None

    def feed(self, data: bytes) -> None:
        # A payload is taken up to its '#' in one slice: byte by byte, a
        # 536-byte `g` reply of qemu's stub cost more than the step it followed.
        data = bytes(data)
        at, size = 0, len(data)
        while at < size:
            payload = self._payload
            if payload is None or self._sum is not None:
                self._take(data[at])
                at += 1
                continue
            end = data.find(b"#", at)
            stop = size if end < 0 else end
            if not self._overflow:
                if len(payload) + (stop - at) > self.max_payload:
                    self._overflow = True
                    payload.clear()
                else:
                    payload += data[at:stop]
            if end < 0:
                return
            self._sum = bytearray()
            at = end + 1

    def _take(self, byte: int) -> None:
        payload = self._payload
        if payload is None:
            if byte == 0x24:  # '$'
                self._payload = bytearray()
                self._overflow = False
                self._sum = None
            elif byte == 0x2B:  # '+'
                self._ready.append(ACK)
            elif byte == 0x2D:  # '-'
                self._ready.append(NACK)
            elif byte == INTERRUPT:
                self._ready.append(INTERRUPT_PACKET)
            return
        if self._sum is not None:
            self._sum.append(byte)
            if len(self._sum) == 2:
                self._finish(bytes(self._sum))
            return
        if byte == 0x23:  # '#'
            self._sum = bytearray()
            return
        if self._overflow:
            return
        if len(payload) >= self.max_payload:
            self._overflow = True
            payload.clear()
            return
        payload.append(byte)

    def _finish(self, sent: bytes) -> None:
        raw = bytes(self._payload or b"")
        overflow = self._overflow
        self._payload = None
        self._overflow = False
        self._sum = None
        if overflow:
            self._ready.append(Packet("packet", b"", False, True))
            return
        try:
            ok = parse_hex_int(sent) == checksum(raw)
        except ValueError:
            ok = False
        self._ready.append(Packet("packet", unescape_binary(expand_rle(raw)), ok))

    def packets(self) -> Iterator[Packet]:
        """The complete items fed so far, oldest first; each once."""
        while self._ready:
            ready, self._ready = self._ready, []
            yield from ready


# -- hex ------------------------------------------------------------------------

def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, (bytes, bytearray, memoryview)) else value


def hex_to_bytes(text: bytes | str) -> bytes:
    """``"0a1b"`` -> ``b"\\x0a\\x1b"``; ValueError on odd length or a non-hex digit."""
    try:
        return bytes.fromhex(_text(text))
    except UnicodeDecodeError:
        raise ValueError("hex text is not ASCII") from None


def bytes_to_hex(data: bytes) -> bytes:
    """``b"\\x0a\\x1b"`` -> ``b"0a1b"`` (lowercase, as gdb sends)."""
    return bytes(data).hex().encode("ascii")


def parse_hex_int(text: bytes | str) -> int:
    """A non-negative hex number as gdb writes it (no sign, no 0x);
    ValueError on anything else, the empty string included."""
    try:
        spelled = _text(text)
    except UnicodeDecodeError:
        raise ValueError("hex number is not ASCII") from None
    if not spelled or any(c not in "0123456789abcdefABCDEF" for c in spelled):
        raise ValueError(f"not a hex number: {spelled!r}")
    return int(spelled, 16)
