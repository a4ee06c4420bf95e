"""dmesg: a Linux guest's kernel log (either ring buffer format), read from its memory."""

from __future__ import annotations

from xenvmi.model.guest import GuestView, LogRecord
from xenvmi.plugins.base import Column, Context, Option, Plugin, non_negative
from xenvmi.views.ps import PAUSE


def stamp_text(r: LogRecord) -> str:
    """The record's time as dmesg prints it: ``[   12.345678]``."""
    return f"[{r.timestamp:12.6f}]"


class Dmesg(Plugin):
    name = "dmesg"
    version = "1.1"
    description = "Print a guest's kernel log from its memory."
    requires = ("linux-guest", "root")
    needs_domain = True
    command = True
    row = LogRecord
    columns = (
        Column("timestamp", "TIME", stamp_text),
        Column("level", "LEVEL", right=True),
        Column("text", "TEXT"),
    )
    options = {"pause": PAUSE, "tail": Option("only the last N records", non_negative, None, "N")}
    examples = """  xenvmi dmesg xvm-pvh1          the kernel log
  xenvmi dmesg xvm-pvh1 --tail 20
  xenvmi dmesg /root/pvh1.vmcore the log as it was when dumped
"""

    @staticmethod
    def collect(
        guest, timeout: float | None, pause: bool = False, tail: int | None = None
    ) -> GuestView[LogRecord]:
        view = guest.kernel_log(timeout=timeout, pause=pause)
        if tail is not None:
            view.rows = view.rows[-tail:] if tail else []
        return view

    def run(self, ctx: Context):
        tail = ctx.option("tail")  # checked before the guest is read
        return ctx.adopt(self.collect(ctx.guest(), ctx.remaining(), ctx.option("pause"), tail))

    @classmethod
    def render_text(cls, rows):
        return "\n".join(f"{stamp_text(r)} {r.text}" for r in rows)
