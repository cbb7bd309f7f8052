"""The command line's gdb words, parsed into frozen Commands.

    si [N]   ni [N]   c   starti   b [NAME|*ADDR]   delete NAME|*ADDR   x/NFU ADDR
    info auxv|registers|breakpoints|threads   thread N   vmmap   got   explain
    until T | run-to T   goto N   rsi [N]   rc   who $REG | who[/N] ADDR   help   q
    signal SIG|0   queue-signal SIG|0

Addresses are expressions of numbers, registers and symbols:
``0x7ffff7fc9b70``, ``$sp``, ``$rsp+0x10``, ``$pc - 4``, ``main``,
``_dl_start+0x10``. Parsing is pure; a Command is carried out by the app
(motion) or by reports.py (queries), which resolve symbols through the
session (Session.resolve: dynamic symbols, then .symtab).
"""

from __future__ import annotations

import difflib
import re
import signal as _signal
from dataclasses import dataclass
from typing import Callable

from loaderdbg.decode.siginfo import signal_name as decoded_signal_name
from loaderdbg.errors import UsageError
from loaderdbg.targets import TARGET_HELP, parse_target

MAX_COUNT = 10_000_000
MAX_EXAMINE = 4096


class CommandError(ValueError):
    """A command that cannot be parsed or resolved; the message is for the user."""


@dataclass(frozen=True)
class SymbolRef:
    """A symbol name in an address, resolved through the session."""

    name: str


@dataclass(frozen=True)
class AddressExpr:
    """A sum of signed terms, each a number, a register name or a symbol."""

    terms: tuple[tuple[int, int | str | SymbolRef], ...]
    text: str

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(t.name for _, t in self.terms if isinstance(t, SymbolRef))

    def resolve(self, registers, resolve_symbol: Callable[[str], int | None] | None = None) -> int:
        """The address; resolve_symbol (Session.resolve) looks symbols up.
        It may block on the tracer thread: call this from a worker when the
        expression names a symbol."""
        if registers is None and any(isinstance(t, str) for _, t in self.terms):
            raise CommandError(f"{self.text}: no registers (is the process gone?)")
        total = 0
        for sign, term in self.terms:
            if isinstance(term, SymbolRef):
                value = resolve_symbol(term.name) if resolve_symbol is not None else None
                if value is None:
                    raise CommandError(f"no symbol {term.name!r} in the objects loaded so far"
                                       " (a library's symbols exist once ld.so has mapped it)")
                total += sign * value
            elif isinstance(term, str):
                total += sign * register_value(registers, term)
            else:
                total += sign * term
        return total & 0xFFFF_FFFF_FFFF_FFFF


FRAME_POINTERS = {"x86_64": "rbp", "aarch64": "x29"}


def register_value(registers, name: str) -> int:
    """$pc, $sp and $fp are the arch's; any other name is looked up as is."""
    tables = registers.tables
    aliases = {"pc": tables.pc_register, "sp": tables.sp_register,
               "fp": FRAME_POINTERS.get(tables.name, "fp")}
    real = aliases.get(name, name)
    value = registers.get(real)
    if value is None:
        raise CommandError(f"no register ${name}")
    return value


_TERM = re.compile(r"\s*([+-]?)\s*(\$[A-Za-z_][A-Za-z0-9_]*|0[xX][0-9a-fA-F]+|[0-9]+\b|[A-Za-z_.][A-Za-z0-9_.@]*)\s*")


def parse_address(text: str) -> AddressExpr:
    """``0x1000``, ``$sp``, ``$rsp + 0x10``, ``$pc-4``, ``main``, ``_dl_start+8``;
    a leading ``*`` is allowed (gdb's ``b *ADDR``)."""
    spelled = text.strip()
    if spelled.startswith("*"):
        spelled = spelled[1:].strip()
    while spelled.startswith("(") and spelled.endswith(")"):  # ($rsp+8): a sum needs no parentheses
        spelled = spelled[1:-1].strip()
    if not spelled:
        raise CommandError("missing address")
    terms: list[tuple[int, int | str]] = []
    pos = 0
    while pos < len(spelled):
        match = _TERM.match(spelled, pos)
        if match is None or match.end() == pos:
            raise CommandError(f"bad address {text.strip()!r}: use numbers, $registers and symbols,"
                               " e.g. $sp+0x10, main")
        sign_text, term = match.groups()
        if terms and not sign_text:
            raise CommandError(f"bad address {text.strip()!r}: missing + or - between terms")
        sign = -1 if sign_text == "-" else 1
        if term.startswith("$"):
            terms.append((sign, term[1:]))
        elif term[0].isdigit():
            terms.append((sign, int(term, 0)))
        else:
            terms.append((sign, SymbolRef(term)))
        pos = match.end()
    return AddressExpr(tuple(terms), spelled)


