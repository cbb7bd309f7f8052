"""SVG snapshots of the main screen (pytest-textual-snapshot): at `first`,
at the hand-off (ld.so's entry), at AT_ENTRY and at the rdxbug crash, at
80x24 and 160x48.

Sessions come from SESSION_FACTORIES so these tests can switch to the
sample recordings (recordings/, issue 5) without changing; until then they
run the fixture live, made as repeatable as a live run can be:
- launched through a symlink at a fixed path with a fixed environment, so
  the stack layout does not depend on the checkout or the user;
- ASLR off; the pid, the AT_RANDOM bytes and the machine-dependent auxv
  values (hwcaps, uids, vDSO address…) are masked by SnapshotApp, and paths
  under the checkout are shown as <repo>.
They still depend on this machine's kernel and ld.so; update them with
`pytest tests/tui/test_snapshots.py --snapshot-update` and look at the SVGs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from loaderdbg_tui.app import LoaderdbgApp

from tuihelp import DEMO, RDXBUG, REPO, fixture_binary, live_session, settle

LINK_DIR = Path("/tmp/loaderdbg-tui-snapshots")
MASKED_AUXV = frozenset({
    "AT_RANDOM", "AT_HWCAP", "AT_HWCAP2", "AT_HWCAP3", "AT_HWCAP4", "AT_MINSIGSTKSZ", "AT_SYSINFO_EHDR",
    "AT_RSEQ_FEATURE_SIZE", "AT_RSEQ_ALIGN", "AT_UID", "AT_EUID", "AT_GID", "AT_EGID", "AT_PLATFORM",
    "AT_L1D_CACHEGEOMETRY", "AT_L2_CACHEGEOMETRY", "AT_L3_CACHEGEOMETRY",
})


class SnapshotApp(LoaderdbgApp):
    """The app with run-to-run and machine-dependent values masked."""

    def present_volatile(self, kind: str, text: str) -> str:
        if kind == "pid":
            return "PID"
        if kind.startswith("auxv:") and kind[len("auxv:"):] in MASKED_AUXV:
            return "(masked)"
        if kind == "path":
            return text.replace(str(REPO), "<repo>")
        return text


def _fixed_path(binary: Path, name: str) -> str:
    """The fixture under a fixed path (a symlink), so argv[0]/AT_EXECFN
    and the stack addresses after them are the same in every checkout."""
    fixture_binary(binary)
    link_dir = LINK_DIR / name
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / binary.name
    temporary = link_dir / f".{binary.name}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(binary)
    os.replace(temporary, link)
    return str(link)


@contextmanager
def _live(binary: Path, name: str):
    with live_session(binary, program=_fixed_path(binary, name)) as (session, _):
        yield session


SESSION_FACTORIES = {
    "demo": lambda: _live(DEMO, "demo"),
    "rdxbug": lambda: _live(RDXBUG, "rdxbug"),
}


async def _at_first(pilot) -> None:
    await settle(pilot)


async def _at_handoff(pilot) -> None:
    await settle(pilot)
    await pilot.press("l")
    await settle(pilot)
    assert pilot.app.view.stage.name == "ldso-entry"


async def _at_entry(pilot) -> None:
    await settle(pilot)
    await pilot.press("e")
    await settle(pilot)
    assert pilot.app.view.stage.name == "at-entry"


async def _at_crash(pilot) -> None:
    await settle(pilot)
    await pilot.press("l")
    await settle(pilot)
    assert pilot.app.view.crashed


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("case, factory, run_before", [
    ("first", "demo", _at_first),
    ("handoff", "demo", _at_handoff),
    ("entry", "demo", _at_entry),
    ("crash", "rdxbug", _at_crash),
], ids=["first", "handoff", "entry", "rdxbug-crash"])
def test_main_screen(snap_compare, case, factory, run_before, size):
    with SESSION_FACTORIES[factory]() as session:
        assert snap_compare(SnapshotApp(session), terminal_size=size, run_before=run_before)
