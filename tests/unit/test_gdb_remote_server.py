"""The gdb server's packet handling and transport on a sample recording (no
gdb, no ptrace): what each packet answers, and that malformed, oversized or
unknown input gets an error or an empty reply, never an exception."""

from __future__ import annotations

import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loaderdbg.gdb_remote.packets import PacketReader, bytes_to_hex, frame, hex_to_bytes
from loaderdbg.record import index
from loaderdbg.record.replay import ReplaySession
from loaderdbg.serve import registers as regs
from loaderdbg.serve.replay_target import ReplayTarget
from loaderdbg.serve.server import GdbServer
from loaderdbg.serve.transport import Channel, Connection

RECORDING = Path(__file__).resolve().parents[2] / "recordings" / "execsolib-rdxbug-crash.ldbg"


@pytest.fixture(scope="module")
def replay():
    session = ReplaySession(str(RECORDING))
    yield session
    session.close()


@pytest.fixture
def target(replay):
    """A fresh target (no breakpoints) on the shared recording, at step 0."""
    made = ReplayTarget(replay)
    made.goto(0)
    return made


@pytest.fixture
def server(target):
    logged = []
    made = GdbServer(target, log=logged.append)
    made.logged = logged
    return made


def test_qsupported_offers_what_gdb_needs(server):
    reply = server.handle(b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
    features = reply.split(b";")
    for feature in (b"qXfer:features:read+", b"qXfer:auxv:read+", b"qXfer:exec-file:read+",
                    b"qXfer:libraries-svr4:read+", b"vContSupported+", b"swbreak+", b"hwbreak+",
                    b"QStartNoAckMode+", b"ReverseStep+", b"ReverseContinue+", b"multiprocess+"):
        assert feature in features
    assert any(f.startswith(b"PacketSize=") for f in features)
    assert server.handle(b"?").startswith(b"T05")
    assert b"thread:p%x.%x;" % (server.target.pid, server.target.pid) in server.handle(b"?")


def test_target_xml_and_registers_agree(server, target):
    xml = b""
    offset = 0
    while True:
        reply = server.handle(b"qXfer:features:read:target.xml:%x,200" % offset)
        xml += reply[1:]
        offset += len(reply) - 1
        if reply[:1] == b"l":
            break
    root = ET.fromstring(xml)
    described = [(r.get("name"), int(r.get("bitsize")), int(r.get("regnum"))) for r in root.iter("reg")]
    for name in ("rax", "rip", "eflags", "cs", "fs_base", "gs_base", "orig_rax", "st0", "xmm15", "mxcsr"):
        assert name in [d[0] for d in described]
    assert [d[2] for d in described] == list(range(len(described)))
    g = server.handle(b"g")
    assert len(g) == 2 * sum(bits // 8 for _, bits, _ in described)
    rip = int.from_bytes(hex_to_bytes(server.handle(b"p%x" % regs.X86_64.by_name["rip"].number)), "little")
    assert rip == target.registers()["rip"]
    assert server.handle(b"p%x" % regs.X86_64.by_name["st0"].number) == b"xx" * 10  # not recorded: unavailable


def test_aarch64_description_is_gdbs_core_feature_in_the_g_packets_order():
    """aarch64-core.xml's registers, numbered as the g packet carries them,
    from the decoded user_pt_regs (pstate as cpsr)."""
    described = ET.fromstring(regs.AARCH64.target_xml)
    assert described.find("architecture").text == "aarch64"
    assert [f.get("name") for f in described.iter("feature")] == ["org.gnu.gdb.aarch64.core"]
    names = [(r.get("name"), int(r.get("bitsize")), int(r.get("regnum"))) for r in described.iter("reg")]
    assert names == [*((f"x{i}", 64, i) for i in range(31)), ("sp", 64, 31), ("pc", 64, 32), ("cpsr", 32, 33)]
    values = {**{f"x{i}": i for i in range(31)}, "sp": 0x7FF0, "pc": 0x5500001324, "pstate": 0x60000000}
    g = regs.AARCH64.encode_all(values)
    assert len(g) == 2 * (33 * 8 + 4)
    assert hex_to_bytes(g[-8:]) == (0x60000000).to_bytes(4, "little")
    assert int.from_bytes(hex_to_bytes(g[32 * 16:33 * 16]), "little") == 0x5500001324


def test_memory_reads_and_refused_writes(server, target):
    rip = target.registers()["rip"]
    assert hex_to_bytes(server.handle(b"m%x,10" % rip)) == target.read_memory(rip, 16)
    assert server.handle(b"m0,8") == b"E0e"
    for packet in (b"M%x,1:00" % rip, b"X%x,1:\x00" % rip, b"G" + b"00" * 8, b"P10=0000000000000000"):
        assert server.handle(packet) == b"E01"


def test_reverse_and_forward_steps(server, target):
    assert b"replaylog:begin" in server.handle(b"bs")
    assert server.handle(b"vCont;s:p%x.%x" % (target.pid, target.pid)).startswith(b"T05")
    assert target.position == 1
    assert server.handle(b"bs").startswith(b"T05") and target.position == 0
    # Continue to the crash: its signal, then the process is gone (X), and reverse works from the end.
    assert server.handle(b"c").startswith(b"T0b")
    assert server.handle(b"vCont;c").startswith(b"X0b")
    assert server.handle(b"bs").startswith(b"T05")
    assert target.position == target.session.last_step - 1


def test_breakpoints_both_ways(server, target):
    target.goto(100)
    pc_at_50 = target.session.recording.regs_at(50)
    addr = int.from_bytes(pc_at_50[16 * 8:17 * 8], "little")
    assert server.handle(b"Z0,%x,1" % addr) == b"OK"
    rec = target.session.recording
    before = index.find_pc(rec, {addr}, before=100)
    reply = server.handle(b"bc")
    assert b"swbreak:;" in reply and target.registers()["rip"] == addr and target.position == before
    after = index.find_pc(rec, {addr}, after=before)
    assert b"swbreak:;" in server.handle(b"c") and target.position == after
    assert server.handle(b"z0,%x,1" % addr) == b"OK"
    assert server.handle(b"Z1,%x,1" % addr) == b"OK"  # gdb's hbreak: reported as hwbreak
    assert b"hwbreak:;" in server.handle(b"bc") and target.position == before
    assert server.handle(b"z1,%x,1" % addr) == b"OK"
    assert server.handle(b"Z3,%x,8" % addr) == b""  # read watchpoints: not from a write index


def test_vfile_serves_recorded_maps_and_files(server, target):
    path = f"/proc/{target.pid}/maps".encode()
    reply = server.handle(b"vFile:open:" + bytes_to_hex(path) + b",0,0")
    assert reply.startswith(b"F")
    fd = int(reply[1:], 16)
    data = server.handle(b"vFile:pread:%x,1000,0" % fd)
    count, _, content = data[1:].partition(b";")
    assert content == target.maps_text().encode()[:0x1000] and int(count, 16) == len(content)
    assert server.handle(b"vFile:fstat:%x" % fd).startswith(b"F40;")
    assert server.handle(b"vFile:close:%x" % fd) == b"F0"
    assert server.handle(b"vFile:close:%x" % fd) == b"F-1,9"
    assert server.handle(b"vFile:open:" + bytes_to_hex(b"/no/such/file") + b",0,0") == b"F-1,2"
    assert server.handle(b"vFile:open:" + bytes_to_hex(path) + b",2,0") == b"F-1,1e"  # O_RDWR: read-only
    exe = server.handle(b"vFile:open:" + bytes_to_hex(target.exec_path().encode()) + b",0,0")
    fd = int(exe[1:], 16)
    head = server.handle(b"vFile:pread:%x,4,0" % fd)
    assert head == b"F4;\x7fELF"


def test_malformed_and_unknown_packets_never_raise(server):
    malformed = [b"m", b"mzz,4", b"m10", b"p", b"pzz", b"Z0", b"Z0,zz,1", b"z9,1,1",
                 b"qXfer:features:read:target.xml:zz",
                 b"qXfer:auxv:read::1", b"vFile:open:zz,0,0", b"vFile:pread:1", b"vFile:pread", b"qRcmd,zz",
                 b"vCont;x", b"Tzz", b"Hgzz", b"qXfer", b"qXfer:a:b", b"\xff\xfe", b"b", b"bx"]
    for packet in malformed:
        reply = server.handle(packet)
        assert reply in (b"E01", b"E00", b"E0e", b"", b"OK") or reply.startswith((b"F-1", b"T")), (packet, reply)
    for packet in (b"qFooBar", b"vMustReplyEmpty", b"QNonStop:1", b"!", b"qTStatus", b"jThreadsInfo"):
        assert server.handle(packet) == b""
    assert server.logged == []  # none of it reached an internal error


def test_monitor_commands(server, target):
    def monitor(text: str) -> str:
        return hex_to_bytes(server.handle(b"qRcmd," + bytes_to_hex(text.encode()))).decode()

    assert monitor("goto 65884").startswith("step 65884")
    assert target.position == 65884
    assert "written by step" in monitor("who $rdx")
    assert monitor("step").startswith("step 65884")
    assert "crash" in monitor("milestones")
    assert "unknown command" in monitor("frobnicate")
    assert "not a step number" in monitor("goto x")
    assert "ldso-entry" in monitor("help")
    assert "SIGSEGV" in monitor("explain")


# -- the transport, over a socket pair --------------------------------------------

def _serve_in_thread(server):
    ours, theirs = socket.socketpair()
    connection = Connection(server, Channel(theirs.fileno(), theirs.fileno()))
    thread = threading.Thread(target=connection.serve, daemon=True)
    thread.start()
    return ours, theirs, thread


def _replies(sock, count: int) -> list:
    reader = PacketReader()
    got = []
    while len(got) < count:
        data = sock.recv(65536)
        assert data, "server closed early"
        reader.feed(data)
        got += [p for p in reader.packets() if p.kind == "packet"]
    return got


def test_transport_acks_nacks_interrupts_and_disconnects(server, target):
    ours, theirs, thread = _serve_in_thread(server)
    try:
        ours.sendall(frame(b"qSupported:swbreak+"))
        assert _replies(ours, 1)[0].payload.startswith(b"PacketSize=")
        ours.sendall(b"$?#00")  # bad checksum: a nack, no reply
        ours.sendall(b"-")       # nack: the last reply again
        assert _replies(ours, 1)[0].payload.startswith(b"PacketSize=")
        ours.sendall(b"$" + b"A" * (1 << 17) + b"#00")  # oversized: E01, and the reader goes on
        assert _replies(ours, 1)[0].payload == b"E01"
        # A continue that cannot find its breakpoint soon, with gdb's Ctrl-C right behind it.
        ours.sendall(frame(b"Z0,1,1") + frame(b"c") + b"\x03")
        got = _replies(ours, 2)
        assert got[0].payload == b"OK"
        assert got[1].payload.startswith(b"T02")
    finally:
        ours.close()  # the client goes: the server's loop ends
        thread.join(timeout=10)
        theirs.close()
    assert not thread.is_alive()


def test_library_list_whole_and_incremental(target):
    from dataclasses import replace

    from loaderdbg.decode.linkmap import LinkMapEntry
    from loaderdbg.serve.target import libraries_svr4_xml

    target.goto(0)
    snapshot = target.snapshot()
    bias = max((o.base for o in snapshot.objects if o.path == target.exec_path()), default=0)
    chain = (LinkMapEntry(0, 0x1000, "", bias, 0x10, "main"),
             LinkMapEntry(0, 0x2000, "/lib/libc.so.6", 0x7000, 0x20, "library"),
             LinkMapEntry(0, 0x3000, "/lib64/ld-linux-x86-64.so.2", 0x8000, 0x30, "ldso"),
             LinkMapEntry(1, 0x4000, "/lib/libc.so.6", 0x9000, 0x40, "library"))
    whole = ET.fromstring(libraries_svr4_xml(replace(snapshot, link_map=chain), target.exec_path()))
    assert whole.get("main-lm") == "0x1000"
    assert [(lib.get("lm"), lib.get("lmid")) for lib in whole] == [("0x2000", "0x0"), ("0x3000", "0x0"),
                                                                  ("0x4000", "0x1")]
    # gdb's incremental form: from one link_map on, in its namespace, without main-lm.
    part = ET.fromstring(libraries_svr4_xml(replace(snapshot, link_map=chain), target.exec_path(),
                                            "lmid=0;start=3000;prev=2000"))
    assert part.get("main-lm") is None
    assert [lib.get("lm") for lib in part] == ["0x3000"]
    assert len(ET.fromstring(libraries_svr4_xml(replace(snapshot, link_map=chain), target.exec_path(),
                                                "start=9999;prev=0"))) == 0
