"""The ELF tab's ifunc choices (IRELATIVE) keep every number and state
whole at any width (DESIGN.md §9): at 80 columns a Rich Table cut the
slots to `0x7ffff7…` and the states to `app…`; rows wrap instead."""

from __future__ import annotations

import pytest

from loaderdbg_tui.app import LoaderdbgApp
from loaderdbg_tui.elf import ElfPane

from tuihelp import press_to_stop, run_pilot


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_ifunc_choices_are_whole(demo, size):
    session, _ = demo

    async def scenario(pilot):
        app = pilot.app
        await press_to_stop(pilot, "e")
        app.screen.show_tab("tab-elf")
        await pilot.pause()
        choices = app.view.snapshot.ifuncs
        assert choices, "the demo's libc chose no ifunc"
        text = "\n".join(line.plain for line in app.screen.query_one(ElfPane).lines)
        start = text.index("ifunc choices (IRELATIVE)")
        table = text[start:]
        for choice in choices:
            assert f"{choice.address:#x}" in table
        rows = table.splitlines()
        assert all("…" not in word for row in rows for word in row.split() if word.startswith("0x"))
        assert sum(row.count(choice_state) for row in rows for choice_state in {c.state for c in choices}) \
            == len(choices)
    run_pilot(LoaderdbgApp(session), scenario, size=size)
