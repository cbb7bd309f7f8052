"""The GDB remote protocol codec on golden bytes (what gdb and gdbserver
really put on the wire)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loaderdbg.gdb_remote.packets import (
    Packet, PacketReader, bytes_to_hex, checksum, escape_binary, expand_rle, frame, hex_to_bytes,
    parse_hex_int, unescape_binary,
)


def read_all(*chunks: bytes, reader: PacketReader | None = None) -> list[Packet]:
    reader = reader or PacketReader()
    out = []
    for chunk in chunks:
        reader.feed(chunk)
        out.extend(reader.packets())
    return out


def test_checksum_and_frame_match_gdb():
    # gdb's own first packets, as `set debug remote 1` shows them.
    assert frame(b"?") == b"$?#3f"
    assert frame(b"g") == b"$g#67"
    assert frame(b"OK") == b"$OK#9a"
    assert frame(b"") == b"$#00"
    assert frame(b"qSupported:multiprocess+;swbreak+") == b"$qSupported:multiprocess+;swbreak+#" + \
        b"%02x" % (sum(b"qSupported:multiprocess+;swbreak+") & 0xFF)
    assert checksum(b"\xff\xff") == 0xFE


def test_frame_escapes_the_four_special_bytes():
    assert frame(b"a#b$c}d*e") == b"$a}\x03b}\x04c}]d}\x0ae#" + b"%02x" % checksum(b"a}\x03b}\x04c}]d}\x0ae")


def test_escape_round_trip_all_bytes():
    data = bytes(range(256)) * 2
    escaped = escape_binary(data)
    assert not any(c in escaped for c in b"#$*")
    assert unescape_binary(escaped) == data
    assert escape_binary(b"plain") == b"plain"
    assert unescape_binary(b"}]") == b"}"


def test_expand_rle_as_gdbserver_sends_it():
    # gdbserver sends 8 zero bytes as "0*" + chr(29+7): '0' then 7 more.
    assert expand_rle(b"0*$") == b"0" * 8
    assert expand_rle(b"x0* y") == b"x" + b"0" * 4 + b"y"
    assert expand_rle(b"abc") == b"abc"
    # Malformed runs are data, never a crash.
    assert expand_rle(b"*a") == b"*a"
    assert expand_rle(b"a*") == b"a*"


def test_reader_partial_input_acks_and_junk():
    packets = read_all(b"+", b"junk$g#", b"6", b"7-", b"\x03$?#3f")
    assert [p.kind for p in packets] == ["ack", "packet", "nack", "interrupt", "packet"]
    assert packets[1] == Packet("packet", b"g", True)
    assert packets[4].payload == b"?"


def test_reader_one_byte_at_a_time():
    wire = frame(b"m4015bc,40") + b"+" + frame(b"vCont;c")
    packets = read_all(*(bytes((b,)) for b in wire))
    assert [(p.kind, p.payload, p.checksum_ok) for p in packets] == [
        ("packet", b"m4015bc,40", True), ("ack", b"", True), ("packet", b"vCont;c", True)]


def test_reader_bad_checksum_is_reported_not_raised():
    (packet,) = read_all(b"$g#00")
    assert packet.kind == "packet" and packet.payload == b"g" and not packet.checksum_ok
    (packet,) = read_all(b"$g#zz")
    assert not packet.checksum_ok


def test_reader_interrupt_inside_a_packet_is_data():
    (packet,) = read_all(frame(b"X0,1:\x03"))
    assert packet.payload == b"X0,1:\x03" and packet.checksum_ok


def test_reader_unescapes_and_expands_payload():
    (packet,) = read_all(b"$" + b"1*\"}]" + b"#" + b"%02x" % checksum(b"1*\"}]"))
    assert packet.payload == b"111111}"  # '"' is 34: 5 more


def test_reader_oversized_packet_is_bad_and_reader_recovers():
    reader = PacketReader(max_payload=16)
    packets = read_all(b"$" + b"A" * 100 + b"#00", frame(b"OK"), reader=reader)
    assert packets[0].kind == "packet" and not packets[0].checksum_ok and packets[0].oversized
    assert packets[0].payload == b""
    assert packets[1] == Packet("packet", b"OK", True)


def test_hex_helpers():
    assert hex_to_bytes("0a1B") == b"\x0a\x1b"
    assert hex_to_bytes(b"") == b""
    assert bytes_to_hex(b"\x0a\x1b") == b"0a1b"
    assert parse_hex_int(b"7ffff7fe3290") == 0x7FFFF7FE3290
    assert parse_hex_int("A") == 10
    for bad in ("", "-1", "0x10", "1 ", "g"):
        with pytest.raises(ValueError):
            parse_hex_int(bad)
    for bad in ("abc", "zz", b"\xff\xff"):
        with pytest.raises(ValueError):
            hex_to_bytes(bad)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"$", b"#", b"+", b"-", b"\x03", b"}", b"*", b"g", b"00", b"4f", b"OK",
                                 b"$qSupported#37", b"$g#67", b"ab" * 40]), max_size=40),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
       st.integers(min_value=4, max_value=120))
def test_packets_do_not_depend_on_how_the_bytes_are_split(parts, cuts, max_payload):
    """The reader takes a payload up to its '#' in one slice: any split of
    the same bytes gives the same items (overflow included), and so does
    feeding them one byte at a time."""
    stream = b"".join(parts)
    whole = PacketReader(max_payload)
    whole.feed(stream)
    by_byte = PacketReader(max_payload)
    for byte in stream:
        by_byte.feed(bytes([byte]))
    split = PacketReader(max_payload)
    at = 0
    for cut in cuts * (len(stream) // max(sum(cuts), 1) + 1):
        split.feed(stream[at:at + cut])
        at += cut
        if at >= len(stream):
            break
    expected = list(by_byte.packets())
    assert list(whole.packets()) == expected
    assert list(split.packets()) == expected
