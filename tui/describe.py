"""Words for what the session reports: stages, stops, crashes, timeline
markers, hex. Pure functions over engine dataclasses; the widgets only lay
these out (STYLE.md: describe apart from parse)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from loaderdbg.session import MILESTONE_TITLES, Event, StopReason
from loaderdbg.targets import TARGET_OF_MILESTONE

# What the timeline shows before a milestone has happened: only the ones a
# session can run to (an ordinary program never rewrites its auxv, so the
# exec-solib stages appear only once they happen).
AHEAD_MILESTONES = ("ldso-entry", "at-entry", "main")

SHORT_TITLES = {
    "kernel-entry": "kernel",
    "self-relocation-done": "self-reloc",
    "memfd-create": "memfd",
    "argv-rewritten": "argv",
    "ldso-mapped": "ld.so map",
    "auxv-rewritten": "auxv",
    "ldso-entry": "→ld.so",
    "at-entry": "AT_ENTRY",
    "main": "main",
    "crash": "crash",
    "exit": "exit",
    "exec": "exec",
}

# One plain sentence per stage, for someone who has never seen a loader.
STAGE_SENTENCES = {
    "kernel-entry": "The kernel just ran execve: the first instruction is next. "
                    "Nothing is relocated yet; only the kernel's stack (argv, envp, auxv) is set up.",
    "self-relocation-done": "The program relocated itself (its RELATIVE relocations are applied) "
                            "with no help from ld.so.",
    "memfd-create": "It created an in-memory file (memfd) to hold the copy of itself that ld.so will load.",
    "argv-rewritten": "It rewrote argv so the program's name points at the memfd copy (/proc/self/fd/N).",
    "ldso-mapped": "ld.so, the dynamic loader, is mapped into memory but has not run yet.",
    "auxv-rewritten": "It rewrote the auxiliary vector (AT_PHDR, AT_ENTRY, AT_BASE…) so ld.so "
                      "will load the embedded program instead.",
    "ldso-entry": "Control is at ld.so's entry point. The ELF tab's hand-off check says whether "
                  "stack and registers are what ld.so expects.",
    "at-entry": "ld.so loaded and relocated everything and jumped to the program's entry (AT_ENTRY).",
    "main": "main() is running: startup is over.",
    "exit": "The process has exited.",
    "exec": "The process called execve again: a new program image.",
}

# Between a milestone and the next: what is going on now (the sentence for
# the milestone itself would say "the first instruction is next" long after).
AFTER_SENTENCES = {
    "kernel-entry": "the program's own startup code is running, before any ld.so "
                    "(an exec-solib first relocates itself).",
    "self-relocation-done": "it is preparing the image ld.so will load (memfd, argv).",
    "memfd-create": "it is filling the memfd and rewriting argv.",
    "argv-rewritten": "next it maps ld.so by hand.",
    "ldso-mapped": "next it rewrites the auxv and jumps to ld.so.",
    "auxv-rewritten": "next it jumps to ld.so's entry (l runs there).",
    "ldso-entry": "ld.so is loading libraries and applying relocations (Relocs tab; e runs to AT_ENTRY).",
    "at-entry": "the program's C runtime is starting up on its way to main.",
    "main": "main() is running: startup is over.",
}

SIGNAL_WORDS = {
    "SIGSEGV": "an invalid memory access",
    "SIGBUS": "a bad memory access (bus error)",
    "SIGILL": "an illegal instruction",
    "SIGFPE": "an arithmetic fault",
    "SIGTRAP": "a trap",
    "SIGABRT": "an abort",
    "SIGKILL": "a kill",
}


def hex_word(value: int | None, digits: int = 16) -> str:
    return "-" if value is None else f"{value:#0{digits + 2}x}"


def hex_short(value: int | None) -> str:
    return "-" if value is None else f"{value:#x}"


def step_text(position: int, exact: bool) -> str:
    """The step counter as shown: "?" once a continue made it unknown."""
    return str(position) if exact and position >= 0 else "?"


def split_symbol(symbol: str | None) -> tuple[str | None, int]:
    """"execsolib_start+0x2c" -> ("execsolib_start", 0x2c)."""
    if not symbol:
        return None, 0
    name, sep, offset = symbol.rpartition("+0x")
    if sep and name:
        try:
            return name, int(offset, 16)
        except ValueError:
            pass
    return symbol, 0


def milestone_events(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if e.kind == "milestone"]


def milestone_before_end(events: Iterable[Event]) -> str | None:
    """The last milestone passed before a crash or exit."""
    names = [e.name for e in milestone_events(events) if e.name not in ("crash", "exit")]
    return names[-1] if names else None


@dataclass(frozen=True)
class Stage:
    """Where startup is: the latest milestone passed, and whether the stop
    is exactly at it."""

    name: str
    title: str
    here: bool
    sentence: str


def current_stage(events: Sequence[Event], pc: int | None, position: int, exact: bool) -> Stage | None:
    milestones = milestone_events(events)
    if not milestones:
        return None
    last = milestones[-1]
    here = False
    if last.address is not None and pc is not None and last.address == pc:
        here = True
    elif exact and last.exact and last.step == position:
        here = True
    return Stage(last.name, MILESTONE_TITLES.get(last.name, last.name), here,
                 STAGE_SENTENCES.get(last.name, ""))


@dataclass(frozen=True)
class StopWords:
    headline: str   # one line: what the stop is
    detail: str     # one plain sentence: what it means
    severity: str   # "ok" | "warning" | "error" | "exited"


def describe_stop(stop: StopReason, stage: Stage | None, registers=None, before: str | None = None) -> StopWords:
    """A stop in plain words; a crash says what went wrong and whether the
    wanted target was reached (and, given the registers and the milestone
    passed before it, where to look)."""
    not_reached = f" ({stop.target} not reached)" if stop.target and not stop.reached else ""
    if stop.kind == "signal" and stop.signal in SIGNAL_WORDS and stop.signal != "SIGTRAP" or \
            stop.kind == "killed":
        words = SIGNAL_WORDS.get(stop.signal or "", "a signal")
        headline = f"CRASHED: {stop.description}{not_reached}"
        if stop.kind == "killed":
            detail = f"The process was killed by {stop.signal} ({words}); it is gone. Use starti to relaunch."
        else:
            if stop.fault_address == 0 and "pc 0x0" in stop.description:
                pc_name = "pc" if registers is not None and registers.arch == "aarch64" else "rip"
                detail = f"{pc_name} = 0: a jump or call went to address 0" + _null_jump_hint(before, registers)
            elif stop.fault_address == 0:
                detail = f"It dereferenced a null pointer ({words})."
            else:
                detail = f"The program stopped on {words}."
            detail += " Continuing delivers the signal and kills it."
        return StopWords(headline, detail, "error")
    if stop.kind == "exited":
        status = "" if stop.exit_code is None else f" with status {stop.exit_code}"
        return StopWords(f"Exited{status}{not_reached}", "The process is gone. Use starti to relaunch.",
                         "exited")
    if stop.kind == "interrupted":
        return StopWords(f"Interrupted: {stop.description}", "You stopped a running continue (Ctrl+C).",
                         "warning")
    if stop.kind == "breakpoint":
        return StopWords(f"Breakpoint: {stop.description}{not_reached}", _stage_sentence(stage), "warning")
    if not stop.reached:
        return StopWords(f"{stop.description}{not_reached}", _stage_sentence(stage), "warning")
    if stop.kind == "step":
        # The engine says "step N" even when N is only a count since a
        # continue; the status line shows the step number (or "?") itself.
        return StopWords("stepped", _stage_sentence(stage), "ok")
    return StopWords(stop.description, _stage_sentence(stage), "ok")


def _null_jump_hint(before: str | None, registers) -> str:
    """Where a newcomer should look after a jump to 0 (ends the sentence
    that says so; short: it must fit the status line)."""
    # The atexit pointer the psABI has the hand-off zero: rdx, on aarch64 x0.
    atexit = "x0" if registers is not None and registers.arch == "aarch64" else "rdx"
    zero_rdx = registers is not None and registers.get(atexit) == 0
    if before == "auxv-rewritten":
        # The next milestone is the jump to ld.so: the hand-off jump itself went wrong.
        hint = ": the hand-off jump to ld.so."
        if zero_rdx:
            hint += (f" {atexit} = 0: the hand-off zeroes {atexit} (psABI), wiping a jump target the compiler"
                     " kept there.")
        return hint
    if zero_rdx:
        return f". A register that is 0 now ({atexit}?) may have held the target."
    return "."


def _stage_sentence(stage: Stage | None) -> str:
    if stage is None:
        return ""
    if stage.here:
        return stage.sentence
    after = AFTER_SENTENCES.get(stage.name)
    if after is None:
        return f"Past “{stage.title}”: {stage.sentence}"
    return f"Past “{stage.title}”: {after}"


@dataclass(frozen=True)
class Marker:
    """One timeline marker: a milestone that happened, or one still ahead
    that a stop target can reach."""

    name: str
    title: str
    short: str
    reached: bool
    here: bool
    event: Event | None
    target: str | None  # stop-target spelling to run to it, if any

    @property
    def is_crash(self) -> bool:
        return self.name == "crash"


def timeline_markers(events: Sequence[Event], stage: Stage | None,
                     recorded: Sequence[Event] | None = None, position: int = -1) -> tuple[Marker, ...]:
    """Milestones in order: those reached (as they happened), then those
    ahead: in a recording (``recorded``: all its events) the ones it holds,
    live the ones a session can run to."""
    seen: dict[str, Event] = {}
    for event in milestone_events(events):
        if event.name not in seen or event.name in ("crash", "exit"):
            seen[event.name] = event
    # Events arrive in the order they happened; inexact ones (step -1) keep
    # their place.
    markers = [_marker(e.name, e, here=stage is not None and stage.here and stage.name == e.name)
               for e in _in_order(seen, events)]
    # An attached process is past its startup: nothing of it is ahead.
    ended = any(name in seen for name in ("crash", "exit", "attach"))
    if recorded is not None:
        for event in milestone_events(recorded):
            if event.step > position and event.name not in seen:
                seen[event.name] = event
                markers.append(_marker(event.name, event, here=False, reached=False))
        return tuple(markers)
    if not ended:
        for name in AHEAD_MILESTONES:
            if name not in seen:
                markers.append(_marker(name, None, here=False))
    return tuple(markers)


def _in_order(seen: dict[str, Event], events: Sequence[Event]) -> list[Event]:
    wanted = set(id(e) for e in seen.values())
    return [e for e in events if id(e) in wanted]


def _marker(name: str, event: Event | None, *, here: bool, reached: bool | None = None) -> Marker:
    return Marker(name, MILESTONE_TITLES.get(name, name), SHORT_TITLES.get(name, name),
                  event is not None if reached is None else reached, here, event, TARGET_OF_MILESTONE.get(name))
