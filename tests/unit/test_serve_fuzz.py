"""A hostile client against the gdb server: thousands of packets, framed
right and wrong, with random payloads for every packet letter (bad hex,
huge and negative numbers, missing fields, lengths of 0xffffffff and
beyond), fed through the real packet layer (transport.Connection) over an
in-memory channel. Every reply must be a well-formed packet of bounded
size, no exception may escape, and none may reach the server's "a bug of
ours" log. Deterministic: a fixed seed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loaderdbg.gdb_remote.packets import PacketReader, bytes_to_hex, checksum, frame
from loaderdbg.record.replay import ReplaySession
from loaderdbg.serve.replay_target import ReplayTarget
from loaderdbg.serve.server import PACKET_SIZE, GdbServer
from loaderdbg.serve.transport import Connection, Disconnected

RECORDING = Path(__file__).resolve().parents[2] / "recordings" / "execsolib-rdxbug-crash.ldbg"
SEED = 0x1d6db
PACKETS = 3000
# The longest reply a packet may get: binary vFile data (PacketSize / 2)
# doubled by escapes, or a hex memory read, with room for a header.
LONGEST_REPLY = PACKET_SIZE + 64


class MemoryChannel:
    """What gdb would send, in chunks of random sizes; what the server writes, kept."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self.chunks = []
        at = 0
        while at < len(data):
            size = rng.choice((1, 2, 7, 64, 1000, 5000))
            self.chunks.append(data[at:at + size])
            at += size
        self.chunks.reverse()
        self.written = bytearray()

    def read(self, timeout):
        if not self.chunks:
            raise Disconnected
        if timeout == 0 and self.chunks and self.chunks[-1][:1] != b"\x03":
            return None  # nothing new "arrived" while a continue looks for Ctrl-C, most of the time
        return self.chunks.pop()

    def write(self, data: bytes) -> None:
        self.written += data


def _number(rng: random.Random, pid: int) -> bytes:
    return rng.choice((
        b"0", b"1", b"10", b"%x" % rng.randrange(1 << 16), b"%x" % rng.randrange(1 << 48),
        b"%x" % pid, b"ffffffff", b"7fffffff", b"ffffffffffffffff", b"10000000000000000",
        b"f" * 40, b"-1", b"-10", b"", b"zz", b"0x10", b" 1", b"1 ", b"\xff\xfe", b"%x" % rng.randrange(1 << 64),
    ))


def _hex_text(rng: random.Random, pid: int) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return b"zz"
    if choice == 1:
        return b"abc"  # odd length
    if choice == 2:
        return b""
    text = rng.choice((b"/etc/shadow", b"/etc/passwd", b"/proc/%d/maps" % pid, b"/proc/self/maps",
                       b"/proc/%d/exe" % pid, b"/proc/self/exe", b"../../../../etc/shadow",
                       b"/usr/lib/debug/.build-id/00/11.debug", b"/lib/x86_64-linux-gnu/libc.so.6",
                       b"libc.so.6", b"x@0x10", b"x@0xzz", b"@0x", b"/nonexistent", bytes(rng.randrange(256)
                                                                                            for _ in range(8))))
    return bytes_to_hex(text)


def _monitor(rng: random.Random, pid: int) -> bytes:
    command = rng.choice((
        "step", "help", "milestones", "goto 0", "goto 10", "goto -1", "goto 99999999999999999999",
        "goto 0x10", "goto x", "goto", "until entry", "until nowhere", "until step:5", "until",
        "who $rdx", "who $nosuch", "who 0x10", "who 0x10 0", "who 0x10 -1", "who 0x10 0xffffffffffffffff",
        "who 0xffffffffffffffffffff 8", "who sym:main", "who", "who 1 2 3", "frob", "'unclosed", "",
        "\x00\xff", "milestones extra",
    ))
    return bytes_to_hex(command.encode("utf-8", "surrogateescape"))


