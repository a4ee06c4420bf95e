"""Extend xenvmi without touching its core: plugins that yield typed rows.

A plugin is a :class:`Plugin` subclass in one ``.py`` file (or behind an entry point of
the ``xenvmi.plugins`` group). It declares its name, version, the plugin API it needs,
what it requires ("xenstore", "libvmi", "bcc", "linux-guest", "root" ...), whether it needs
a domain, and the dataclass of its rows; ``run(ctx)`` yields rows. The CLI
(``xenvmi plugins``, ``xenvmi run``) and the TUI render them::

    from xenvmi import plugins
    for p in plugins.discover():
        print(p.name, p.available or p.why_not)
    result = plugins.run("netdev", "xvm-pvh1", timeout=60)
    print(result.error or result.rows)

See docs/plugins.md for a complete example.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xenvmi.errors import NotFoundError, XenvmiError
from xenvmi.plugins.base import API_VERSION, Column, Context, Option, Plugin, yes_no
from xenvmi.plugins.loader import GROUP, PluginInfo, discover_entries
from xenvmi.plugins.runner import PluginResult, run

__all__ = [
    "API_VERSION",
    "Column",
    "Context",
    "GROUP",
    "Option",
    "Plugin",
    "PluginInfo",
    "PluginResult",
    "discover",
    "run",
    "tui_panel",
    "yes_no",
]


def discover(extra_dirs: Sequence[str | Path] = ()) -> list[PluginInfo]:
    """Every plugin found (entry points, plugin folders, ``extra_dirs``), broken ones
    included with ``error`` set and ``available`` False."""
    return [e.info for e in discover_entries(extra_dirs)]


def tui_panel(name: str, extra_dirs: Sequence[str | Path] = ()) -> type | None:
    """The Textual widget class plugin ``name`` offers, or None (show its rows as a table).

    Called by the TUI only: the plugin imports Textual inside its hook."""
    cls = next(
        (e.cls for e in discover_entries(extra_dirs) if e.info.name == name and e.cls is not None),
        None,
    )
    if cls is None:
        raise NotFoundError(f"no loadable plugin named {name!r}")
    try:
        return cls.tui_panel()
    except Exception as e:  # isolation boundary: the plugin's hook failed
        raise XenvmiError(f"plugin {name}: tui_panel() failed: {type(e).__name__}: {e}") from None
