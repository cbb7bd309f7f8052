"""The `loaderdbg` command's entry point (and `python -m loaderdbg`'s).

Importing the command line and the engine takes a tenth of a second, and
cli.main installs the handlers that end loaderdbg in order
(end_signals.handled) only once that is done. A Ctrl-C, SIGTERM or SIGHUP
in that window would print an import's KeyboardInterrupt traceback or
end the process with no word; no program has been launched or attached
yet, so there is nothing to put back: it ends at once, as it would a
moment later (`loaderdbg: interrupted`, 128 + the signal). This module
imports nothing of loaderdbg's before its handlers are in place.
"""

from __future__ import annotations

import os
import signal

_ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _end_before_started(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    words = "interrupted" if signum == signal.SIGINT else f"interrupted ({name})"
    try:
        os.write(2, f"loaderdbg: {words}\n".encode())
    except OSError:
        pass  # no stderr left: nothing to tell
    os._exit(128 + signum)


def main() -> int:
    for signum in _ENDING:
        # A signal someone ignores (nohup, a background job's SIGINT)
        # stays ignored, as end_signals.handled leaves it.
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _end_before_started)
    # Before the engine's modules make their dataclasses (issue 19: start-up).
    from loaderdbg import compile_cache
    cache = compile_cache.install()
    from loaderdbg.cli import main as command_line
    try:
        return command_line()
    finally:
        cache.save()
