"""Xen on Arm's vCPU context (public/arch-arm.h) and which architecture a hypervisor runs.

On an Arm host every domain is an Arm guest (Xen calls them PVH): the native backend asks
the hypervisor for its capabilities (``XENVER_capabilities``, e.g. "xen-3.0-aarch64
xen-3.0-armv7l") instead of looking at the host running xenvmi. An arm64 vCPU's state
comes from ``xc_vcpu_getcontext`` as ``struct vcpu_guest_context``: the core registers
(``vcpu_guest_core_regs``: x0-x30, pc64 = ELR_EL2, cpsr = SPSR_EL2, the EL1 banked
registers) and SCTLR, TCR (``ttbcr``) and both TTBRs. The layout is copied from Debian
12's libxen-dev (Xen 4.17) /usr/include/xen/arch-arm.h; tests/unit/test_native_arm.py
compiles a C program against that header to check every offset. Guest RAM starts at
GUEST_RAM0_BASE (1 GiB), as QEMU virt's does.
"""

from __future__ import annotations

import ctypes

from xenvmi.errors import Unavailable

u32, u64 = ctypes.c_uint32, ctypes.c_uint64

#: arch-arm.h: the guest physical memory map's first RAM bank (3 GiB at 1 GiB).
GUEST_RAM0_BASE = 0x4000_0000
GUEST_RAM0_SIZE = 0xC000_0000
VGCF_online = 1 << 0
#: public/version.h XENVER_capabilities: a xen_capabilities_info_t (char[1024]).
XENVER_CAPABILITIES = 3
CAPABILITIES_SIZE = 1024

#: vcpu_guest_core_regs' 64-bit names, in declaration order (each __DECL_REG is a u64).
CORE_REGS = (*(f"x{n}" for n in range(31)), "pc64", "cpsr", "spsr_el1")


class VcpuGuestCoreRegs(ctypes.Structure):
    _fields_ = [
        *((name, u64) for name in CORE_REGS),
        ("spsr_fiq", u32),
        ("spsr_irq", u32),
        ("spsr_und", u32),
        ("spsr_abt", u32),
        ("sp_el0", u64),
        ("sp_el1", u64),
        ("elr_el1", u64),
    ]


class VcpuGuestContextArm(ctypes.Structure):
    _fields_ = [
        ("flags", u32),
        ("user_regs", VcpuGuestCoreRegs),
        ("sctlr", u64),
        ("ttbcr", u64),
        ("ttbr0", u64),
        ("ttbr1", u64),
    ]


def arm64_registers(ctx: VcpuGuestContextArm) -> dict[str, int]:
    """An arm64 vCPU's registers under Xen's names (what regs_arm64 decodes), plus
    ``sp``: the stack pointer in use by CPSR's mode (SP_EL1 in EL1h, else SP_EL0), which
    an ELF core's NT_PRSTATUS holds."""
    regs = ctx.user_regs
    out = {n: int(getattr(regs, n)) for n in CORE_REGS}
    for name in ("sp_el0", "sp_el1", "elr_el1"):
        out[name] = int(getattr(regs, name))
    for name in ("sctlr", "ttbcr", "ttbr0", "ttbr1"):
        out[name] = int(getattr(ctx, name))
    mode = out["cpsr"] & 0x1F
    out["sp"] = out["sp_el1"] if mode in (0b00101, 0b01001) else out["sp_el0"]
    return out


def guest_arch(capabilities: str) -> str:
    """The architecture of a hypervisor's guests from its capabilities string: "x86_64"
    ("xen-3.0-x86_64 hvm-3.0-x86_32 ...") or "aarch64" ("xen-3.0-aarch64 ..."); an
    arm32-only or unknown hypervisor is Unavailable."""
    tokens = capabilities.split()
    for token in tokens:
        if token.endswith("-aarch64"):
            return "aarch64"
        if token.endswith("-x86_64"):
            return "x86_64"
    raise Unavailable(f"a hypervisor for {' '.join(tokens)[:80] or 'nothing'}: not x86-64 or arm64")


def ram_top(max_address: int, memsize: int) -> int:
    """Where an Arm guest's RAM probably ends: its first bank starts at 1 GiB, and the
    highest frame Xen mapped may be far above it (the second bank, at 8 GiB)."""
    if memsize <= GUEST_RAM0_SIZE:
        return min(max_address, (GUEST_RAM0_BASE + memsize + (64 << 20)) & ~((1 << 20) - 1))
    return max_address