def _payload(rng: random.Random, pid: int) -> bytes:
    n = lambda: _number(rng, pid)  # noqa: E731
    thread = lambda: rng.choice((b"", b"-1", b"0", b"p%x.%x" % (pid, pid), b"p-1.-1", b"p%x" % pid,  # noqa: E731
                                 b"pzz.1", b"p1.", b"p", n()))
    forms = [
        lambda: b"?", lambda: b"g", lambda: b"p" + n(), lambda: b"P" + n() + b"=" + n(),
        lambda: b"G" + n(), lambda: b"M" + n() + b"," + n() + b":" + n(), lambda: b"X" + n() + b"," + n() + b":",
        lambda: b"m" + n() + b"," + n(), lambda: b"m" + n(), lambda: b"m," + n(), lambda: b"m",
        lambda: b"Z" + n() + b"," + n() + b"," + n(), lambda: b"z" + n() + b"," + n() + b"," + n(),
        lambda: b"Z%d," % rng.randrange(6) + n() + b"," + n() + rng.choice((b"", b";X1,0", b";cmds:0,x")),
        lambda: b"z%d," % rng.randrange(6) + n() + b"," + n(), lambda: b"Z0", lambda: b"Z2,,",
        lambda: b"s", lambda: b"c", lambda: b"S" + n(), lambda: b"C" + n(), lambda: b"bs", lambda: b"bc",
        lambda: b"b" + n(),
        lambda: b"vCont?", lambda: b"vCont;" + rng.choice((b"s", b"c", b"S05", b"C0b", b"t", b"r1,2", b"x", b""))
        + rng.choice((b"", b":" + thread())) + rng.choice((b"", b";c", b";c:" + thread())),
        lambda: b"H" + rng.choice((b"g", b"c", b"")) + thread(), lambda: b"T" + thread(),
        lambda: b"qXfer:" + rng.choice((b"features", b"auxv", b"exec-file", b"libraries-svr4", b"threads",
                                        b"memory-map", b"")) + b":" + rng.choice((b"read", b"write", b""))
        + b":" + rng.choice((b"target.xml", b"", b"start=" + n() + b";prev=" + n(), b"lmid=" + n(),
                             b"i386-64bit.xml", b"%x" % pid)) + b":" + n() + b"," + n(),
        lambda: b"qXfer:auxv:read::" + n(), lambda: b"qXfer:features:read:target.xml",
        lambda: b"vFile:setfs:" + n(), lambda: b"vFile:open:" + _hex_text(rng, pid) + b"," + n() + b"," + n(),
        lambda: b"vFile:open:" + _hex_text(rng, pid), lambda: b"vFile:open:",
        lambda: b"vFile:pread:" + rng.choice((b"1", b"2", b"3", n())) + b"," + n() + b"," + n(),
        lambda: b"vFile:pread:" + n(), lambda: b"vFile:close:" + n(), lambda: b"vFile:fstat:" + n(),
        lambda: b"vFile:readlink:" + _hex_text(rng, pid), lambda: b"vFile:pwrite:1,0,abc",
        lambda: b"vFile:unlink:" + _hex_text(rng, pid), lambda: b"vFile:" + n(),
        lambda: b"qRcmd," + _monitor(rng, pid), lambda: b"qRcmd," + n(),
        lambda: b"qSupported:" + rng.choice((b"multiprocess+;swbreak+", b"", b";;;", b"xmlRegisters=i386")),
        lambda: b"QStartNoAckMode", lambda: b"qC", lambda: b"qfThreadInfo", lambda: b"qsThreadInfo",
        lambda: b"qOffsets", lambda: b"qSymbol::", lambda: b"qSymbol:" + n(), lambda: b"qAttached:" + n(),
        lambda: b"qThreadExtraInfo," + thread(), lambda: b"QPassSignals:" + n() + b";" + n(),
        lambda: b"QNonStop:" + n(), lambda: b"qTStatus", lambda: b"vMustReplyEmpty", lambda: b"!",
        lambda: b"D", lambda: b"D;" + n(), lambda: b"k", lambda: b"vKill;" + n(),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
        lambda: rng.choice(b"?gGpPmMXZzcsCSbHTDk!vqQ").to_bytes(1, "little")
        + bytes(rng.randrange(32, 127) for _ in range(rng.randrange(0, 30))),
    ]
    payload = rng.choice(forms)()
    if rng.random() < 0.15 and payload:
        # A mutation: a byte flipped, cut short, or a field doubled.
        choice = rng.randrange(3)
        at = rng.randrange(len(payload))
        if choice == 0:
            payload = payload[:at] + bytes((rng.randrange(256),)) + payload[at + 1:]
        elif choice == 1:
            payload = payload[:at]
        else:
            payload = payload + b"," + payload[at:]
    return payload


