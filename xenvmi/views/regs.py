"""regs: a guest vCPU's registers, decoded (any guest type, Linux or not, and dumps)."""

from __future__ import annotations

from xenvmi.model.guest import Arm64Regs, GuestView, VcpuRegisters
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


def _arm64_text(r: VcpuRegisters, d: Arm64Regs) -> str:
    """An arm64 vCPU: exception level and mode, PSTATE's flags, the translation regime
    (TCR's VA sizes and granules, TTBR bases), then x0-x30."""
    gran = lambda g: "?" if g is None else f"{g >> 10}K"  # noqa: E731
    lines = [
        f"{r.domain} vCPU {r.vcpu}: {d.execution_state or '?'} {d.mode or '?'}, "
        f"EL {'?' if d.el is None else d.el}, MMU "
        + ("?" if d.mmu_enabled is None else "on" if d.mmu_enabled else "off"),
        f"  pc {_hex(d.pc)}  sp {_hex(d.sp)}  pstate {_hex(d.pstate)} [{' '.join(d.pstate_flags)}]",
        f"  sctlr {_hex(d.sctlr)} [{' '.join(d.sctlr_flags)}]",
        f"  tcr {_hex(d.tcr)} (VA bits {d.va_bits_ttbr0 or '?'}/{d.va_bits_ttbr1 or '?'}, "
        f"granule {gran(d.granule_ttbr0)}/{gran(d.granule_ttbr1)}, PA bits {d.pa_bits or '?'})",
        f"  ttbr0 {_hex(d.ttbr0)} (tables at {_hex(d.ttbr0_base)})  "
        f"ttbr1 {_hex(d.ttbr1)} (tables at {_hex(d.ttbr1_base)})",
        f"  vbar {_hex(d.vbar)}  elr_el1 {_hex(d.elr_el1)}  esr_el1 {_hex(d.esr_el1)}  "
        f"far_el1 {_hex(d.far_el1)}",
    ]
    gprs = [k for k in (f"x{n}" for n in range(31)) if k in r.raw]
    for i in range(0, len(gprs), 4):
        lines.append("  " + "  ".join(f"{k:>3} {r.raw[k]:#018x}" for k in gprs[i : i + 4]))
    return "\n".join(lines)


def _mode(r: VcpuRegisters) -> str | None:
    d = r.decoded
    return d.mode if isinstance(d, Arm64Regs) else d.cpu_mode


def _cpl(r: VcpuRegisters) -> int | None:
    """x86's CPL, arm64's exception level."""
    d = r.decoded
    return d.el if isinstance(d, Arm64Regs) else d.cpl


def _pc(r: VcpuRegisters) -> str:
    d = r.decoded
    return _hex(d.pc if isinstance(d, Arm64Regs) else d.rip)


def _tables(r: VcpuRegisters) -> str:
    """Where the page tables are: CR3, or on arm64 TTBR1 (the kernel's half)."""
    d = r.decoded
    return _hex(d.ttbr1 if isinstance(d, Arm64Regs) else d.cr3)


def registers_text(r: VcpuRegisters) -> str:
    """One vCPU: modes and privilege, paging, the control registers with their flags
    named, the syscall MSRs, then the general-purpose registers."""
    d = r.decoded
    if isinstance(d, Arm64Regs):
        return _arm64_text(r, d)
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
        Column("mode", "MODE", _mode),
        Column("cpl", "CPL", _cpl, right=True),  # arm64: the exception level
        Column("rip", "RIP", _pc),  # arm64: pc
        Column("cr3", "CR3", _tables),  # arm64: ttbr1
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
