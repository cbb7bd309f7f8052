"""The status line warns when the replay does not match its recording
(issue 16.2): a copy of the rdxbug sample with one recorded write changed,
replayed across the keyframe after it; the untouched sample never warns."""

from __future__ import annotations

from loaderdbg_tui.app import LoaderdbgApp

from damaged_recording import SAMPLE, change_recorded_write, copy_of_sample
from tuihelp import run_pilot, settle, status_text, type_command

KEYFRAME = 32768


def _scenario(expect_warning: bool, step: int | None = None):
    async def scenario(pilot):
        app = pilot.app
        assert "DIVERGES" not in status_text(app)
        await type_command(pilot, f"goto {KEYFRAME + 10}")
        await settle(pilot)
        assert app.view.position == KEYFRAME + 10
        shown = status_text(app)
        if expect_warning:
            assert shown.startswith(f" ⚠ REPLAY DIVERGES at step {step + 1} "), shown
        else:
            assert "DIVERGES" not in shown
    return scenario


def test_status_line_warns_of_a_divergence(tmp_path):
    from loaderdbg.record.replay import ReplaySession

    path = copy_of_sample(tmp_path / "changed.ldbg")
    step, _ = change_recorded_write(path, KEYFRAME)
    for recording, warns in ((path, True), (SAMPLE, False)):
        session = ReplaySession(str(recording))
        try:
            run_pilot(LoaderdbgApp(session, title=f"loaderdbg replay {recording}"), _scenario(warns, step))
        finally:
            session.close()
