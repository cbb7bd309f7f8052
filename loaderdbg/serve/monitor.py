"""`monitor` commands (gdb's qRcmd) in loaderdbg's words.

    monitor step                      the step number here
    monitor goto N                    go to step N (a recording: any step)
    monitor until T                   run to a stop target (ldso-entry, entry, main, syscall:NAME, ...)
    monitor who ADDR [LEN] | who $REG the step before this one that last wrote it (recordings)
    monitor explain                   the startup story and a crash's root cause (recordings)
    monitor milestones                the startup milestones and their steps

gdb does not know a monitor command moved the target: after goto or until
it still shows the old registers, frames and code until told to look again
(`maint flush register-cache` and `maint flush dcache`), which each such
reply says. A stub cannot make gdb look again in the remote protocol's
all-stop mode: gdb drops its caches only around a resume it asked for, and
a qRcmd is not one (rr moves its replay with gdb's `run` on an
extended-remote target instead, which gdb takes as a new process). A gdb
hook does it after every monitor command:

    define hookpost-monitor
    maint flush register-cache
    maint flush dcache
    end
"""

from __future__ import annotations

import shlex

from loaderdbg.errors import LoaderdbgError
from loaderdbg.serve.target import ADDRESS_END, MAX_WATCHED
from loaderdbg.session import MILESTONE_TITLES, Capability
from loaderdbg.targets import parse_target

HELP = """loaderdbg monitor commands:
  monitor step                       the step number here
  monitor goto N                     go to step N
  monitor until T                    run to a stop target: ldso-entry | entry | main | syscall:NAME
                                     | sym:NAME | addr:0xADDR | step:N | exit
  monitor who ADDR [LEN]             the step before this one that last wrote [ADDR, ADDR+LEN) (LEN 8)
  monitor who $REG                   the step before this one that last wrote a register
  monitor explain                    the startup story, and a crash's root cause
  monitor milestones                 the startup milestones and their steps
After goto or until, gdb still shows the old stop until `maint flush register-cache` and
`maint flush dcache`. This hook (in ~/.gdbinit, or typed once) does both after every monitor command:
  define hookpost-monitor
  maint flush register-cache
  maint flush dcache
  end
"""

MOVED = ("(gdb still shows the previous stop: `maint flush register-cache` and `maint flush dcache` to see "
         "this one; `monitor help` has a hook that does it after every monitor command)")


class MonitorError(Exception):
    """A monitor command that cannot be done; its text is the answer."""


def run(target, command: str) -> str:
    """The text a monitor command answers (never raises: errors are text)."""
    try:
        words = shlex.split(command)
    except ValueError as err:
        return f"monitor: {err}\n"
    if not words or words[0] == "help":
        return HELP
    verb, args = words[0], words[1:]
    handler = COMMANDS.get(verb)
    if handler is None:
        return f"monitor: unknown command {verb!r}\n" + HELP
    try:
        return handler(target, args)
    except MonitorError as err:
        return f"monitor {verb}: {err}\n"
    except LoaderdbgError as err:
        return f"monitor {verb}: {err}\n"


def _where(target) -> str:
    session = target.session
    registers = target.registers() or {}
    pc = registers.get(target.arch.pc_register)
    if pc is None:
        return f"step {session.position}" if session.position_exact else "the process is gone"
    symbol = session.symbolize(pc)
    where = f"step {session.position}" if session.position_exact else \
        "after a continue (steps are counted exactly only by stepping)"
    return f"{where}: pc {pc:#x}" + (f" <{symbol}>" if symbol else "")


def _step(target, args) -> str:
    return _where(target) + "\n"


