"""Xen hypercall numbers, per-architecture availability and calling conventions.

Numbers and names are ``__HYPERVISOR_*`` of xen/include/public/xen.h, the same in 4.17 and
4.20 (tests compare them with both releases' headers in tests/unit/data/xen-headers/).
Availability follows the dispatch table at the end of
xen/include/hypercall-defs.c, read from github.com/xen-project/xen at tag RELEASE-4.17.7
(commit 9373a593c5a6ef57db1302eb1dca58cc3eb51c07; the table is unchanged since
RELEASE-4.17.0), columns pv64, hvm64 (HVM and PVH) and arm (arm64 and arm32 guests alike),
with the Kconfig defaults of xen/common/Kconfig and xen/arch/*/Kconfig at that tag.
At RELEASE-4.18.6, 4.19.6 and 4.20.4 the table's columns are the same; of the Kconfig
defaults only XENOPROF changed (default n, EXPERT, from 4.18), hence HYPERCALLS_BY_RELEASE.
Written out as data because a dom0 in the field may lack libxen-dev.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from xenvmi.abi import domctl, hvm_op, memory_op, sysctl
from xenvmi.abi._parse import split_input
from xenvmi.errors import NotFoundError, UsageError

#: Guest kinds with their own column: x86_64 PV, x86_64 HVM/PVH, arm64, arm32.
ARCHES = ("x86_64-pv", "x86_64-hvm", "arm64", "arm32")
#: What ``--arch`` accepts, and the guest kinds each one covers.
ARCH_GROUPS = {"x86_64": ("x86_64-pv", "x86_64-hvm"), "arm64": ("arm64",), "arm32": ("arm32",)}

# Availability values.
YES = "yes"  #: handled in a default build
NO = "no"  #: not in this column of the dispatch table: -ENOSYS
ENOSYS = "enosys"  #: dispatched, but the handler always returns -ENOSYS
OPTIONAL = "optional"  #: only in a build with a non-default option (see ``kconfig``)
STATES = (YES, NO, ENOSYS, OPTIONAL)


@dataclass(frozen=True)
class Hypercall:
    """One hypercall number and where a 64-bit (or arm32) guest can use it."""

    number: int
    name: str  #: as in __HYPERVISOR_<name>
    pv64: str  #: availability for x86_64 PV guests
    hvm64: str  #: ... x86_64 HVM and PVH guests
    arm: str  #: ... arm64 and arm32 guests
    x86_name: str | None = None  #: x86's name for an arch_N slot (mca, paging_domctl_cont)
    kconfig: str | None = None  #: build option the handler depends on
    note: str = ""

    def availability(self, arch: str) -> str:
        """Availability for one of ARCHES."""
        if arch not in ARCHES:
            raise UsageError(f"hypercall: unknown guest kind {arch!r} (one of {', '.join(ARCHES)})")
        return {"x86_64-pv": self.pv64, "x86_64-hvm": self.hvm64}.get(arch, self.arm)

    def display_name(self, arch: str | None = None) -> str:
        """The name a trace on ``arch`` should show (mca on x86, arch_0 on Arm)."""
        if self.x86_name and (arch is None or arch.startswith("x86")):
            return self.x86_name
        return self.name

    @property
    def interface_version(self) -> int | None:
        """The XEN_*_INTERFACE_VERSION a 4.17 caller must put in the argument (domctl,
        sysctl); other releases': xenvmi.abi.releases.get(release).interface_versions."""
        return {"domctl": domctl.INTERFACE_VERSION, "sysctl": sysctl.INTERFACE_VERSION}.get(
            self.name
        )


def _h(number: int, name: str, pv64: str, hvm64: str, arm: str, **kw) -> Hypercall:
    return Hypercall(number, name, pv64, hvm64, arm, **kw)


_PCI = "arm: do_arm_physdev_op returns -ENOSYS unless HAS_PCI, which 4.17 selects only on x86"
_DEP = "arm: deprecated; dep_* handler logs and returns -ENOSYS"