def _wire(rng: random.Random, payload: bytes) -> bytes:
    """The payload as a peer might put it on the wire: mostly right."""
    roll = rng.random()
    if roll < 0.80:
        out = frame(payload)
    elif roll < 0.85:
        out = b"$" + payload + b"#%02x" % ((checksum(payload) + 1) & 0xFF)  # a wrong checksum
    elif roll < 0.88:
        out = b"$" + payload + b"#zz"
    elif roll < 0.91 and payload:
        body = payload[:1] + b"*" + bytes((rng.randrange(29, 127),))  # a run, possibly a silly one
        out = b"$" + body + b"#%02x" % checksum(body)
    elif roll < 0.94:
        out = rng.choice((b"+", b"-", b"\x03", b"junk", b"#", b"}", b"$#", b"$$$"))
    elif roll < 0.95:
        out = b"$" + b"m0," * 30000 + b"#00"  # longer than the reader buffers
    else:
        out = frame(payload)[:rng.randrange(1, len(frame(payload)))] + frame(b"?")  # cut off, then another
    return out + (b"\x03" if rng.random() < 0.01 else b"")


@pytest.fixture(scope="module")
def replay():
    session = ReplaySession(str(RECORDING))
    yield session
    session.close()


def test_random_and_mutated_packets_get_well_formed_replies(replay):
    rng = random.Random(SEED)
    target = ReplayTarget(replay)
    target.goto(0)
    logged: list[str] = []
    server = GdbServer(target, log=logged.append)
    pid = target.pid
    stream = b"".join(_wire(rng, _payload(rng, pid)) for _ in range(PACKETS))
    channel = MemoryChannel(stream, rng)
    connection = Connection(server, channel)
    # A D, k or vKill ends a connection's loop; the next part of the stream is served as a new session would be.
    while channel.chunks or connection.pending:
        server.finished = False
        connection.serve()
    reader = PacketReader(max_payload=1 << 30)
    reader.feed(bytes(channel.written))
    replies = 0
    for item in reader.packets():
        assert item.kind in ("ack", "nack", "packet"), item
        if item.kind == "packet":
            replies += 1
            assert item.checksum_ok, item.payload[:80]
            assert len(item.payload) <= LONGEST_REPLY or item.payload[:1] in b"0123456789abcdef", \
                (len(item.payload), item.payload[:80])  # only monitor text (hex) may run longer
    assert replies > PACKETS // 2
    assert logged == []  # nothing reached "a bug of ours"


