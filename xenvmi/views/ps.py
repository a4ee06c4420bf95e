"""ps: a Linux guest's processes, read from its memory with no agent in the guest."""

from __future__ import annotations

from xenvmi.model.guest import GuestView, Process
from xenvmi.plugins.base import Column, Context, Option, Plugin, yes_no

PAUSE = Option("pause the guest while reading (always resumed)", yes_no, False)


def start_text(p: Process) -> str | None:
    """Seconds after boot, as ps's own START would be had it no wall clock."""
    return None if p.start_time is None else f"{p.start_time:.2f}"


def command_text(p: Process) -> str:
    """What the guest's ``ps`` shows: the command line, or a kernel thread's [name]."""
    return p.cmdline if p.cmdline else f"[{p.comm}]"


class Ps(Plugin):
    name = "ps"
    version = "1.1"
    description = "List a guest's processes from its memory (no agent)."
    requires = ("linux-guest", "root")
    needs_domain = True
    command = True
    row = Process
    columns = (
        Column("pid", "PID", right=True),
        Column("ppid", "PPID", right=True),
        Column("state", "S"),
        Column("uid", "UID", right=True),
        Column("start", "START", start_text, right=True),
        Column("command", "COMMAND", command_text, width=120),
    )
    options = {"pause": PAUSE}
    examples = """  xenvmi ps xvm-pvh1             processes: pid, ppid, state, uid, start, command
  xenvmi ps xvm-pvh1 --json      every field, with warnings and completeness
  xenvmi ps xvm-hvm --pause      pause the guest while reading (consistent list)
  xenvmi ps /root/pvh1.vmcore    the same from a dump (or ./pvh1.raw, a raw image)
"""

    @staticmethod
    def collect(guest, timeout: float | None, pause: bool = False) -> GuestView[Process]:
        return guest.processes(timeout=timeout, pause=pause)

    def run(self, ctx: Context):
        return ctx.adopt(self.collect(ctx.guest(), ctx.remaining(), ctx.option("pause")))