#: Every __HYPERVISOR_* number of xen.h (11 and 43-47 are not defined).
HYPERCALLS: tuple[Hypercall, ...] = (
    _h(0, "set_trap_table", YES, NO, NO),
    _h(1, "mmu_update", YES, NO, NO),
    _h(2, "set_gdt", YES, NO, NO),
    _h(3, "stack_switch", YES, NO, NO),
    _h(4, "set_callbacks", YES, NO, NO),
    _h(5, "fpu_taskswitch", YES, NO, NO),
    _h(6, "sched_op_compat", YES, NO, ENOSYS, note=_DEP),
    _h(7, "platform_op", YES, YES, YES, note="dom0 only; legacy alias dom0_op"),
    _h(8, "set_debugreg", YES, NO, NO),
    _h(9, "get_debugreg", YES, NO, NO),
    _h(10, "update_descriptor", YES, NO, NO),
    _h(12, "memory_op", YES, YES, YES, note="sub-ops XENMEM_*; cmd bits 6+ hold a continuation"),
    _h(13, "multicall", YES, YES, YES),
    _h(14, "update_va_mapping", YES, NO, NO),
    _h(15, "set_timer_op", YES, YES, NO),
    _h(16, "event_channel_op_compat", YES, NO, ENOSYS, note=_DEP),
    _h(17, "xen_version", YES, YES, YES),
    _h(18, "console_io", YES, YES, YES),
    _h(19, "physdev_op_compat", YES, NO, ENOSYS, note=_DEP),
    _h(20, "grant_table_op", YES, YES, YES, kconfig="GRANT_TABLE (default y)"),
    _h(21, "vm_assist", YES, YES, YES),
    _h(22, "update_va_mapping_otherdomain", YES, NO, NO),
    _h(23, "iret", YES, NO, NO, note="x86 only"),
    _h(24, "vcpu_op", YES, YES, YES),
    _h(25, "set_segment_base", YES, NO, NO, note="x86/64 only"),
    _h(26, "mmuext_op", YES, YES, NO),
    _h(27, "xsm_op", YES, YES, YES),
    _h(28, "nmi_op", YES, NO, NO),
    _h(29, "sched_op", YES, YES, YES),
    _h(30, "callback_op", YES, NO, NO),
    _h(31, "xenoprof_op", YES, NO, NO, kconfig="XENOPROF (default y on x86)"),
    _h(32, "event_channel_op", YES, YES, YES),
    _h(33, "physdev_op", YES, YES, ENOSYS, note=_PCI),
    _h(34, "hvm_op", YES, YES, YES, kconfig="HVM (default y)", note="sub-ops HVMOP_*"),
    _h(35, "sysctl", YES, YES, YES, note="dom0/control domain only; sub-ops XEN_SYSCTL_*"),
    _h(36, "domctl", YES, YES, YES, note="dom0/control domain only; sub-ops XEN_DOMCTL_*"),
    _h(37, "kexec_op", YES, NO, NO, kconfig="KEXEC (default y; x86 only)"),
    _h(38, "tmem_op", NO, NO, NO, note="removed (tmem dropped in 4.13); always -ENOSYS"),
    _h(39, "argo_op", OPTIONAL, OPTIONAL, OPTIONAL, kconfig="ARGO (default n, UNSUPPORTED)"),
    _h(40, "xenpmu_op", YES, YES, NO),
    _h(
        41,
        "dm_op",
        YES,
        YES,
        OPTIONAL,
        kconfig="IOREQ_SERVER (default y on x86; EXPERT, default n on Arm)",
    ),
    _h(42, "hypfs_op", YES, YES, YES, kconfig="HYPFS (default y)"),
    _h(48, "arch_0", YES, NO, NO, x86_name="mca", note="x86: machine check (xen-mca.h)"),
    _h(
        49,
        "arch_1",
        YES,
        YES,
        NO,
        x86_name="paging_domctl_cont",
        note="x86: Xen-internal continuation of a paging domctl",
    ),
    _h(50, "arch_2", NO, NO, NO),
    _h(51, "arch_3", NO, NO, NO),
    _h(52, "arch_4", NO, NO, NO),
    _h(53, "arch_5", NO, NO, NO),
    _h(54, "arch_6", NO, NO, NO),
    _h(55, "arch_7", NO, NO, NO),
)

#: From 4.18 on, xenoprof is built only on request (XENOPROF lost its default y).
_HYPERCALLS_4_18 = tuple(
    replace(h, pv64=OPTIONAL, kconfig="XENOPROF (EXPERT, default n; x86 only)")
    if h.name == "xenoprof_op"
    else h
    for h in HYPERCALLS
)
#: Per release.
HYPERCALLS_BY_RELEASE: dict[str, tuple[Hypercall, ...]] = {
    "4.17": HYPERCALLS,
    **dict.fromkeys(("4.18", "4.19", "4.20"), _HYPERCALLS_4_18),
}

