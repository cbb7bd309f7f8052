"""The import graph, read from the source (AST), against the arrows the
design allows between rooms (DESIGN.md §1: packages point one way).

Every `loaderdbg.X` / `tui` import is mapped to the room it lands in; an
arrow between two rooms must be in ALLOWED, with no exceptions listed.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# module (dotted, under loaderdbg/) or package -> room
ROOMS = {
    "loaderdbg": "base", "loaderdbg.errors": "base", "loaderdbg.session": "base",
    "loaderdbg.printable": "base", "loaderdbg.job_thread": "base", "loaderdbg.user_files": "base",
    "loaderdbg.arch": "arch",
    "loaderdbg.decode": "decode",
    "loaderdbg.targets": "targets",
    "loaderdbg.debug_files": "debug_files",
    "loaderdbg.analysis": "analysis",
    "loaderdbg.explain": "history",
    "loaderdbg.stop_state": "state",
    "loaderdbg.snapshot": "snapshot", "loaderdbg.snapshot_json": "render", "loaderdbg.text_report": "render",
    "loaderdbg.process": "process",
    "loaderdbg.record": "record",
    "loaderdbg.live": "live",
    "loaderdbg.gdb_remote": "gdb_remote", "loaderdbg.serve": "serve",
    "loaderdbg.cli": "front", "loaderdbg.__main__": "front", "loaderdbg.entry": "front",
    "loaderdbg.inspect_command": "front",
    "loaderdbg.output": "front", "loaderdbg.end_signals": "base",
    "tui": "tui",
}

# room -> rooms it may import. Lower rooms know nothing of higher ones.
ENGINE_BELOW_FRONTS = {"base", "arch", "decode", "targets", "debug_files", "analysis", "snapshot", "state",
                       "render", "process", "record", "history", "live", "gdb_remote", "serve"}
ALLOWED = {
    "base": {"base"},
    "arch": {"base"},
    # The GDB remote protocol's codec: pure bytes, for the server and the qemu stub client.
    "gdb_remote": {"base"},
    "decode": {"base", "arch"},
    "targets": {"base"},
    "debug_files": {"base", "decode"},
    "analysis": {"base", "arch", "decode", "targets", "debug_files"},
    "snapshot": {"base", "arch", "decode", "analysis", "targets"},
    "render": {"base", "arch", "decode", "analysis", "snapshot", "targets"},
    # The stop state over any raw target (a live process, a qemu guest, a recording): no ptrace.
    "state": {"base", "arch", "decode", "analysis"},
    "process": {"base", "arch", "decode", "analysis", "snapshot", "targets", "debug_files", "gdb_remote", "state"},
    "record": {"base", "arch", "decode", "analysis", "snapshot", "targets", "process", "debug_files", "state"},
    "history": {"base", "arch", "decode", "analysis", "snapshot", "targets", "record", "process"},
    "live": {"base", "arch", "decode", "analysis", "snapshot", "targets", "process"},
    # `loaderdbg serve`: one more front on a session, live or replayed.
    "serve": {"base", "arch", "decode", "analysis", "snapshot", "targets", "record", "history", "live",
              "gdb_remote"},
    "front": ENGINE_BELOW_FRONTS | {"front"},
    # The TUI talks to a Session: it renders snapshots and decoded values,
    # and never drives ptrace, a recording or an analysis itself.
    "tui": {"base", "arch", "decode", "targets", "snapshot", "tui"},
}

NEVER = {
    # (room, imported top-level package): the engine never draws a screen
    # (Rich for the CLI's text report is fine: it is a renderer, not an app).
    **{(room, "textual"): "the engine never imports Textual" for room in ENGINE_BELOW_FRONTS | {"front"}},
    # Decoders are pure functions of bytes.
    ("decode", "subprocess"): "decoders do no I/O", ("decode", "socket"): "decoders do no I/O",
    ("decode", "ctypes"): "decoders do no I/O",
}


def room_of(module: str) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        room = ROOMS.get(".".join(parts[:n]))
        if room is not None:
            return room
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted([*ROOT.glob("loaderdbg/**/*.py"), *ROOT.glob("tui/**/*.py")])


def imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file (lazy imports inside
    functions count: they are arrows too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            # `from loaderdbg import targets` imports a module, not a name.
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if (ROOT / node.module.replace(".", "/") / f"{alias.name}.py").exists()
                         or (ROOT / node.module.replace(".", "/") / alias.name / "__init__.py").exists())
    return found


def arrows() -> dict[tuple[str, str], set[str]]:
    """(from room, to room) -> the (module, imported) pairs behind it."""
    out: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for path in source_files():
        source = module_name(path)
        here = room_of(source)
        assert here is not None, f"{source} is in no room: add it to ROOMS"
        for imported in imports(path):
            there = room_of(imported)
            if there is not None and there != here:
                out[(here, there)].add((source, imported))
    return out


def test_every_module_has_a_room():
    for path in source_files():
        assert room_of(module_name(path)) is not None, module_name(path)


def test_arrows_point_one_way():
    bad = sorted((source, imported, f"{here} -> {there}")
                 for (here, there), pairs in arrows().items() if there not in ALLOWED[here]
                 for source, imported in pairs)
    assert not bad, "arrows the design does not allow:\n" + "\n".join(map(str, bad))


def test_no_cycles_between_rooms():
    graph = defaultdict(set)
    for here, there in arrows():
        graph[here].add(there)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    cycles = sorted(room for room in list(graph) if reaches(room, room, set()))
    assert not cycles, f"rooms on a cycle: {cycles}"


def test_never_list():
    found = []
    for path in source_files():
        here = room_of(module_name(path))
        for imported in imports(path):
            why = NEVER.get((here, imported.split(".")[0]))
            if why:
                found.append(f"{module_name(path)} imports {imported}: {why}")
    assert not found, "\n".join(found)
