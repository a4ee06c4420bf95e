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
  xenvmi tui --host root@dom0-a --host root@dom0-b
                                          many hosts in one table, over ssh: each host's
                                          own xenvmi reads (root there; nothing listens)
  xenvmi tui --host root@127.0.0.1 --ssh-option Port=2222 \\
      --remote-xenvmi '/opt/xenvmi/venv/bin/python -m xenvmi'
                                          ssh options, and xenvmi not on the host's PATH

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
    p.add_argument(
        "--host",
        dest="hosts",
        action="append",
        type=host_arg,
        metavar="[USER@]HOST",
        help="read this dom0 over ssh (BatchMode: keys or an agent); repeat for more hosts",
    )
    p.add_argument(
        "--ssh-option",
        dest="ssh_options",
        action="append",
        type=ssh_option_arg,
        default=[],
        metavar="KEY=VALUE",
        help="an ssh -o option for every --host (repeatable), e.g. Port=2222",
    )
    p.add_argument(
        "--remote-xenvmi",
        default="xenvmi",
        metavar="CMD",
        help="how to run xenvmi on the hosts (default: xenvmi)",
    )
    p.set_defaults(func=run)


def host_arg(text: str) -> str:
    """argparse type: [user@]host, never an ssh option."""
    from xenvmi.errors import UsageError
    from xenvmi.remote import check_host

    try:
        return check_host(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ssh_option_arg(text: str) -> str:
    from xenvmi.errors import UsageError
    from xenvmi.remote import check_ssh_option

    try:
        return check_ssh_option(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fleet_source(args):
    """The DataSource of ``--host``: one RemoteSource per host."""
    import shlex

    from xenvmi.errors import UsageError
    from xenvmi.remote import Remote
    from xenvmi.tui.fleet import FleetSource
    from xenvmi.tui.remote_source import RemoteSource

    try:
        command = tuple(shlex.split(args.remote_xenvmi))
    except ValueError as exc:
        raise UsageError(f"--remote-xenvmi: {exc}") from None
    if not command:
        raise UsageError("--remote-xenvmi: empty command")
    if len(set(args.hosts)) != len(args.hosts):
        raise UsageError("--host: a host is given twice")
    return FleetSource(
        [
            RemoteSource(Remote(h, tuple(args.ssh_options), command), args.refresh)
            for h in args.hosts
        ]
    )


def run(args) -> int:
    try:
        import textual  # noqa: F401
    except ImportError:
        raise Unavailable("the TUI needs Textual: pip install 'xenvmi[tui]'") from None
    from xenvmi.tui import run as run_tui

    source = None
    if args.hosts and args.replay:
        from xenvmi.errors import UsageError

        raise UsageError("--host and --replay do not go together")
    if args.hosts:
        source = fleet_source(args)
    elif args.replay:
        from xenvmi.tui.recorded import RecordedSource, load

        source = RecordedSource(load(args.replay), loop=True, label=f"replay {args.replay}")
    return run_tui(source, refresh=args.refresh, domain=args.domain)
