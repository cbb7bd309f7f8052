"""Snapshot → JSON (format ``loaderdbg.snapshot/1``, DESIGN.md §4).

64-bit values are hex strings so jq and JavaScript keep them exact; counts
are numbers. Keys are only ever added, never renamed.
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

from loaderdbg.analysis.relocations import RelocationTable
from loaderdbg.decode.linkmap import LinkMapPrivate
from loaderdbg.snapshot import FORMAT, Snapshot


def hexify(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def _auxv(entries, changed=frozenset()):
    return [
        {"type": e.name, "value": hexify(e.value), "decoded": e.decoded, "changed": e.type in changed}
        for e in entries
    ]


def _detail(d) -> dict:
    return {
        "type": d.type,
        "entry": hexify(d.entry),
        "interp": d.interp,
        "soname": d.soname,
        "needed": list(d.needed),
        "flags": list(d.flags),
        "flags_1": list(d.flags_1),
        "gnu_flags_1": list(d.gnu_flags_1),
        "build_id": d.build_id,
        "relro": None if d.relro is None else
        {"start": hexify(d.relro.start), "end": hexify(d.relro.end), "protected": d.relro.protected},
        "tls": None if d.tls is None else
        {"init_size": d.tls.init_size, "size": d.tls.size, "align": d.tls.align},
        "sframe": None if d.sframe is None else {
            "version": d.sframe.version, "flags": list(d.sframe.flags), "abi_arch": d.sframe.abi_arch,
            "num_fdes": d.sframe.num_fdes, "num_fres": d.sframe.num_fres, "size": d.sframe_size},
        "eh_frame_hdr": d.has_eh_frame_hdr,
        "gnu_stack": d.gnu_stack,
        "gnu_property": d.has_gnu_property,
    }


def _dynamic(d) -> dict:
    """The dynamic section in readable form: its entries as readelf -d lists
    them (file values), and what a loader engineer asks of them by name."""
    values = {}
    for entry in d.dynamic:
        values.setdefault(entry.name, entry.value)
    return {
        "needed": list(d.needed),
        "soname": d.soname,
        "rpath": d.rpath,
        "runpath": d.runpath,
        "init": hexify(values.get("DT_INIT")),
        "fini": hexify(values.get("DT_FINI")),
        "preinit_array_size": values.get("DT_PREINIT_ARRAYSZ"),
        "init_array_size": values.get("DT_INIT_ARRAYSZ"),
        "fini_array_size": values.get("DT_FINI_ARRAYSZ"),
        "version_needs": values.get("DT_VERNEEDNUM", 0),
        "version_definitions": values.get("DT_VERDEFNUM", 0),
        "entries": [{"tag": e.name, "value": hexify(e.value), "text": e.text} for e in d.dynamic],
    }


def _link_map_private(private) -> dict:
    """glibc's private link_map fields, null where the running ld.so's
    layout is unknown (private_reason says why), never guessed."""
    if private is None:
        private = _NO_PRIVATE
    return {
        "l_relocated": private.l_relocated,
        "l_init_called": private.l_init_called,
        "l_tls_modid": private.l_tls_modid,
        "l_tls_offset": hexify(private.l_tls_offset),
        "private_reason": private.reason,
    }


_NO_PRIVATE = LinkMapPrivate(reason="not read")


def _version_names(versions) -> dict:
    """The names behind the version counts (readelf -V), null when the
    tables do not read."""
    if versions is None:
        return {"version_need_names": None, "version_definition_names": None}
    return {
        "version_need_names": [{"file": n.file, "versions": list(n.versions)} for n in versions.needs],
        "version_definition_names": [
            {"index": d.index, "name": d.name, "base": d.base, "parents": list(d.parents)}
            for d in versions.definitions],
    }


class RelocationRows:
    """A snapshot's relocations as write_json writes them, without a dict
    per relocation: the rows' text is made column by column straight from
    the table's columns (RelocationTable.per_object; building 151k dicts,
    then taking them apart again, was half of writing gdb's JSON, and
    making a RelocationState per row most of the rest). Only write_json
    knows it."""

    __slots__ = ("states",)

    def __init__(self, states: RelocationTable) -> None:
        self.states = states


def _relocation_dicts(table: RelocationTable) -> list[dict]:
    """snapshot_to_json's relocation dicts, made from the table's columns
    (hexify spelled inline: this runs for each of a big program's hundreds
    of thousands of relocations). _Writer._relocation_texts writes the same
    text straight from the columns."""
    return [
        {
            "object": obj,
            "address": f"{address:#x}",
            "type": type_name,
            "symbol": symbol,
            "addend": None if addend is None else f"{addend:#x}" if addend >= 0 else f"-{-addend:#x}",
            "state": state,
            "current": None if current is None else f"{current:#x}",
            "expected": None if expected is None else f"{expected:#x}",
            "binding": None if binding is None else
            {"object": binding.object, "symbol": binding.symbol, "version": binding.version},
            "reason": reason,
        }
        for obj, address, type_name, symbol, addend, state, current, expected, binding, reason
        in zip(*[table.column(name) for name in _RELOCATION_FIELDS])
    ]


def snapshot_to_json(snap: Snapshot, backtrace=None, *, relocation_rows: bool = False) -> dict:
    """``backtrace``: the stop's frames (Session.backtrace()), written under
    "backtrace"; None (not unwound) writes null. ``relocation_rows``: the
    relocations as a RelocationRows, for write_json only (the same text)."""
    stack = snap.stack
    stop = snap.stop
    return {
        "format": FORMAT,
        "program": snap.program,
        "step": snap.step,
        "step_exact": snap.step_exact,
        "stop": {
            "reason": stop.kind,
            "description": stop.description,
            "target": stop.target,
            "reached": stop.reached,
            "signal": stop.signal,
            "fault_address": hexify(stop.fault_address),
            "exit_code": stop.exit_code,
            # Only in a process with more than one thread: single-threaded
            # JSON stays as it was (recordings' goldens, live == replay).
            **({} if stop.thread is None else {"thread": stop.thread}),
        },
        "pid": snap.pid,
        "arch": snap.arch,
        "registers": {} if snap.registers is None else
        {name: hexify(value) for name, value in snap.registers.items()},
        "eflags": [] if snap.registers is None else list(snap.registers.flags),
        "backtrace": None if backtrace is None else [
            {"number": f.number, "pc": hexify(f.pc), "sp": hexify(f.sp), "cfa": hexify(f.cfa),
             "symbol": f.symbol, "object": f.object, "path": f.path, "how": f.how}
            for f in backtrace
        ],
        "stack_pointer": hexify(stack.sp) if stack else None,
        "argv": [] if stack is None else [s.text for s in stack.argv],
        "envp": [] if stack is None else [s.text for s in stack.envp],
        "auxv": [] if stack is None else _auxv(stack.auxv, snap.auxv_changed),
        "auxv_kernel": _auxv(snap.auxv_kernel, snap.auxv_changed),
        "maps": [
            {
                "start": hexify(a.entry.start),
                "end": hexify(a.entry.end),
                "perms": a.entry.perms,
                "offset": hexify(a.entry.offset),
                "path": a.entry.path,
                "object": a.object,
                "segment": a.segment,
            }
            for a in snap.maps
        ],
        "objects": [
            {
                "name": o.name,
                "path": o.path,
                "base": hexify(o.base),
                "elf_offset": hexify(o.elf_offset),
                "is_ldso": o.is_ldso,
                "elf": _detail(o.detail),
                "dynamic": {**_dynamic(o.detail), **_version_names(o.versions)},
                "relocations": {
                    "total": o.totals.total,
                    "applied": o.totals.applied,
                    "pending": o.totals.pending,
                    "lazy": o.totals.lazy,
                    "unknown": o.totals.unknown,
                },
            }
            for o in snap.objects
        ],
        "relocations": RelocationRows(snap.relocations) if relocation_rows else _relocation_dicts(snap.relocations),
        "link_map": [
            {
                "namespace": e.namespace,
                "name": e.name,
                "l_addr": hexify(e.l_addr),
                "l_ld": hexify(e.l_ld),
                "kind": e.kind,
                "address": hexify(e.address),
                **_link_map_private(e.private),
            }
            for e in snap.link_map
        ],
        "r_debug": [
            {
                "namespace": namespace,
                "address": hexify(d.address),
                "version": d.version,
                "state": d.r_state,
                "brk": hexify(d.r_brk),
                "ldbase": hexify(d.ldbase),
                "map": hexify(d.r_map),
            }
            for namespace, d in enumerate(snap.r_debug)
        ],
        "threads": [
            {
                "tid": t.tid,
                "name": t.name,
                "state": t.state,
                "fs_base": hexify(t.fs_base),
                "sigmask": list(t.sigmask),
                "sigpend": list(t.sigpend),
                "shdpnd": list(t.shdpnd),
                "stop": t.stop,
                **({} if t.current is None else {"current": t.current}),
                # Again only with several threads (one thread's are `registers`).
                **({} if t.registers is None else
                   {"registers": {name: hexify(value) for name, value in t.registers.items()},
                    "pc": hexify(t.registers.pc)}),
            }
            for t in snap.threads
        ],
        "handoff": {
            "checked": snap.handoff.checked,
            "ok": snap.handoff.ok,
            "at": hexify(snap.handoff.at),
            "violations": [
                {"severity": f.severity, "check": f.check, "message": f.message}
                for f in snap.handoff.violations
            ],
            "passed": [f.check for f in snap.handoff.findings if f.severity == "ok"],
        },
        "got": [
            {"object": g.object, "address": hexify(g.address), "type": g.type_name, "symbol": g.symbol,
             "current": hexify(g.current), "target": g.target, "state": g.state}
            for g in snap.got
        ],
        "ifuncs": [
            {"object": f.object, "address": hexify(f.address), "resolver": hexify(f.resolver),
             "resolver_name": f.resolver_name, "chosen": hexify(f.chosen), "chosen_name": f.chosen_name,
             "state": f.state}
            for f in snap.ifuncs
        ],
        "events": [
            {
                "step": e.step,
                "exact": e.exact,
                "kind": e.kind,
                "name": e.name,
                "detail": e.detail,
                "address": hexify(e.address),
            }
            for e in snap.events
        ],
        "syscalls": [
            {
                "step": c.step,
                "number": c.number,
                "name": c.name,
                "args": None if c.args is None else [hexify(a) for a in c.args],
                "result": None if c.result is None else
                hexify(c.result) if c.result >= 0 else f"-{-c.result:#x}",
                "errno": c.errno_name,
            }
            for c in snap.syscalls
        ],
        "verified": snap.verified,
        "divergence": None if snap.divergence is None else
        {"step": snap.divergence.step, "address": hexify(snap.divergence.address),
         "message": snap.divergence.message},
    }


# -- streaming ----------------------------------------------------------------
# json.dumps(..., indent=1) runs the pure-Python encoder (the C one takes no
# indent): on gdb's 151k relocations that is ~8 M generator steps and 40 MB
# built in memory before the first byte leaves. write_json emits the same
# bytes, a few hundred list items per write.

_ESCAPE = json.encoder.encode_basestring_ascii
# Pieces buffered before a write: a relocation is ~12 pieces, so ~300 of them.
_CHUNK_PIECES = 4096
_ROWS_PER_BATCH = 256
# Exact types the C encoder spells as json.dumps(indent=1) does, one token each.
_SCALARS = frozenset({str, int, float, bool, type(None)})
_FLAT_ENCODER = json.JSONEncoder(separators=("\n", ": "))
_TEXT_OR_NULL = frozenset({str, type(None)})


def _float_text(value: float) -> str:
    # json.dumps' spelling (allow_nan=True, its default).
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return float.__repr__(value)


def _key_text(key) -> str:
    if isinstance(key, str):
        return _ESCAPE(key)
    if isinstance(key, float):
        return _ESCAPE(_float_text(key))
    if key is True:
        return '"true"'
    if key is False:
        return '"false"'
    if key is None:
        return '"null"'
    if isinstance(key, int):
        return _ESCAPE(int.__repr__(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


class _Writer:
    """json.dumps(value, indent=1) text, handed to ``write`` in chunks."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write
        self._parts: list[str] = []
        self._keys: dict[tuple, str] = {}  # (key, depth) -> '\n   "key": '
        self._templates: dict[tuple, str] = {}  # (keys, depth) -> a row's text with %s for values
        self._capturing = 0  # inside _text_of: the parts are a value's, not the output's

    def flush(self, end: str = "") -> None:
        if self._capturing:
            return
        parts = self._parts
        if end:
            parts.append(end)
        if parts:
            self._write("".join(parts))
            parts.clear()

    def value(self, value, depth: int) -> None:
        # Same order of tests as json's encoder, so subclasses land alike.
        if isinstance(value, str):
            self._parts.append(_ESCAPE(value))
        elif value is None:
            self._parts.append("null")
        elif value is True:
            self._parts.append("true")
        elif value is False:
            self._parts.append("false")
        elif isinstance(value, int):
            self._parts.append(int.__repr__(value))
        elif isinstance(value, float):
            self._parts.append(_float_text(value))
        elif isinstance(value, (list, tuple)):
            self._list(value, depth)
        elif isinstance(value, dict):
            self._dict(value, depth)
        elif type(value) is RelocationRows:
            self._relocation_rows(value.states, depth)
        else:
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    def _list(self, items, depth: int) -> None:
        if not items:
            self._parts.append("[]")
            return
        if all(type(item) is dict and item for item in items):
            self._batched_list((self._row_texts(items[start:start + _ROWS_PER_BATCH], depth + 1)
                                for start in range(0, len(items), _ROWS_PER_BATCH)), depth)
            return
        inner = "\n" + " " * (depth + 1)
        parts = self._parts
        parts.append("[" + inner)
        separator = "," + inner
        value = self.value
        for index, item in enumerate(items):
            if index:
                parts.append(separator)
            value(item, depth + 1)
            if len(parts) >= _CHUNK_PIECES:
                self.flush()
        parts.append("\n" + " " * depth + "]")

    def _relocation_rows(self, states: RelocationTable, depth: int) -> None:
        """What _list writes of snapshot_to_json's relocation dicts."""
        if not states:
            self._parts.append("[]")
            return
        self._batched_list((self._relocation_texts([part.column(name)[start:start + _ROWS_PER_BATCH]
                                                    for name in _RELOCATION_FIELDS], depth + 1)
                            for part in states.per_object
                            for start in range(0, len(part), _ROWS_PER_BATCH)), depth)

    def _batched_list(self, batches: Iterator[list[str]], depth: int) -> None:
        """A non-empty list whose items' texts come in batches (of
        _ROWS_PER_BATCH rows): written one batch at a time."""
        inner = "\n" + " " * (depth + 1)
        parts = self._parts
        parts.append("[" + inner)
        separator = "," + inner
        first = True
        for texts in batches:
            if not first:
                parts.append(separator)
            first = False
            parts.append(separator.join(texts))
            self.flush()
        parts.append("\n" + " " * depth + "]")

    def _relocation_texts(self, columns: list[tuple], depth: int) -> list[str]:
        """_row_texts of the relocation dicts, each column of text made
        from a column of the table (_RELOCATION_FIELDS) as snapshot_to_json
        spells it: a hex string needs no escaping, only quotes; names,
        states and bindings repeat, and each distinct one is encoded once."""
        objects, addresses, type_names, symbols, addends, states, currents, expected, bindings, reasons = columns
        inner = depth + 1
        texts = [
            self._repeating_texts(objects, inner),
            [f'"{address:#x}"' for address in addresses],
            self._repeating_texts(type_names, inner),
            self._repeating_texts(symbols, inner),
            ["null" if a is None else f'"{a:#x}"' if a >= 0 else f'"-{-a:#x}"' for a in addends],
            self._repeating_texts(states, inner),
            ["null" if value is None else f'"{value:#x}"' for value in currents],
            ["null" if value is None else f'"{value:#x}"' for value in expected],
            self._binding_texts(bindings, inner),
            self._repeating_texts(reasons, inner),
        ]
        template = self._templates.get((_RELOCATION_KEYS, depth))
        if template is None:
            template = self._templates[(_RELOCATION_KEYS, depth)] = self._template(_RELOCATION_KEYS, depth)
        return [template % row for row in zip(*texts)]

    def _repeating_texts(self, column: list, depth: int) -> list[str]:
        """The texts of a column of strings and nulls, each distinct value
        encoded once (only str and None: no two of them are equal unless
        they are written alike, as True and 1 would be)."""
        distinct = list(set(column))
        if not _TEXT_OR_NULL.issuperset(map(type, distinct)):
            return self._column_texts(column, depth)
        texts = dict(zip(distinct, _FLAT_ENCODER.encode(distinct)[1:-1].split("\n")))
        return [texts[value] for value in column]

    def _binding_texts(self, bindings: list, depth: int) -> list[str]:
        """A binding's dict (null without one); bindings are shared
        (relocations._binding), each instance is written once (told apart
        by identity: hashing a dataclass per relocation cost more)."""
        by_id = dict(zip(map(id, bindings), bindings))
        by_id.pop(id(None), None)
        texts: dict = {id(None): "null"}
        if by_id:
            rows = [{"object": b.object, "symbol": b.symbol, "version": b.version} for b in by_id.values()]
            texts.update(zip(by_id, self._row_texts(rows, depth)))
        return [texts[key] for key in map(id, bindings)]

    def _row_texts(self, rows: list, depth: int) -> list[str]:
        """The texts of non-empty dicts (relocations, maps, events), column
        by column: a column of scalars is encoded by json's C encoder in one
        call, and each row laid into one template for its keys."""
        keys = tuple(rows[0])
        if not all(map(keys.__eq__, map(tuple, rows))):
            return [self._text_of(row, depth) for row in rows]
        columns = []
        for column in zip(*map(dict.values, rows)):
            if _SCALARS.issuperset(map(type, column)):
                # ensure_ascii escapes every control character, so "\n"
                # never occurs inside an encoded string: the split is exact.
                columns.append(_FLAT_ENCODER.encode(column)[1:-1].split("\n"))
            else:
                columns.append(self._column_texts(column, depth + 1))
        template = self._templates.get((keys, depth))
        if template is None:
            template = self._templates[(keys, depth)] = self._template(keys, depth)
        return [template % row for row in zip(*columns)]

    def _column_texts(self, column: tuple, depth: int) -> list[str]:
        """A column holding containers (a relocation's binding: null or a
        dict): its dicts through _row_texts together, the rest one by one."""
        texts = [""] * len(column)
        dict_rows = [i for i, item in enumerate(column) if type(item) is dict and item]
        for i, text in zip(dict_rows, self._row_texts([column[i] for i in dict_rows], depth)
                           if dict_rows else ()):
            texts[i] = text
        for i, item in enumerate(column):
            if not texts[i]:
                # null, most of them (a relocation without a binding).
                texts[i] = "null" if item is None else self._text_of(item, depth)
        return texts

    def _text_of(self, value, depth: int) -> str:
        outer = self._parts
        self._parts = []
        self._capturing += 1
        try:
            self.value(value, depth)
            return "".join(self._parts)
        finally:
            self._parts = outer
            self._capturing -= 1

    def _template(self, keys: tuple, depth: int) -> str:
        indent = "\n" + " " * (depth + 1)
        lines = ",".join(indent + _key_text(key).replace("%", "%%") + ": %s" for key in keys)
        return "{" + lines + "\n" + " " * depth + "}"

    def _dict(self, mapping: dict, depth: int) -> None:
        if not mapping:
            self._parts.append("{}")
            return
        parts = self._parts
        keys = self._keys
        value = self.value
        opening = "{"
        for key, item in mapping.items():
            key_line = keys.get((key, depth))
            if key_line is None:
                key_line = keys[(key, depth)] = "\n" + " " * (depth + 1) + _key_text(key) + ": "
            # Scalars inline: this loop runs ~10 times per relocation.
            if isinstance(item, str):
                parts.append(opening + key_line + _ESCAPE(item))
            elif item is None:
                parts.append(opening + key_line + "null")
            else:
                parts.append(opening + key_line)
                value(item, depth + 1)
            opening = ","
        parts.append("\n" + " " * depth + "}")


# The keys of snapshot_to_json's relocation dicts, in order, and the
# RelocationState fields they are made of.
_RELOCATION_KEYS = ("object", "address", "type", "symbol", "addend", "state", "current", "expected", "binding",
                    "reason")
_RELOCATION_FIELDS = ("object", "address", "type_name", "symbol", "addend", "state", "current", "expected",
                      "binding", "reason")


def write_json(value, write: Callable[[str], object], end: str = "") -> None:
    """Hand ``json.dumps(value, indent=1) + end`` to ``write`` in chunks of a
    few hundred list items (one write per object, per ~300 relocations)."""
    writer = _Writer(write)
    writer.value(value, 0)
    writer.flush(end)
