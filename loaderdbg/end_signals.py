"""How loaderdbg ends when it is told to: SIGTERM, and SIGHUP (its terminal
closed), end it the way Ctrl-C does.

Every path that puts a traced process back in order (int3s out, threads
detached, a launched program killed and reaped) already runs on
KeyboardInterrupt, so the two other signals raise ``Terminated``, a
KeyboardInterrupt. While that clean-up runs (``cleanup()``), a second
signal must not cut it short and leave an int3 behind: it is held and
raised once the clean-up is over.

SIGKILL cannot be caught: a program loaderdbg launched dies with it
(PTRACE_O_EXITKILL), but a process it attached to is released by the kernel
with any int3 loaderdbg had written still in its memory.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: ends loaderdbg as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell shows for a death by that signal


def exit_code_of(interrupt: KeyboardInterrupt) -> int:
    return interrupt.exit_code if isinstance(interrupt, Terminated) else 128 + signal.SIGINT


def _interrupt_for(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


_cleanups = 0  # cleanup() blocks under way (signal handlers run in the main thread only)
_held: int | None = None  # the first signal that came during one
_ask_to_end: Callable[[int], None] | None = None  # a front end's way to end itself (ended_by)
_asked: int | None = None  # the signal it was asked to end for
_raised = False  # an interrupt was raised from a signal: loaderdbg is on its way out


def _on_signal(signum: int, frame) -> None:
    global _held, _asked, _raised
    if _raised:
        # Every catch of the first one puts things back in order and raises
        # it again: a second would only cut that short, or the goodbye after.
        return
    if _cleanups:
        if _held is None:
            _held = signum
        return
    if _ask_to_end is not None and _asked is None:
        _asked = signum
        _ask_to_end(signum)
        return
    _raised = True
    raise _interrupt_for(signum)


class handled:
    """While this block runs (in the main thread), SIGINT, SIGTERM and
    SIGHUP raise KeyboardInterrupt / Terminated, or wait for a ``cleanup()``
    under way; once one is raised, the next are dropped (loaderdbg is
    ending: each catch of it cleans up and raises it again). A signal someone ignores (nohup, a background job's SIGINT)
    stays ignored. The handlers in place before come back afterwards,
    unless ``restore`` is False (the process ends with the block: Python's
    own SIGINT handler back would turn a late Ctrl-C into a traceback)."""

    def __init__(self, restore: bool = True) -> None:
        self._restore = restore

    def __enter__(self) -> "handled":
        global _raised
        _raised = False
        self._previous: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in ENDING_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue
            self._previous[signum] = signal.signal(signum, _on_signal)
        return self

    def __exit__(self, *exc) -> None:
        global _raised
        if not self._restore:
            return
        _raised = False
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def ending() -> None:
    """loaderdbg is on its way out, everything put back in order, telling
    how it ended: a further Ctrl-C, SIGTERM or SIGHUP would only cut that
    short with a traceback, so from now on they are ignored (those this
    module handles, in the main thread; ``handled`` gives the handlers
    from before back as usual)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in ENDING_SIGNALS:
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, signal.SIG_IGN)


class ended_by:
    """For a front end with an event loop of its own (the TUI): raised in
    the middle of that loop, Terminated could be caught and reported as a
    crash of whatever it passed through. Within this block, SIGTERM, SIGHUP
    and SIGINT (from outside: the TUI reads Ctrl-C as a key) call
    ``ask_to_end(signum)`` instead, once (it should make the loop end soon,
    from the main thread, e.g. Textual's App.exit); when the block ends,
    KeyboardInterrupt or Terminated is raised as usual, so the session is
    closed and the exit code says which signal it was. A second signal
    raises at once."""

    def __init__(self, ask_to_end: Callable[[int], None]) -> None:
        self._ask_to_end = ask_to_end

    def __enter__(self) -> "ended_by":
        global _ask_to_end, _asked
        _ask_to_end, _asked = self._ask_to_end, None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        global _ask_to_end, _asked
        asked, _ask_to_end, _asked = _asked, None, None
        if asked is not None and exc_type is None:
            raise _interrupt_for(asked)


class cleanup:
    """A block that a signal must not interrupt (putting a tracee back in
    order). The first signal that arrives meanwhile is raised when it ends,
    unless the block is already ending on an exception."""

    def __enter__(self) -> "cleanup":
        global _cleanups
        _cleanups += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        global _cleanups, _held, _raised
        _cleanups -= 1
        if _cleanups == 0 and _held is not None:
            signum, _held = _held, None
            if exc_type is None:
                _raised = True
                raise _interrupt_for(signum)
