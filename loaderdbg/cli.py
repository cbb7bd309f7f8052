"""Command line: argument parsing and exit codes only (DESIGN.md §3).

Exit codes: 0 ok, 1 the target failed (the report says how), 2 usage or bad
input, 3 our own output could not be written (one line on stderr, never a
traceback); 128+N ended by signal N (Ctrl-C 130, SIGTERM 143, SIGHUP 129).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import signal
import sys

from loaderdbg import __version__, end_signals
from loaderdbg.errors import LoaderdbgError, UsageError
from loaderdbg.output import (
    STDERR_FD, discard_stream, reopen_closed_standard_fds, require_stdout, say, say_line, settle_standard_streams,
    write_stdout,
)
from loaderdbg.printable import printable
from loaderdbg.targets import PENDING_OPTION, TARGET_HELP, defined_nowhere, parse_target, several_definitions
from loaderdbg.user_files import regular_file

EXIT_OK, EXIT_TARGET, EXIT_USAGE, EXIT_OUTPUT = 0, 1, 2, 3
STDOUT_FD = 1


class CommandLineError(UsageError):
    """A command line that does not say what to do: its line names the
    command (`loaderdbg attach: not a PID: abc`), as argparse's would."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"loaderdbg {command}: {message}" if command else f"loaderdbg: {message}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as for any bad input
        raise CommandLineError(self.prog.removeprefix("loaderdbg").strip(), message)


def _add_program(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("program", nargs=None if required else "?", metavar="PROG",
                        help="program to launch, stopped at its first instruction")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")


def _pid(text: str | None, command: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 10)
    except ValueError:
        raise CommandLineError(command, f"not a PID: {text}") from None


RELOCATION_STATES = ("all", "pending", "lazy", "applied", "unknown")
STDIN_HELP = ("the program's stdin (default: ours; a program that reads our terminal gets it "
              "while it runs, as under gdb)")


def _add_source_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source-dir", action="append", default=[], metavar="DIR",
                        help="also look for source files here, as gdb's `directory` (repeatable; "
                             "the compilation directory and the current one are always tried)")


