"""`loaderdbg serve`: a recording or a live process, to gdb."""

from __future__ import annotations

from loaderdbg.errors import UsageError
from loaderdbg.serve.server import GdbServer
from loaderdbg.serve.transport import serve_stdio, serve_tcp

DEFAULT_HOST = "127.0.0.1"


def serve_recording(path: str, *, stdio: bool, host: str, port: int | None, at: str | None,
                    say) -> int:
    from loaderdbg.record.replay import ReplaySession
    from loaderdbg.serve.replay_target import ReplayTarget

    target = ReplayTarget(ReplaySession(path))
    try:
        if at is not None:
            target.run_until(at)
        return _serve(GdbServer(target), stdio=stdio, host=host, port=port, say=say)
    finally:
        target.close()


def serve_live(session_factory, *, stdio: bool, host: str, port: int | None, at: str | None, say) -> int:
    from loaderdbg.serve.live_target import LiveTarget

    target = LiveTarget(session_factory())
    try:
        if at is not None:
            target.run_until(at)
        return _serve(GdbServer(target), stdio=stdio, host=host, port=port, say=say)
    finally:
        target.close()


def _serve(server: GdbServer, *, stdio: bool, host: str, port: int | None, say) -> int:
    if stdio:
        serve_stdio(server)
        return 0

    def announce(bound_host: str, bound_port: int) -> None:
        say(f"listening on {bound_host}:{bound_port}; in gdb: target remote {bound_host}:{bound_port}")

    try:
        serve_tcp(server, host, port or 0, announce)
    except OSError as err:
        raise UsageError(f"serve: cannot listen on {host}:{port}: {err.strerror or err}") from None
    return 0
