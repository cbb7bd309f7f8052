"""The code dataclasses compile at every start, kept between runs.

Python 3.11's dataclasses write each method they make (``__init__``,
``__repr__``, ``__eq__``, ``__hash__``, a frozen class's ``__setattr__``
and ``__delattr__``) as source text and compile it, at every start: six
compiles a frozen class, two thirds of its cost, and ~25 ms of the demo's
~150 ms command (issue 19). The text is the same at every start, and so
is its code. The interpreter keeps a module's code in ``__pycache__`` for
the same reason; this keeps these texts' code beside it, in one marshal
file that the command reads at start and writes again when it compiled
something new.

What it changes is only where the code comes from: ``compile`` of the same
text, with the flags ``exec`` of that text in dataclasses would use, gives
an equal code object. A file that cannot be read, is from another Python
or is damaged is not used; one that cannot be written is not written
(a read-only install, ``PYTHONDONTWRITEBYTECODE``): then it compiles as
Python would.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys

# The file's first line: a file from another interpreter or format is
# compiled afresh, never loaded (marshal's code format changes with Python).
_HEADER = f"loaderdbg compiled code 1 {sys.implementation.cache_tag} {sys.version}".encode()
# Past this many texts (a development tree's old versions of its classes)
# the file keeps only what the last run used.
_MOST_TEXTS = 4000


class CompileCache:
    """Code objects by the source text they were compiled from."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.code: dict[str, object] = {}
        self.used: set[str] = set()
        self.compiled = 0
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as file:
                data = file.read()
        except OSError:
            return
        header, _, body = data.partition(b"\n")
        if header != _HEADER:
            return
        try:
            table = marshal.loads(body)
        except (EOFError, ValueError, TypeError):
            return
        if isinstance(table, dict) and all(isinstance(text, str) and type(code) is _CODE_TYPE
                                           for text, code in table.items()):
            self.code = table

    def exec(self, source, globals=None, locals=None, /, **kwargs) -> None:
        """builtins.exec, taking a text's code from the cache."""
        if globals is None:
            # exec with no globals runs in its caller's: keep it so.
            caller = sys._getframe(1)
            globals = caller.f_globals
            if locals is None:
                locals = caller.f_locals
        if isinstance(source, str):
            code = self.code.get(source)
            if code is None:
                # dont_inherit: exec of a text from dataclasses compiles it
                # with dataclasses' own future flags (none), not ours.
                code = compile(source, "<string>", "exec", dont_inherit=True)
                self.code[source] = code
                self.compiled += 1
            self.used.add(source)
            source = code
        builtins.exec(source, globals, locals, **kwargs)

    def save(self) -> None:
        """Write the file again if this run compiled something it lacked."""
        if not self.compiled or sys.dont_write_bytecode:
            return
        table = self.code if len(self.code) <= _MOST_TEXTS else {text: self.code[text] for text in self.used}
        directory = os.path.dirname(self.path)
        scratch = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(directory, exist_ok=True)
            with open(scratch, "wb") as file:
                file.write(_HEADER + b"\n" + marshal.dumps(table))
            os.replace(scratch, self.path)  # whole or not at all, with another run writing
        except (OSError, ValueError):
            try:
                os.unlink(scratch)
            except OSError:
                pass
        self.compiled = 0


_CODE_TYPE = type(compile("", "<string>", "exec"))


def cache_path() -> str:
    """Beside loaderdbg's own bytecode, or under PYTHONPYCACHEPREFIX."""
    package = os.path.dirname(os.path.abspath(__file__))
    name = f"dataclass-code.{sys.implementation.cache_tag}.marshal"
    if sys.pycache_prefix:
        # As the interpreter lays out its own: the source's path under the prefix.
        return os.path.join(sys.pycache_prefix, package.lstrip(os.sep), name)
    return os.path.join(package, "__pycache__", name)


def install() -> CompileCache:
    """From now on, dataclasses take their code from the cache; call
    ``save()`` on the result when the run is over."""
    import dataclasses
    cache = CompileCache(cache_path())
    # A module global named exec is what its calls of exec find first.
    dataclasses.exec = cache.exec
    return cache
