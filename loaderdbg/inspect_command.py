"""`loaderdbg inspect`: launch, run to a stop target, print the snapshot."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import sys

from loaderdbg.errors import LoaderdbgError, TargetError, UsageError

from loaderdbg.live import LiveSession
from loaderdbg.output import STDERR_FD, require_stdout, say, write_stdout
from loaderdbg.printable import printable
from loaderdbg.process.program import check_program
from loaderdbg.process.tracee import LaunchSpec
from loaderdbg.snapshot_json import snapshot_to_json, write_json
from loaderdbg.targets import Target, defined_nowhere


def launch_spec(program: str, args: list[str], *, aslr: bool, stdin_fd: int | None = None,
                stdout_fd: int | None = None, stderr_fd: int | None = None) -> LaunchSpec:
    path = check_program(program)
    return LaunchSpec(path=path, argv=(program, *args), env=launch_environment(), aslr=aslr,
                      stdin_fd=stdin_fd, stdout_fd=stdout_fd, stderr_fd=stderr_fd)


# What Python's locale coercion (PEP 538) sets LC_CTYPE to when it starts
# under the C or POSIX locale.
_COERCED_CTYPES = frozenset({"C.UTF-8", "C.utf8", "UTF-8"})


def launch_environment() -> dict[str, str]:
    """The environment a launched program gets: ours as we were given it.
    Under the C or POSIX locale (env -i, a bare CI job) Python sets
    LC_CTYPE=C.UTF-8 in its own environment as it starts, which the program
    would inherit: that one is given back as it was (gone, if unset)."""
    env = dict(os.environ)
    ctype = env.get("LC_CTYPE")
    if ctype in _COERCED_CTYPES:
        given = _given_at_start("LC_CTYPE")
        if given != ctype:
            if given is None:
                del env["LC_CTYPE"]
            else:
                env["LC_CTYPE"] = given
    return env


def _given_at_start(name: str) -> str | None:
    """The variable's value in the environment this process was started
    with (the kernel's copy, /proc/self/environ), None if absent or unknown."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return None
    prefix = os.fsencode(name) + b"="
    found = next((e[len(prefix):] for e in entries if e.startswith(prefix)), None)
    return None if found is None else os.fsdecode(found)


def not_reached_sentence(target: Target, reason) -> str:
    # A replay's description comes from the recording.
    return f"{target} not reached: {printable(reason.description)}"


def announce_waiting(pid: int, match: str | None) -> None:
    what = f"a child matching {match!r}" if match else "a child"
    say(f"attached; waiting for {pid} to spawn {what} (Ctrl-C to stop)")


def inspect_pid(pid: int, target: Target, *, as_json: bool, follow_exec: bool = False,
                match: str | None = None, relocations: str | None = None, pending: bool = False,
                source_directories: tuple[str, ...] = ()) -> int:
    """Attach, snapshot (after running to ``target`` if one is given), detach
    leaving the process running. With ``follow_exec``, the snapshot is of the
    next child the process execs, caught at its first instruction. A
    sym:NAME that no object the process has mapped defines is refused at
    once (detached as found) unless ``pending``."""
    require_stdout()
    with gone_is_target_error(pid):
        opened = (LiveSession.catch_spawn(pid, match, on_ready=lambda: announce_waiting(pid, match))
                  if follow_exec else LiveSession.attach(pid))
        with opened as session:
            session.source_directories = source_directories
            if target.kind == "sym" and not (pending or follow_exec) and session.resolve(target.name) is None:
                raise UsageError(defined_nowhere(target, [f"the objects process {pid} has mapped"]))
            reason = session.stop_reason
            if target.kind != "first":
                reason = session.cont(str(target))
            snapshot = session.snapshot()
            frames = session.backtrace() if as_json else None
            source = stop_source(session, snapshot) if as_json else None
            # Stopped under us, it can only have died by SIGKILL; a snapshot
            # taken meanwhile is partly empty yet says "attached", so none
            # is better than that one.
            if reason.reached and reason.kind not in ("exited", "killed") and process_gone(session.pid):
                raise TargetError(f"{session.pid}: the process was killed while we read it (SIGKILL?)")
    return _report(snapshot, target, reason, as_json, relocations, frames, source)


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X", "x")


@contextlib.contextmanager
def gone_is_target_error(pid: int):
    """A process that dies while we attach makes the engine's next ptrace or
    /proc read fail with ESRCH/ENOENT from wherever it happened to be; for
    the user that is one fact, said once."""
    try:
        yield
    except LoaderdbgError:
        raise
    except OSError as err:
        if not process_gone(pid):
            raise
        raise TargetError(f"{pid}: the process exited while we attached "
                          f"({errno.errorcode.get(err.errno, 'error')})") from None


def inspect_replay(path: str, target: Target, *, as_json: bool, relocations: str | None = None,
                   source_directories: tuple[str, ...] = ()) -> int:
    """The snapshot a live run would print at ``target``, from a recording."""
    from loaderdbg.record.replay import ReplaySession

    require_stdout()
    with ReplaySession(path) as session:
        session.source_directories = source_directories
        reason = session.cont(str(target)) if target.kind != "first" else session.goto(0)
        snapshot = session.snapshot()
        frames = session.backtrace() if as_json else None
        source = stop_source(session, snapshot) if as_json else None
    code = _report(snapshot, target, reason, as_json, relocations, frames, source)
    if snapshot.divergence is not None:
        say(snapshot.divergence.headline)
        return max(code, 1)
    return code


def render_text_report(snapshot, relocations: str | None = None) -> str:
    """The rich report as text: coloured and fitted to a terminal, plain
    and wide for a pipe or a file."""
    from rich.console import Console

    from loaderdbg.text_report import UNBOUNDED_WIDTH, print_snapshot

    tty = sys.stdout is not None and sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if tty else UNBOUNDED_WIDTH
    console = Console(file=io.StringIO(), width=width, force_terminal=tty, no_color=not tty,
                      highlight=tty, emoji=False)
    print_snapshot(snapshot, console, relocations=relocations)
    return console.file.getvalue()


def stop_source(session, snapshot) -> dict | None:
    """The JSON "source" of a stop: pc's file:line from DWARF and that
    line's text (null when the source file is not found here), or None
    without line information at pc. The same for a live process and its
    recording: both read the same objects and the same source files."""
    if snapshot.registers is None:
        return None
    line = session.source_line(snapshot.registers.pc)
    if line is None:
        return None
    found = session.source_file(line)
    return {"file": line.file, "line": line.line, "text": None if found is None else found.line(line.line)}


def _report(snapshot, target: Target, reason, as_json: bool, relocations: str | None = None,
            frames=None, source: dict | None = None) -> int:
    """``relocations``: list them in the text report, all or one state;
    ``frames``: the stop's backtrace and ``source`` its source line
    (stop_source), for the JSON."""
    if as_json:
        shown = snapshot_to_json(snapshot, frames, relocation_rows=True)
        shown["source"] = source
        write_json(shown, write_stdout, end="\n")
    else:
        write_stdout(render_text_report(snapshot, relocations))
    if not reason.reached:
        say(not_reached_sentence(target, reason))
        return 1
    return 0


def inspect_program(program: str, args: list[str], target: Target, *, as_json: bool,
                    aslr: bool, tracee_output: str | None, stdin_fd: int | None = None,
                    relocations: str | None = None, source_directories: tuple[str, ...] = ()) -> int:
    require_stdout()
    # stdout carries only the report: the program's own output goes to
    # stderr (fd 2, /dev/null when it was closed) or to --tracee-output.
    output_fd = STDERR_FD
    if tracee_output:
        try:
            output_fd = os.open(tracee_output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as err:
            raise UsageError(f"--tracee-output {tracee_output}: {err.strerror}") from None
    spec = launch_spec(program, args, aslr=aslr, stdin_fd=stdin_fd, stdout_fd=output_fd, stderr_fd=output_fd)
    try:
        with LiveSession(spec) as session:
            session.source_directories = source_directories
            reason = session.cont(str(target)) if target.kind != "first" else session.stop_reason
            snapshot = session.snapshot()
            frames = session.backtrace() if as_json else None
            source = stop_source(session, snapshot) if as_json else None
    finally:
        if output_fd != STDERR_FD:
            os.close(output_fd)
    return _report(snapshot, target, reason, as_json, relocations, frames, source)
