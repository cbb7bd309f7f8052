"""Round trips for the strace-style renderers the syscall decoder uses: the
quoted string must mean exactly the bytes (a C reader gets them back), and
flag rendering must account for every bit."""

from __future__ import annotations

import codecs

from hypothesis import given, settings
from hypothesis import strategies as st

from loaderdbg.decode.syscalls import c_string_literal, format_flag_bits

FUZZ = settings(max_examples=200, deadline=None)


@FUZZ
@given(data=st.binary(max_size=80), limit=st.one_of(st.none(), st.integers(0, 100)))
def test_c_string_literal_round_trips(data, limit):
    text = c_string_literal(data, limit)
    text.encode("ascii")
    cut = limit is not None and len(data) > limit
    assert text.endswith('"...') if cut else text.endswith('"')
    body = text[1:text.rindex('"')]
    # Python's unicode_escape reads \ooo (1-3 digits), \t \n \v \f \r \" \\ as C does.
    assert codecs.decode(body, "unicode_escape").encode("latin-1") == (data[:limit] if cut else data)


@FUZZ
@given(value=st.integers(0, (1 << 64) - 1),
       masks=st.lists(st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from([1 << b for b in range(64)])),
                      max_size=8))
def test_flag_bits_account_for_every_bit(value, masks):
    table = [(mask, f"F{index}") for index, mask in enumerate(masks)]
    text = format_flag_bits(value, table)
    names = {name: mask for mask, name in table}
    total = 0
    for part in text.split("|"):
        if part.startswith("0x"):
            total |= int(part, 16)
        elif part != "0":
            total |= names[part]
    assert total == value