def _source_directories(command: str, directories: list[str]) -> tuple[str, ...]:
    for directory in directories:
        if not os.path.isdir(directory):
            raise CommandLineError(command, f"--source-dir {directory}: not a directory")
    return tuple(os.path.abspath(directory) for directory in directories)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="loaderdbg",
        description="See what happens between execve and main.",
        epilog=f"Stop targets: {TARGET_HELP}",
    )
    parser.add_argument("--version", action="version", version=f"loaderdbg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                help="what to do (COMMAND --help for its options)")

    run = sub.add_parser("run", help="TUI on a new process, stopped at its first instruction")
    run.add_argument("--until", default="first", metavar="T", help="stop target to run to first (default: first)")
    _add_pending(run)
    run.add_argument("--aslr", action="store_true", help="keep address randomization (off by default, as in gdb)")
    run.add_argument("--stdin", metavar="FILE",
                     help="the program's stdin (default: the terminal of the TUI's output pane)")
    _add_source_dir(run)
    _add_program(run, required=False)

    attach = sub.add_parser("attach", help="TUI on a running process, or on the next child it execs")
    attach.add_argument("pid", metavar="PID", help="the process to attach to (every thread is stopped)")
    attach.add_argument("--follow-exec", action="store_true", help="catch the next child it spawns at its first instruction")
    attach.add_argument("--match", metavar="GLOB", help="only catch a child whose path or argv[0] matches")

    record = sub.add_parser("record", help="record a startup to a replay file (.ldbg)")
    record.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="a new file; an existing recording only with --force (nothing else is written over)")
    record.add_argument("--force", action="store_true", help="replace a recording already at FILE once this one ends")
    record.add_argument("--until", default="exit", metavar="T",
                        help="stop target where the recording ends (default: exit)")
    _add_pending(record)
    record.add_argument("--aslr", action="store_true", help="keep address randomization (off by default, as in gdb)")
    record.add_argument("--pid", metavar="PID",
                        help="with --follow-exec: record the next child this running process spawns")
    record.add_argument("--follow-exec", action="store_true",
                        help="with --pid: catch the child at its first instruction and record it")
    record.add_argument("--match", metavar="GLOB", help="with --follow-exec: only a child whose path or argv[0] matches")
    _add_program(record, required=False)

    replay = sub.add_parser("replay", help="TUI on a recording")
    replay.add_argument("file", metavar="FILE", help="a recording made by `loaderdbg record`")

    verify = sub.add_parser("verify", help="check that a recording replays as the process ran (exit 1 if not)")
    verify.add_argument("file", metavar="FILE", help="a recording made by `loaderdbg record`")

    inspect = sub.add_parser("inspect", help="decode the startup state at a stop target")
    inspect.add_argument("--json", action="store_true", help="print a loaderdbg.snapshot/1 JSON object")
    inspect.add_argument("--at", default="first", metavar="T", help="stop target (default: first)")
    _add_pending(inspect)
    inspect.add_argument("--aslr", action="store_true", help="keep address randomization (off by default, as in gdb)")
    inspect.add_argument("--stdin", metavar="FILE", help=STDIN_HELP)
    inspect.add_argument("--tracee-output", metavar="FILE",
                         help="where the program's stdout/stderr go (default: our stderr)")
    inspect.add_argument("--relocs", nargs="?", const="all", metavar="STATE",
                         help="list relocations in the text report: all (default), pending, lazy, applied "
                              "or unknown (--json always has them)")
    inspect.add_argument("--pid", metavar="PID", help="a running process instead of PROG (detached after)")
    inspect.add_argument("--replay", metavar="FILE", help="a recording instead of PROG")
    inspect.add_argument("--follow-exec", action="store_true",
                         help="with --pid: inspect the next child it execs, caught at its first instruction")
    inspect.add_argument("--match", metavar="GLOB", help="with --follow-exec: only a child whose path or argv[0] matches")
    _add_source_dir(inspect)
    _add_program(inspect, required=False)

    explain = sub.add_parser("explain", help="plain-language startup report and crash root cause")
    explain.add_argument("--until", metavar="T",
                         help="how far to run PROG (default: entry; exit runs it whole, which takes "
                              "minutes for a big program); Ctrl-C gives the report so far")
    _add_pending(explain)
    explain.add_argument("--stdin", metavar="FILE",
                         help="the program's stdin (default: /dev/null; its output is not shown either)")
    explain.add_argument("target", nargs="?", metavar="FILE|PROG",
                         help="a recording, or a program to record and explain")
    explain.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="the program's arguments")

    serve = sub.add_parser("serve", help="gdb remote protocol: reverse-debug a recording (or debug a live "
                                         "startup) in gdb or pwndbg")
    serve.add_argument("file", nargs="?", metavar="FILE", help="a recording made by `loaderdbg record`")
    serve.add_argument("--stdio", action="store_true",
                       help="talk on stdin/stdout: gdb -ex 'target remote | loaderdbg serve --stdio FILE'")
    serve.add_argument("--port", type=int, metavar="N", help="listen on TCP port N (0: any free port, printed)")
    serve.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                       help="address to listen on with --port (default 127.0.0.1: this machine only)")
    serve.add_argument("--at", metavar="T", help="stop target to go to before gdb connects")
    serve.add_argument("--live", nargs=argparse.REMAINDER, metavar="PROG",
                       help="launch PROG [ARGS…] stopped at its first instruction and serve it live")
    serve.add_argument("--pid", metavar="PID", help="attach to a running process and serve it live")

    # Every command takes or talks about stop targets: each help lists them.
    for command in sub.choices.values():
        command.epilog = parser.epilog
    return parser


def _target(text: str):
    """parse_target, plus a check that a syscall:NAME can ever match: a typo
    would otherwise run the whole program and only then say "not reached"."""
    from loaderdbg.arch import X86_64

    target = parse_target(text)
    if target.kind == "syscall" and target.name is not None:
        name = target.name
        if name not in X86_64.syscall_numbers and not name.isdigit():
            raise UsageError(f"stop target {text!r}: no x86-64 syscall is called {name!r}")
    return target


