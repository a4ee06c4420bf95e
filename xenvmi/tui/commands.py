"""The command palette's provider (ctrl+p): screens, every current domain, sorting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from xenvmi.tui import xenvmi_app
from xenvmi.tui.format import COLUMNS


class XenvmiCommands(Provider):
    """Commands are rebuilt on every search: the domain list changes while the app runs."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], object]]]:
        app = xenvmi_app(self)
        yield (
            "Domains screen",
            "xentop's table with the dom0 host panel (d)",
            partial(app.action_mode, "domains"),
        )
        yield (
            "Hypercalls screen",
            "dom0's hypercalls, live (h)",
            partial(app.action_mode, "hypercalls"),
        )
        yield (
            "XenStore browser",
            "the whole xenstore tree (x)",
            partial(app.action_mode, "xenstore"),
        )
        yield "Help", "every key binding (?)", app.action_help
        for name, domid in sorted(getattr(app, "known_domains", {}).items(), key=lambda kv: kv[1]):
            yield (
                f"Open domain {name}",
                f"domain {domid}: overview, processes, log ...",
                partial(app.open_domain, domid),
            )
        for col in COLUMNS:
            yield (
                f"Sort domains by {col.label}",
                "on the domains screen",
                partial(app.sort_domains, col.key),
            )

    async def discover(self) -> Hits:
        for text, about, command in self._commands():
            yield DiscoveryHit(text, command, help=about)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, about, command in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, text=text, help=about)
