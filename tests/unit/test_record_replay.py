"""ReplaySession on the sample recordings in recordings/ (no process, no
ptrace): they verify against the recorder's keyframe checksums, every way of
reaching a step gives the same state, stop targets work in both directions,
and the data-flow queries and the explainer find the rdxbug's root cause.
Regenerate the samples with `make recordings`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loaderdbg.record.dataflow import Tracer, last_memory_write, last_register_write
from loaderdbg.explain import explain_recording
from loaderdbg.errors import UsageError
from loaderdbg.record.replay import ReplaySession
from loaderdbg.snapshot_json import snapshot_to_json

REPO = Path(__file__).resolve().parents[2]
RECORDINGS = REPO / "recordings"
SAMPLES = ["execsolib-glibc-entry.ldbg", "execsolib-musl-entry.ldbg", "execsolib-rdxbug-crash.ldbg"]


def open_sample(name: str) -> ReplaySession:
    path = RECORDINGS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make recordings`", pytrace=False)
    return ReplaySession(str(path))


@pytest.fixture(scope="module")
def glibc():
    with open_sample("execsolib-glibc-entry.ldbg") as session:
        yield session


@pytest.fixture(scope="module")
def rdxbug():
    with open_sample("execsolib-rdxbug-crash.ldbg") as session:
        yield session


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_replay_without_divergence(name):
    with open_sample(name) as session:
        report = session.verify()
        assert report.ok, report.describe()
        assert report.keyframes_checked >= 2
        assert session.capabilities == {"reverse", "history", "breakpoints", "interrupt", "timeline"}
        assert session.alive is False and session.position_exact
        assert session.position == 0 and session.stop_reason.kind == "launch"


def state(session: ReplaySession, pages: list[int]) -> tuple:
    return session.registers_raw(), tuple(session.read_memory(p, 4096) for p in pages)


def test_every_way_to_a_step_agrees(glibc):
    rng = random.Random(5)
    last = glibc.last_step
    targets = sorted(rng.randrange(last) for _ in range(6)) + [0, last]
    glibc.goto(last)
    sp_pages = [glibc.register("rsp") & ~0xFFF, (glibc.register("rsp") & ~0xFFF) - 4096]
    for target in targets:
        glibc.goto(target)
        pages = sp_pages + [glibc.register("rsp") & ~0xFFF]
        direct = state(glibc, pages)
        glibc.goto(max(target - 7000, 0))
        glibc.step(target - glibc.position)
        assert glibc.position == target and state(glibc, pages) == direct
        glibc.goto(min(target + 9000, last))
        glibc.step_back(glibc.position - target)
        assert glibc.position == target and state(glibc, pages) == direct


def test_step_back_undoes_exactly_one_step(glibc):
    glibc.goto(39_000)
    before = glibc.snapshot()
    glibc.step()
    glibc.step_back()
    after = glibc.snapshot()
    assert snapshot_to_json(before) == snapshot_to_json(after)


def test_targets_forward_and_backward(glibc):
    milestones = {e.name: e.step for e in glibc.events() if e.kind == "milestone" and e.exact}
    glibc.goto(0)
    reason = glibc.cont("ldso-entry")
    assert reason.kind == "target" and glibc.position == milestones["ldso-entry"]
    assert glibc.snapshot().handoff.checked and glibc.snapshot().handoff.ok
    reason = glibc.cont("entry")
    assert glibc.position == milestones["at-entry"] == glibc.last_step
    assert glibc.reverse_cont("ldso-entry").kind == "target" and glibc.position == milestones["ldso-entry"]
    glibc.reverse_cont("syscall:memfd_create")
    memfd = glibc.position
    assert "memfd_create" in glibc.stop_reason.description
    assert glibc.disassemble(glibc.pc, 1)[0].mnemonic == "syscall"
    glibc.step()
    assert glibc.register("rax") == 4  # fd 4, as the milestone says
    assert glibc.reverse_cont("first").kind == "target" and glibc.position == 0
    glibc.cont("syscall:memfd_create")
    assert glibc.position == memfd
    with pytest.raises(UsageError):
        glibc.reverse_cont("syscall:no_such_syscall")
    assert glibc.position == memfd
    glibc.goto(memfd)
    assert glibc.cont().kind == "target" and glibc.position == glibc.last_step  # to the end: AT_ENTRY
    with pytest.raises(UsageError):
        glibc.goto(glibc.last_step + 1)


def test_symbols_addresses_and_breakpoints(glibc):
    glibc.goto(0)
    reason = glibc.cont("sym:execsolib_handoff")
    handoff = glibc.pc
    assert reason.kind == "target" and glibc.symbolize(handoff) == "execsolib_handoff"
    glibc.goto(0)
    assert glibc.cont(f"addr:{handoff:#x}").kind == "target" and glibc.pc == handoff
    step = glibc.position
    assert glibc.add_breakpoint(handoff) and glibc.breakpoints() == {handoff}
    glibc.goto(glibc.last_step)
    reason = glibc.reverse_cont()
    assert reason.kind == "breakpoint" and glibc.position == step
    glibc.goto(0)
    assert glibc.cont("entry").kind == "breakpoint" and glibc.position == step  # the breakpoint comes first
    glibc.remove_breakpoint(handoff)
    assert glibc.cont("entry").kind == "target"


def test_step_over_a_call(glibc):
    glibc.goto(0)
    glibc.cont("sym:execsolib_handoff")
    glibc.reverse_cont(None)  # back to the start: no breakpoints
    for _ in range(2000):
        insn = glibc.disassemble(glibc.pc, 1)[0]
        if insn.is_call:
            break
        glibc.step()
    sp = glibc.register("rsp")
    after = glibc.pc + insn.size
    glibc.step_over()
    assert glibc.pc == after and glibc.register("rsp") == sp


def test_snapshot_parts(glibc):
    glibc.goto(glibc.last_step)
    data = snapshot_to_json(glibc.snapshot())
    assert data["step"] == glibc.last_step and data["stop"]["reason"] == "target"
    assert data["registers"]["rip"] == hex(glibc.pc)
    assert any(a["type"] == "AT_ENTRY" and a["changed"] for a in data["auxv"])
    assert data["relocations"] and data["objects"] and data["maps"]
    assert [t["name"] for t in data["threads"]] == ["libexecsolib.so"]
    assert data["events"][-1]["name"] == "at-entry"
    assert len(glibc.events()) >= len(data["events"])
    glibc.goto(100)
    assert all(e["step"] <= 100 for e in snapshot_to_json(glibc.snapshot())["events"])


def test_rdxbug_ends_at_the_crash(rdxbug):
    end = rdxbug.end_reason
    assert end.kind == "signal" and end.signal == "SIGSEGV" and end.fault_address == 0
    rdxbug.cont()
    assert rdxbug.position == rdxbug.last_step and rdxbug.pc == 0
    assert rdxbug.stop_reason == end
    rdxbug.step_back()
    assert rdxbug.disassemble(rdxbug.pc, 1)[0].text == "jmp rdx"
    rdxbug.goto(0)
    assert rdxbug.cont("signal").kind == "signal" and rdxbug.position == rdxbug.last_step


def test_last_register_and_memory_writes(rdxbug):
    jump = rdxbug.last_step - 1
    write = last_register_write(rdxbug, "edx", jump)
    assert write.step == jump - 1 and write.by.text == "xor edx, edx"
    assert write.new == 0 and write.old != 0 and write.changed
    earlier = last_register_write(rdxbug, "rdx", write.step)
    assert earlier.new == write.old and earlier.by.text.startswith("mov rdx, qword ptr [rbp")
    tracer = Tracer(rdxbug)
    slot = tracer.registers(earlier.step)["rbp"] - 0x10
    stored = last_memory_write(rdxbug, slot, 8, earlier.step)
    assert stored.kind == "instruction" and stored.value(slot, 8) == write.old
    assert stored.by.text == "mov qword ptr [rbp - 0x10], rsi"
    assert last_memory_write(rdxbug, slot, 8, 0) is None


def test_explain_finds_the_rdxbug_root_cause(rdxbug):
    rdxbug.goto(1234)
    text = explain_recording(rdxbug)
    ldso_entry = rdxbug.recording.meta["ldso"]["entry"]
    for phrase in ("SIGSEGV at rip 0x0", "`jmp rdx`", "execsolib_handoff+", "jumped to 0x0",
                   "`xor edx, edx`", "one step earlier", f"rdx held {ldso_entry:#x}", "ld.so's entry point",
                   "the register the hand-off zeroes"):
        assert phrase in text, f"{phrase!r} missing from:\n{text}"
    assert rdxbug.position == 1234  # the explainer leaves the session where it was


def test_explain_tells_the_startup_story(glibc):
    text = explain_recording(glibc)
    assert "Milestones:" in text and "jump to ld.so" in text and "AT_ENTRY reached" in text
    assert "Hand-off to ld.so at step" in text and "passes" in text
    assert "libc.so.6:" in text and "applied" in text
    assert "Root cause" not in text


@pytest.mark.parametrize("start", [0, 39_000, 60_000])
def test_snapshot_reuses_memory_views_only_when_nothing_it_read_was_written(start, monkeypatch):
    """A replayed snapshot takes each part of its memory-derived half (the
    initial stack and auxv, the relocations, the link_map) from the
    previous one when nothing was written in between, or nothing that part
    read; it must equal a snapshot decoded from scratch, forward, backward
    and across a goto."""
    decodes = []
    with open_sample("execsolib-glibc-entry.ldbg") as session:
        session.goto(start)
        source = session._source
        tracked = source.reads_tracked
        # A part of the views is decoded (not reused) inside reads_tracked.
        monkeypatch.setattr(source, "reads_tracked", lambda: decodes.append(1) or tracked())
        unchanged = written_elsewhere = decoded = partly = 0
        for move in ["step"] * 250 + ["step_back"] * 40 + ["goto"] + ["step"] * 10:
            generation = source.memory.generation
            if move == "goto":
                session.goto(session.position + 20_000)
            else:
                getattr(session, move)()
            decodes.clear()
            snapshot = session.snapshot()
            if decodes:
                decoded += 1
                partly += len(decodes) < 3
            elif source.memory.generation == generation:
                unchanged += 1
            else:
                written_elsewhere += 1
            source.snapshot_memo = None
            assert snapshot == session.snapshot(), f"step {session.position} ({move})"
        assert unchanged > 50 and decoded >= 1, (unchanged, written_elsewhere, decoded)
        if start == 60_000:  # ld.so applies relocations: that part alone is decoded again
            assert partly >= 20, (decoded, partly)
        if start == 39_000:  # stack writes while ld.so relocates: reused
            assert written_elsewhere >= 10, (unchanged, written_elsewhere, decoded)


def test_read_ranges_overlap_written_ones_exactly():
    from loaderdbg.snapshot import _any_overlap, _merged

    starts, ends = _merged([(0x30, 0x38), (0x10, 0x18), (0x18, 0x20), (0x34, 0x40)])
    assert (starts, ends) == ([0x10, 0x30], [0x20, 0x40])
    assert not _any_overlap([(0x0, 0x10), (0x20, 0x30), (0x40, 0x48)], starts, ends)
    assert _any_overlap([(0x1f, 0x21)], starts, ends)
    assert _any_overlap([(0x0, 0x100)], starts, ends)
    assert _any_overlap([(0x3f, 0x40)], starts, ends)


def test_replay_memory_knows_what_small_moves_wrote():
    with open_sample("execsolib-glibc-entry.ldbg") as session:
        session.goto(39_000)
        memory = session._source.memory
        before = memory.generation
        for _ in range(50):
            session.step()
        written = memory.writes_since(before)
        assert written is not None and written
        assert all(start < end for start, end in written)
        assert memory.writes_since(memory.generation) == []
        # A long walk: the log keeps the newest writes, the oldest are forgotten.
        recent = before
        for count in range(5000):
            if count == 4990:
                recent = memory.generation
            session.step()
        assert memory.writes_since(before) is None
        assert memory.writes_since(recent) is not None
        session.goto(1_000)  # far back: from a keyframe, nothing is known before
        assert memory.writes_since(recent) is None
