"""The command-line parser, the stop wording and the x/ layout: pure
functions, no app, no process."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loaderdbg.decode.registers import Registers
from loaderdbg.session import Event, StopReason

from loaderdbg_tui.commands import CommandError, ExamineFormat, parse_address, parse_command
from loaderdbg_tui.describe import current_stage, describe_stop, split_symbol, timeline_markers
from loaderdbg_tui.reports import format_items, quote

REGS = Registers({"rsp": 0x7FFF_0000, "rip": 0x401000, "rax": 5}, "x86_64")


@pytest.mark.parametrize("line, verb, count", [
    ("si", "step", 1), ("si 3", "step", 3), ("stepi 0x10", "step", 16), ("ni", "next", 1),
    ("nexti 2", "next", 2), ("c", "continue", 1), ("starti", "starti", 1), ("rsi 4", "step-back", 4),
    ("vmmap", "vmmap", 1), ("got", "got", 1), ("explain", "explain", 1), ("info auxv", "auxv", 1),
    ("info registers", "registers", 1), ("info b", "breakpoints", 1), ("info proc mappings", "vmmap", 1),
    ("q", "quit", 1), ("goto 12", "goto", 12),
])
def test_verbs(line, verb, count):
    command = parse_command(line)
    assert command.verb == verb and command.count == count


def test_empty_line_is_nothing():
    assert parse_command("   ") is None


@pytest.mark.parametrize("line, target", [
    ("until entry", "entry"), ("run-to ldso-entry", "ldso-entry"), ("until syscall:mmap", "syscall:mmap"),
    ("advance addr:0x401000", "addr:0x401000"), ("until step:10", "step:10"), ("until sym:main", "sym:main"),
    # gdb's locations: *ADDR and a function name
    ("until *0x401000", "addr:0x401000"), ("advance _dl_start", "sym:_dl_start"), ("until nowhere", "sym:nowhere"),
])
def test_until_takes_stop_targets(line, target):
    assert parse_command(line).target == target


@pytest.mark.parametrize("line, message", [
    ("run-to", "needs a stop target"), ("until no:where", "unknown stop target"), ("until *x", "takes a number"), ("si -1", "out of range"),
    ("si x", "not a number"), ("frob", "unknown command"), ("dissas", "did you mean 'disas'"), ("p", "needs an expression"),
    ("p *$sp", "non-pointer"), ("p/q $sp", "formats here"), ("info symbol", "Argument required"), ("x $sp", None), ("x/4q $sp", "unknown letter"),
    ("x/4gx", "needs an address"), ("info", "info what?"), ("vmmap now", "takes no argument"),
    ("b *$sp +", "bad address"), ("b *$sp $rax", r"missing \+ or -"),
])
def test_errors_say_why(line, message):
    if message is None:
        assert parse_command(line).verb == "examine"
        return
    with pytest.raises(CommandError, match=message):
        parse_command(line)


@pytest.mark.parametrize("text, value", [
    ("0x1000", 0x1000), ("*0x1000", 0x1000), ("$sp", 0x7FFF_0000), ("$rsp+8", 0x7FFF_0008),
    ("$pc - 0x10", 0x400FF0), ("$rax + $rax", 10), ("16", 16), ("$fp", None),
])
def test_addresses(text, value):
    expr = parse_address(text)
    if value is None:
        with pytest.raises(CommandError, match=r"no register \$fp"):
            expr.resolve(REGS)
        return
    assert expr.resolve(REGS) == value


def test_examine_formats():
    assert parse_command("x/4gx $sp").examine == ExamineFormat(4, 8, "x")
    assert parse_command("x/s $rdi").examine == ExamineFormat(1, 8, "s")
    assert parse_command("x/8i $pc").examine == ExamineFormat(8, 8, "i")
    assert parse_command("x/16bx $sp").examine == ExamineFormat(16, 1, "x")
    assert parse_command("x/3wd $sp").examine == ExamineFormat(3, 4, "d")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parser_only_ever_raises_command_error(line):
    try:
        parse_command(line)
    except CommandError:
        pass


def test_format_items_like_gdb():
    data = bytes(range(16))
    assert format_items(0x1000, data, ExamineFormat(2, 8, "x")) == [
        "0x1000:  0x0706050403020100  0x0f0e0d0c0b0a0908"]
    assert format_items(0x1000, data[:8], ExamineFormat(8, 1, "x"))[0].startswith("0x1000:  0x00  0x01")
    assert format_items(0x1000, b"\xff\xff\xff\xff", ExamineFormat(1, 4, "d")) == ["0x1000:  -1"]


def test_quote_escapes():
    assert quote(b'a"b\\c\n\x01\xff') == '"a\\"b\\\\c\\n\\x01\\xff"'


def test_split_symbol():
    assert split_symbol("execsolib_start+0x2c") == ("execsolib_start", 0x2C)
    assert split_symbol("main") == ("main", 0)
    assert split_symbol(None) == (None, 0)


def test_crash_at_pc_zero_in_plain_words():
    stop = StopReason("signal", "SIGSEGV at pc 0x0, fault address 0x0", target="ldso-entry", reached=False,
                      signal="SIGSEGV", fault_address=0)
    words = describe_stop(stop, None)
    assert words.severity == "error"
    assert words.headline == "CRASHED: SIGSEGV at pc 0x0, fault address 0x0 (ldso-entry not reached)"
    assert "went to address 0" in words.detail
    # Right after the auxv rewrite, the next thing was the jump to ld.so: say so, and point at rdx.

    class Regs(dict):
        arch = "x86_64"  # as decoded Registers say which arch's names they carry
    words = describe_stop(stop, None, Regs(rdx=0, rip=0), before="auxv-rewritten")
    assert "hand-off jump to ld.so" in words.detail and "rdx = 0" in words.detail


def test_timeline_orders_reached_then_ahead():
    events = [Event(0, "milestone", "kernel-entry", address=0x10), Event(5, "syscall", "mmap"),
              Event(-1, "milestone", "memfd-create", exact=False),
              Event(-1, "milestone", "ldso-entry", address=0x20, exact=False)]
    stage = current_stage(events, 0x20, -1, False)
    assert stage.name == "ldso-entry" and stage.here
    markers = timeline_markers(events, stage)
    assert [m.name for m in markers] == ["kernel-entry", "memfd-create", "ldso-entry", "at-entry", "main"]
    assert [m.reached for m in markers] == [True, True, True, False, False]
    assert markers[3].target == "entry"
    crashed = timeline_markers(events + [Event(-1, "milestone", "crash", exact=False)], stage)
    assert crashed[-1].name == "crash" and "at-entry" not in [m.name for m in crashed]


def test_the_tui_uses_no_process_internals():
    """DESIGN §1/§8: the TUI talks to a Session; it never imports the ptrace
    layer itself (loaderdbg.live may, when a test or the CLI builds one)."""
    code = ("import sys, loaderdbg_tui.app; "
            "bad = [m for m in sys.modules if m.startswith('loaderdbg.process')]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("text, value", [
    ("main", 0x401000), ("*main", 0x401000), ("main+0x10", 0x401010), ("*_dl_start - 8", 0x7000 - 8),
    ("$sp + main", 0x7FFF_0000 + 0x401000), ("memcpy@GLIBC_2.14", 0x9000),
])
def test_symbols_in_addresses(text, value):
    symbols = {"main": 0x401000, "_dl_start": 0x7000, "memcpy@GLIBC_2.14": 0x9000}
    expr = parse_address(text)
    assert expr.symbols
    assert expr.resolve(REGS, symbols.get) == value


def test_unknown_symbol_says_so():
    with pytest.raises(CommandError, match="no symbol 'nothere'"):
        parse_address("nothere").resolve(REGS, lambda name: None)
    assert parse_command("b main").address.symbols == ("main",)
    assert parse_command("b *0x1000").address.symbols == ()


def test_who_takes_a_register_or_a_sized_address():
    reg = parse_command("who $rdx")
    assert (reg.verb, reg.target, reg.address) == ("who", "rdx", None)
    mem = parse_command("who/4 $rsp+8")
    assert (mem.verb, mem.count, mem.address.text) == ("who", 4, "$rsp+8")
    assert parse_command("who *$rsp").count == 8  # memory at the register, not the register
    for bad in ("who", "who/0 $sp", "who/99999 $sp", "who $rsp+"):
        with pytest.raises(CommandError):
            parse_command(bad)


def test_signal_words_parse_as_gdb_takes_them():
    assert parse_command("signal SIGUSR1").numbers == (10,)
    assert parse_command("signal usr2").numbers == (12,)
    assert parse_command("signal 0").numbers == (0,)
    assert parse_command("queue-signal 15").numbers == (15,)
    assert parse_command("signal SIGUSR1").moves and not parse_command("queue-signal 0").moves
    for bad, words in (("signal", "needs a signal"), ("signal 99", "no signal 99"), ("signal FOO", "no signal 'FOO'")):
        with pytest.raises(CommandError, match=words):
            parse_command(bad)
