"""The command palette: every main action of the screen underneath, found by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True)
class PaletteCommand:
    """One palette entry; `discover=False` keeps it out of the list shown before typing."""

    name: str
    help: str
    callback: Callable[[], object]
    discover: bool = True


class OrpoCommands(Provider):
    """Commands from the active screen's `palette_commands()` plus the app's own."""

    def commands(self) -> list[PaletteCommand]:
        screen_commands = getattr(self.screen, "palette_commands", None)
        app_commands = getattr(self.app, "palette_commands", None)
        return [*(screen_commands() if screen_commands else []), *(app_commands() if app_commands else [])]

    async def discover(self) -> Hits:
        for cmd in self.commands():
            if cmd.discover:
                yield DiscoveryHit(cmd.name, cmd.callback, help=cmd.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for cmd in self.commands():
            score = matcher.match(cmd.name)
            if score > 0:
                yield Hit(score, matcher.highlight(cmd.name), cmd.callback, text=cmd.name, help=cmd.help)
