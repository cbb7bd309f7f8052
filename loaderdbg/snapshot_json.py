"""Snapshot → JSON (format ``loaderdbg.snapshot/1``, DESIGN.md §4).

64-bit values are hex strings so jq and JavaScript keep them exact; counts
are numbers. Keys are only ever added, never renamed.
"""

from __future__ import annotations

from loaderdbg.snapshot import FORMAT, Snapshot


def hexify(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def _auxv(entries, changed=frozenset()):
    return [
        {"type": e.name, "value": hexify(e.value), "decoded": e.decoded, "changed": e.type in changed}
        for e in entries
    ]


def _detail(d, base: int) -> dict:
    return {
        "type": d.type,
        # ObjectDetail.entry is base + e_entry; e_entry 0 (most libraries)
        # means no entry point, not one at the base.
        "entry": None if d.entry == base else hexify(d.entry),
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


def snapshot_to_json(snap: Snapshot) -> dict:
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
        },
        "pid": snap.pid,
        "arch": snap.arch,
        "registers": {} if snap.registers is None else
        {name: hexify(value) for name, value in snap.registers.items()},
        "eflags": [] if snap.registers is None else list(snap.registers.flags),
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
                "elf": _detail(o.detail, o.base),
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
        "relocations": [
            {
                "object": r.object,
                "address": hexify(r.address),
                "type": r.type_name,
                "symbol": r.symbol,
                "addend": hexify(r.addend) if r.addend is not None and r.addend >= 0 else
                (None if r.addend is None else f"-{-r.addend:#x}"),
                "state": r.state,
                "current": hexify(r.current),
                "expected": hexify(r.expected),
                "binding": None if r.binding is None else
                {"object": r.binding.object, "symbol": r.binding.symbol, "version": r.binding.version},
                "reason": r.reason,
            }
            for r in snap.relocations
        ],
        "link_map": [
            {
                "namespace": e.namespace,
                "name": e.name,
                "l_addr": hexify(e.l_addr),
                "l_ld": hexify(e.l_ld),
                "kind": e.kind,
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
    }
