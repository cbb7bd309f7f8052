"""Files a user names on the command line (a program, a recording): refused
in one line before anything opens them when they are not regular files."""

from __future__ import annotations

import os
import stat
from typing import Callable

from loaderdbg.errors import UsageError


def regular_file(path: str, name: str,
                 other: Callable[[int], str] = lambda mode: "not a regular file") -> os.stat_result:
    """stat ``path`` and refuse, in one line naming it ``name``, anything
    but a regular file (a FIFO would block whoever opens it; a device may
    act on it). ``other(st_mode)`` says what a file is that is neither."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except OSError as err:
        raise UsageError(f"{name}: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{name}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{name}: {other(st.st_mode)}")
    return st
