"""``xenvmi tui``: the interactive terminal UI (Textual, an optional extra).

Only this command knows the TUI exists; Textual is imported when it runs, so every other
command works without it, and its absence is one line (exit code 5), not a traceback.
"""

from __future__ import annotations

import argparse

from xenvmi.commands import add_command
from xenvmi.errors import Unavailable

EXAMPLES = """\
  sudo xenvmi tui                         live, in dom0: domains, hypercalls, xenstore
  sudo xenvmi tui --refresh 1 --domain xvm-pvh1   open one domain's screen first
  python3 -m xenvmi.tui.synthetic /tmp/lab && xenvmi tui --replay /tmp/lab
                                          a recording: no Xen needed (demo, tests)

keys: ? help, ctrl+p command palette, d/h/x screens, / filter, s sort, q quit.
The TUI is read-only: it never writes xenstore or changes a domain.
"""


def refresh_arg(text: str) -> float:
    """argparse type: seconds between refreshes, 0.1 to 3600."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds like 0.5 or 2, got {text!r}") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0.1 to 3600 seconds, got {text}")
    return value


def register(sub) -> None:
    p = add_command(
        sub,
        "tui",
        "Interactive terminal UI: live domains, a domain's processes, "
        "modules and kernel log, dom0's hypercalls, xenstore (read-only).",
        EXAMPLES,
    )
    p.add_argument(
        "--refresh",
        type=refresh_arg,
        default=2.0,
        metavar="S",
        help="seconds between samples of the domains table (default 2)",
    )
    p.add_argument(
        "--replay", metavar="DIR", help="replay a recording (JSON files) instead of the live host"
    )
    p.add_argument(
        "--domain", metavar="NAME", help="open this domain (name or domid) once the table is up"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import textual  # noqa: F401
    except ImportError:
        raise Unavailable("the TUI needs Textual: pip install 'xenvmi[tui]'") from None
    from xenvmi.tui import run as run_tui

    source = None
    if args.replay:
        from xenvmi.tui.recorded import RecordedSource, load

        source = RecordedSource(load(args.replay), loop=True, label=f"replay {args.replay}")
    return run_tui(source, refresh=args.refresh, domain=args.domain)
