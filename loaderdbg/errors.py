"""Errors the command line turns into one line on stderr and an exit code."""


class LoaderdbgError(Exception):
    """Base of every error reported to the user as one line."""

    exit_code = 1


class UsageError(LoaderdbgError):
    """Bad arguments or bad input files: exit 2."""

    exit_code = 2


class TargetError(LoaderdbgError):
    """The target misbehaved or could not be run: exit 1."""

    exit_code = 1


class NotBuiltError(LoaderdbgError, ImportError):
    """A compiled part of loaderdbg is missing (a source tree never
    installed): exit 1. An ImportError too, for code that imports it."""

    exit_code = 1


class OutputError(LoaderdbgError):
    """Our own output could not be written (stdout closed or full, a
    recording's disk full): exit 3."""

    exit_code = 3
