"""python-ptrace's syscall tables, without its syscall package's start-up.

``import ptrace.syscall.<table>`` first runs ptrace/syscall/__init__.py,
which imports python-ptrace's ctypes bindings (ctypes.util, hence
subprocess and tempfile), its socketcall decoders and more: about 8 ms, a
twentieth of a whole `loaderdbg inspect` on a small program (issue 19), for
modules that are plain data. table() executes just the table's own file,
under its own name in sys.modules, so a later ``import ptrace.syscall``
(python-ptrace's own decoders) finds and reuses the same module objects.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def table(name: str) -> ModuleType:
    """The module ptrace.syscall.<name> (e.g. "prototypes", "linux.x86_64"),
    executed without its parent packages' __init__."""
    return python_ptrace_module(f"ptrace.syscall.{name}")


def python_ptrace_module(full_name: str) -> ModuleType:
    """A python-ptrace module that imports nothing of python-ptrace's (e.g.
    "ptrace.signames"), executed without its parent packages' __init__:
    python-ptrace's package __init__ imports logging, datetime and its
    ctypes tools (~4 ms)."""
    loaded = sys.modules.get(full_name)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("ptrace")
    if package is None or not package.submodule_search_locations:
        raise ImportError("python-ptrace is not installed")
    relative = full_name.split(".")[1:]
    path = "/".join([package.submodule_search_locations[0], *relative]) + ".py"
    spec = importlib.util.spec_from_file_location(full_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"python-ptrace has no {full_name} ({path})")
    module = importlib.util.module_from_spec(spec)
    sys.modules[full_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[full_name]
        raise
    return module
