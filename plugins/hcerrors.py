"""hcerrors: which dom0 process gets which Xen error from which hypercall, and how often.

Why: toolstack trouble ("xl hangs", "QEMU cannot map guest memory") shows up as the same
failing hypercall again and again. This traces only failing privcmd calls (the filter runs
in the kernel, so busy hosts pay little) for a few seconds and groups them into
hot-spots: process, call, error, count, and the domains they targeted.

Options: ``seconds=N`` (default 5).
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.plugins import Context, Option, Plugin

MAX_HOTSPOTS = 10_000  # distinct (process, call, error) groups kept; more are counted only


@dataclass(frozen=True)
class HypercallError:
    comm: str
    call: str
    subop: str | None
    error: str  # "-ESRCH (No such process)"
    count: int
    domains: str  # the target domids seen, "3,7" ('' if none named)


class HotSpots:
    """Groups failing HypercallEvents by (process name, call, sub-op, return value)."""

    def __init__(self) -> None:
        self.counts: dict[tuple, int] = {}
        self.domids: dict[tuple, set[int]] = {}
        self.dropped = 0

    def add(self, ev) -> None:
        if not ev.failed:
            return
        key = (ev.comm, ev.name, ev.subop_name, ev.ret)
        if key not in self.counts and len(self.counts) >= MAX_HOTSPOTS:
            self.dropped += 1
            return
        self.counts[key] = self.counts.get(key, 0) + 1
        if ev.domid is not None and len(self.domids.setdefault(key, set())) < 16:
            self.domids[key].add(ev.domid)

    def rows(self) -> list[HypercallError]:
        from xenvmi.trace.hypercall_decode import describe_ret

        keys = sorted(self.counts, key=lambda k: (-self.counts[k], k[0], k[1], k[2] or ""))
        return [
            HypercallError(
                comm,
                call,
                subop,
                describe_ret(ret),
                self.counts[k],
                ",".join(str(d) for d in sorted(self.domids.get(k, ()))),
            )
            for k in keys
            for comm, call, subop, ret in [k]
        ]


class HcErrors(Plugin):
    name = "hcerrors"
    version = "1.0"
    description = "Failing hypercalls in dom0 for a few seconds, grouped by process and error."
    requires = ("bcc", "root")
    row = HypercallError
    options = {"seconds": Option("how long to trace (default 5)", float, 5.0, "SECONDS")}

    def run(self, ctx: Context):
        from xenvmi.backends.hypercall_probe import HypercallTracer
        from xenvmi.trace.hypercall_filters import Filters

        seconds = ctx.duration("seconds", 5.0)
        spots = HotSpots()
        tracer = HypercallTracer(Filters(errors_only=True), stream=True, stats=False)
        tracer.start()
        try:
            tracer.poll(spots.add, duration=seconds)
        finally:
            tracer.close()
        if tracer.lost:
            ctx.warn(f"{tracer.lost} failing calls lost (perf buffer full)")
        if spots.dropped:
            ctx.warn(f"{spots.dropped} calls in more than {MAX_HOTSPOTS} groups not listed")
        return spots.rows()
