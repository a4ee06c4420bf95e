"""XEN_DOMCTL_* commands per Xen release (xen/include/public/domctl.h, ``struct xen_domctl``).

Domain control is how dom0 tools create, pause and inspect domains; a tracer decoding a
domctl hypercall needs these names and the interface version the caller must send
(Xen rejects any other version with -EACCES), and both move between releases. Static
data; tests check each release against its headers in tests/unit/data/xen-headers/.
``OPS``/``TABLE``/``INTERFACE_VERSION`` are 4.17's; ``TABLES`` holds every release's.
"""

from xenvmi.abi.subops import INTERNAL, REMOVED, SubOp, SubOpTable

#: XEN_DOMCTL_INTERFACE_VERSION in 4.17.
INTERFACE_VERSION = 0x00000015

_OBS = "obsolete, kept in the header"

OPS: tuple[SubOp, ...] = (
    SubOp(1, "createdomain"),
    SubOp(2, "destroydomain"),
    SubOp(3, "pausedomain"),
    SubOp(4, "unpausedomain"),
    SubOp(5, "getdomaininfo"),
    SubOp(6, "getmemlist", REMOVED),
    SubOp(7, "getpageframeinfo", REMOVED, "use getpageframeinfo3"),
    SubOp(8, "getpageframeinfo2", REMOVED, "use getpageframeinfo3"),
    SubOp(9, "setvcpuaffinity"),
    SubOp(10, "shadow_op"),
    SubOp(11, "max_mem"),
    SubOp(12, "setvcpucontext"),
    SubOp(13, "getvcpucontext"),
    SubOp(14, "getvcpuinfo"),
    SubOp(15, "max_vcpus"),
    SubOp(16, "scheduler_op"),
    SubOp(17, "setdomainhandle"),
    SubOp(18, "setdebugging"),
    SubOp(19, "irq_permission"),
    SubOp(20, "iomem_permission"),
    SubOp(21, "ioport_permission"),
    SubOp(22, "hypercall_init"),
    SubOp(23, "arch_setup", REMOVED, "IA64 only"),
    SubOp(23, "soft_reset_cont", INTERNAL, "continuation of soft_reset, inside Xen only"),
    SubOp(24, "settimeoffset"),
    SubOp(25, "getvcpuaffinity"),
    SubOp(26, "real_mode_area", note=_OBS + " (PPC only)"),
    SubOp(27, "resumedomain"),
    SubOp(28, "sendtrigger"),
    SubOp(29, "subscribe"),
    SubOp(33, "gethvmcontext"),
    SubOp(34, "sethvmcontext"),
    SubOp(35, "set_address_size"),
    SubOp(36, "get_address_size"),
    SubOp(37, "assign_device"),
    SubOp(38, "bind_pt_irq"),
    SubOp(39, "memory_mapping"),
    SubOp(40, "ioport_mapping"),
    SubOp(41, "pin_mem_cacheattr", REMOVED, "use dm_op"),
    SubOp(42, "set_ext_vcpucontext"),
    SubOp(43, "get_ext_vcpucontext"),
    SubOp(44, "set_opt_feature", note=_OBS + " (IA64 only)"),
    SubOp(45, "test_assign_device"),
    SubOp(46, "set_target"),
    SubOp(47, "deassign_device"),
    SubOp(48, "unbind_pt_irq"),
    SubOp(49, "set_cpuid", REMOVED, "use set_cpu_policy"),
    SubOp(50, "get_device_group"),
    SubOp(51, "set_machine_address_size", REMOVED),
    SubOp(52, "get_machine_address_size", REMOVED),
    SubOp(53, "suppress_spurious_page_faults", REMOVED),
    SubOp(54, "debug_op"),
    SubOp(55, "gethvmcontext_partial"),
    SubOp(56, "vm_event_op"),
    SubOp(57, "mem_sharing_op"),
    SubOp(58, "disable_migrate", REMOVED),
    SubOp(59, "gettscinfo"),
    SubOp(60, "settscinfo"),
    SubOp(61, "getpageframeinfo3"),
    SubOp(62, "setvcpuextstate"),
    SubOp(63, "getvcpuextstate"),
    SubOp(64, "set_access_required"),
    SubOp(65, "audit_p2m"),
    SubOp(66, "set_virq_handler"),
    SubOp(67, "set_broken_page_p2m"),
    SubOp(68, "setnodeaffinity"),
    SubOp(69, "getnodeaffinity"),
    SubOp(70, "set_max_evtchn", REMOVED, "moved into createdomain"),
    SubOp(71, "cacheflush"),
    SubOp(72, "get_vcpu_msrs"),
    SubOp(73, "set_vcpu_msrs"),
    SubOp(74, "setvnumainfo"),
    SubOp(75, "psr_cmt_op"),
    SubOp(77, "monitor_op"),
    SubOp(78, "psr_alloc"),
    SubOp(79, "soft_reset"),
    SubOp(80, "set_gnttab_limits", REMOVED, "moved into createdomain"),
    SubOp(81, "vuart_op"),
    SubOp(82, "get_cpu_policy"),
    SubOp(83, "set_cpu_policy"),
    SubOp(84, "vmtrace_op"),
    SubOp(85, "get_paging_mempool_size"),
    SubOp(86, "set_paging_mempool_size"),
    SubOp(1000, "gdbsx_guestmemio"),
    SubOp(1001, "gdbsx_pausevcpu"),
    SubOp(1002, "gdbsx_unpausevcpu"),
    SubOp(1003, "gdbsx_domstatus"),
)

#: Commands added after 4.17, keyed by the release whose header has them first.
ADDED: dict[str, tuple[SubOp, ...]] = {
    "4.19": (SubOp(87, "dt_overlay", note="Arm only (its struct is under __arm__/__aarch64__)"),),
    "4.20": (
        SubOp(88, "gsi_permission"),
        SubOp(89, "set_llc_colors"),
    ),
}
#: XEN_DOMCTL_INTERFACE_VERSION per release.
INTERFACE_VERSIONS = {
    "4.17": INTERFACE_VERSION,
    "4.18": 0x00000016,
    "4.19": 0x00000017,
    "4.20": 0x00000017,
}


def _ops(release: str) -> tuple[SubOp, ...]:
    """4.17's commands plus those added up to ``release``, in number order."""

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    added = tuple(op for r, ops in ADDED.items() if key(r) <= key(release) for op in ops)
    return tuple(sorted(OPS + added, key=lambda op: op.number))


TABLE = SubOpTable("domctl", "XEN_DOMCTL_", OPS, interface_version=INTERFACE_VERSION)
TABLES = {
    "4.17": TABLE,
    **{r: TABLE.for_release(r, _ops(r), INTERFACE_VERSIONS[r]) for r in ("4.18", "4.19", "4.20")},
}
lookup = TABLE.lookup
name = TABLE.name
