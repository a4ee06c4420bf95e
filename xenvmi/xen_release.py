"""Which Xen release's ABI tables a command uses: the one asked for (``--xen X.Y``), else
the running hypervisor's, else xenvmi.abi.releases.DEFAULT.

A release xenvmi has no tables for gets the nearest older known one, with a warning on
stderr rather than an error: a newer Xen mostly adds commands, which then show as
``unknown_<n>``. The result is a plain release string ("4.17") the tables are keyed by.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from xenvmi.abi import releases


def _running() -> str | None:
    from xenvmi.backends.xen_release import running_release

    return running_release()


def _warn(text: str) -> None:
    print(f"xenvmi: warning: {text}", file=sys.stderr)


def select(
    requested: str | None = None,
    *,
    detect: Callable[[], str | None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> str:
    """The known release to use (UsageError for a malformed ``requested``); ``detect``
    and ``warn`` default to asking the hypervisor and printing to stderr."""
    version = requested if requested is not None else (detect or _running)()
    if version is None:
        return releases.DEFAULT
    chosen, warning = releases.nearest(version)
    if warning:
        source = "--xen" if requested is not None else "the running hypervisor"
        (warn or _warn)(f"{source}: {warning}")
    return chosen
