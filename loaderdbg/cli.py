"""Command line: argument parsing and exit codes only (DESIGN.md §3).

Exit codes: 0 ok, 1 the target failed (the report says how), 2 usage or bad
input, 3 our own output could not be written (one line on stderr, never a
traceback); 128+N ended by signal N (Ctrl-C 130, SIGTERM 143, SIGHUP 129).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from loaderdbg import __version__, end_signals
from loaderdbg.errors import LoaderdbgError, UsageError
from loaderdbg.output import reopen_closed_standard_fds, require_stdout, say, write_stdout
from loaderdbg.targets import TARGET_HELP, parse_target

EXIT_OK, EXIT_TARGET, EXIT_USAGE, EXIT_OUTPUT = 0, 1, 2, 3
STDOUT_FD = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as for any bad input
        raise UsageError(f"{self.prog}: {message}")


def _add_program(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("program", nargs=None if required else "?", metavar="PROG",
                        help="program to launch, stopped at its first instruction")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="loaderdbg",
        description="See what happens between execve and main.",
        epilog=f"Stop targets: {TARGET_HELP}",
    )
    parser.add_argument("--version", action="version", version=f"loaderdbg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="TUI on a new process, stopped at its first instruction")
    run.add_argument("--until", default="first", metavar="T", help="stop target to run to first")
    run.add_argument("--aslr", action="store_true", help="keep address randomization (off by default, as in gdb)")
    _add_program(run)

    attach = sub.add_parser("attach", help="TUI on a running process, or on the next child it execs")
    attach.add_argument("pid", type=int, metavar="PID")
    attach.add_argument("--follow-exec", action="store_true", help="catch the next child it spawns at its first instruction")
    attach.add_argument("--match", metavar="GLOB", help="only catch a child whose path or argv[0] matches")

    record = sub.add_parser("record", help="record a startup to a replay file (.ldbg)")
    record.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="a new file; an existing recording only with --force (nothing else is written over)")
    record.add_argument("--force", action="store_true", help="replace a recording already at FILE once this one ends")
    record.add_argument("--until", default="exit", metavar="T")
    record.add_argument("--aslr", action="store_true")
    record.add_argument("--pid", type=int, metavar="PID")
    record.add_argument("--follow-exec", action="store_true")
    record.add_argument("--match", metavar="GLOB")
    _add_program(record, required=False)

    replay = sub.add_parser("replay", help="TUI on a recording")
    replay.add_argument("file", metavar="FILE")

    inspect = sub.add_parser("inspect", help="decode the startup state at a stop target")
    inspect.add_argument("--json", action="store_true", help="print a loaderdbg.snapshot/1 JSON object")
    inspect.add_argument("--at", default="first", metavar="T", help="stop target (default: first)")
    inspect.add_argument("--aslr", action="store_true")
    inspect.add_argument("--tracee-output", metavar="FILE", help="where the program's stdout/stderr go")
    inspect.add_argument("--pid", type=int, metavar="PID")
    inspect.add_argument("--replay", metavar="FILE")
    inspect.add_argument("--follow-exec", action="store_true",
                         help="with --pid: inspect the next child it execs, caught at its first instruction")
    inspect.add_argument("--match", metavar="GLOB", help="with --follow-exec: only a child whose path or argv[0] matches")
    _add_program(inspect, required=False)

    explain = sub.add_parser("explain", help="plain-language startup report and crash root cause")
    explain.add_argument("target", metavar="FILE|PROG")
    explain.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
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


def cmd_inspect(options: argparse.Namespace) -> int:
    from loaderdbg.inspect_command import inspect_program

    if options.replay:
        if options.program or options.pid is not None:
            raise UsageError("inspect: give one of PROG, --pid or --replay")
        from loaderdbg.inspect_command import inspect_replay
        return inspect_replay(options.replay, _target(options.at), as_json=options.json)
    if options.pid is not None:
        if options.program:
            raise UsageError("inspect: give either PROG or --pid, not both")
        from loaderdbg.inspect_command import inspect_pid
        return inspect_pid(options.pid, _target(options.at), as_json=options.json,
                           follow_exec=options.follow_exec, match=options.match)
    if not options.program:
        raise UsageError("inspect: give a PROG (or --pid PID, or --replay FILE)")
    target = _target(options.at)
    return inspect_program(options.program, options.args, target, as_json=options.json,
                           aslr=options.aslr, tracee_output=options.tracee_output)


def _open_tui(session, title: str, output_fd: int | None = None) -> int:
    # Imported here: the engine package must not pull Textual in on import.
    try:
        from loaderdbg_tui.app import run_app
    except ImportError as err:
        session.close()
        raise UsageError(f"the TUI is not available ({err})") from None
    try:
        return run_app(session, title=title, output_fd=output_fd)
    finally:
        session.close()


def cmd_run(options: argparse.Namespace) -> int:
    from loaderdbg.inspect_command import launch_spec
    from loaderdbg.live import LiveSession

    target = _target(options.until)
    # The program's output goes to a pty the TUI shows in its own pane.
    master, slave = os.openpty()
    try:
        spec = launch_spec(options.program, options.args, aslr=options.aslr,
                           stdout_fd=slave, stderr_fd=slave)
        session = LiveSession(spec)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    try:
        if target.kind != "first":
            session.cont(str(target))
    except BaseException:
        session.close()
        os.close(master)
        raise
    return _open_tui(session, f"loaderdbg run {options.program}", output_fd=master)


def cmd_attach(options: argparse.Namespace) -> int:
    from loaderdbg.live import LiveSession

    if options.follow_exec:
        from loaderdbg.inspect_command import announce_waiting
        session = LiveSession.catch_spawn(options.pid, options.match,
                                          on_ready=lambda: announce_waiting(options.pid, options.match))
        return _open_tui(session, f"loaderdbg attach --follow-exec {options.pid} → {session.pid}")
    from loaderdbg.inspect_command import gone_is_target_error
    with gone_is_target_error(options.pid):
        session = LiveSession.attach(options.pid)
    return _open_tui(session, f"loaderdbg attach {options.pid}")


def cmd_record(options: argparse.Namespace) -> int:
    from loaderdbg.record.recorder import record_program

    target = str(_target(options.until))
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
        spec = launch_spec(options.program, options.args, aslr=options.aslr)
        summary = record_program(spec, options.output, target, replace=options.force)
    print(f"loaderdbg: {summary.describe()}", file=sys.stderr)
    if summary.interrupted:
        return 130
    return EXIT_OK


def cmd_replay(options: argparse.Namespace) -> int:
    from loaderdbg.record.replay import ReplaySession

    session = ReplaySession(options.file)
    return _open_tui(session, f"loaderdbg replay {options.file}")


def cmd_explain(options: argparse.Namespace) -> int:
    from loaderdbg.analysis.explain import explain_program, explain_recording
    from loaderdbg.record.format import is_recording

    require_stdout()
    if is_recording(options.target):
        if options.args:
            raise UsageError(f"explain: {options.target} is a recording; it takes no arguments")
        from loaderdbg.record.replay import ReplaySession
        with ReplaySession(options.target) as replay:
            write_stdout(explain_recording(replay) + "\n")
        return EXIT_OK
    from loaderdbg.inspect_command import launch_spec
    # The program's own output would interleave with the report: keep it apart.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        spec = launch_spec(options.target, options.args, aslr=False, stdout_fd=devnull, stderr_fd=devnull)
        write_stdout(explain_program(spec) + "\n")
    finally:
        os.close(devnull)
    return EXIT_OK


COMMANDS = {
    "inspect": cmd_inspect,
    "run": cmd_run,
    "attach": cmd_attach,
    "record": cmd_record,
    "replay": cmd_replay,
    "explain": cmd_explain,
}


def main(argv: list[str] | None = None) -> int:
    reopen_closed_standard_fds()
    parser = build_parser()
    with end_signals.handled():
        try:
            options = parser.parse_args(argv)
            if options.command is None:
                parser.print_help()
                return EXIT_USAGE
            return COMMANDS[options.command](options)
        except LoaderdbgError as err:
            say(str(err))
            return err.exit_code
        except KeyboardInterrupt as interrupt:
            if isinstance(interrupt, end_signals.Terminated):
                say(f"interrupted ({interrupt})")
            else:
                say("interrupted")
            return end_signals.exit_code_of(interrupt)
        except BrokenPipeError:
            # The reader stopped reading (| head): it has what it wanted, as
            # with SIGPIPE's default. Python would still flush into the pipe
            # on its way out: stdout becomes /dev/null.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, STDOUT_FD)
            os.close(devnull)
            return EXIT_OK


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
