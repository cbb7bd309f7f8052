"""`loaderdbg serve` under gdb: how fast reverse execution feels (issue 21).

    .venv/bin/python bench/serve.py [--recording FILE] [--count N] [--json]

In one run, on the glibc exec-solib sample recording (122,708 steps):
- the real gdb, batch mode, connected with `target remote | loaderdbg
  serve --stdio`: N `reverse-stepi` then N `stepi`, each timed inside gdb
  (its Python: the whole command, gdb's own frame work included);
  target p50 <= 5 ms;
- `reverse-continue` from the last step to a breakpoint hit only near the
  first one (>= 100k steps back), and to the last write of a watched word
  as far back: in gdb, and at the protocol level (a socket client sending
  `bc` and waiting for the stop reply); target <= 1 s;
- the protocol round trip of `bs` + `g` alone (what gdb waits for at
  least, per reverse-stepi).

A report, not a timed test: the numbers move with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from loaderdbg.gdb_remote.packets import PacketReader, frame  # noqa: E402
from loaderdbg.record import index  # noqa: E402
from loaderdbg.record.replay import ReplaySession  # noqa: E402

LOADERDBG = str(Path(sys.executable).with_name("loaderdbg"))
DEFAULT = REPO / "recordings" / "execsolib-glibc-entry.ldbg"

GDB_SCRIPT = r"""
import gdb, time, json
def timed(command, n):
    out = []
    for _ in range(n):
        start = time.perf_counter()
        gdb.execute(command, to_string=True)
        out.append((time.perf_counter() - start) * 1000)
    return out
n = {count}
back = timed("reverse-stepi", n)
forward = timed("stepi", n)
gdb.execute("break *{breakpoint:#x}", to_string=True)
start = time.perf_counter()
gdb.execute("reverse-continue", to_string=True)
rc_break = (time.perf_counter() - start) * 1000
where_break = gdb.execute("monitor step", to_string=True)
gdb.execute("delete", to_string=True)
gdb.execute("monitor goto {last}", to_string=True)
gdb.execute("maint flush register-cache", to_string=True)
gdb.execute("watch *(long*){watched:#x}", to_string=True)
start = time.perf_counter()
gdb.execute("reverse-continue", to_string=True)
rc_watch = (time.perf_counter() - start) * 1000
where_watch = gdb.execute("monitor step", to_string=True)
print("BENCH " + json.dumps(dict(back=back, forward=forward, rc_break=rc_break, where_break=where_break,
                                 rc_watch=rc_watch, where_watch=where_watch)))
