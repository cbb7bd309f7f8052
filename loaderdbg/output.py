"""Where loaderdbg's own words go: the report on stdout, one line on
stderr, and what happens when either is closed, full or gone."""

from __future__ import annotations

import os
import sys

from loaderdbg.errors import OutputError

STDERR_FD = 2


def reopen_closed_standard_fds() -> None:
    """A descriptor 0, 1 or 2 we were started without gets /dev/null. Left
    free, the next file we open would take its number, and a launched
    program's stdout or stderr would be our /proc/PID/mem, say. Python has
    already set sys.stdout/sys.stderr to None for a closed one, which is
    how the rest of loaderdbg still knows it was closed."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def say(message: str) -> None:
    """One line on stderr, ours: `loaderdbg: MESSAGE`."""
    say_line(f"loaderdbg: {message}")


def say_line(line: str) -> None:
    """One line on stderr. A stderr that is gone (a closed terminal, a
    closed descriptor) loses it: there is nowhere left to say anything."""
    if sys.stderr is None:
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        # The line stays in the stream's buffer, and Python's flush on the
        # way out would fail again and turn our exit status into 120.
        discard_stream(sys.stderr)


def discard_stream(stream) -> None:
    """From now on, what ``stream`` holds or gets goes to /dev/null (its
    reader or terminal is gone)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


def settle_standard_streams() -> None:
    """Flush stdout and stderr before Python does on its way out: one whose
    terminal was closed (EIO) or whose reader left is discarded, so the exit
    status stays the one loaderdbg chose."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            discard_stream(stream)


def require_stdout() -> None:
    """Before any work whose result goes to stdout: is there one?"""
    if sys.stdout is None:
        raise OutputError("stdout is closed: nowhere to write the report (redirect it: > FILE)")


def write_stdout(text: str) -> None:
    """The whole report onto fd 1, unbuffered, so a failure is known here
    and nothing is left in a buffer for the exit to trip over. A reader
    that stopped reading (`| head`) raises BrokenPipeError; every other
    failure is one OutputError."""
    require_stdout()
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # a stream with no descriptor (an in-process caller's capture)
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    sys.stdout.flush()  # whatever someone printed before goes first
    data = memoryview(text.encode(sys.stdout.encoding or "utf-8", "surrogateescape"))
    try:
        while data:
            data = data[os.write(fd, data):]
    except BrokenPipeError:
        raise
    except OSError as err:
        raise OutputError(f"cannot write the report to stdout: {err.strerror}") from None
