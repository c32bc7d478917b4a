"""The command palette's svqtui commands (Ctrl+P): every key of the running
app's key table by name, run exactly as the key would run it."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from svqtui.console.keys import KeySpec, keys_of


def command_title(spec: KeySpec) -> str:
    return f"{spec.label} ({spec.shown})"


class SvqtuiCommands(Provider):
    """Shadow, mask, inject, reset, filter, sort, pause, delay, help, quit, and
    whatever keys an app subclass adds to its table."""

    async def discover(self) -> Hits:
        for spec in keys_of(self.app):
            yield DiscoveryHit(command_title(spec), partial(self._run, spec), help=spec.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in keys_of(self.app):
            title = command_title(spec)
            score = max(matcher.match(title), matcher.match(spec.help) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, spec), help=spec.help)

    async def _run(self, spec: KeySpec) -> None:
        await self.app.run_action(spec.action)
