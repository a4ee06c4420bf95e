"""Decode a 64-bit x86 vCPU's control state from raw register values.

Input is a plain dict of register values as Xen's ``struct hvm_hw_cpu`` (public/arch-x86/
hvm/save.h) or LibVMI name them (rip, cr0, msr_efer, cs_sel, cs_arbytes, shadow_gs, ...);
names are case-insensitive and common aliases are accepted. Output is a frozen dataclass
with flag names, CPL, paging mode and the syscall MSRs split out, for display and for
checks such as "is this vCPU in a 4-level long-mode kernel". Missing or malformed values
give None, never an exception: the input comes from a possibly hostile guest.

Bit positions: Intel SDM vol. 3A (Dec 2023) 2.3 (RFLAGS), 2.5 (CR0, CR3, CR4), 2.2.1 and
table 2-1 (EFER), 5.8.8 (STAR/LSTAR/CSTAR/FMASK); AMD APM vol. 2 3.1.7 (EFER: SVME,
LMSLE, FFXSR, TCE).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xenvmi.guest.bits import bits, lookup, lowered, named_bits

RFLAGS_BITS = {
    0: "CF",
    2: "PF",
    4: "AF",
    6: "ZF",
    7: "SF",
    8: "TF",
    9: "IF",
    10: "DF",
    11: "OF",
    14: "NT",
    16: "RF",
    17: "VM",
    18: "AC",
    19: "VIF",
    20: "VIP",
    21: "ID",
}  # IOPL is the 2-bit field 12-13 (X86Regs.iopl); bit 1 is always 1
CR0_BITS = {
    0: "PE",
    1: "MP",
    2: "EM",
    3: "TS",
    4: "ET",
    5: "NE",
    16: "WP",
    18: "AM",
    29: "NW",
    30: "CD",
    31: "PG",
}
CR4_BITS = {
    0: "VME",
    1: "PVI",
    2: "TSD",
    3: "DE",
    4: "PSE",
    5: "PAE",
    6: "MCE",
    7: "PGE",
    8: "PCE",
    9: "OSFXSR",
    10: "OSXMMEXCPT",
    11: "UMIP",
    12: "LA57",
    13: "VMXE",
    14: "SMXE",
    16: "FSGSBASE",
    17: "PCIDE",
    18: "OSXSAVE",
    19: "KL",
    20: "SMEP",
    21: "SMAP",
    22: "PKE",
    23: "CET",
    24: "PKS",
    25: "UINTR",
    28: "LAM_SUP",
}
EFER_BITS = {
    0: "SCE",
    8: "LME",
    10: "LMA",
    11: "NXE",
    12: "SVME",
    13: "LMSLE",
    14: "FFXSR",
    15: "TCE",
}

# Aliases, first wins: hvm_hw_cpu names, LibVMI names (upper-cased there), PV-ish names.
_ALIASES = {
    "rip": ("rip", "pc"),
    "rsp": ("rsp",),
    "rflags": ("rflags", "eflags", "flags"),
    "cr0": ("cr0",),
    "cr2": ("cr2",),
    "cr3": ("cr3",),
    "cr4": ("cr4",),
    "efer": ("msr_efer", "efer", "ia32_efer"),
    "cs_sel": ("cs_sel", "cs", "cs_selector"),
    "ss_sel": ("ss_sel", "ss", "ss_selector"),
    "cs_ar": ("cs_arbytes", "cs_arb", "cs_attributes", "cs_attr", "cs_ar"),
    "ss_ar": ("ss_arbytes", "ss_arb", "ss_attributes", "ss_attr", "ss_ar"),
    "fs_base": ("fs_base", "msr_fs_base"),
    "gs_base": ("gs_base", "msr_gs_base"),
    "shadow_gs": ("shadow_gs", "kernel_gs_base", "msr_kernel_gs_base", "msr_shadow_gs_base"),
    "sysenter_cs": ("sysenter_cs", "msr_sysenter_cs", "ia32_sysenter_cs"),
    "sysenter_esp": ("sysenter_esp", "msr_sysenter_esp", "ia32_sysenter_esp"),
    "sysenter_eip": ("sysenter_eip", "msr_sysenter_eip", "ia32_sysenter_eip"),
    "star": ("msr_star", "star"),
    "lstar": ("msr_lstar", "lstar"),
    "cstar": ("msr_cstar", "cstar"),
    "fmask": ("msr_syscall_mask", "syscall_mask", "msr_fmask", "fmask", "sfmask"),
}


@dataclass(frozen=True)
class X86Regs:
    """Decoded x86-64 vCPU state; every field None when its inputs were missing."""

    rip: int | None
    rsp: int | None
    rflags: int | None
    rflags_flags: tuple[str, ...]
    iopl: int | None
    cr0: int | None
    cr0_flags: tuple[str, ...]
    cr2: int | None
    cr3: int | None
    cr4: int | None
    cr4_flags: tuple[str, ...]
    efer: int | None
    efer_flags: tuple[str, ...]
    cpl: int | None
    cpl_source: str | None  #: ss.dpl, cs.rpl, real-mode or v8086
    cpu_mode: str | None  #: real, v8086, protected, long (64-bit or compat), 64-bit
    paging_mode: str | None  #: none, 32-bit, PAE, 4-level, 5-level
    page_table_base: int | None  #: physical address of the top-level table (from CR3)
    pcid: int | None  #: CR3[11:0] when CR4.PCIDE, else None
    cs_sel: int | None
    ss_sel: int | None
    fs_base: int | None
    gs_base: int | None
    kernel_gs_base: int | None  #: the swapgs shadow (hvm_hw_cpu.shadow_gs)
    sysenter_cs: int | None
    sysenter_esp: int | None
    sysenter_eip: int | None
    star: int | None
    syscall_cs: int | None  #: STAR[47:32]; SYSCALL loads SS = this + 8
    syscall_ss: int | None
    sysret_cs32: int | None  #: STAR[63:48]; SYSRET to 32-bit code uses CS = this
    sysret_cs64: int | None  #: ... to 64-bit code uses CS = this + 16
    sysret_ss: int | None  #: ... and SS = this + 8 (RPL forced to 3 by the CPU)
    syscall_eip32: int | None  #: STAR[31:0], legacy-mode SYSCALL target
    lstar: int | None  #: 64-bit SYSCALL entry point
    cstar: int | None  #: compatibility-mode SYSCALL entry point
    syscall_mask: int | None  #: IA32_FMASK: RFLAGS bits SYSCALL clears
    syscall_mask_flags: tuple[str, ...]


def _cpl(cr0, rflags, efer, cs_sel, ss_ar) -> tuple[int | None, str | None]:
    if cr0 is not None and not cr0 & 1:
        return 0, "real-mode"
    long_mode = efer is not None and efer & (1 << 10)
    if cr0 is not None and rflags is not None and rflags & (1 << 17) and not long_mode:
        return 3, "v8086"
    if ss_ar is not None:  # SDM 5.5: CPL is SS.DPL (attr bits 5-6, Xen and VMX layouts alike)
        return (ss_ar >> 5) & 3, "ss.dpl"
    if cs_sel is not None:  # CS.RPL equals CPL except after a far call to conforming code
        return cs_sel & 3, "cs.rpl"
    return None, None


def _paging(cr0, cr4, efer) -> str | None:
    # SDM 4.1.1 table 4-1: CR0.PG, CR4.PAE, IA32_EFER.LME/LMA, CR4.LA57
    if cr0 is None:
        return None
    if not cr0 & (1 << 31):
        return "none"
    if cr4 is None:
        return None
    if not cr4 & (1 << 5):
        return "32-bit"
    if efer is None:
        return None
    if not efer & (1 << 10):
        return "PAE"
    return "5-level" if cr4 & (1 << 12) else "4-level"


def _cpu_mode(cr0, rflags, efer, cs_ar) -> str | None:
    if cr0 is None:
        return None
    if not cr0 & 1:
        return "real"
    if efer is not None and efer & (1 << 10):
        if cs_ar is None:
            return "long"
        # Xen's segment attr (hvm_hw_cpu *_arbytes): type 0-3 s 4 dpl 5-6 p 7 avl 8 l 9
        return "64-bit" if cs_ar & (1 << 9) else "compat"
    if rflags is not None and rflags & (1 << 17):
        return "v8086"
    return "protected"


def _cr3_base(cr3, paging) -> int | None:
    if cr3 is None:
        return None
    if paging == "PAE":  # SDM 4.4.1: CR3[31:5] is the PDPT's address
        return cr3 & 0xFFFF_FFE0
    if paging == "32-bit":
        return cr3 & 0xFFFF_F000
    return cr3 & 0x000F_FFFF_FFFF_F000  # 4/5-level: CR3[M-1:12], M = MAXPHYADDR <= 52


def decode_x86(regs: Mapping[str, Any]) -> X86Regs:
    """Decode raw x86-64 register values (see the module docstring for accepted names)."""
    low = lowered(regs)
    r = {key: lookup(low, names) for key, names in _ALIASES.items()}
    cr0, cr4, efer, rflags = r["cr0"], r["cr4"], r["efer"], r["rflags"]
    cpl, cpl_source = _cpl(cr0, rflags, efer, r["cs_sel"], r["ss_ar"])
    paging = _paging(cr0, cr4, efer)
    pcid = None
    if r["cr3"] is not None and cr4 is not None and cr4 & (1 << 17):
        pcid = r["cr3"] & 0xFFF
    star = r["star"]
    sysret = bits(star, 48, 16)
    syscall_cs = bits(star, 32, 16)
    return X86Regs(
        rip=r["rip"],
        rsp=r["rsp"],
        rflags=rflags,
        rflags_flags=tuple(named_bits(rflags, RFLAGS_BITS)),
        iopl=bits(rflags, 12, 2),
        cr0=cr0,
        cr0_flags=tuple(named_bits(cr0, CR0_BITS, unknown=True)),
        cr2=r["cr2"],
        cr3=r["cr3"],
        cr4=cr4,
        cr4_flags=tuple(named_bits(cr4, CR4_BITS, unknown=True)),
        efer=efer,
        efer_flags=tuple(named_bits(efer, EFER_BITS, unknown=True)),
        cpl=cpl,
        cpl_source=cpl_source,
        cpu_mode=_cpu_mode(cr0, rflags, efer, r["cs_ar"]),
        paging_mode=paging,
        page_table_base=_cr3_base(r["cr3"], paging),
        pcid=pcid,
        cs_sel=None if r["cs_sel"] is None else r["cs_sel"] & 0xFFFF,
        ss_sel=None if r["ss_sel"] is None else r["ss_sel"] & 0xFFFF,
        fs_base=r["fs_base"],
        gs_base=r["gs_base"],
        kernel_gs_base=r["shadow_gs"],
        sysenter_cs=r["sysenter_cs"],
        sysenter_esp=r["sysenter_esp"],
        sysenter_eip=r["sysenter_eip"],
        star=star,
        syscall_cs=syscall_cs,
        syscall_ss=None if syscall_cs is None else (syscall_cs + 8) & 0xFFFF,
        sysret_cs32=sysret,
        sysret_cs64=None if sysret is None else (sysret + 16) & 0xFFFF,
        sysret_ss=None if sysret is None else (sysret + 8) & 0xFFFF,
        syscall_eip32=bits(star, 0, 32),
        lstar=r["lstar"],
        cstar=r["cstar"],
        syscall_mask=r["fmask"],
        syscall_mask_flags=tuple(named_bits(r["fmask"], RFLAGS_BITS)),
    )
