"""kernel: a guest kernel's identity and where each fact came from, found in its memory."""

from __future__ import annotations

from xenvmi.model.guest import GuestView, KernelInfo
from xenvmi.plugins.base import Column, Context, Plugin


def _vmcoreinfo_text(k: KernelInfo) -> str:
    where = f"at guest-physical {k.vmcoreinfo_address:#x}, "
    if k.discovery_cached:
        return where + f"from the cache ({k.discovery_seconds:.2f}s)"
    if "note of the dump" in k.sources.get("vmcoreinfo", ""):
        return where + "from the dump's note"
    return where + f"found by scanning in {k.discovery_seconds:.1f}s"


def kernel_text(k: KernelInfo) -> str:
    """The facts an operator asks first, one per line, then each one's source."""
    lines = [
        f"domain:        {k.domain}",
        f"release:       {k.release}",
        f"version:       {k.version or '-'}",
        f"hostname:      {k.hostname or '-'}",
        f"build id:      {k.build_id or '-'}",
        f"KASLR slide:   {k.kaslr_slide:#x}" + ("  (not randomized)" if not k.kaslr_slide else ""),
        f"phys_base:     {k.phys_base:#x}",
        f"VMCOREINFO:    {_vmcoreinfo_text(k)}",
        f"symbols:       {k.symbols} (kallsyms)",
        f"BTF:           {k.btf_size} bytes, {k.btf_types} types",
        "sources:",
    ] + [f"  {key:<12} {value}" for key, value in k.sources.items()]
    return "\n".join(lines)


class Kernel(Plugin):
    name = "kernel"
    version = "1.1"
    description = "Show a guest kernel's release, KASLR slide, BTF and symbols, found in memory."
    requires = ("linux-guest", "root")
    needs_domain = True
    command = True
    row = KernelInfo
    columns = (
        Column("domain", "DOMAIN"),
        Column("release", "RELEASE"),
        Column("kaslr_slide", "SLIDE", lambda k: f"{k.kaslr_slide:#x}"),
        Column("symbols", "SYMBOLS", right=True),
        Column("btf_types", "BTF TYPES", right=True),
    )
    examples = """  xenvmi kernel xvm-hvm          release, KASLR slide, BTF, where each came from
  xenvmi kernel 3 --json         by domain id
  xenvmi kernel /root/hvm.vmcore a dump (see xenvmi dump)
"""

    @staticmethod
    def collect(guest, timeout: float | None) -> GuestView[KernelInfo]:
        return guest.kernel_info(timeout=timeout)

    def run(self, ctx: Context):
        return ctx.adopt(self.collect(ctx.guest(), ctx.remaining()))

    @classmethod
    def render_text(cls, rows):
        return "\n\n".join(kernel_text(k) for k in rows)
