"""gdb's signal numbers (gdb/signals.def), which the remote protocol speaks
(stop replies, QPassSignals, C/S), against Linux's: they agree only for
some (SIGSEGV is 11 in both, but gdb's 10 is SIGBUS, Linux's SIGUSR1).
Real-time signals: gdb 45–75 are SIGRTMIN+1…+31 (Linux 33–63), gdb 77 is
Linux 32 and gdb 78 Linux 64 (qemu's table)."""

from __future__ import annotations

import signal as _signal

_GDB_SIGNAL_NAMES = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGBUS", 11: "SIGSEGV", 12: "SIGSYS", 13: "SIGPIPE",
    14: "SIGALRM", 15: "SIGTERM", 16: "SIGURG", 17: "SIGSTOP", 18: "SIGTSTP", 19: "SIGCONT",
    20: "SIGCHLD", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGIO", 24: "SIGXCPU", 25: "SIGXFSZ",
    26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 30: "SIGUSR1", 31: "SIGUSR2", 32: "SIGPWR",
}
GDB_TO_LINUX_SIGNAL = {
    **{gdb: int(_signal.Signals[name]) for gdb, name in _GDB_SIGNAL_NAMES.items()},
    **{45 + k: 33 + k for k in range(31)}, 77: 32, 78: 64,
}
LINUX_TO_GDB_SIGNAL = {linux: gdb for gdb, linux in GDB_TO_LINUX_SIGNAL.items()}
