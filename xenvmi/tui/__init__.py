"""``xenvmi tui``: a Textual UI over the same API as the CLI (the only package that
imports Textual; ``tests/tui/test_no_textual_in_core.py`` keeps it that way).

Layout: sources.py (the DataSource interface), live.py and recorded.py (its two
implementations), remote_source.py and fleet.py (many hosts over ssh), synthetic.py
(generated recordings), workers.py (thread loops that post messages.py), screens/ and
widgets/ (rendering only), app.py (wiring).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from textual.app import App

    from xenvmi.tui.app import XenvmiApp


class _InApp(Protocol):
    """A screen, a widget or a command provider: anything Textual gives an ``app``."""

    @property
    def app(self) -> App[Any]: ...


def xenvmi_app(node: _InApp) -> XenvmiApp:
    """``node.app`` as xenvmi's App (its source, lifeline, refresh, domains): Textual types
    it as a plain App, but xenvmi's screens, widgets and commands only run inside
    XenvmiApp (imported for the type checker only: app.py imports the screens)."""
    return cast("XenvmiApp", node.app)


def run(source=None, refresh: float = 2.0, domain: str | None = None) -> int:
    """Run the app on ``source`` (default: the live dom0) until the user quits."""
    from xenvmi.tui.app import XenvmiApp

    if source is None:
        from xenvmi.tui.live import LiveSource

        source = LiveSource()
    XenvmiApp(source, refresh=refresh, domain=domain).run()
    return 0
