"""The per-object relocation cache (a session's RelocationCache, kept by
its ElfCache), which the TUI relies on to step quickly, must give exactly
the answer of a fresh computation: checked along a recording while the
exec-solib relocates itself, moving forward and back (memory changes both
ways), against a second session that computes each stop from nothing."""

from __future__ import annotations


def test_cached_states_equal_fresh_ones(rdxbug_recording):
    from loaderdbg.record.replay import ReplaySession

    session = ReplaySession(str(rdxbug_recording))
    fresh_session = ReplaySession(str(rdxbug_recording))
    try:
        session.cont("signal")
        end = session.position
        done = next((e.step for e in session.events() if e.name == "self-relocation-done" and e.step > 0), end // 2)
        # Dense steps inside the self-relocation loop, then long jumps both ways.
        steps = [*range(max(0, done - 40), done + 2, 3), end - 1, 0, done, end // 3, end - 1, done - 1]
        changed = 0
        previous = None
        for step in steps:
            session.goto(step)
            cached = session.snapshot().relocations
            # A session of its own for each stop: nothing cached from another.
            fresh_session.close()
            fresh_session = ReplaySession(str(rdxbug_recording))
            fresh_session.goto(step)
            fresh = fresh_session.snapshot().relocations
            assert cached == fresh, f"step {step}"
            changed += previous is not None and previous != fresh
            previous = fresh
        assert changed >= 3  # the walk did see slots being written
    finally:
        session.close()
        fresh_session.close()
