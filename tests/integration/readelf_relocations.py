"""`readelf -rW` relocation listings as data, for the tests that check the
engine's relocations against readelf. Imported as a plain module
(tests/integration is on sys.path under pytest's default import mode)."""

from __future__ import annotations

import collections
import re


def parse_relocations(listing: str) -> collections.Counter:
    """(offset, type) of every relocation row in the output of `readelf -rW`;
    RELR offsets count as R_X86_64_RELATIVE (readelf lists one per line)."""
    found = collections.Counter()
    section = None
    for line in listing.splitlines():
        if line.startswith("Relocation section"):
            section = line.split("'")[1]
            continue
        fields = line.split()
        if not fields or not re.fullmatch(r"[0-9a-f]{16}", fields[0]):
            continue
        if section is not None and section.startswith(".relr"):
            found[(int(fields[0], 16), "R_X86_64_RELATIVE")] += 1
        elif len(fields) >= 3 and fields[2].startswith("R_X86_64_"):
            found[(int(fields[0], 16), fields[2])] += 1
    return found
