"""Stop targets (DESIGN.md §2), spelled the same in the CLI, the TUI and the API.

    first  ldso-entry  entry  main  exit  signal
    syscall  syscall:NAME  addr:0xADDR  sym:NAME  step:N
"""

from __future__ import annotations

from dataclasses import dataclass

from loaderdbg.errors import UsageError

SIMPLE_TARGETS = ("first", "ldso-entry", "entry", "main", "exit", "signal", "syscall")
TARGET_HELP = (
    "first | ldso-entry | entry | main | exit | signal | syscall | syscall:NAME | "
    "addr:0xADDR | sym:NAME | step:N"
)


@dataclass(frozen=True)
class Target:
    kind: str  # one of SIMPLE_TARGETS, or "addr", "sym", "step"
    name: str | None = None  # syscall or symbol name
    value: int | None = None  # address or step number

    def __str__(self) -> str:
        if self.kind == "addr":
            return f"addr:{self.value:#x}"
        if self.kind == "step":
            return f"step:{self.value}"
        if self.name is not None:
            return f"{self.kind}:{self.name}"
        return self.kind


def parse_target(text: str) -> Target:
    """Parse a stop target, or raise UsageError naming the accepted forms."""
    spelled = text.strip()
    if spelled in SIMPLE_TARGETS:
        return Target(spelled)
    kind, sep, rest = spelled.partition(":")
    if sep and rest:
        if kind == "syscall":
            return Target("syscall", name=rest)
        if kind == "sym":
            return Target("sym", name=rest)
        if kind in ("addr", "step"):
            try:
                value = int(rest, 0)
            except ValueError:
                raise UsageError(f"bad number in stop target {text!r}") from None
            if value < 0:
                raise UsageError(f"negative number in stop target {text!r}")
            return Target(kind, value=value)
    raise UsageError(f"unknown stop target {text!r}; use one of: {TARGET_HELP}")
