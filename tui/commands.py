"""The command line's gdb words, parsed into frozen Commands.

    si [N]   ni [N]   c   starti   b [NAME|*ADDR]   delete NAME|*ADDR   x/NFU ADDR
    info auxv|registers|breakpoints|threads   vmmap   got   explain
    until T | run-to T   goto N   rsi [N]   rc   who $REG | who[/N] ADDR   help   q

Addresses are expressions of numbers, registers and symbols:
``0x7ffff7fc9b70``, ``$sp``, ``$rsp+0x10``, ``$pc - 4``, ``main``,
``_dl_start+0x10``. Parsing is pure; a Command is carried out by the app
(motion) or by reports.py (queries), which resolve symbols through the
session (Session.resolve: dynamic symbols, then .symtab).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

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
class Command:
    verb: str
    count: int = 1
    address: AddressExpr | None = None
    target: str | None = None
    examine: ExamineFormat | None = None
    text: str = ""

    @property
    def moves(self) -> bool:
        """Whether the command runs the target (and so needs a new stop)."""
        return self.verb in MOTION_VERBS


MOTION_VERBS = frozenset({"step", "next", "continue", "starti", "until", "goto", "step-back",
                          "reverse-continue"})

# spelling -> canonical verb
VERBS = {
    "si": "step", "stepi": "step",
    "ni": "next", "nexti": "next",
    "c": "continue", "cont": "continue", "continue": "continue", "fg": "continue",
    "starti": "starti", "restart": "starti",
    "b": "break", "br": "break", "break": "break",
    "d": "delete", "delete": "delete", "clear": "delete",
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
}
INFO_TOPICS = {
    "auxv": "auxv",
    "registers": "registers", "reg": "registers", "r": "registers", "all-registers": "registers",
    "breakpoints": "breakpoints", "break": "breakpoints", "b": "breakpoints",
    "threads": "threads",
    "proc": "vmmap",  # info proc mappings
    "mappings": "vmmap",
    "sharedlibrary": "link_map", "shared": "link_map",
    "milestones": "events",
}
COUNTED = frozenset({"step", "next", "step-back"})


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
    if head == "info":
        topic_word, _, _ = rest.partition(" ")
        topic = INFO_TOPICS.get(topic_word)
        if topic is None:
            raise CommandError("info what? auxv, registers, breakpoints, threads, proc mappings, sharedlibrary")
        return Command(topic, text=text)
    verb = VERBS.get(head)
    if verb is None:
        raise CommandError(f"unknown command {head!r}; type help for the list")
    if verb in COUNTED:
        return Command(verb, count=_count(rest, head), text=text)
    if verb in ("break", "delete"):
        address = parse_address(rest) if rest else parse_address("$pc")
        return Command(verb, address=address, text=text)
    if verb == "until":
        if not rest:
            raise CommandError(f"{head} needs a stop target: {TARGET_HELP}")
        try:
            target = str(parse_target(rest))
        except UsageError as err:
            raise CommandError(str(err)) from None
        return Command("until", target=target, text=text)
    if verb == "tab":
        if not rest:
            raise CommandError("tab needs a name or a number, e.g. tab relocs, tab 3 (Alt+3)")
        return Command("tab", target=rest, text=text)
    if verb == "goto":
        if not rest:
            raise CommandError("goto needs a step number")
        return Command("goto", count=_number(rest, "goto", minimum=0), text=text)
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
    ("until T / run-to T", f"run to a stop target: {TARGET_HELP}"),
    ("starti", "relaunch, stopped at the first instruction"),
    ("b [NAME | *ADDR]", "set a breakpoint on a symbol or an address (default: pc);"
     " `b` key toggles on the selected line"),
    ("delete NAME | *ADDR", "remove a breakpoint"),
    ("x/NFU ADDR", "examine memory: U = b h w g (1 2 4 8 bytes), F = x d u s i; ADDR e.g. $sp+8, main"),
    ("info auxv", "auxiliary vector, with the kernel's values where they were rewritten"),
    ("info registers", "all registers"),
    ("info breakpoints", "your breakpoints"),
    ("vmmap", "memory maps annotated with objects and segments"),
    ("got", "GOT slots (JUMP_SLOT, GLOB_DAT): symbol, current value, state"),
    ("explain", "the milestones so far and the hand-off check"),
    ("goto N", "go to step N (replay; forward only when live)"),
    ("tab NAME | N", "bring a tab forward: relocs, maps, link… or its number (Alt+N)"),
    ("rsi [N] / rc", "step back / reverse continue (replay)"),
    ("who $REG / who[/N] ADDR", "which step last wrote a register or N bytes of memory (replay)"),
    ("q", "quit"),
)
