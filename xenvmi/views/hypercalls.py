"""hypercalls: dom0's privcmd hypercalls counted for a few seconds (calls, errors, latency).

The same bcc tracer and kernel-side statistics as ``xenvmi trace hypercalls --summary``.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.plugins.base import Column, Context, Option, Plugin


@dataclass(frozen=True)
class HypercallSummary:
    """One hypercall command's count, failures and latency over the traced interval."""

    call: str
    subop: str | None
    calls: int
    errors: int
    avg_us: float
    max_us: float


def summary_rows(stats) -> list[HypercallSummary]:
    """``Stats.op_rows()`` as rows (the numbers ``trace hypercalls --summary`` prints)."""
    return [
        HypercallSummary(
            c.name, c.subop, c.calls, c.errors, round(c.avg_us, 3), round(c.max_ns / 1000, 3)
        )
        for c in stats.op_rows()
    ]


def trace_stats(seconds: float, errors_only: bool = False):
    """Count dom0's privcmd calls in kernel maps for ``seconds``; the Stats."""
    from xenvmi.backends.hypercall_probe import HypercallTracer
    from xenvmi.trace.hypercall_filters import Filters

    tracer = HypercallTracer(Filters(errors_only=errors_only), stream=False, stats=True)
    tracer.start()
    try:
        tracer.poll(duration=seconds)
        return tracer.read_stats()
    finally:
        tracer.close()


class Hypercalls(Plugin):
    name = "hypercalls"
    version = "1.1"
    description = "Count dom0's hypercalls (privcmd) for a few seconds: calls, errors, latency."
    requires = ("bcc", "root")
    row = HypercallSummary
    columns = (
        "call",
        "subop",
        Column("calls", right=True),
        Column("errors", right=True),
        Column("avg_us", right=True),
        Column("max_us", right=True),
    )
    options = {"seconds": Option("how long to trace (default 5)", float, 5.0, "SECONDS")}

    def run(self, ctx: Context):
        return summary_rows(trace_stats(ctx.duration("seconds", 5.0)))