def _number(text: str, what: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise MonitorError(f"not a {what}: {text!r}") from None
    if value < 0:
        raise MonitorError(f"negative {what}: {text}")
    return value


def _goto(target, args) -> str:
    if len(args) != 1:
        raise MonitorError("usage: monitor goto N")
    step = _number(args[0], "step number")
    if Capability.REVERSE not in target.session.capabilities and step < target.session.position:
        raise MonitorError(f"step {step} is behind this one ({target.session.position}); going back needs "
                           "a recording (loaderdbg record, then loaderdbg serve FILE)")
    target.goto(step)
    return f"{_where(target)}\n{MOVED}\n"


def _until(target, args) -> str:
    if len(args) != 1:
        raise MonitorError("usage: monitor until T (ldso-entry | entry | main | syscall:NAME | ...)")
    parse_target(args[0])  # a bad target is said before anything moves
    reason = target.run_until(args[0])
    return f"{reason.description}\n{_where(target)}\n{MOVED}\n"


def _who(target, args) -> str:
    session = target.session
    if Capability.HISTORY not in session.capabilities:
        raise MonitorError("who needs a recording's write index (loaderdbg record, then loaderdbg serve FILE)")
    if not args or len(args) > 2:
        raise MonitorError("usage: monitor who ADDR [LEN] | monitor who $REG")
    position = session.position
    # In a recording of several threads, the thread that executed the step.
    threaded = Capability.THREADS in session.capabilities
    if args[0].startswith("$"):
        register = args[0][1:]
        try:
            found = session.last_register_write(register)
        except ValueError:
            raise MonitorError(f"no register ${register}") from None
        if found is None:
            return (f"${register}: no step before {position} wrote it; it holds what it had at the first "
                    "instruction\n")
        return (f"${found.register} = {found.new:#x}  written by step {found.step}{_in_thread(found, threaded)}: "
                f"`{found.by.text}` at "
                f"{found.by.where()}  (was {found.old:#x})\nmonitor goto {found.step} to stand before it\n")
    address = _address(session, args[0])
    size = _number(args[1], "length") if len(args) > 1 else 8
    if size == 0:
        raise MonitorError("length 0")
    if size > MAX_WATCHED:
        raise MonitorError(f"length {size:#x} is more than {MAX_WATCHED:#x}")
    if address + size > ADDRESS_END:
        raise MonitorError(f"[{address:#x}, +{size:#x}) is past the end of the address space")
    found = session.last_memory_write(address, size)
    span = f"[{address:#x}, +{size})"
    if found is None:
        return (f"{span}: no step before {position} wrote it; its bytes are as the recording's first memory "
                "image has them\n")
    if found.kind == "instruction":
        how = f"written by step {found.step}{_in_thread(found, threaded)}: `{found.by.text}` at {found.by.where()}"
    elif found.kind == "kernel":
        how = (f"written by the kernel at step {found.step}{_in_thread(found, threaded)}: "
               f"{found.syscall or 'a signal or rseq update'}")
    elif found.kind == "page":
        how = f"mapped or replaced at step {found.step}: {found.syscall or found.by.text}"
    else:
        how = f"changed without a recorded write by step {found.step} (a divergence)"
    value = found.value(address, min(size, 8))
    shown = f"  value {value:#x}" if value is not None else ""
    return f"{span}  {how}{shown}\nmonitor goto {found.step} to stand before it\n"


def _in_thread(found, threaded: bool) -> str:
    return f" (thread {found.thread})" if threaded and found.thread is not None else ""


def _address(session, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return int(text, 16)
    except ValueError:
        pass
    found = session.resolve(text)
    if found is None:
        raise MonitorError(f"not an address or a symbol: {text!r}")
    return found


def _explain(target, args) -> str:
    return target.explain().rstrip("\n") + "\n"


def _milestones(target, args) -> str:
    session = target.session
    here = session.position
    lines = []
    for event in session.events():
        if event.kind != "milestone":
            continue
        mark = "->" if event.step == here else "  "
        exact = "" if event.exact else " (noticed late)"
        title = MILESTONE_TITLES.get(event.name, event.name)
        detail = f"  {event.detail}" if event.detail else ""
        lines.append(f"{mark} step {event.step:>9}  {title}{exact}{detail}")
    if not lines:
        return f"no milestone reached yet (step {here})\n"
    if Capability.TIMELINE not in session.capabilities:
        lines.append(f"(the ones reached so far; here is step {here})")
    return "\n".join(lines) + "\n"


COMMANDS = {
    "step": _step,
    "goto": _goto,
    "until": _until,
    "who": _who,
    "explain": _explain,
    "milestones": _milestones,
}