def _add_pending(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(PENDING_OPTION, action="store_true",
                        help="run to sym:NAME even when no object the program starts with defines NAME "
                             "(a library it dlopens later may)")


def _check_symbol_target(target, program: str, pending: bool) -> None:
    """sym:NAME that none of the program's startup objects (the program,
    LD_PRELOAD, its DT_NEEDED closure as ld.so finds it, ld.so, the vDSO)
    defines is said at once rather than after the program has run to its
    exit; --pending runs anyway (a dlopen'ed library may define it). A
    name several objects define only locally is run to, saying which."""
    if target.kind != "sym":
        return
    from loaderdbg.analysis.library_search import search_definition
    from loaderdbg.process.program import check_program

    found = search_definition(check_program(program), target.name, os.environ)
    if found is None:
        return
    if found.defined_in is None:
        if not pending:
            raise UsageError(defined_nowhere(target, [os.path.basename(p) or p for p in found.searched]))
        return
    if len(found.static_definitions) > 1:
        chosen, *others = (os.path.basename(path) for path, _bind in found.static_definitions)
        say(several_definitions(target, chosen, others))


def _stdin_fd(path: str | None) -> int | None:
    """--stdin FILE opened for the program (the caller closes it)."""
    if path is None:
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise UsageError(f"--stdin {path}: {err.strerror}") from None


@contextlib.contextmanager
def _opened_stdin(path: str | None):
    fd = _stdin_fd(path)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _without_cycle_collector(command):
    """Run a one-shot command with Python's cyclic garbage collector off:
    inspect builds hundreds of thousands of objects (every loaded object's
    symbols and relocations, their states, the report) that all live until
    it has printed, and the collector's passes over them were a quarter to a
    third of the CPU of inspecting gdb (issue 19). Reference counting still
    frees everything else; the collector is back on afterwards (in-process
    callers)."""

    @functools.wraps(command)
    def run(options: argparse.Namespace) -> int:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return command(options)
        finally:
            if was_enabled:
                gc.enable()
    return run


@_without_cycle_collector
def cmd_inspect(options: argparse.Namespace) -> int:
    from loaderdbg.inspect_command import inspect_program

    pid = _pid(options.pid, "inspect")
    source_directories = _source_directories("inspect", options.source_dir)
    if options.relocs is not None and options.relocs not in RELOCATION_STATES:
        # `--relocs PROG`: argparse took the program for the optional STATE.
        options.program, options.args = options.relocs, [options.program, *options.args] \
            if options.program else options.args
        options.relocs = "all"
    if options.replay:
        if options.program or pid is not None:
            raise CommandLineError("inspect", "give one of PROG, --pid or --replay")
        from loaderdbg.inspect_command import inspect_replay
        return inspect_replay(options.replay, _target(options.at), as_json=options.json,
                              relocations=options.relocs, source_directories=source_directories)
    if pid is not None:
        if options.program:
            raise CommandLineError("inspect", "give either PROG or --pid, not both")
        from loaderdbg.inspect_command import inspect_pid
        return inspect_pid(pid, _target(options.at), as_json=options.json,
                           follow_exec=options.follow_exec, match=options.match, relocations=options.relocs,
                           pending=options.pending, source_directories=source_directories)
    if not options.program:
        raise CommandLineError("inspect", "no program given: loaderdbg inspect [--at T] PROG [ARGS…] "
                                          "(or --pid PID, or --replay FILE)")
    target = _target(options.at)
    _check_symbol_target(target, options.program, options.pending)
    with _opened_stdin(options.stdin) as stdin_fd:
        return inspect_program(options.program, options.args, target, as_json=options.json,
                               aslr=options.aslr, tracee_output=options.tracee_output, stdin_fd=stdin_fd,
                               relocations=options.relocs, source_directories=source_directories)


def _require_terminal(command: str, instead: str) -> None:
    """The TUI draws with escape codes on a terminal it reads keys from;
    into a file or a pipe they would only be noise."""
    for name, stream in (("stdout", sys.stdout), ("stdin", sys.stdin)):
        if stream is None or not stream.isatty():
            raise CommandLineError(command, f"{name} is not a terminal, and the TUI needs one; "
                                            f"for a report without it: {instead}")


# What a full-screen app turns on and must turn off: the alternate screen,
# a hidden cursor, mouse reports, bracketed paste, focus events, the kitty
# keyboard protocol.
TUI_MODES_OFF = "\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?1004l\x1b[<u"


def _terminal_restorer():
    """A function that puts our terminal back as it is now (line mode,
    main screen), for an exit that leaves the TUI no time to do it."""
    import termios

    try:
        saved = termios.tcgetattr(0)
    except (termios.error, OSError):
        saved = None

    def restore() -> None:
        try:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
            os.write(STDOUT_FD, TUI_MODES_OFF.encode())
        except (termios.error, OSError):
            pass  # the terminal has gone (SIGHUP): nothing to restore
    return restore


def _open_tui(session, title: str, output_fd: int | None = None) -> int:
    # Imported here: the engine package must not pull Textual in on import.
    try:
        from loaderdbg_tui.app import run_app
    except ImportError as err:
        session.close()
        raise UsageError(f"the TUI is not available ({err})") from None
    restore_terminal = _terminal_restorer()

    def end_now(signum: int) -> None:
        # SIGTERM/SIGHUP/SIGINT while the TUI runs: raised inside Textual's
        # loop, the interrupt could be taken for the app's own error, or
        # lost. The session is put in order here and now (int3s out,
        # detached, or killed), the terminal given back, and loaderdbg ends.
        session.close()
        restore_terminal()
        said = "interrupted" if signum == signal.SIGINT else f"interrupted ({signal.Signals(signum).name})"
        try:  # to fd 2 itself: the app has sys.stderr captured
            os.write(STDERR_FD, f"loaderdbg: {said}\n".encode())
        except OSError:
            pass
        os._exit(128 + signum)

    try:
        with end_signals.ended_by(end_now):
            return run_app(session, title=title, output_fd=output_fd)
    finally:
        session.close()


def cmd_run(options: argparse.Namespace) -> int:
    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.live import LiveSession

    if not options.program:
        raise CommandLineError("run", "no program given: loaderdbg run [--until T] PROG [ARGS…]")
    source_directories = _source_directories("run", options.source_dir)
    target = _target(options.until)
    _check_symbol_target(target, options.program, options.pending)
    # The program's output goes to a pty the TUI shows in its own pane; the
    # pane is its terminal for input too (never ours: the TUI reads that).
    master, slave = os.openpty()
    try:
        with _opened_stdin(options.stdin) as stdin_fd:
            spec = launch_spec(options.program, options.args, aslr=options.aslr,
                               stdin_fd=slave if stdin_fd is None else stdin_fd,
                               stdout_fd=slave, stderr_fd=slave)
            session = LiveSession(spec)
            session.source_directories = source_directories
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    try:
        # After the launch: a program the kernel refuses is said first.
        _require_terminal("run", f"loaderdbg inspect --at {target} {options.program}")
        if target.kind != "first":
            session.cont(str(target))
    except BaseException:
        session.close()
        os.close(master)
        raise
    return _open_tui(session, f"loaderdbg run {options.program}", output_fd=master)


def cmd_attach(options: argparse.Namespace) -> int:
    from loaderdbg.live import LiveSession
    from loaderdbg.process.attach import check_attachable

    pid = _pid(options.pid, "attach")
    check_attachable(pid)  # a bad PID is said before the terminal is looked at
    _require_terminal("attach", f"loaderdbg inspect --pid {pid}")
    if options.follow_exec:
        from loaderdbg.inspect_command import announce_waiting
        session = LiveSession.catch_spawn(pid, options.match,
                                          on_ready=lambda: announce_waiting(pid, options.match))
        return _open_tui(session, f"loaderdbg attach --follow-exec {pid} → {session.pid}")
    from loaderdbg.inspect_command import gone_is_target_error
    with gone_is_target_error(pid):
        session = LiveSession.attach(pid)
    return _open_tui(session, f"loaderdbg attach {pid}")


def cmd_record(options: argparse.Namespace) -> int:
    from loaderdbg.record.guest_recorder import record_any_program

    target = str(_target(options.until))
    options.pid = _pid(options.pid, "record")
    if options.pid is not None:
        if options.program:
            raise UsageError("record: give either PROG or --pid, not both")
        if not options.follow_exec:
            raise UsageError("record --pid: recording starts at a first instruction, "
                             "so it needs --follow-exec (catch the next child PID spawns)")
        from loaderdbg.inspect_command import announce_waiting
        from loaderdbg.record.recorder import record_spawn
        summary = record_spawn(options.pid, options.output, target, match=options.match, replace=options.force,
                               on_ready=lambda: announce_waiting(options.pid, options.match))
    else:
        if not options.program:
            raise UsageError("record: give a PROG (or --pid PID --follow-exec)")
        from loaderdbg.inspect_command import launch_spec
        _check_symbol_target(_target(options.until), options.program, options.pending)
        spec = launch_spec(options.program, options.args, aslr=options.aslr)
        summary = record_any_program(spec, options.output, target, replace=options.force)
    print(f"loaderdbg: {summary.describe()}", file=sys.stderr)
    if summary.interrupted:
        return 128 + (summary.ending_signal or signal.SIGINT)  # what a shell shows for that signal
    return EXIT_OK


def cmd_replay(options: argparse.Namespace) -> int:
    from loaderdbg.record.replay import ReplaySession

    session = ReplaySession(options.file)  # a bad file is said before the terminal is looked at
    try:
        _require_terminal("replay", f"loaderdbg explain {options.file}, or loaderdbg inspect --replay {options.file}")
    except BaseException:
        session.close()
        raise
    return _open_tui(session, f"loaderdbg replay {options.file}")


def cmd_verify(options: argparse.Namespace) -> int:
    """Replay the whole recording and check it at every keyframe (the
    recorder's checksums); a progress line on a terminal, like record's."""
    from loaderdbg.record.replay import ReplaySession

    require_stdout()
    shown = printable(options.file)
    with ReplaySession(options.file) as replay:
        on_terminal = sys.stderr is not None and sys.stderr.isatty()

        def progress(done: int, total: int) -> None:
            sys.stderr.write(f"\rverifying: keyframe {done:,}/{total:,} ({100 * done // max(total, 1)}%)  ")
            sys.stderr.flush()

        report = replay.verify(progress if on_terminal else None)
        if on_terminal:
            sys.stderr.write("\r\033[K")
    first, *more = report.describe().splitlines()
    write_stdout("".join(f"{printable(line)}\n" for line in (f"{shown}: {first}", *more)))
    return EXIT_OK if report.ok else EXIT_TARGET


DEFAULT_EXPLAIN_UNTIL = "entry"


def cmd_explain(options: argparse.Namespace) -> int:
    from loaderdbg.explain import explain_program, explain_recording
    from loaderdbg.record.format import is_recording

    if not options.target:
        raise CommandLineError("explain", "nothing to explain: give a recording (FILE) or a program "
                                          "(PROG [ARGS…])")
    require_stdout()
    if is_recording(options.target):
        if options.args or options.until or options.stdin:
            raise CommandLineError("explain", f"{options.target} is a recording; it is explained whole "
                                              "and takes no arguments, --until or --stdin")
        from loaderdbg.record.replay import ReplaySession
        with ReplaySession(options.target) as replay:
            write_stdout(explain_recording(replay) + "\n")
            return EXIT_OK if replay.divergence is None else EXIT_TARGET
    if os.path.lexists(options.target):
        # Here, and not a recording: a FIFO or a device named like one is
        # said to be what it is (a program name would be looked up in PATH).
        from loaderdbg.record.format import file_type_name
        regular_file(options.target, printable(options.target),
                     lambda mode: f"is {file_type_name(mode)}, neither a recording nor a program")
    from loaderdbg.inspect_command import launch_spec
    until_target = _target(options.until or DEFAULT_EXPLAIN_UNTIL)
    _check_symbol_target(until_target, options.target, options.pending)
    until = str(until_target)
    # The program's own output would interleave with the report: keep it
    # apart. Nor does it read our terminal: the recorder single-steps it,
    # and a report is not an interactive session.
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        with _opened_stdin(options.stdin) as stdin_fd:
            spec = launch_spec(options.target, options.args, aslr=False,
                               stdin_fd=devnull if stdin_fd is None else stdin_fd,
                               stdout_fd=devnull, stderr_fd=devnull)
            if sys.stderr is not None and sys.stderr.isatty():
                # For the person waiting (a script gets the report alone).
                say(f"explaining {options.target} up to {until}" + (
                    " (the default; --until T for another stop target, e.g. exit)" if options.until is None
                    else "") + "; Ctrl-C gives the report so far")
            report = explain_program(spec, until)
    finally:
        os.close(devnull)
    write_stdout(report.text + "\n")
    return EXIT_TARGET if report.diverged else EXIT_OK


def cmd_serve(options: argparse.Namespace) -> int:
    from loaderdbg.serve.command import serve_live, serve_recording

    pid = _pid(options.pid, "serve")
    given = [what for what, value in (("FILE", options.file), ("--live", options.live is not None),
                                      ("--pid", pid is not None)) if value]
    if len(given) != 1:
        raise CommandLineError("serve", "give one of FILE, --live PROG [ARGS…] or --pid PID")
    if options.stdio == (options.port is not None):
        raise CommandLineError("serve", "give one of --stdio or --port N")
    if options.port is not None and not 0 <= options.port <= 65535:
        raise CommandLineError("serve", f"not a TCP port: {options.port}")
    at = str(_target(options.at)) if options.at else None
    where = dict(stdio=options.stdio, host=options.host, port=options.port, at=at, say=say)
    if options.file:
        return serve_recording(options.file, **where)
    from loaderdbg.live import LiveSession
    if pid is not None:
        from loaderdbg.inspect_command import gone_is_target_error
        with gone_is_target_error(pid):
            return serve_live(lambda: LiveSession.attach(pid), **where)
    if not options.live:
        raise CommandLineError("serve", "--live needs a program: loaderdbg serve --stdio --live PROG [ARGS…]")
    from loaderdbg.inspect_command import launch_spec
    program, *args = options.live
    # With --stdio our stdin and stdout are gdb's: the program gets neither.
    devnull = os.open(os.devnull, os.O_RDONLY) if options.stdio else None
    try:
        spec = launch_spec(program, args, aslr=False, stdin_fd=devnull,
                           stdout_fd=STDERR_FD if options.stdio else None)
        return serve_live(lambda: LiveSession(spec), **where)
    finally:
        if devnull is not None:
            os.close(devnull)


COMMANDS = {
    "inspect": cmd_inspect,
    "run": cmd_run,
    "attach": cmd_attach,
    "record": cmd_record,
    "replay": cmd_replay,
    "explain": cmd_explain,
    "verify": cmd_verify,
    "serve": cmd_serve,
}


def main(argv: list[str] | None = None) -> int:
    reopen_closed_standard_fds()
    parser = build_parser()
    own_process = argv is None  # our own command line: the process ends with main
    with end_signals.handled(restore=not own_process):
        try:
            options = parser.parse_args(argv)
            if options.command is None:
                parser.print_help()
                return EXIT_USAGE
            code = COMMANDS[options.command](options)
            if own_process:
                # Our own process's command line: it exits now, and Python's
                # exit-time collection would walk every object still held
                # (gdb's inspect: ~0.4 s of CPU for nothing). Frozen objects
                # are left out of it.
                gc.freeze()
            return code
        except (CommandLineError, LoaderdbgError, KeyboardInterrupt, BrokenPipeError) as ended:
            # Everything is back in order; what follows tells how it ended,
            # and a second Ctrl-C would only cut that short with a traceback.
            end_signals.ending()
            return _told(ended)
        finally:
            if own_process:
                end_signals.ending()
            settle_standard_streams()


def _told(ended: BaseException) -> int:
    """Say how the command ended, on stderr: its exit code."""
    if isinstance(ended, CommandLineError):
        say_line(str(ended))
        return ended.exit_code
    if isinstance(ended, LoaderdbgError):
        say(str(ended))
        return ended.exit_code
    if isinstance(ended, KeyboardInterrupt):
        say(f"interrupted ({ended})" if isinstance(ended, end_signals.Terminated) else "interrupted")
        return end_signals.exit_code_of(ended)
    # BrokenPipeError: the reader stopped reading (| head): it has what it
    # wanted, as with SIGPIPE's default. Python would still flush into the
    # pipe on its way out: stdout becomes /dev/null.
    discard_stream(sys.stdout)
    return EXIT_OK


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
