"""Issue 16.5: a launched program that reads the terminal runs. loaderdbg
lends it the terminal (its process group in the foreground) when it reads,
as gdb does, and takes it back when the run stops; Ctrl-C at that terminal
is loaderdbg's; --stdin FILE gives it a file instead. Run from the
background, where there is no terminal to lend, it says so instead of
looping on SIGTTIN forever."""

from __future__ import annotations

import subprocess

import pytest

from clihelp import LOADERDBG
from prochelp import PtySession
from loaderdbg.record.replay import ReplaySession

# cat's loop, linked statically with musl: for the commands that step every
# instruction (explain, record), a program that reads the terminal in a few
# hundred steps instead of cat's ~100k through ld.so. (Not where a typed
# line is recorded: that is cat's, as a user would run it.)
READER = r"""
#include <unistd.h>
int main(void) {
    char buf[256];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0)
        write(1, buf, n);
    return 0;
}
"""


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("reader")
    (directory / "reader.c").write_text(READER)
    program = str(directory / "reader")
    subprocess.run(["musl-gcc", "-static", "-O1", "-o", program, str(directory / "reader.c")], check=True)
    return program


def _typed_line_replayed(replay: ReplaySession, typed: bytes) -> bool:
    """The read that returned the typed line put it in the program's buffer,
    as the replay has it: none of it there before that read's step, all of it
    after (the read is the one restarted once the terminal was lent)."""
    reads = [e for e in replay.events()
             if e.kind == "syscall" and e.name == "read" and e.detail.endswith(f" = {len(typed)}")]
    assert reads, [e.detail for e in replay.events() if e.kind == "syscall"][-8:]
    replay.goto(reads[0].step - 1)
    buffer = replay.register("rsi")
    before = replay.read_memory(buffer, len(typed))
    replay.goto(reads[0].step)
    return before != typed and replay.read_memory(buffer, len(typed)) == typed


def _cat_started(session: PtySession) -> None:
    """Wait until the program has asked for the terminal (it reads) and
    holds it."""
    session.wait_until_lent(30)


def test_a_program_reading_the_terminal_gets_it():
    session = PtySession(["inspect", "--at", "exit", "/bin/cat"])
    try:
        _cat_started(session)
        session.type(b"typed-by-the-user\n")
        # The terminal's echo, then cat's copy (a terminal ends lines with \r\n).
        session.read_for(10, until=b"typed-by-the-user\r\ntyped-by-the-user")
        session.type(b"\x04")  # end of input: cat exits
        code = session.exit_code()
    finally:
        session.close()
    assert code == 0, session.text[-2000:]
    # The terminal's echo, then cat's copy; then the report.
    assert "typed-by-the-user\ntyped-by-the-user\n" in session.text
    assert "about to exit (status 0)" in session.text
    assert "Traceback" not in session.text


def test_ctrl_c_while_the_program_holds_the_terminal_is_ours():
    session = PtySession(["inspect", "--at", "exit", "/bin/cat"])
    try:
        _cat_started(session)
        session.type(b"\x03")
        code = session.exit_code()
    finally:
        session.close()
    assert code == 130, session.text[-2000:]
    assert session.text.rstrip().endswith("loaderdbg: interrupted")


def test_stdin_from_a_file(tmp_path):
    given = tmp_path / "input"
    given.write_text("from-the-file\n")
    done = subprocess.run([*LOADERDBG, "inspect", "--json", "--stdin", str(given), "--at", "exit", "/bin/cat"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "from-the-file\n"  # cat's output: stdout is the JSON's


def test_from_the_background_there_is_no_terminal_to_lend():
    session = PtySession(["inspect", "--at", "exit", "/bin/cat"], background=True)
    try:
        code = session.exit_code(timeout=30)
    finally:
        session.close()
    assert code == 1, session.text[-2000:]
    lines = session.text.strip().splitlines()
    assert lines == ["loaderdbg: the program reads the terminal, which loaderdbg cannot lend it from the "
                     "background: run loaderdbg in the foreground, or give --stdin FILE"], lines


def test_explain_gives_the_program_no_terminal_to_wait_on(reader):
    """explain single-steps the program for a report: its stdin is
    /dev/null unless --stdin says otherwise, so a cat ends at once."""
    session = PtySession(["explain", "--until", "exit", reader])
    try:
        code = session.exit_code(timeout=240)
    finally:
        session.close()
    assert code == 0, session.text[-2000:]
    assert "Outcome:" in session.text and "exit" in session.text.split("Outcome:")[-1]


def test_record_lends_the_terminal_too(tmp_path):
    """`record` of a program that reads the terminal: it gets it (it used to
    loop on SIGTTIN, stepping and growing the file without end), and the
    recording ends with the program."""
    path = tmp_path / "cat.ldbg"
    session = PtySession(["record", "-o", str(path), "/bin/cat"])
    try:
        session.read_for(15, until=b"milestone: main")  # recording, at a terminal: a progress line
        session.type(b"typed-while-recording\n")
        session.read_for(20, until=b"typed-while-recording")
        session.type(b"\x04")
        # Every step of cat (200k and more in all) is recorded: on a
        # loaded machine that is well over the 30 s a plain exit gets.
        code = session.exit_code(timeout=180)
    finally:
        session.close()
    assert code == 0, session.text[-2000:]
    assert session.text.count("typed-while-recording") >= 2  # the terminal's echo, and cat's copy
    assert "exited with status 0" in session.text
    with ReplaySession(str(path)) as replay:
        assert replay.end_reason.kind == "exited" and replay.verify().ok
        assert _typed_line_replayed(replay, b"typed-while-recording\n")


def test_a_recorded_read_of_the_lent_terminal_replays_what_was_typed(tmp_path, reader):
    """The read that met SIGTTIN is restarted by the kernel on the step after
    loaderdbg lent the terminal, with rip still past the `syscall`; that step
    records what the kernel wrote, like any syscall's (a static musl read
    used to lose the typed bytes: the recording failed verify)."""
    path = tmp_path / "reader.ldbg"
    session = PtySession(["record", "-o", str(path), reader])
    try:
        _cat_started(session)
        session.type(b"typed-while-recording\n")
        session.read_for(20, until=b"typed-while-recording\r\ntyped-while-recording")
        session.type(b"\x04")
        code = session.exit_code()
    finally:
        session.close()
    assert code == 0, session.text[-2000:]
    with ReplaySession(str(path)) as replay:
        report = replay.verify()
        assert replay.end_reason.kind == "exited" and report.ok, report.divergences[:1]
        assert _typed_line_replayed(replay, b"typed-while-recording\n")
        calls = [e.detail for e in replay.events() if e.kind == "syscall" and e.name == "read"]
        assert "ERESTARTSYS" in calls[0] and calls[1].endswith(" = 22"), calls


def test_ctrl_c_ends_a_recording_whose_program_holds_the_terminal(tmp_path, reader):
    path = tmp_path / "cat.ldbg"
    session = PtySession(["record", "-o", str(path), reader])
    try:
        _cat_started(session)
        session.type(b"\x03")
        code = session.exit_code()
    finally:
        session.close()
    assert code == 130, session.text[-2000:]
    assert "recording interrupted at step" in session.text
    with ReplaySession(str(path)) as replay:
        assert replay.end_reason.kind == "interrupted" and replay.verify().ok
