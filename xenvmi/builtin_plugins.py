"""xenvmi's own views as plugins: proof that the plugin API carries real work.

ps, lsmod and dmesg call the same Guest views as ``xenvmi ps/lsmod/dmesg``; hypercalls
runs the same bcc tracer and Stats as ``xenvmi trace hypercalls --summary``. They are
registered through the ``xenvmi.plugins`` entry point group (setup.cfg), like any
third-party plugin would be.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.errors import UsageError
from xenvmi.guest.model import LogRecord, Module, Process
from xenvmi.plugins import Context, Plugin

_PAUSE = {"pause": "yes: pause the guest while reading (always resumed); default no"}


def _yes(text: str) -> bool:
    if text.lower() in ("1", "yes", "true", "on"):
        return True
    if text.lower() in ("0", "no", "false", "off"):
        return False
    raise ValueError(text)


_yes.__name__ = "yes/no"


class Ps(Plugin):
    name = "ps"
    version = "1.0"
    description = "A Linux guest's processes, read from its memory (no agent)."
    requires = ("linux-guest", "root")
    needs_domain = True
    row = Process
    columns = ("pid", "ppid", "state", "uid", "comm", "cmdline")
    options = _PAUSE

    def run(self, ctx: Context):
        view = ctx.guest().processes(timeout=ctx.remaining(),
                                     pause=ctx.option("pause", False, _yes))
        return ctx.adopt(view)


class Lsmod(Plugin):
    name = "lsmod"
    version = "1.0"
    description = "A Linux guest's loaded kernel modules, from its memory."
    requires = ("linux-guest", "root")
    needs_domain = True
    row = Module
    columns = ("name", "size", "refcount", "state")
    options = _PAUSE

    def run(self, ctx: Context):
        view = ctx.guest().modules(timeout=ctx.remaining(),
                                   pause=ctx.option("pause", False, _yes))
        return ctx.adopt(view)


class Dmesg(Plugin):
    name = "dmesg"
    version = "1.0"
    description = "A Linux guest's kernel log, from its memory."
    requires = ("linux-guest", "root")
    needs_domain = True
    row = LogRecord
    columns = ("seq", "timestamp", "level", "text")
    options = {**_PAUSE, "tail": "only the last N records"}

    def run(self, ctx: Context):
        tail = ctx.option("tail", None, int)
        if tail is not None and tail < 0:
            raise UsageError("dmesg: tail wants a number >= 0")
        view = ctx.guest().kernel_log(timeout=ctx.remaining(),
                                      pause=ctx.option("pause", False, _yes))
        rows = ctx.adopt(view)
        return rows if tail is None else rows[-tail:] if tail else []


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
    return [HypercallSummary(c.name, c.subop, c.calls, c.errors, round(c.avg_us, 3),
                             round(c.max_ns / 1000, 3)) for c in stats.op_rows()]


def trace_stats(ctx: Context, errors_only: bool = False):
    """Count dom0's privcmd calls in kernel maps for ``seconds`` (default 5), bounded by
    the run's deadline; shared by the hypercalls and hcerrors plugins."""
    from xenvmi.trace.hypercall_filters import Filters
    from xenvmi.backends.hypercall_probe import HypercallTracer
    seconds = ctx.option("seconds", 5.0, float)
    left = ctx.remaining()
    if left is not None and seconds > left:
        ctx.warn(f"traced {left:.0f}s, not {seconds:g}s: the run's timeout is shorter",
                 partial=False)
        seconds = left
    tracer = HypercallTracer(Filters(errors_only=errors_only), stream=False, stats=True)
    tracer.start()
    try:
        tracer.poll(duration=seconds)
        return tracer.read_stats()
    finally:
        tracer.close()


class Hypercalls(Plugin):
    name = "hypercalls"
    version = "1.0"
    description = "Count dom0's hypercalls (privcmd) for a few seconds: calls, errors, latency."
    requires = ("bcc", "root")
    row = HypercallSummary
    options = {"seconds": "how long to trace (default 5)"}

    def run(self, ctx: Context):
        return summary_rows(trace_stats(ctx))


BUILTINS = (Ps, Lsmod, Dmesg, Hypercalls)