BY_NUMBER: dict[int, Hypercall] = {h.number: h for h in HYPERCALLS}
BY_NAME: dict[str, Hypercall] = {h.name: h for h in HYPERCALLS}
#: Other names for a number: x86's arch_N names, and xen.h's pre-3.2.4 dom0_op.
ALIASES: dict[str, str] = {
    "mca": "arch_0",
    "paging_domctl_cont": "arch_1",
    "dom0_op": "platform_op",
}
#: Xen rejects numbers >= NR_hypercalls (64) with -ENOSYS.
NR_HYPERCALLS = 64


@dataclass(frozen=True)
class CallingConvention:
    """How a guest of one kind issues a hypercall."""

    arch: str
    instruction: str
    number_register: str
    argument_registers: tuple[str, ...]
    return_register: str
    note: str


CALLING_CONVENTIONS: dict[str, CallingConvention] = {
    "x86_64-pv": CallingConvention(
        "x86_64-pv",
        "syscall",
        "rax",
        ("rdi", "rsi", "rdx", "r10", "r8"),
        "rax",
        "from the guest kernel, via the hypercall page (call hypercall_page + 32*nr)",
    ),
    "x86_64-hvm": CallingConvention(
        "x86_64-hvm",
        "vmcall|vmmcall",
        "rax",
        ("rdi", "rsi", "rdx", "r10", "r8"),
        "rax",
        "vmcall on Intel, vmmcall on AMD; 64-bit mode (32-bit HVM uses ebx ecx edx esi edi)",
    ),
    "arm64": CallingConvention(
        "arm64",
        "hvc #0xEA1",
        "x16",
        ("x0", "x1", "x2", "x3", "x4"),
        "x0",
        "ISS must be XEN_HYPERCALL_TAG 0xEA1; clobbers x16 and used argument registers",
    ),
    "arm32": CallingConvention(
        "arm32",
        "hvc #0xEA1",
        "r12",
        ("r0", "r1", "r2", "r3", "r4"),
        "r0",
        "ISS must be XEN_HYPERCALL_TAG 0xEA1; clobbers r12 and used argument registers",
    ),
}


#: Hypercalls whose first argument (or struct field) selects a command from a table.
SUBOP_TABLES = {
    "domctl": domctl.TABLE,
    "sysctl": sysctl.TABLE,
    "memory_op": memory_op.TABLE,
    "hvm_op": hvm_op.TABLE,
}


def arches_for(arch: str | None) -> tuple[str, ...]:
    """The guest kinds an ``--arch`` value covers (all four for None)."""
    if arch is None:
        return ARCHES
    if arch in ARCH_GROUPS:
        return ARCH_GROUPS[arch]
    if arch in ARCHES:
        return (arch,)
    raise UsageError(f"hypercall: unknown arch {arch!r} (one of {', '.join(ARCH_GROUPS)})")


def lookup(number_or_name: int | str, arch: str | None = None, release: str = "4.17") -> Hypercall:
    """Find a hypercall by number (36, "0x24") or name ("domctl", "__HYPERVISOR_domctl", "mca").

    With ``arch`` an Arm arch, x86-only names of arch_N slots (mca, ...) are not found.
    Raises NotFoundError for an undefined number/name, UsageError for malformed input.
    xen.h lists the same hypercalls in every release xenvmi knows; ``release`` only names
    the one asked about in the errors.
    """
    kinds = arches_for(arch)
    number, name = split_input(number_or_name, "hypercall")
    if name is not None:
        key = name.lower()
        for prefix in ("__hypervisor_", "hypervisor_"):
            key = key[len(prefix) :] if key.startswith(prefix) else key
        if (
            key in ALIASES
            and BY_NAME[ALIASES[key]].x86_name == key
            and not any(k.startswith("x86") for k in kinds)
        ):
            raise NotFoundError(
                f"hypercall: {name!r} is an x86 name; on {arch} that slot is {ALIASES[key]}"
            )
        key = ALIASES.get(key, key)
        if key in BY_NAME:
            return BY_NAME[key]
        raise NotFoundError(
            f"hypercall: no hypercall named {name!r} in Xen {release} "
            "(see 'xenvmi hypercall --all')"
        )
    assert number is not None
    if number < 0:
        raise UsageError(f"hypercall: number {number} is negative")
    if number in BY_NUMBER:
        return BY_NUMBER[number]
    if number < NR_HYPERCALLS:
        raise NotFoundError(f"hypercall: number {number} is unused in Xen {release} (-ENOSYS)")
    raise NotFoundError(f"hypercall: number {number} is >= NR_hypercalls ({NR_HYPERCALLS})")
