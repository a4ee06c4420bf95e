"""lsmod: a Linux guest's loaded kernel modules, read from its memory."""

from __future__ import annotations

from xenvmi.model.guest import GuestView, Module
from xenvmi.plugins.base import Column, Context, Plugin
from xenvmi.views.ps import PAUSE


def address_text(m: Module) -> str | None:
    return None if m.address is None else f"{m.address:#x}"


class Lsmod(Plugin):
    name = "lsmod"
    version = "1.1"
    description = "List a guest's loaded kernel modules from its memory."
    requires = ("linux-guest", "root")
    needs_domain = True
    command = True
    row = Module
    columns = (
        Column("name", "MODULE"),
        Column("size", "SIZE", right=True),
        Column("refcount", "USED", right=True),
        Column("state", "STATE"),
        Column("address", "ADDRESS", address_text),
    )
    options = {"pause": PAUSE}
    examples = """  xenvmi lsmod xvm-pvh2          loaded modules
  xenvmi lsmod /root/pvh2.vmcore a dump's
"""

    @staticmethod
    def collect(guest, timeout: float | None, pause: bool = False) -> GuestView[Module]:
        return guest.modules(timeout=timeout, pause=pause)

    def run(self, ctx: Context):
        return ctx.adopt(self.collect(ctx.guest(), ctx.remaining(), ctx.option("pause")))

    @classmethod
    def render_text(cls, rows):
        return None if rows else "(no modules loaded)"