def test_huge_lengths_are_capped(replay):
    target = ReplayTarget(replay)
    target.goto(0)
    server = GdbServer(target, log=lambda line: pytest.fail(line))
    rsp = target.registers()["rsp"]
    memory = server.handle(b"m%x,ffffffff" % rsp)
    assert 0 < len(memory) <= PACKET_SIZE and len(memory) % 2 == 0
    assert server.handle(b"m%x,ffffffffffffffffffff" % rsp) == memory
    xml = server.handle(b"qXfer:features:read:target.xml:0,ffffffffffff")
    assert xml[:1] in b"lm" and len(xml) <= PACKET_SIZE
    assert server.handle(b"qXfer:features:read:target.xml:ffffffffffffffffff,10") == b"l"
    fd = int(server.handle(b"vFile:open:%s,0,0" % bytes_to_hex(target.exec_path().encode()))[1:], 16)
    data = server.handle(b"vFile:pread:%x,ffffffffffff,0" % fd)
    count, _, body = data[1:].partition(b";")
    assert int(count, 16) == len(body) <= PACKET_SIZE // 2
    assert server.handle(b"vFile:pread:%x,10,ffffffffffffffffff" % fd) == b"F0;"


def test_a_recording_never_serves_a_host_file(replay):
    """vFile on a recording serves its stored files and synthesised maps
    only: /etc/shadow, /etc/passwd, a host path by another name, or any
    library's path under the debug directory, are not found."""
    target = ReplayTarget(replay)
    server = GdbServer(target)
    for path in (b"/etc/shadow", b"/etc/passwd", b"/etc/../etc/passwd", b"../../etc/passwd",
                 b"/proc/self/environ", b"/proc/%d/environ" % target.pid, b"/proc/1/maps", b"/etc/hostname"):
        assert server.handle(b"vFile:open:%s,0,0" % bytes_to_hex(path)) == b"F-1,2", path
    assert server.handle(b"vFile:readlink:%s" % bytes_to_hex(b"/proc/1/exe")) == b"F-1,16"


def test_open_files_are_bounded(replay):
    """A client that opens and never closes gets EMFILE, not an ever-growing table."""
    server = GdbServer(ReplayTarget(replay))
    maps = bytes_to_hex(b"/proc/self/maps")
    replies = [server.handle(b"vFile:open:%s,0,0" % maps) for _ in range(200)]
    opened = [r for r in replies if not r.startswith(b"F-1")]
    assert 0 < len(opened) < 200 and replies[-1] == b"F-1,18"
    assert server.handle(b"vFile:close:%s" % opened[0][1:]) == b"F0"
    assert not server.handle(b"vFile:open:%s,0,0" % maps).startswith(b"F-1")


def test_a_flood_during_a_continue_is_not_read_without_end(replay):
    """Packets sent while a continue runs wait in a bounded queue: the
    continue's Ctrl-C check stops reading once it is full."""
    from loaderdbg.serve.transport import MAX_READ_AHEAD

    flood = frame(b"?") * 100_000
    channel = MemoryChannel(b"", random.Random(1))
    channel.chunks = [flood[i:i + 1000] for i in range(0, len(flood), 1000)][::-1]
    channel.read = lambda timeout, read=channel.read: read(None)  # more has always arrived
    connection = Connection(GdbServer(ReplayTarget(replay)), channel)
    for _ in range(1000):  # what a long continue asks, chunk after chunk
        assert not connection.interrupted()
    assert MAX_READ_AHEAD <= len(connection.pending) < MAX_READ_AHEAD + 1000 // len(frame(b"?")) + 1
    assert len(channel.chunks) > 90  # the rest is left unread (in the socket, for the client to wait on)


def test_proc_cmdline_is_the_recorded_argv(replay):
    """gdb's `info proc cmdline` reads /proc/PID/cmdline: a recording serves
    the argv strings of its memory (at step 0 the argv it recorded)."""
    target = ReplayTarget(replay)
    target.goto(0)
    server = GdbServer(target, log=lambda line: pytest.fail(line))
    fd = int(server.handle(b"vFile:open:%s,0,0" % bytes_to_hex(b"/proc/%d/cmdline" % target.pid))[1:], 16)
    count, _, data = server.handle(b"vFile:pread:%x,1000,0" % fd)[1:].partition(b";")
    argv = replay.recording.meta["argv"]
    assert data == b"".join(arg.encode() + b"\0" for arg in argv) and int(count, 16) == len(data)
