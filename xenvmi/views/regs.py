"""regs: a guest vCPU's registers, decoded (any guest type, Linux or not, and dumps)."""

from __future__ import annotations

from xenvmi.model.guest import GuestView, VcpuRegisters
from xenvmi.plugins.base import Column, Context, Option, Plugin


def vcpu_choice(text: str) -> int | None:
    """A vCPU number, or None for "all"."""
    if text == "all":
        return None
    value = int(text, 0)
    if value < 0:
        raise ValueError(text)
    return value


vcpu_choice.__name__ = "vCPU number or 'all'"


def _hex(v: int | None) -> str:
    return "-" if v is None else f"{v:#018x}"


GPRS = (
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rbp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
)


def registers_text(r: VcpuRegisters) -> str:
    """One vCPU: modes and privilege, paging, the control registers with their flags
    named, the syscall MSRs, then the general-purpose registers."""
    d = r.decoded
    lines = [
        f"{r.domain} vCPU {r.vcpu}: {d.cpu_mode or '?'} mode, "
        f"CPL {'?' if d.cpl is None else d.cpl}, paging {d.paging_mode or '?'}",
        f"  rip {_hex(d.rip)}  rsp {_hex(d.rsp)}  rflags {_hex(d.rflags)} "
        f"[{' '.join(d.rflags_flags)}]",
        f"  cr0 {_hex(d.cr0)} [{' '.join(d.cr0_flags)}]",
        f"  cr2 {_hex(d.cr2)}  cr3 {_hex(d.cr3)} (page tables at {_hex(d.page_table_base)}"
        + (f", PCID {d.pcid}" if d.pcid is not None else "")
        + ")",
        f"  cr4 {_hex(d.cr4)} [{' '.join(d.cr4_flags)}]",
        f"  efer {_hex(d.efer)} [{' '.join(d.efer_flags)}]",
        f"  fs_base {_hex(d.fs_base)}  gs_base {_hex(d.gs_base)}  "
        f"kernel_gs {_hex(d.kernel_gs_base)}",
        f"  syscall entry (lstar) {_hex(d.lstar)}  cstar {_hex(d.cstar)}  "
        f"mask [{' '.join(d.syscall_mask_flags)}]",
    ]
    gprs = [k for k in GPRS if k in r.raw]
    for i in range(0, len(gprs), 4):
        lines.append("  " + "  ".join(f"{k:>3} {r.raw[k]:#018x}" for k in gprs[i : i + 4]))
    return "\n".join(lines)


class Regs(Plugin):
    name = "regs"
    version = "1.1"
    description = "Show a guest vCPU's registers, decoded (modes, paging, syscall MSRs)."
    requires = ("dom0", "guest-memory", "root")
    needs_domain = True
    command = True
    row = VcpuRegisters
    columns = (
        Column("vcpu", "VCPU", right=True),
        Column("mode", "MODE", lambda r: r.decoded.cpu_mode),
        Column("cpl", "CPL", lambda r: r.decoded.cpl, right=True),
        Column("rip", "RIP", lambda r: _hex(r.decoded.rip)),
        Column("cr3", "CR3", lambda r: _hex(r.decoded.cr3)),
    )
    options = {"vcpu": Option("vCPU number or 'all' (default 0)", vcpu_choice, 0, "N|all")}
    examples = """  xenvmi regs xvm-pv             vCPU 0's decoded state (works for PV guests too)
  xenvmi regs xvm-hvm --vcpu all --json
  xenvmi regs /root/hvm.vmcore   the registers saved in a vmcore
"""

    @staticmethod
    def collect(guest, vcpu: int | None = 0) -> GuestView[VcpuRegisters]:
        return guest.registers(vcpu)

    def run(self, ctx: Context):
        vcpu = ctx.option("vcpu")
        return ctx.adopt(self.collect(ctx.guest(), vcpu))

    @classmethod
    def render_text(cls, rows):
        return "\n\n".join(registers_text(r) for r in rows)
