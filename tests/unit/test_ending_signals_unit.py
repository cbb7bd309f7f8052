"""end_signals: SIGTERM and SIGHUP end loaderdbg as Ctrl-C does, never in
the middle of a clean-up, and a front end with its own loop can be asked
to end instead of having an exception raised inside it (real signals to
this process)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from loaderdbg import end_signals


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # Python runs the handler between bytecodes, soon after


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_raise_terminated(signum):
    before = signal.getsignal(signum)
    with end_signals.handled():
        with pytest.raises(end_signals.Terminated) as raised:
            _signal_self(signum)
    assert raised.value.exit_code == 128 + signum
    assert isinstance(raised.value, KeyboardInterrupt)  # every Ctrl-C clean-up applies
    assert signal.getsignal(signum) == before  # handlers given back


def test_a_signal_during_cleanup_waits_until_it_is_done():
    done = []
    with end_signals.handled():
        with pytest.raises(end_signals.Terminated):
            with end_signals.cleanup():
                _signal_self(signal.SIGTERM)
                _signal_self(signal.SIGHUP)
                done.append("cleaned")
    assert done == ["cleaned"]


def test_a_front_end_is_asked_to_end_then_terminated_is_raised():
    asked = []
    with end_signals.handled():
        with pytest.raises(end_signals.Terminated) as raised:
            with end_signals.ended_by(asked.append):
                _signal_self(signal.SIGHUP)
                assert asked == [signal.SIGHUP]  # nothing raised inside the loop
    assert raised.value.signum == signal.SIGHUP


@pytest.mark.parametrize("first", [KeyboardInterrupt(), end_signals.Terminated(signal.SIGTERM)])
def test_a_second_signal_while_loaderdbg_says_how_it_ended(monkeypatch, capsys, first):
    """Ctrl-C (or SIGTERM) twice: the first ends the command, the second
    comes while loaderdbg says so. It must not cut that short with a
    KeyboardInterrupt traceback (a random double SIGINT to `loaderdbg
    record` showed one, once in 120 runs under load)."""
    from loaderdbg import cli

    def ended_by_a_signal(options):
        raise first

    real_say = cli.say

    def say_after_another_signal(text):
        _signal_self(signal.SIGINT)
        _signal_self(signal.SIGTERM)
        real_say(text)

    monkeypatch.setitem(cli.COMMANDS, "verify", ended_by_a_signal)
    monkeypatch.setattr(cli, "say", say_after_another_signal)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert cli.main(["verify", "any.ldbg"]) == end_signals.exit_code_of(first)
    assert "interrupted" in capsys.readouterr().err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # given back


def test_ending_ignores_only_what_handled_set():
    with end_signals.handled():
        end_signals.ending()
        _signal_self(signal.SIGINT)  # ignored: no KeyboardInterrupt
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_after_the_first_was_raised_is_dropped():
    """The first signal's KeyboardInterrupt is on its way out (each catch
    cleans up and raises it again); a second, outside any cleanup block,
    must not raise another in the middle of that (a sweep of double
    signals to `loaderdbg inspect` showed tracebacks from there)."""
    seconds = []
    with end_signals.handled():
        with pytest.raises(KeyboardInterrupt):
            try:
                _signal_self(signal.SIGINT)
            except KeyboardInterrupt:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    try:
                        _signal_self(signum)
                    except KeyboardInterrupt:
                        seconds.append(signum)
                raise
    assert seconds == []
    with end_signals.handled():  # a new block: signals raise again
        with pytest.raises(KeyboardInterrupt):
            _signal_self(signal.SIGINT)