@dataclass(frozen=True)
class ExamineFormat:
    count: int = 1
    unit: int = 8          # bytes per item: b=1 h=2 w=4 g=8
    kind: str = "x"        # x (hex), d (signed), u (unsigned), s (string), i (instructions)


UNITS = {"b": 1, "h": 2, "w": 4, "g": 8}
KINDS = frozenset("xdusi")


def parse_examine_format(text: str) -> ExamineFormat:
    """The part after ``x/``: [count][units and format letters], e.g. 4gx, s, 8i, 16bx."""
    match = re.fullmatch(r"(\d*)([a-z]*)", text)
    if match is None:
        raise CommandError(f"bad format /{text}: use e.g. x/4gx, x/s, x/8i")
    digits, letters = match.groups()
    count = int(digits) if digits else 1
    if not 1 <= count <= MAX_EXAMINE:
        raise CommandError(f"count {count} out of range (1..{MAX_EXAMINE})")
    unit, kind = 8, "x"
    for letter in letters:
        if letter in UNITS:
            unit = UNITS[letter]
        elif letter in KINDS:
            kind = letter
        else:
            raise CommandError(f"unknown letter {letter!r} in /{text}: units b h w g, formats x d u s i")
    return ExamineFormat(count, unit, kind)


@dataclass(frozen=True)
class PrintSpec:
    """What `print` shows: an expression's value, or (cast) the integer of
    `size` bytes at the address it gives; fmt "x", "d", "u" or None (gdb's
    natural format)."""

    cast: str | None = None
    size: int = 8
    signed: bool = True
    fmt: str | None = None


