"""The GDB remote serial protocol over a served target: one packet in, one
reply out (loaderdbg/serve/transport.py moves the bytes).

What gdb sends is what gdb's documentation ("Remote Protocol", "General
Query Packets", "Host I/O Packets") and rr's GdbServer describe. Anything
malformed is answered E01, anything unknown with the empty reply (gdb's
"not supported"), and no packet can raise out of ``handle``.
"""

from __future__ import annotations

import stat
import struct
import sys
from dataclasses import dataclass
from typing import Callable
from xml.sax.saxutils import escape, quoteattr

from loaderdbg.gdb_remote.packets import bytes_to_hex, hex_to_bytes, parse_hex_int
from loaderdbg.gdb_remote.signals import GDB_TO_LINUX_SIGNAL, LINUX_TO_GDB_SIGNAL
from loaderdbg.serve import registers as regs
from loaderdbg.serve.target import (ADDRESS_END, MAX_WATCHED, NO_SIGNALS, ResumeSignals, ServedFile,
                                    ServedTarget, Stop, libraries_svr4_xml, program_bias)

PACKET_SIZE = 0x4000
# Memory read at most per 'm' packet: a reply is twice as long in hex.
MAX_READ = (PACKET_SIZE - 16) // 2
PAGE = 4096
# Z2, Z3, Z4: gdb's watch, rwatch, awatch.
WATCH_KINDS = {2: "write", 3: "read", 4: "access"}

ERROR = b"E01"
EFAULT_REPLY = b"E0e"
OK = b"OK"
EMPTY = b""

# gdb's File-I/O errno values (not the host's).
FIO_ENOENT, FIO_EBADF, FIO_EACCES, FIO_EINVAL, FIO_EMFILE, FIO_EROFS = 2, 9, 13, 22, 24, 30
# Files a client may hold open at once (gdb holds one or two; one that never
# closes them must not grow the table without end).
MAX_OPEN_FILES = 64


class Disconnected(Exception):
    """The client closed the connection (the transport raises it, also from
    inside a continue that looks for gdb's Ctrl-C)."""


@dataclass
class _OpenFile:
    path: str
    file: ServedFile


