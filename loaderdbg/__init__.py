"""loaderdbg: see what happens between execve and main."""

__version__ = "0.1.0"
