"""``xenvmi exporter``: Xen's and the guests' metrics for Prometheus (xenvmi/exporter.py).

prometheus_client is an optional extra (``xenvmi[exporter]``): it is imported when the
command runs, so its absence is one line (exit code 5) and no other command needs it.
"""

from __future__ import annotations

import argparse
import sys
import time

from xenvmi.commands import add_command
from xenvmi.errors import Unavailable, UsageError

EXAMPLES = """\
  sudo xenvmi exporter                          serve 127.0.0.1:9731/metrics
  sudo xenvmi exporter --guests xvm-pvh1,xvm-hvm   plus what runs inside these guests
  sudo xenvmi exporter --once                   print one scrape and exit (debugging)
  sudo xenvmi exporter --once --openmetrics --guests xvm-pvh1 --guest-budget 60
  sudo xenvmi exporter --listen 10.0.0.5:9731 --allow-remote   serve the network

Metrics, their meaning and the peer exporters' names: docs/exporter.md. The exporter
never writes to Xen; guests are read from memory only when named in --guests.
"""


def positive(text: str) -> float:
    """argparse type: seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds like 5 or 0.5, got {text!r}") from None
    if not value > 0 or value > 86400:
        raise argparse.ArgumentTypeError(f"expected 0 to 86400 seconds, got {text}")
    return value


def guest_names(text: str) -> list[str]:
    """argparse type: NAME,NAME,... (domain names as `xenvmi list` shows them)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(names) > 256:
        raise argparse.ArgumentTypeError("expected one to 256 domain names, comma-separated")
    return names


#: xenvmi.exporter's defaults, repeated so that building the parser does not import
#: prometheus_client (tests/unit/test_exporter.py checks that they agree)
DEFAULT_LISTEN, DEFAULT_GUEST_BUDGET, DEFAULT_GUEST_INTERVAL = "127.0.0.1:9731", 5.0, 60.0


def register(sub) -> None:
    p = add_command(
        sub,
        "exporter",
        "Prometheus exporter: host and domain counters, and guest facts read from "
        "memory for the domains named in --guests (read-only).",
        EXAMPLES,
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve /metrics on (default {DEFAULT_LISTEN}; loopback only "
        "unless --allow-remote)",
    )
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a --listen address that is not loopback"
    )
    p.add_argument(
        "--guests",
        type=guest_names,
        default=[],
        metavar="NAME,...",
        help="read these guests' processes, modules and kernel log from memory",
    )
    p.add_argument(
        "--guest-budget",
        type=positive,
        default=DEFAULT_GUEST_BUDGET,
        metavar="SECONDS",
        help="longest a scrape waits for guest reads (default %(default)g); a guest "
        'not read by then shows as xenvmi_guest_read_error{reason="budget"}',
    )
    p.add_argument(
        "--guest-interval",
        type=positive,
        default=DEFAULT_GUEST_INTERVAL,
        metavar="SECONDS",
        help="reuse a guest's facts for this long between reads (default %(default)g)",
    )
    p.add_argument(
        "--no-dom0",
        action="store_true",
        help="leave out dom0's CPU, memory and the Xen daemons (psutil)",
    )
    p.add_argument("--once", action="store_true", help="print one scrape to stdout and exit")
    p.add_argument(
        "--openmetrics", action="store_true", help="with --once: OpenMetrics, not Prometheus text"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise Unavailable(
            "the exporter needs prometheus_client: pip install 'xenvmi[exporter]'"
        ) from None
    from xenvmi import exporter as E

    if args.openmetrics and not args.once:
        raise UsageError("--openmetrics goes with --once (a server negotiates the format)")
    host, port = E.parse_listen(args.listen, args.allow_remote)
    guests = None
    if args.guests:
        guests = E.GuestReader(args.guests, args.guest_budget, args.guest_interval)
    sample_host = None if args.no_dom0 else E._host_sampler()
    reg = E.registry(E.XenvmiCollector(sample_host=sample_host, guests=guests))
    if args.once:
        sys.stdout.buffer.write(E.exposition(reg, args.openmetrics))
        sys.stdout.flush()
        return 0
    try:
        server, _ = E.serve(reg, host, port)
    except OSError as e:
        raise Unavailable(f"cannot listen on {args.listen}: {e.strerror or e}") from None
    print(f"xenvmi: serving http://{args.listen}/metrics", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()
