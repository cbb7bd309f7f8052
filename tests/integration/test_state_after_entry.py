"""Every stop shows the process as it is then, past AT_ENTRY too (issue 15,
items 4 and 5), on programs built here the way users build them.

- At `main` and at `exit` the maps are current: RELRO has been made
  read-only by ld.so (mprotect after relocation), and the syscalls made
  after AT_ENTRY are events, in strace's order.
- `main` is found in a stripped program from its entry code (gdb does the
  same), and a run to any target passes a `main` milestone on the way.
- When a program has no main to find, a run to `main` says so before it
  runs: the program is still at its first instruction.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from loaderdbg.live import LiveSession
from loaderdbg.process.tracee import LaunchSpec

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    char *p = malloc(100000);
    printf("np %d %p\n", argc, (void *)p);
    return 0;
}
"""

NO_MAIN = r"""
void _start(void) { __asm__ volatile("mov $60, %eax; xor %edi, %edi; syscall"); }
"""


def build(tmp_path, name: str, source: str, *flags: str, stripped: bool = False) -> str:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / name
    subprocess.run(["gcc", "-O1", "-o", str(out), str(src), *flags], check=True, capture_output=True)
    if stripped:
        subprocess.run(["strip", str(out)], check=True)
    return str(out)


def launch(path: str) -> LiveSession:
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        return LiveSession(LaunchSpec(path=path, argv=(path,), env={"PATH": "/usr/bin:/bin"},
                                      stdout_fd=null, stderr_fd=null))
    finally:
        os.close(null)


def relro_perms(snapshot, program: str) -> set[str]:
    return {a.entry.perms for a in snapshot.maps if a.entry.path == program and a.segment
            and "RELRO" in a.segment}


@pytest.mark.parametrize("pie", [True, False], ids=["pie", "no-pie"])
def test_main_of_a_stripped_program_is_reached_with_current_maps(tmp_path, pie):
    path = build(tmp_path, "prog", SOURCE, "-pie" if pie else "-no-pie", stripped=True)
    with launch(path) as session:
        reason = session.cont("main")
        assert reason.reached, reason
        snap = session.snapshot()
        assert relro_perms(snap, path) == {"r--p"}, [a for a in snap.maps if a.entry.path == path]
        milestones = [e.name for e in session.events() if e.kind == "milestone"]
        assert milestones[-2:] == ["at-entry", "main"], milestones
        # ld.so's mprotect of RELRO comes after AT_ENTRY's breakpoint was set
        # and is seen as a syscall event, as strace shows it.
        syscalls = [e.name for e in session.events() if e.kind == "syscall"]
        assert "mprotect" in syscalls


def test_events_go_on_after_entry_until_exit(tmp_path):
    path = build(tmp_path, "prog", SOURCE, "-no-pie")
    with launch(path) as session:
        session.cont("exit")
        events = session.events()
    names = [e.name for e in events]
    entry = names.index("at-entry")
    after = [e.name for e in events[entry:] if e.kind == "syscall"]
    assert "main" in names[entry:]
    # malloc's brk and printf's write happen after main: they are events.
    assert "brk" in after and "write" in after and after[-1] == "exit_group", after


def test_main_that_cannot_be_found_is_said_before_running(tmp_path):
    path = build(tmp_path, "nomain", NO_MAIN, "-nostdlib", "-static", stripped=True)
    with launch(path) as session:
        reason = session.cont("main")
        assert not reason.reached
        assert reason.description.startswith("main not found:"), reason
        assert "__libc_start_main" in reason.description
        assert session.position == 0 and session.position_exact  # nothing ran


MANY_SYSCALLS = r"""
#include <unistd.h>
int main(void) { for (int i = 0; i < 3000; i++) getppid(); return 0; }
"""


def test_a_long_run_keeps_a_bounded_event_list(tmp_path, monkeypatch):
    """Watching every syscall must not make memory follow a busy program:
    past the limit, syscall and signal events are counted, not kept (the
    limit is lowered here; it is 100000 for real)."""
    from loaderdbg.process import startup

    monkeypatch.setattr(startup, "MAX_ROUTINE_EVENTS", 500)
    path = build(tmp_path, "many", MANY_SYSCALLS)
    with launch(path) as session:
        reason = session.cont("exit")
        events = session.events()
        syscalls = session.snapshot().syscalls
    assert reason.reached
    assert sum(e.kind == "syscall" for e in events) == 500 and len(syscalls) == 500
    limit = [e for e in events if e.kind == "limit"]
    assert len(limit) == 1 and "counted, not kept" in limit[0].detail
    assert [e.name for e in events if e.kind == "milestone"][-1] == "main"


def test_step_over_the_self_relocation_passes_its_milestone(fixtures_dir):
    """F8 over execsolib_self_relocate (no syscall inside) shows the
    self-relocation-done milestone at once, not after the next syscall."""
    path = str(fixtures_dir / "execsolib/glibc-O2/libexecsolib.so")
    with launch(path) as session:
        for _ in range(200):
            insn = session.disassemble(session.snapshot().registers.pc, 1)[0]
            if insn.is_call and insn.target_symbol == "execsolib_self_relocate":
                break
            session.step()
        else:
            pytest.fail("no call to execsolib_self_relocate in the first 200 steps")
        assert "self-relocation-done" not in [e.name for e in session.events()]
        session.step_over()
        assert [e.name for e in session.events() if e.kind == "milestone"][-1] == "self-relocation-done"