class GdbServer:
    def __init__(self, target: ServedTarget, *, log: Callable[[str], None] | None = None) -> None:
        self.target = target
        self.registers = regs.register_set(target.arch.name)
        self.no_ack = False
        self.finished = False  # the client detached or killed: the connection ends
        self.multiprocess = False
        self._files: dict[int, _OpenFile] = {}
        self._next_fd = 1
        self._interrupted: Callable[[], bool] = lambda: False
        self._software: set[int] = set()  # Z0 addresses
        self._hardware: set[int] = set()  # Z1 addresses
        # Watched addresses by what gdb inserted there: Z2 write, Z3 read, Z4 access.
        self._watches: dict[str, set[int]] = {access: set() for access in WATCH_KINDS.values()}
        self._log = log or (lambda line: print(f"loaderdbg serve: {line}", file=sys.stderr))
        self._console: list[str] = []  # lines for gdb's console, sent before the next reply

    def take_console(self) -> list[bytes]:
        """The O packets (console output) to send gdb before the reply just
        made: gdb shows them while it waits for a stop reply."""
        lines, self._console = self._console, []
        return [b"O" + bytes_to_hex(line.encode()) for line in lines]

    # -- entry point ------------------------------------------------------------
    def handle(self, payload: bytes, interrupted: Callable[[], bool] = lambda: False) -> bytes | None:
        """The reply to one packet (None: the packet takes no reply).
        ``interrupted()`` says whether gdb has sent Ctrl-C since (a long
        continue looks at it between chunks)."""
        self._interrupted = interrupted
        try:
            return self._dispatch(payload, interrupted)
        except Disconnected:
            raise  # not an answer to give: there is nobody to give it to
        except (ValueError, IndexError, KeyError, struct.error):
            return ERROR
        except Exception as err:  # a bug of ours must not take the user's gdb session down
            self._log(f"error answering {payload[:40]!r}: {type(err).__name__}: {err}")
            return ERROR

    def _dispatch(self, payload: bytes, interrupted) -> bytes | None:
        if not payload:
            return EMPTY
        first = payload[:1]
        rest = payload[1:]
        if first == b"?":
            return self.stop_reply(self.target.stop)
        if first == b"g":
            return self.registers.encode_all(self.target.registers())
        if first == b"p":
            number = parse_hex_int(rest)
            reg = self.registers.by_number.get(number)
            return regs.encode_register(reg, self.target.registers()) if reg else ERROR
        if first in b"GPMX":
            return ERROR  # a recording cannot diverge from what happened; live writes are not offered
        if first == b"m":
            return self._read_memory(rest)
        if first in (b"Z", b"z"):
            return self._breakpoint(first == b"Z", rest)
        if first in (b"c", b"s"):
            return self._resume(step=first == b"s", reverse=False, interrupted=interrupted)
        if first in (b"C", b"S"):
            # Csig[;addr]: the current thread runs on receiving sig (gdb's `signal SIG`).
            signal = _linux_signal(rest.split(b";", 1)[0])
            return self._resume(step=first == b"S", reverse=False, interrupted=interrupted,
                                signals={self.target.current_thread: signal})
        if first == b"b" and rest in (b"s", b"c"):
            if not self.target.reversible:
                return ERROR
            return self._resume(step=rest == b"s", reverse=True, interrupted=interrupted)
        if first == b"H":
            # Hg: whose registers gdb reads next; Hc: who resumes (vCont names it again).
            pid, tid = self._parse_thread(rest[1:])
            if pid not in (None, -1, 0, self.target.pid):
                return ERROR
            return OK if tid in (None, -1, 0) or self.target.select_thread(tid) else ERROR
        if first == b"T":
            pid, tid = self._parse_thread(rest)
            return OK if (tid in (None, -1, 0) or tid in self.target.thread_ids()) and \
                pid in (None, -1, 0, self.target.pid) else ERROR
        if first == b"D":
            self.target.detach()
            self.finished = True
            return OK
        if first == b"k":
            self.target.kill()
            self.finished = True
            return None
        if first == b"!":
            return EMPTY
        if first == b"v":
            return self._v_packet(payload)
        if first == b"q" or first == b"Q":
            return self._query(payload)
        return EMPTY

    # -- stop replies -------------------------------------------------------------------
    def thread_id(self, tid: int | None = None) -> bytes:
        """gdb's id of thread ``tid`` (default: the current one)."""
        tid = self.target.current_thread if tid is None else tid
        if self.multiprocess:
            return b"p%x.%x" % (self.target.pid, tid)
        return b"%x" % tid

    def stop_reply(self, stop: Stop) -> bytes:
        if stop.kind == "exited":
            tail = b";process:%x" % self.target.pid if self.multiprocess else b""
            return b"W%02x" % (stop.exit_code & 0xFF) + tail
        if stop.kind == "killed":
            tail = b";process:%x" % self.target.pid if self.multiprocess else b""
            return b"X%02x" % _gdb_signal(stop.signal) + tail
        out = b"T%02x" % _gdb_signal(stop.signal)
        values = self.target.registers()
        if values is not None:
            # The registers gdb asks for first at every stop, sent along.
            for number in self.registers.expedited:
                out += b"%02x:%s;" % (number, regs.encode_register(self.registers.by_number[number], values))
        out += b"thread:" + self.thread_id() + b";"
        if stop.swbreak or stop.hwbreak:
            # The target knows a breakpoint was hit; gdb said which kind it inserted.
            pc = values.get(self.registers.pc_source) if values is not None else None
            hardware = stop.hwbreak or (pc in self._hardware and pc not in self._software)
            out += b"hwbreak:;" if hardware else b"swbreak:;"
        if stop.watch is not None:
            # gdb said which kind it inserted there (as for hwbreak:).
            out += b"%s:%x;" % (self._watch_word(stop.watch), stop.watch)
        if stop.no_history is not None:
            out += b"replaylog:" + stop.no_history.encode() + b";"
        return out

    def _watch_word(self, addr: int) -> bytes:
        """The stop reply's word for a watchpoint hit at addr, by the kind
        gdb inserted there (a write watch when it inserted several)."""
        if addr in self._watches["access"] and addr not in self._watches["write"]:
            return b"awatch"
        if addr in self._watches["read"] and addr not in self._watches["write"]:
            return b"rwatch"
        return b"watch"

    def _resume(self, step: bool, reverse: bool, interrupted, signals: ResumeSignals = NO_SIGNALS) -> bytes:
        stop = self.target.resume(step, reverse, interrupted, signals)
        if stop.console:
            self._console.append(stop.console + "\n")
        return self.stop_reply(stop)

    # -- memory and breakpoints ------------------------------------------------------------
    def _read_memory(self, rest: bytes) -> bytes:
        addr_text, length_text = rest.split(b",", 1)
        addr, length = parse_hex_int(addr_text), parse_hex_int(length_text)
        length = min(length, MAX_READ, ADDRESS_END - addr) if addr < ADDRESS_END else 0
        if length <= 0:
            return EMPTY if addr < ADDRESS_END else EFAULT_REPLY
        data = self.target.read_memory(addr, length)
        if data is None:
            # As much as can be read, up to the first page that cannot (gdb takes a short read).
            data = b""
            while len(data) < length:
                take = min(length - len(data), PAGE - ((addr + len(data)) % PAGE))
                piece = self.target.read_memory(addr + len(data), take)
                if piece is None:
                    break
                data += piece
        return bytes_to_hex(data) if data else EFAULT_REPLY

    def _breakpoint(self, insert: bool, rest: bytes) -> bytes:
        fields = rest.split(b";", 1)[0].split(b",")
        kind, addr, size = int(fields[0]), parse_hex_int(fields[1]), parse_hex_int(fields[2])
        target = self.target
        if kind in (0, 1):
            if addr >= ADDRESS_END:
                return ERROR
            kinds, other = (self._software, self._hardware) if kind == 0 else (self._hardware, self._software)
            if insert:
                if not target.add_breakpoint(addr):
                    return ERROR
                kinds.add(addr)
                return OK
            kinds.discard(addr)
            if addr not in other:
                target.remove_breakpoint(addr)
            return OK
        access = WATCH_KINDS.get(kind)
        if access is None or access not in target.watch_accesses:
            return EMPTY  # unsupported: a recording indexes writes only, x86 cannot watch reads alone
        if insert and not (0 < size <= MAX_WATCHED and addr + size <= ADDRESS_END):
            return ERROR
        watches = self._watches[access]
        if insert:
            if not target.add_watchpoint(addr, size, access):
                return ERROR
            watches.add(addr)
            return OK
        watches.discard(addr)
        target.remove_watchpoint(addr, size, access)
        return OK

    # -- v packets -----------------------------------------------------------------------
    def _v_packet(self, payload: bytes) -> bytes | None:
        if payload == b"vCont?":
            return b"vCont;c;C;s;S"
        if payload.startswith(b"vCont;"):
            return self._v_cont(payload[6:])
        if payload.startswith(b"vFile:"):
            return self._v_file(payload[6:])
        if payload.startswith(b"vKill"):
            self.target.kill()
            self.finished = True
            return OK
        return EMPTY  # vMustReplyEmpty, vRun, vAttach, vCtrlC...

    def _v_cont(self, actions: bytes) -> bytes:
        """The first action naming one of our threads makes it the current
        one (a step steps it alone, the others wait: all-stop); without one,
        the default action applies to the current thread. Each thread named
        receives its action's signal (C/S) as it runs, and no other: gdb
        sends `vCont;C1e:TID;c` to pass SIGUSR1 and `vCont;c` to withhold it."""
        chosen: bool | None = None  # step or continue, once a thread is chosen
        default: tuple[bool, int] | None = None
        signals: dict[int, int] = {}
        for action in actions.split(b";"):
            verb, _, thread = action.partition(b":")
            kind = verb[:1]
            if not kind or kind not in b"csCS":
                return ERROR
            step = kind in b"sS"
            signal = _linux_signal(verb[1:]) if kind in b"CS" else 0
            pid, tid = self._parse_thread(thread) if thread else (None, None)
            if pid not in (None, -1, 0, self.target.pid):
                continue
            if tid in (None, -1, 0):
                default = default or (step, signal)
            elif chosen is None and self.target.select_thread(tid):
                chosen = step
                signals.setdefault(tid, signal)
            elif chosen is not None and tid in self.target.thread_ids():
                signals.setdefault(tid, signal)  # another thread's signal to pass (gdb had two)
        if chosen is None:
            if default is None:
                return ERROR
            chosen, signal = default
            if signal:
                signals[self.target.current_thread] = signal
        return self._resume(step=chosen, reverse=False, interrupted=self._interrupted, signals=signals)

    def _parse_thread(self, text: bytes) -> tuple[int | None, int | None]:
        """(pid, tid) of gdb's thread-id syntax: TID, pPID.TID, -1, 0."""
        if text.startswith(b"p"):
            pid_text, _, tid_text = text[1:].partition(b".")
            pid = -1 if pid_text == b"-1" else parse_hex_int(pid_text)
            tid = None if not tid_text else -1 if tid_text == b"-1" else parse_hex_int(tid_text)
            return pid, tid
        if text == b"-1":
            return None, -1
        return None, parse_hex_int(text) if text else None

    # -- queries ----------------------------------------------------------------------------
    def _query(self, payload: bytes) -> bytes:
        name, _, args = payload.partition(b":")
        if name == b"qSupported":
            features = args.split(b";")
            self.multiprocess = b"multiprocess+" in features
            supported = [b"PacketSize=%x" % PACKET_SIZE, b"qXfer:features:read+", b"qXfer:auxv:read+",
                         b"qXfer:exec-file:read+", b"qXfer:libraries-svr4:read+", b"qXfer:threads:read+",
                         b"vContSupported+",
                         b"swbreak+", b"hwbreak+", b"QStartNoAckMode+", b"QPassSignals+", b"QProgramSignals+"]
            if self.multiprocess:
                supported.append(b"multiprocess+")
            if self.target.reversible:
                supported += [b"ReverseStep+", b"ReverseContinue+"]
            return b";".join(supported)
        if name == b"QStartNoAckMode":
            self.no_ack = True
            return OK
        if name == b"QPassSignals":
            # The signals gdb neither stops at nor prints (`handle SIG nostop noprint pass`):
            # a continue delivers them and goes on, as under gdb itself.
            self.target.pass_signals(_linux_signal_set(args))
            return OK
        if name == b"QProgramSignals":
            # The signals gdb lets the program receive (`handle SIG pass`),
            # for when gdb has no say: a detach.
            self.target.program_signals(_linux_signal_set(args))
            return OK
        if name in (b"QThreadEvents", b"QNonStop") and payload != b"QNonStop:1":
            return OK
        if payload == b"qC":
            return b"QC" + self.thread_id()
        if payload == b"qfThreadInfo":
            return b"m" + b",".join(self.thread_id(tid) for tid in self.target.thread_ids())
        if payload == b"qsThreadInfo":
            return b"l"
        if name == b"qAttached":
            return b"1" if self.target.attached else b"0"
        if payload == b"qOffsets":
            bias = program_bias(self.target.snapshot(), self.target.exec_path())
            return b"Text=%x;Data=%x;Bss=%x" % (bias, bias, bias)
        if payload == b"qSymbol::":
            return OK
        if name.startswith(b"qThreadExtraInfo"):
            return bytes_to_hex(self._position_text().encode())
        if name == b"qXfer":
            return self._qxfer(args)
        if name.startswith(b"qRcmd,"):
            command = hex_to_bytes(name[len(b"qRcmd,"):]).decode("utf-8", "replace")
            text = self.target.monitor(command, self._interrupted)
            return bytes_to_hex(text.encode()) if text else OK
        return EMPTY

    def _qxfer(self, args: bytes) -> bytes:
        # object:read:annex:offset,length
        obj, operation, rest = args.split(b":", 2)
        if operation != b"read":
            return EMPTY
        annex, _, span = rest.rpartition(b":")
        offset_text, length_text = span.split(b",")
        offset, length = parse_hex_int(offset_text), parse_hex_int(length_text)
        if obj == b"features":
            if annex != b"target.xml":
                return b"E00"
            data = self.registers.target_xml
        elif obj == b"auxv":
            data = self.target.auxv()
        elif obj == b"exec-file":
            data = self.target.exec_path().encode()
        elif obj == b"threads":
            data = self._threads_xml()
        elif obj == b"libraries-svr4":
            data = libraries_svr4_xml(self.target.snapshot(), self.target.exec_path(),
                                      annex.decode("ascii", "replace"))
        else:
            return EMPTY
        chunk = data[offset:offset + min(length, PACKET_SIZE - 16)]
        return (b"l" if offset + len(chunk) >= len(data) else b"m") + chunk

    def _position_text(self) -> str:
        return f"step {self.target.position}" if self.target.session.position_exact else "after a continue"

    def _threads_xml(self) -> bytes:
        """Every thread with its name (comm), as gdb's `info threads` shows natively."""
        extra = escape(self._position_text())
        rows = []
        for tid in self.target.thread_ids():
            name = self.target.thread_name(tid)
            named = f" name={quoteattr(name)}" if name else ""
            rows.append(f'<thread id="{self.thread_id(tid).decode()}"{named}>{extra}</thread>')
        return ("<threads>" + "".join(rows) + "</threads>").encode()

    # -- host I/O: files the target has -----------------------------------------------------
    def _v_file(self, rest: bytes) -> bytes:
        operation, _, args = rest.partition(b":")
        fields = args.split(b",") if args else []
        if operation == b"setfs":
            return b"F0"
        if operation == b"open":
            path = hex_to_bytes(fields[0]).decode("utf-8", "surrogateescape")
            flags = parse_hex_int(fields[1]) if len(fields) > 1 else 0
            if flags & 3:  # O_WRONLY / O_RDWR
                return b"F-1,%x" % FIO_EROFS
            if len(self._files) >= MAX_OPEN_FILES:
                return b"F-1,%x" % FIO_EMFILE
            served = self.target.open_file(path)
            if served is None:
                return b"F-1,%x" % FIO_ENOENT
            fd = self._next_fd
            self._next_fd += 1
            self._files[fd] = _OpenFile(path, served)
            return b"F%x" % fd
        if operation == b"close":
            return b"F0" if self._files.pop(parse_hex_int(fields[0]), None) else b"F-1,%x" % FIO_EBADF
        if operation == b"pread":
            opened = self._files.get(parse_hex_int(fields[0]))
            if opened is None:
                return b"F-1,%x" % FIO_EBADF
            count = min(parse_hex_int(fields[1]), PACKET_SIZE // 2)
            data = opened.file.read(parse_hex_int(fields[2]), count)
            return b"F%x;" % len(data) + data
        if operation == b"fstat":
            opened = self._files.get(parse_hex_int(fields[0]))
            if opened is None:
                return b"F-1,%x" % FIO_EBADF
            return b"F%x;" % 64 + _fio_stat(opened.file.size)
        if operation == b"readlink":
            path = hex_to_bytes(fields[0]).decode("utf-8", "surrogateescape")
            if path in (f"/proc/{self.target.pid}/exe", "/proc/self/exe"):
                data = self.target.exec_path().encode()
                return b"F%x;" % len(data) + data
            return b"F-1,%x" % FIO_EINVAL
        if operation in (b"pwrite", b"unlink"):
            return b"F-1,%x" % FIO_EROFS
        return EMPTY


def _fio_stat(size: int) -> bytes:
    """gdb's struct fio_stat, big-endian: a read-only regular file of size bytes."""
    mode = stat.S_IFREG | 0o444
    return struct.pack(">IIIIIIIQQQIII", 0, 0, mode, 1, 0, 0, 0, size, 4096, (size + 511) // 512, 0, 0, 0)


def _linux_signal(gdb_number: bytes) -> int:
    """The Linux signal of a resume packet's gdb signal number (0: none).
    KeyError (gdb is told E01) for one Linux has not (gdb's SIGEMT)."""
    number = parse_hex_int(gdb_number)
    return GDB_TO_LINUX_SIGNAL[number] if number else 0


def _linux_signal_set(args: bytes) -> frozenset[int]:
    """QPassSignals / QProgramSignals' list (gdb numbers, hex, ';'-separated)
    as Linux signals, leaving out those Linux has not."""
    numbers = (parse_hex_int(number) for number in args.split(b";") if number)
    return frozenset(GDB_TO_LINUX_SIGNAL[n] for n in numbers if n in GDB_TO_LINUX_SIGNAL)


def _gdb_signal(linux: int) -> int:
    """A Linux signal number as gdb numbers it (5, SIGTRAP, for one it has no number for)."""
    return LINUX_TO_GDB_SIGNAL.get(linux, LINUX_TO_GDB_SIGNAL[5])
