"""The link_map tab shows glibc's private l_relocated, l_init_called and
TLS module id per entry as the snapshot has them (issue 15), and ? with a
short reason under musl, whose ld.so has no such fields."""

from __future__ import annotations

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.link_map import LinkMapPane

from tuihelp import EXECSOLIB, live_session, run_pilot, settle


def _cells(pane: LinkMapPane, name_part: str) -> list[str]:
    """The cells of the row whose name contains name_part, as plain text."""
    row = next(r for r in pane.rows if name_part in str(getattr(r[1], "plain", r[1])))
    return [str(getattr(cell, "plain", cell)) for cell in row]


def _screen_text(pane: LinkMapPane) -> str:
    return "\n".join(line.plain for line in pane.body.lines)


async def _link_map_at_entry(pilot) -> LinkMapPane:
    await pilot.press("e")
    await settle(pilot)
    pilot.app.screen.show_tab("tab-linkmap")
    await pilot.pause()
    return pilot.app.screen.query_one(LinkMapPane)


def test_glibc_demo_at_entry_shows_the_private_fields(demo):
    session, _ = demo

    async def scenario(pilot):
        pane = await _link_map_at_entry(pilot)
        entries = pilot.app.view.snapshot.link_map
        libc = next(e for e in entries if e.name.endswith("/libc.so.6"))
        assert libc.private.l_relocated and libc.private.l_init_called and libc.private.l_tls_modid == 1
        assert _cells(pane, "libc.so.6")[-3:] == ["yes", "yes", "1"]
        assert _cells(pane, "ld-linux")[-3:] == ["yes", "yes", ""]  # ld.so has no TLS block
        assert "yes" in _screen_text(pane)
        assert "?" not in (pane.border_subtitle or "")

    run_pilot(LoaderdbgApp(session), scenario)


def test_musl_demo_says_why_the_fields_are_unknown():
    with live_session(EXECSOLIB / "musl-O2" / "libexecsolib.so") as (session, _):
        async def scenario(pilot):
            pane = await _link_map_at_entry(pilot)
            assert _cells(pane, "ld-musl")[-3:] == ["?", "?", "?"]
            assert "musl's ld.so has no such fields" in pane.border_subtitle

        run_pilot(LoaderdbgApp(session), scenario)
