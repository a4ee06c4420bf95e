"""``xenvmi tui``: a Textual UI over the same API as the CLI (the only package that
imports Textual; ``tests/tui/test_no_textual_in_core.py`` keeps it that way).

Layout: sources.py (the DataSource interface), live.py and recorded.py (its two
implementations), synthetic.py (generated recordings), workers.py (thread loops that
post messages.py), screens/ and widgets/ (rendering only), app.py (wiring).
"""

from __future__ import annotations


def run(source=None, refresh: float = 2.0, domain: str | None = None) -> int:
    """Run the app on ``source`` (default: the live dom0) until the user quits."""
    from xenvmi.tui.app import XenvmiApp
    if source is None:
        from xenvmi.tui.live import LiveSource
        source = LiveSource()
    XenvmiApp(source, refresh=refresh, domain=domain).run()
    return 0