"""


def far_targets(path: Path) -> dict:
    """A breakpoint whose only hits are >= 100k steps before the end, and a
    word whose last write is as far back (from the recording's index)."""
    with ReplaySession(str(path)) as replay:
        rec = replay.recording
        last = replay.last_step
        for step in range(1, 2000):
            pc = int.from_bytes(rec.regs_at(step)[16 * 8:17 * 8], "little")
            hit = index.find_pc(rec, {pc}, before=last)
            if hit is not None and last - hit >= 100_000:
                breakpoint, break_at = pc, hit
                break
        else:
            raise SystemExit(f"{path}: no breakpoint 100k steps back")
        replay.goto(last)
        sp = replay.register("rsp")
        watched = watch_at = None
        for slot in range(sp, sp + 4096, 8):
            write = index.last_write(rec, slot, 8, last)
            if write is not None and last - write.step >= 100_000:
                watched, watch_at = slot, write.step
                break
        if watched is None:
            raise SystemExit(f"{path}: no word last written 100k steps back")
        return dict(last=last, breakpoint=breakpoint, break_at=break_at, watched=watched, watch_at=watch_at)


def in_gdb(path: Path, count: int, targets: dict) -> dict:
    gdb = shutil.which("gdb")
    if gdb is None:
        raise SystemExit("gdb is required")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(GDB_SCRIPT.format(count=count, **targets))
    done = subprocess.run([gdb, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set remotetimeout 60",
                           "-ex", f"target remote | {LOADERDBG} serve --stdio --at entry {path}",
                           "-ex", f"source {script.name}"], capture_output=True, text=True, timeout=600)
    Path(script.name).unlink()
    line = next((l for l in done.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"gdb run failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(line[6:])


class Client:
    """A bare protocol client over the server's stdin/stdout (no gdb)."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([LOADERDBG, "serve", "--stdio", "--at", "entry", str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.reader = PacketReader()
        self.ask(b"QStartNoAckMode")

    def ask(self, payload: bytes) -> bytes:
        self.proc.stdin.write(frame(payload))
        self.proc.stdin.flush()
        while True:
            for packet in self.reader.packets():
                if packet.kind == "packet":
                    return packet.payload
            data = self.proc.stdout.read1(65536)
            if not data:
                raise SystemExit("server went away")
            self.reader.feed(data)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def at_protocol(path: Path, count: int, targets: dict) -> dict:
    client = Client(path)
    try:
        round_trips = []
        for _ in range(count):
            start = time.perf_counter()
            client.ask(b"bs")
            client.ask(b"g")
            round_trips.append((time.perf_counter() - start) * 1000)
        client.ask(b"qRcmd," + f"goto {targets['last']}".encode().hex().encode())
        client.ask(b"Z0,%x,1" % targets["breakpoint"])
        start = time.perf_counter()
        reply = client.ask(b"bc")
        rc_break = (time.perf_counter() - start) * 1000
        assert b"swbreak" in reply, reply
        client.ask(b"z0,%x,1" % targets["breakpoint"])
        client.ask(b"qRcmd," + f"goto {targets['last']}".encode().hex().encode())
        client.ask(b"Z2,%x,8" % targets["watched"])
        start = time.perf_counter()
        reply = client.ask(b"bc")
        rc_watch = (time.perf_counter() - start) * 1000
        assert b"watch:" in reply, reply
        return dict(round_trips=round_trips, rc_break=rc_break, rc_watch=rc_watch)
    finally:
        client.close()


def p(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recording", type=Path, default=DEFAULT)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    targets = far_targets(options.recording)
    gdb = in_gdb(options.recording, options.count, targets)
    proto = at_protocol(options.recording, options.count, targets)
    steps_back = targets["last"] - targets["break_at"], targets["last"] - targets["watch_at"]
    result = {
        "recording": str(options.recording), "steps": targets["last"],
        "gdb_reverse_stepi_ms": {"p50": statistics.median(gdb["back"]), "p95": p(gdb["back"], 0.95)},
        "gdb_stepi_ms": {"p50": statistics.median(gdb["forward"]), "p95": p(gdb["forward"], 0.95)},
        "gdb_reverse_continue_break_ms": gdb["rc_break"], "break_steps_back": steps_back[0],
        "gdb_reverse_continue_watch_ms": gdb["rc_watch"], "watch_steps_back": steps_back[1],
        "gdb_stopped_at": [re.sub(r"\s+", " ", gdb["where_break"]).strip(),
                           re.sub(r"\s+", " ", gdb["where_watch"]).strip()],
        "protocol_bs_g_ms": {"p50": statistics.median(proto["round_trips"]), "p95": p(proto["round_trips"], 0.95)},
        "protocol_reverse_continue_break_ms": proto["rc_break"],
        "protocol_reverse_continue_watch_ms": proto["rc_watch"],
    }
    if options.json:
        print(json.dumps(result, indent=2))
        return
    print(f"recording {result['recording']} ({result['steps']:,} steps)")
    print(f"gdb reverse-stepi  p50 {result['gdb_reverse_stepi_ms']['p50']:.2f} ms, "
          f"p95 {result['gdb_reverse_stepi_ms']['p95']:.2f} ms   (target p50 <= 5 ms)")
    print(f"gdb stepi          p50 {result['gdb_stepi_ms']['p50']:.2f} ms, p95 {result['gdb_stepi_ms']['p95']:.2f} ms")
    print(f"protocol bs + g    p50 {result['protocol_bs_g_ms']['p50']:.2f} ms, "
          f"p95 {result['protocol_bs_g_ms']['p95']:.2f} ms")
    print(f"reverse-continue to a breakpoint {steps_back[0]:,} steps back: gdb {gdb['rc_break']:.0f} ms, "
          f"protocol {proto['rc_break']:.1f} ms   (target <= 1 s)")
    print(f"reverse-continue to a watched write {steps_back[1]:,} steps back: gdb {gdb['rc_watch']:.0f} ms, "
          f"protocol {proto['rc_watch']:.1f} ms")
    print(f"gdb stopped at: {result['gdb_stopped_at'][0]} / {result['gdb_stopped_at'][1]}")


if __name__ == "__main__":
    main()
