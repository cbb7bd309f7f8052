"""The one exception decoders raise for bytes they cannot make sense of."""

from __future__ import annotations


class DecodeError(ValueError):
    """Input bytes (or text) do not form the structure asked for: wrong size,
    out of bounds, unterminated, implausible. Callers catch this one type and
    show the raw bytes instead; any other exception from a decoder is a bug."""
