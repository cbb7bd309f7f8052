"""Strings from outside (a recording's paths and descriptions, a tracee's
file names) made safe to show: a terminal must never receive their control
characters, which could move the cursor, retitle the window or hide text.

Escaped: C0 and C1 controls and DEL (``\\x1b``), Unicode format and
separator characters such as bidi overrides (``\\u202e``), and the lone
surrogates that stand for undecodable bytes in paths (``\\xff``: printing
one would raise UnicodeEncodeError). Everything else, including non-ASCII
letters, is shown as it is.
"""

from __future__ import annotations

import unicodedata

# Categories that never draw a glyph of their own: controls, format
# characters (bidi overrides, zero-width joiners), surrogates, unassigned
# and private code points, line and paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte it stood for
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on or hide
    escaped, Python style (``\\x1b``, ``\\u202e``)."""
    if text.isprintable():  # the common case: none of those categories
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _HIDDEN_CATEGORIES else c for c in text)
