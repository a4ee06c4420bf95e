"""`xenvmi trace hypercalls`: watch dom0's hypercalls live and name their errors.

A bcc tool in the style of iovisor/bcc's tools (opensnoop, syscount): filters go into the
BPF program, events are printed as they come (text or JSON lines), and Ctrl-C, SIGTERM,
--duration or --count end the trace cleanly with the summary/histogram asked for.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

from xenvmi import render
from xenvmi.commands import add_command, usage

if TYPE_CHECKING:  # the tracer's modules load when a trace runs, not for `xenvmi --help`
    from xenvmi.model.hypercall import HypercallEvent
    from xenvmi.trace.hypercall_filters import Filters
    from xenvmi.trace.hypercall_stats import Stats

EXAMPLES = """  xenvmi trace hypercalls                      every privcmd call, a line each (Ctrl-C)
  xenvmi trace hypercalls --errors-only        only the ones that failed, with the error named
  xenvmi trace hypercalls --comm xl -d 10      what `xl` asks Xen for, for 10 seconds
  xenvmi trace hypercalls --op domctl:getdomaininfo --pid 812
  xenvmi trace hypercalls --op mmapbatch_v2    foreign mappings (QEMU, LibVMI)
  xenvmi trace hypercalls --summary --hist -d 5   counts, errors and latency histograms
  xenvmi trace hypercalls --json -n 100 > calls.jsonl
  xenvmi trace hypercalls --ebpf               print the BPF program and exit

output: `xl[812] domctl getdomaininfo(domid=7) -> -ESRCH (No such process) 12us`
(comm[pid] call(target) -> return value, time in the kernel), named with the running
Xen release's tables. Needs root, bcc (python3-bpfcc) and kernel headers in dom0.
"""  # noqa: E501  (help text: the examples' columns are what --help prints)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text, 0)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _pow2(text: str) -> int:
    value = _positive_int(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two, not {text}")
    return value


def register(sub: Any) -> None:
    tr = add_command(
        sub,
        "trace",
        "trace Xen activity live from dom0 (bcc/eBPF)",
        "  xenvmi trace hypercalls --errors-only\n",
    )
    tsub = tr.add_subparsers(dest="trace_command", metavar="WHAT", parser_class=type(tr))
    tr.set_defaults(func=usage(tr))
    p = add_command(
        tsub,
        "hypercalls",
        "trace dom0's hypercalls (privcmd ioctls) with their sub-ops, errors and latency",
        EXAMPLES,
    )
    p.add_argument(
        "-x", "--errors-only", action="store_true", help="only calls that returned an error"
    )
    p.add_argument("-p", "--pid", type=_positive_int, help="only this process id")
    p.add_argument("-c", "--comm", help="only processes with this name (first 15 chars)")
    p.add_argument(
        "-o",
        "--op",
        metavar="NAME[:CMD]",
        help="only this hypercall (domctl, 36), command (domctl:getdomaininfo) "
        "or privcmd request (mmapbatch_v2, mmap_resource, restrict)",
    )
    p.add_argument(
        "-d", "--duration", type=_positive_float, metavar="S", help="stop after S seconds"
    )
    p.add_argument("-n", "--count", type=_positive_int, metavar="N", help="stop after N calls")
    p.add_argument(
        "--json", action="store_true", help="one JSON object a line (the summary as a last line)"
    )
    p.add_argument(
        "-s",
        "--summary",
        action="store_true",
        help="print counts and errors per call at the end, not each call",
    )
    p.add_argument(
        "-H",
        "--hist",
        action="store_true",
        help="print log2 latency histograms per call at the end",
    )
    p.add_argument(
        "-b",
        "--buffer-pages",
        type=_pow2,
        default=64,
        metavar="PAGES",
        help="perf buffer pages per CPU, a power of two (64); raise it if events are lost",
    )
    p.add_argument("--ebpf", action="store_true", help="print the BPF program and exit")
    p.set_defaults(func=cmd_hypercalls)


def filters_from_args(args: argparse.Namespace, release: str | None = None) -> Filters:
    """The filters asked for; commands are named with Xen ``release``'s tables."""
    from xenvmi.trace.hypercall_filters import Filters, parse_op

    kind = op = subop = None
    if args.op:
        kind, op, subop = parse_op(args.op, release)
    return Filters(
        pid=args.pid,
        comm=args.comm,
        kind=kind,
        op=op,
        subop=subop,
        errors_only=args.errors_only,
        release=release,
    )


def plan(args: argparse.Namespace) -> tuple[bool, bool, bool]:
    """(stream events, count in kernel maps, print each event) for the options given."""
    aggregate = args.summary or args.hist
    stream = not aggregate or args.count is not None
    return stream, aggregate and not stream, not aggregate


class _Stopper:
    """SIGINT/SIGTERM set a flag the poll loop checks; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.stop = False
        self.saved: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self) -> _Stopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)


def emit_event(ev: HypercallEvent, as_json: bool, out=None) -> None:
    from xenvmi.trace.hypercall_decode import event_json, format_event

    out = out or sys.stdout
    out.write((render.json_line(event_json(ev)) if as_json else format_event(ev)) + "\n")
    out.flush()


def emit_stats(stats: Stats, args: argparse.Namespace, out=None) -> None:
    out = out or sys.stdout
    if args.json:
        out.write(render.json_line({"summary": stats.to_json(hist=args.hist)}) + "\n")
        return
    parts = []
    if args.summary:
        parts.append(stats.render_summary())
    if args.hist:
        parts.append(stats.render_hist())
    out.write("\n" + "\n\n".join(parts) + "\n")


def cmd_hypercalls(args: argparse.Namespace) -> int:
    if args.json and args.hist and not args.summary:
        args.summary = True  # the JSON summary object carries the histograms
    from xenvmi import xen_release

    release = xen_release.select()  # the running hypervisor's tables name the calls
    filters = filters_from_args(args, release)
    stream, kernel_stats, print_events = plan(args)
    from xenvmi.backends.hypercall_probe import HypercallTracer
    from xenvmi.trace.hypercalls import program_text

    if args.ebpf:
        print(program_text(filters, stream=stream, stats=kernel_stats))
        return 0
    from xenvmi.trace.hypercall_stats import Stats

    stats = Stats()
    aggregate = args.summary or args.hist

    def on_event(ev: HypercallEvent) -> None:
        if aggregate and stream:
            stats.add(ev)
        if print_events:
            emit_event(ev, args.json)

    tracer = HypercallTracer(
        filters, stream=stream, stats=kernel_stats, page_cnt=args.buffer_pages, release=release
    )
    with _Stopper() as stopper:
        tracer.start()
        try:
            limits = []
            if args.duration:
                limits.append(f"for {args.duration:g}s")
            if args.count:
                limits.append(f"until {args.count} calls")
            print(
                f"Tracing {filters.describe()}{' ' + ' or '.join(limits) if limits else ''}"
                "... Hit Ctrl-C to end.",
                file=sys.stderr,
                flush=True,
            )
            tracer.poll(
                on_event, duration=args.duration, count=args.count, should_stop=lambda: stopper.stop
            )
            if kernel_stats:
                stats = tracer.read_stats()
        finally:
            tracer.close()
    stats.lost = tracer.lost
    if aggregate:
        emit_stats(stats, args)
    if tracer.lost:
        print(
            f"xenvmi: warning: {tracer.lost} events lost (perf buffer full); "
            "raise --buffer-pages, narrow the filters or use --summary",
            file=sys.stderr,
        )
    return 0
