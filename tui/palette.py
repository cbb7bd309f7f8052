"""Our commands in Textual's command palette (Ctrl+P). Commands the session
cannot do (step back on a live process) are left out."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class LoaderdbgCommands(Provider):
    """Step, run to a milestone, show auxv/maps/GOT, explain…"""

    def _commands(self):
        commands = getattr(self.app, "palette_commands", None)
        return commands() if commands is not None else ()

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(f"{name} {help_text}")
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(callback), help=help_text)
