"""Decode an arm64 vCPU's system state from raw register values.

Input names follow Xen's ``struct vcpu_guest_context`` / ``vcpu_guest_core_regs``
(public/arch-arm.h: pc64, cpsr, sp_el0, sp_el1, elr_el1, spsr_el1, sctlr, ttbcr, ttbr0,
ttbr1) or the architectural names (pc, pstate, sctlr_el1, tcr_el1, ttbr0_el1, vbar_el1...),
case-insensitively. Missing or malformed values give None, never an exception.

Bit positions: Arm ARM DDI 0487J.a: C5.2.18 SPSR_EL1 / D1.4 PSTATE (M, DAIF, NZCV, PAN,
...), D19.2.118 SCTLR_EL1, D19.2.139 TCR_EL1, D19.2.152/155 TTBR0_EL1/TTBR1_EL1
(ASID 63:48, BADDR 47:1, CnP 0), D19.2.160 VBAR_EL1 (bits 10:0 RES0); Linux's
arch/arm64/tools/sysreg agrees field for field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xenvmi.guest.bits import bits, lookup, lowered, named_bits

# SPSR/PSTATE, AArch64 state (M[4] == 0)
PSTATE_BITS = {
    6: "F",
    7: "I",
    8: "A",
    9: "D",
    12: "SSBS",
    13: "ALLINT",
    20: "IL",
    21: "SS",
    22: "PAN",
    23: "UAO",
    24: "DIT",
    25: "TCO",
    28: "V",
    29: "C",
    30: "Z",
    31: "N",
}
# SPSR, AArch32 state (M[4] == 1): E is endianness, T Thumb, Q saturation, J Jazelle
PSTATE32_BITS = {
    5: "T",
    6: "F",
    7: "I",
    8: "A",
    9: "E",
    20: "IL",
    21: "SS",
    22: "PAN",
    23: "SSBS",
    24: "J",
    27: "Q",
    28: "V",
    29: "C",
    30: "Z",
    31: "N",
}
AARCH32_MODES = {
    0x10: ("usr", 0),
    0x11: ("fiq", 1),
    0x12: ("irq", 1),
    0x13: ("svc", 1),
    0x16: ("mon", 3),
    0x17: ("abt", 1),
    0x1A: ("hyp", 2),
    0x1B: ("und", 1),
    0x1F: ("sys", 1),
}
SCTLR_EL1_BITS = {
    0: "M",
    1: "A",
    2: "C",
    3: "SA",
    4: "SA0",
    5: "CP15BEN",
    6: "nAA",
    7: "ITD",
    8: "SED",
    9: "UMA",
    10: "EnRCTX",
    11: "EOS",
    12: "I",
    13: "EnDB",
    14: "DZE",
    15: "UCT",
    16: "nTWI",
    18: "nTWE",
    19: "WXN",
    20: "TSCXT",
    21: "IESB",
    22: "EIS",
    23: "SPAN",
    24: "E0E",
    25: "EE",
    26: "UCI",
    27: "EnDA",
    28: "nTLSMD",
    29: "LSMAOE",
    30: "EnIB",
    31: "EnIA",
    32: "CMOW",
    33: "MSCEn",
    35: "BT0",
    36: "BT1",
    37: "ITFSB",
    42: "ATA0",
    43: "ATA",
    44: "DSSBS",
    45: "TWEDEn",
    50: "TMT0",
    51: "TMT",
    52: "TME0",
    53: "TME",
    54: "EnASR",
    55: "EnAS0",
    56: "EnALS",
    57: "EPAN",
    60: "EnTP2",
    61: "NMI",
    62: "SPINTMASK",
    63: "TIDCP",
}  # 38-41 are the 2-bit TCF0/TCF fields and 46-49 TWEDEL: not single flags
TCR_EL1_BITS = {
    7: "EPD0",
    22: "A1",
    23: "EPD1",
    36: "AS",
    37: "TBI0",
    38: "TBI1",
    39: "HA",
    40: "HD",
    41: "HPD0",
    42: "HPD1",
    43: "HWU059",
    44: "HWU060",
    45: "HWU061",
    46: "HWU062",
    47: "HWU159",
    48: "HWU160",
    49: "HWU161",
    50: "HWU162",
    51: "TBID0",
    52: "TBID1",
    53: "NFD0",
    54: "NFD1",
    55: "E0PD0",
    56: "E0PD1",
    57: "TCMA0",
    58: "TCMA1",
    59: "DS",
    60: "MTX0",
    61: "MTX1",
}
TG0_GRANULE = {0: 4096, 1: 65536, 2: 16384}  # TCR_EL1.TG0, 3 reserved
TG1_GRANULE = {1: 16384, 2: 4096, 3: 65536}  # TCR_EL1.TG1, 0 reserved
IPS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52, 7: 56}  # 7: FEAT_D128

_ALIASES = {
    "pc": ("pc", "pc64", "elr_el2"),
    "pstate": ("pstate", "cpsr", "spsr_el2"),
    "sp_el0": ("sp_el0",),
    "sp_el1": ("sp_el1",),
    "elr_el1": ("elr_el1",),
    "spsr_el1": ("spsr_el1",),
    "esr_el1": ("esr_el1",),
    "far_el1": ("far_el1",),
    "sctlr": ("sctlr_el1", "sctlr"),
    "tcr": ("tcr_el1", "ttbcr", "tcr"),
    "ttbr0": ("ttbr0_el1", "ttbr0"),
    "ttbr1": ("ttbr1_el1", "ttbr1"),
    "vbar": ("vbar_el1", "vbar"),
}


@dataclass(frozen=True)
class Arm64Regs:
    """Decoded arm64 vCPU state; every field None/() when its inputs were missing."""

    pc: int | None
    sp: int | None  #: the stack pointer in use (SP_EL0 or SP_EL1)
    sp_el0: int | None
    sp_el1: int | None
    pstate: int | None
    execution_state: str | None  #: aarch64 or aarch32 (PSTATE.M[4])
    el: int | None
    sp_select: str | None  #: SP_EL0 ("t" modes) or SP_ELx ("h" modes)
    mode: str | None  #: EL1h, EL0t, ... or an AArch32 mode (svc, usr, ...)
    nzcv: tuple[str, ...]  #: condition flags set, N Z C V order
    daif: tuple[str, ...]  #: exceptions masked, D A I F order
    pstate_flags: tuple[str, ...]  #: every named PSTATE bit set
    sctlr: int | None
    sctlr_flags: tuple[str, ...]
    mmu_enabled: bool | None  #: SCTLR_EL1.M
    tcr: int | None
    tcr_flags: tuple[str, ...]
    t0sz: int | None
    t1sz: int | None
    va_bits_ttbr0: int | None  #: 64 - T0SZ: size of the low (user) range
    va_bits_ttbr1: int | None  #: 64 - T1SZ: size of the high (kernel) range
    granule_ttbr0: int | None  #: translation granule in bytes (TG0)
    granule_ttbr1: int | None  #: ... (TG1, encoded differently from TG0)
    ips: int | None
    pa_bits: int | None  #: intermediate physical address size from IPS
    ttbr0: int | None
    ttbr0_asid: int | None
    ttbr0_base: int | None
    ttbr1: int | None
    ttbr1_asid: int | None
    ttbr1_base: int | None
    asid: int | None  #: TTBR1's ASID if TCR.A1 else TTBR0's; 16 bits if TCR.AS
    vbar: int | None  #: exception vector base (VBAR_EL1 with RES0 bits cleared)
    elr_el1: int | None
    spsr_el1: int | None
    esr_el1: int | None
    esr_ec: int | None  #: ESR_EL1.EC, bits 31:26
    far_el1: int | None


def _pstate(pstate, sp_el0, sp_el1):
    """(state, el, sp_select, mode, sp, named bits) from a PSTATE/SPSR value."""
    if pstate is None:
        return None, None, None, None, None, {}
    m = pstate & 0x1F
    if m & 0x10:
        name, el = AARCH32_MODES.get(m, (f"mode{m:#x}", None))
        return "aarch32", el, None, name, None, PSTATE32_BITS
    el, handler = (m >> 2) & 3, m & 1
    if m & 2:  # M[1] is RES0 in AArch64 state: an illegal return value
        return "aarch64", el, None, f"illegal{m:#x}", None, PSTATE_BITS
    sp = sp_el0 if handler == 0 or el == 0 else (sp_el1 if el == 1 else None)
    return (
        "aarch64",
        el,
        "SP_ELx" if handler else "SP_EL0",
        f"EL{el}{'h' if handler else 't'}",
        sp,
        PSTATE_BITS,
    )


def _ttbr_base(ttbr, pa_bits) -> int | None:
    if ttbr is None:
        return None
    if pa_bits == 52:  # FEAT_LPA/LPA2: BADDR[51:48] is held in TTBR bits 5:2
        return (ttbr & 0x0000_FFFF_FFFF_FFC0) | (((ttbr >> 2) & 0xF) << 48)
    return ttbr & 0x0000_FFFF_FFFF_FFFE  # BADDR, bits 47:1 (bit 0 is CnP)


def decode_arm64(regs: Mapping[str, Any]) -> Arm64Regs:
    """Decode raw arm64 register values (see the module docstring for accepted names)."""
    low = lowered(regs)
    r = {key: lookup(low, names) for key, names in _ALIASES.items()}
    pstate, sctlr, tcr = r["pstate"], r["sctlr"], r["tcr"]
    state, el, sp_select, mode, sp, table = _pstate(pstate, r["sp_el0"], r["sp_el1"])
    if sp is None:  # an ELF core's NT_PRSTATUS has only the SP in use, as "sp"
        sp = lookup(low, ("sp",))
    flags = named_bits(pstate, table)
    t0sz, t1sz, ips = bits(tcr, 0, 6), bits(tcr, 16, 6), bits(tcr, 32, 3)
    pa_bits = None if ips is None else IPS_BITS[ips]
    ttbr0, ttbr1 = r["ttbr0"], r["ttbr1"]
    asid = None
    if tcr is not None:
        chosen = ttbr1 if tcr & (1 << 22) else ttbr0
        width = 16 if tcr & (1 << 36) else 8
        asid = bits(chosen, 48, width)
    return Arm64Regs(
        pc=r["pc"],
        sp=sp,
        sp_el0=r["sp_el0"],
        sp_el1=r["sp_el1"],
        pstate=pstate,
        execution_state=state,
        el=el,
        sp_select=sp_select,
        mode=mode,
        nzcv=tuple(f for f in ("N", "Z", "C", "V") if f in flags),
        daif=tuple(f for f in ("D", "A", "I", "F") if f in flags),
        pstate_flags=tuple(flags),
        sctlr=sctlr,
        sctlr_flags=tuple(named_bits(sctlr, SCTLR_EL1_BITS)),
        mmu_enabled=None if sctlr is None else bool(sctlr & 1),
        tcr=tcr,
        tcr_flags=tuple(named_bits(tcr, TCR_EL1_BITS)),
        t0sz=t0sz,
        t1sz=t1sz,
        va_bits_ttbr0=None if t0sz is None else 64 - t0sz,
        va_bits_ttbr1=None if t1sz is None else 64 - t1sz,
        granule_ttbr0=None if tcr is None else TG0_GRANULE.get(bits(tcr, 14, 2)),
        granule_ttbr1=None if tcr is None else TG1_GRANULE.get(bits(tcr, 30, 2)),
        ips=ips,
        pa_bits=pa_bits,
        ttbr0=ttbr0,
        ttbr0_asid=bits(ttbr0, 48, 16),
        ttbr0_base=_ttbr_base(ttbr0, pa_bits),
        ttbr1=ttbr1,
        ttbr1_asid=bits(ttbr1, 48, 16),
        ttbr1_base=_ttbr_base(ttbr1, pa_bits),
        asid=asid,
        vbar=None if r["vbar"] is None else r["vbar"] & ~0x7FF,
        elr_el1=r["elr_el1"],
        spsr_el1=r["spsr_el1"],
        esr_el1=r["esr_el1"],
        esr_ec=bits(r["esr_el1"], 26, 6),
        far_el1=r["far_el1"],
    )