# C integer types `print *(TYPE *)ADDR` reads: name -> (size, signed).
INTEGER_TYPES = {
    "char": (1, True), "signed char": (1, True), "unsigned char": (1, False),
    "short": (2, True), "short int": (2, True), "unsigned short": (2, False),
    "int": (4, True), "signed": (4, True), "signed int": (4, True), "unsigned": (4, False),
    "unsigned int": (4, False),
    "long": (8, True), "long int": (8, True), "long long": (8, True), "unsigned long": (8, False),
    "unsigned long long": (8, False), "size_t": (8, False), "ssize_t": (8, True),
    "intptr_t": (8, True), "uintptr_t": (8, False), "void": (8, False),
    **{f"int{bits}_t": (bits // 8, True) for bits in (8, 16, 32, 64)},
    **{f"uint{bits}_t": (bits // 8, False) for bits in (8, 16, 32, 64)},
}
_CAST = re.compile(r"\*\s*\(\s*([A-Za-z_][A-Za-z0-9_ ]*?)\s*\*\s*\)\s*(.+)")


@dataclass(frozen=True)
class Command:
    verb: str
    count: int = 1
    address: AddressExpr | None = None
    target: str | None = None
    examine: ExamineFormat | None = None
    text: str = ""
    value: PrintSpec | None = None
    numbers: tuple[int, ...] = ()

    @property
    def moves(self) -> bool:
        """Whether the command runs the target (and so needs a new stop)."""
        return self.verb in MOTION_VERBS


MOTION_VERBS = frozenset({"step", "next", "continue", "starti", "until", "goto", "step-back",
                          "reverse-continue", "finish", "signal"})
# Words `info` takes, for its help and for suggestions.
INFO_WORDS = ("auxv", "registers", "all-registers", "breakpoints", "threads", "proc", "mappings",
              "sharedlibrary", "symbol", "milestones", "link_map")

# spelling -> canonical verb
VERBS = {
    "si": "step", "stepi": "step",
    "ni": "next", "nexti": "next",
    "c": "continue", "cont": "continue", "continue": "continue", "fg": "continue",
    "starti": "starti", "restart": "starti",
    "b": "break", "br": "break", "break": "break",
    "tbreak": "tbreak", "tb": "tbreak",
    "d": "delete", "delete": "delete", "clear": "clear",
    "p": "print", "print": "print", "inspect": "print",
    "disas": "disassemble", "disassemble": "disassemble",
    "x": "examine",
    "auxv": "auxv",
    "vmmap": "vmmap", "maps": "vmmap",
    "got": "got",
    "explain": "explain",
    "until": "until", "u": "until", "run-to": "until", "advance": "until",
    "goto": "goto",
    "rsi": "step-back", "reverse-stepi": "step-back",
    "rc": "reverse-continue", "reverse-continue": "reverse-continue",
    "help": "help", "h": "help", "?": "help",
    "q": "quit", "quit": "quit", "exit": "quit",
    "events": "events", "milestones": "events",
    "regs": "registers",
    "tab": "tab", "focus": "tab",
    "bt": "backtrace", "backtrace": "backtrace", "where": "backtrace",
    "finish": "finish", "fin": "finish",
    "watch": "watch", "rwatch": "rwatch", "awatch": "awatch",
    "thread": "thread", "t": "thread",
    "l": "list", "list": "list",
    "signal": "signal", "queue-signal": "queue-signal",
}
INFO_TOPICS = {
    "auxv": "auxv",
    "registers": "registers", "reg": "registers", "r": "registers", "all-registers": "registers",
    "breakpoints": "breakpoints", "break": "breakpoints", "b": "breakpoints",
    "threads": "threads",
    "proc": "vmmap",  # info proc mappings
    "mappings": "vmmap",
    "sharedlibrary": "sharedlibrary", "shared": "sharedlibrary", "dll": "sharedlibrary",
    "symbol": "symbol",
    "link_map": "link_map", "link-map": "link_map",
    "milestones": "events",
}
COUNTED = frozenset({"step", "next", "step-back", "backtrace"})
KNOWN_WORDS = (*VERBS, "info", "x", "who", "print")


def parse_command(line: str) -> Command | None:
    """A Command, None for an empty line, or CommandError with a message."""
    text = line.strip()
    if not text:
        return None
    head, _, rest = text.partition(" ")
    rest = rest.strip()
    if head.startswith("x/") or head == "x":
        fmt = parse_examine_format(head[2:]) if head.startswith("x/") else ExamineFormat()
        if not rest:
            raise CommandError("x needs an address, e.g. x/4gx $sp")
        return Command("examine", address=parse_address(rest), examine=fmt, text=text)
    if head == "who" or head.startswith("who/"):
        return _parse_who(head, rest, text)
    if head == "info" or head == "i":
        topic_word, _, topic_rest = rest.partition(" ")
        topic = INFO_TOPICS.get(topic_word)
        if topic is None:
            hint = closest(topic_word, INFO_WORDS)
            raise CommandError(f"info what? {', '.join(INFO_WORDS)}" + (f" (did you mean info {hint}?)"
                                                                        if hint and topic_word else ""))
        topic_rest = topic_rest.strip()
        if topic == "symbol":
            if not topic_rest:
                raise CommandError("Argument required (address): info symbol ADDR, e.g. info symbol $pc")
            return Command("symbol", address=parse_address(topic_rest), text=text)
        if topic == "registers" and topic_rest:
            return Command("registers", target=" ".join(w.lstrip("$") for w in topic_rest.split()), text=text)
        return Command(topic, text=text)
    if head in ("p", "print", "inspect") or head.startswith(("p/", "print/")):
        return _parse_print(head, rest, text)
    verb = VERBS.get(head)
    if verb is None:
        hint = closest(head, KNOWN_WORDS)
        raise CommandError(f"unknown command {head!r}" + (f"; did you mean {hint!r}?" if hint else "")
                           + " (help lists them)")
    if verb in COUNTED:
        return Command(verb, count=_count(rest, head), text=text)
    if verb in ("break", "tbreak", "clear"):
        address = parse_address(rest) if rest else parse_address("$pc")
        return Command(verb, address=address, text=text)
    if verb == "delete":
        # gdb's: breakpoint numbers, or all of them; a location works too (clear's).
        words = rest.replace("-", " ").split()
        if all(word.isdigit() for word in words):
            return Command("delete", numbers=tuple(int(word) for word in words), text=text)
        return Command("clear", address=parse_address(rest), text=text)
    if verb in ("watch", "rwatch", "awatch"):
        # watch ADDR [LEN] (LEN bytes, default 8)
        if not rest:
            raise CommandError(f"{head} needs an address, e.g. {head} $rsp+8 8, {head} 0x404040 4")
        words = rest.rsplit(None, 1)
        size = 8
        if len(words) == 2 and re.fullmatch(r"\d+|0x[0-9a-fA-F]+", words[1]) and not re.search(r"[-+]\s*$", words[0]):
            size = _number(words[1], head, minimum=1)
            rest = words[0]
        if size > MAX_EXAMINE:
            raise CommandError(f"{head}: {size} bytes is too many (at most {MAX_EXAMINE})")
        return Command(verb, count=size, address=parse_address(rest), text=text)
    if verb == "disassemble":
        return Command("disassemble", address=parse_address(rest) if rest else None, text=text)
    if verb == "until":
        if not rest:
            if head in ("until", "u"):
                return Command("until", text=text)  # gdb's: next, but never back round a loop
            raise CommandError(f"{head} needs a stop target or a location: {TARGET_HELP}, *ADDR, NAME")
        target = _until_target(rest)
        # gdb's location (a bare name): looked up before running, so a name
        # that is nowhere says so instead of running to the end.
        location = parse_address(rest) if target.startswith("sym:") and not rest.startswith("sym:") else None
        return Command("until", target=target, address=location, text=text)
    if verb == "tab":
        if not rest:
            raise CommandError("tab needs a name or a number, e.g. tab relocs, tab 3 (Alt+3)")
        return Command("tab", target=rest, text=text)
    if verb == "thread":
        # gdb's: N as `info threads` numbers them (or a tid); alone, which is current
        if not rest:
            return Command("thread", count=0, text=text)
        return Command("thread", count=_number(rest, head, minimum=1), text=text)
    if verb == "list":
        # gdb's: around pc, around line N of pc's file, or around a function
        if rest.isdigit():
            return Command("list", count=_number(rest, head, minimum=1), text=text)
        return Command("list", count=0, target=rest or None, text=text)
    if verb == "goto":
        if not rest:
            raise CommandError("goto needs a step number")
        return Command("goto", count=_number(rest, "goto", minimum=0), text=text)
    if verb in ("signal", "queue-signal"):
        # gdb's: resume delivering SIG (or nothing: 0), or only say what the
        # next resume delivers.
        return Command(verb, numbers=(parse_signal(rest, head),), text=text)
    if verb == "reverse-continue":
        target = None
        if rest:
            try:
                target = str(parse_target(rest))
            except UsageError as err:
                raise CommandError(str(err)) from None
        return Command(verb, target=target, text=text)
    if rest and verb not in ("help",):
        raise CommandError(f"{head} takes no argument")
    return Command(verb, text=text)


def parse_signal(word: str, head: str = "signal") -> int:
    """A signal as gdb's `signal` takes it: a name (SIGUSR1, USR1, any
    case), 0 for none, or a number (Linux's, as the program sees it)."""
    word = word.strip()
    if not word:
        raise CommandError(f"{head} needs a signal: a name (SIGUSR1), a number, or 0 for none")
    if re.fullmatch(r"\d+", word):
        number = int(word)
        if number == 0 or number in _signal.valid_signals():
            return number
        raise CommandError(f"{head}: no signal {number} (1..{max(_signal.valid_signals())}, or 0 for none)")
    name = word.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise CommandError(f"{head}: no signal {word!r} (a name such as SIGUSR1, a number, or 0)") from None


def signal_name(number: int) -> str:
    """SIGUSR1, SIGRT_3 (as strace names them), or 0 (none)."""
    return "0" if number == 0 else decoded_signal_name(number)


def _until_target(rest: str) -> str:
    """A stop target (`entry`, `addr:0x…`), or gdb's location: *ADDR or a
    symbol name (`until _dl_start`)."""
    try:
        return str(parse_target(rest))
    except UsageError as err:
        word = rest.strip()
        if word.startswith("*"):
            number = word[1:].strip()
            try:
                return str(parse_target(f"addr:{int(number, 0):#x}"))
            except (ValueError, UsageError):
                raise CommandError(f"until *ADDR takes a number, e.g. until *0x401136") from None
        if re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.@]*", word):
            try:
                return str(parse_target(f"sym:{word}"))
            except UsageError:
                pass
        raise CommandError(str(err)) from None


def _parse_print(head: str, rest: str, text: str) -> Command:
    """`p EXPR`, `p/x EXPR`, `p *(TYPE *)EXPR` for the integer types."""
    fmt = None
    if "/" in head:
        fmt = head.partition("/")[2]
        if fmt not in ("x", "d", "u"):
            raise CommandError(f"print/{fmt}: formats here are /x, /d and /u")
    if not rest:
        raise CommandError("print needs an expression, e.g. p $rsp+8, p/x $rax, p *(int *)$rsp")
    cast = _CAST.fullmatch(rest)
    if cast is not None:
        type_name = " ".join(cast.group(1).split())
        if type_name not in INTEGER_TYPES:
            raise CommandError(f"No symbol \"{type_name}\" in current context (integer types only: "
                               "char, short, int, long, unsigned…, int8_t…uint64_t, size_t)")
        size, signed = INTEGER_TYPES[type_name]
        return Command("print", address=parse_address(cast.group(2)), text=text,
                       value=PrintSpec(type_name, size, signed, fmt))
    if rest.lstrip().startswith("*"):
        raise CommandError("Attempt to take contents of a non-pointer value. (cast it: p *(long *)ADDR)")
    return Command("print", address=parse_address(rest), text=text, value=PrintSpec(fmt=fmt))


def closest(word: str, choices) -> str | None:
    """gdb-like: the known word closest to a mistyped one, if any is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _parse_who(head: str, rest: str, text: str) -> Command:
    """``who $rdx`` (a register) or ``who[/N] ADDR`` (N bytes, default 8):
    the last step before this one that wrote it (recordings)."""
    if not rest:
        raise CommandError("who needs a register or an address, e.g. who $rdx, who/4 $sp+8")
    if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", rest) and not head.startswith("who/"):
        return Command("who", target=rest[1:], text=text)
    size = _number(head[4:], "who", minimum=1) if head.startswith("who/") else 8
    if size > MAX_EXAMINE:
        raise CommandError(f"who: {size} bytes is too many (at most {MAX_EXAMINE})")
    return Command("who", count=size, address=parse_address(rest), text=text)


def _count(rest: str, head: str) -> int:
    if not rest:
        return 1
    return _number(rest, head, minimum=1)


def _number(rest: str, head: str, *, minimum: int) -> int:
    try:
        value = int(rest, 0)
    except ValueError:
        raise CommandError(f"{head}: {rest!r} is not a number") from None
    if not minimum <= value <= MAX_COUNT:
        raise CommandError(f"{head}: {value} out of range ({minimum}..{MAX_COUNT})")
    return value


HELP_LINES = (
    ("si [N]", "step N instructions (F7)"),
    ("ni [N]", "step over calls (F8)"),
    ("c", "continue to a breakpoint, a signal or the exit (F5)"),
    ("until T / advance T", f"run to a stop target ({TARGET_HELP}) or a location: *ADDR, NAME"),
    ("starti", "relaunch, stopped at the first instruction"),
    ("b [NAME | *ADDR]", "set a breakpoint on a symbol or an address (default: pc);"
     " `b` key toggles on the selected line"),
    ("tbreak NAME | *ADDR", "a breakpoint deleted when it is hit"),
    ("delete [N…] / clear NAME | *ADDR", "delete breakpoints by number (all without one), or at a location"),
    ("p[/x] EXPR", "print $reg, $reg+off, a symbol, a number; p *(int *)ADDR reads an integer type"),
    ("disas [ADDR | NAME]", "disassemble the function around pc or ADDR"),
    ("bt [N] / backtrace", "the call stack, unwound with .eh_frame CFI (frame pointers where there is none)"),
    ("list [N | NAME]", "source lines around pc, line N or function NAME (DWARF line info; --source-dir)"),
    ("finish", "run until the current function returns to its caller"),
    ("watch ADDR [LEN]", "stop where those bytes change: live with the debug registers (up to four; LEN 1 2 4 8, "
                         "aligned), in a recording any number, c forward and rc back to the last write"),
    ("rwatch / awatch ADDR [LEN]", "live: stop after an instruction reads (or reads or writes) those bytes"),
    ("info symbol ADDR", "the symbol and object an address is in"),
    ("info sharedlibrary", "loaded objects and their code's address range"),
    ("x/NFU ADDR", "examine memory: U = b h w g (1 2 4 8 bytes), F = x d u s i; ADDR e.g. $sp+8, main"),
    ("info auxv", "auxiliary vector, with the kernel's values where they were rewritten"),
    ("info registers [REG…]", "registers in gdb's order (hex, natural value, what they point at)"),
    ("info breakpoints", "your breakpoints, numbered, with their symbols"),
    ("info threads / thread N", "the threads, numbered as gdb does; thread N (or a tid) makes one current"),
    ("vmmap", "memory maps annotated with objects and segments"),
    ("got", "GOT slots (JUMP_SLOT, GLOB_DAT): symbol, current value, state"),
    ("explain", "the milestones so far and the hand-off check"),
    ("goto N", "go to step N (replay; forward only when live)"),
    ("tab NAME | N", "bring a tab forward: relocs, maps, link… or its number (Alt+N)"),
    ("rsi [N] / rc", "step back / reverse continue (replay)"),
    ("signal SIG | 0", "continue, delivering SIG instead of the signal the program stopped with (0: none)"),
    ("queue-signal SIG | 0", "what the next resume delivers (si, c…), without resuming (0: none)"),
    ("who $REG / who[/N] ADDR", "which step last wrote a register or N bytes of memory (replay)"),
    ("q", "quit"),
)
