"""XEN_SYSCTL_* commands per Xen release (xen/include/public/sysctl.h, ``struct xen_sysctl``).

System control is dom0's host-wide interface (physinfo, console ring, xentrace buffers,
domain lists). Static data with the interface version callers must send; tests check each
release against its headers in tests/unit/data/xen-headers/. ``OPS``/``TABLE`` are 4.17's;
``TABLES`` holds every release's.
"""

from xenvmi.abi.subops import REMOVED, SubOp, SubOpTable

#: XEN_SYSCTL_INTERFACE_VERSION in 4.17.
INTERFACE_VERSION = 0x00000015

OPS: tuple[SubOp, ...] = (
    SubOp(1, "readconsole"),
    SubOp(2, "tbuf_op", note="xentrace buffers"),
    SubOp(3, "physinfo"),
    SubOp(4, "sched_id"),
    SubOp(5, "perfc_op"),
    SubOp(6, "getdomaininfolist"),
    SubOp(7, "debug_keys"),
    SubOp(8, "getcpuinfo"),
    SubOp(9, "availheap"),
    SubOp(10, "get_pmstat"),
    SubOp(11, "cpu_hotplug"),
    SubOp(12, "pm_op"),
    SubOp(14, "page_offline_op"),
    SubOp(15, "lockprof_op"),
    SubOp(16, "cputopoinfo"),
    SubOp(17, "numainfo"),
    SubOp(18, "cpupool_op"),
    SubOp(19, "scheduler_op"),
    SubOp(20, "coverage_op"),
    SubOp(21, "psr_cmt_op"),
    SubOp(22, "pcitopoinfo"),
    SubOp(23, "psr_alloc"),
    SubOp(24, "tmem_op", REMOVED, "tmem removed in 4.13"),
    SubOp(25, "get_cpu_levelling_caps"),
    SubOp(26, "get_cpu_featureset"),
    SubOp(27, "livepatch_op"),
    SubOp(28, "set_parameter", REMOVED),
    SubOp(29, "get_cpu_policy", note="x86 only"),
)

#: Commands added after 4.17, keyed by the release whose header has them first.
ADDED: dict[str, tuple[SubOp, ...]] = {
    "4.18": (SubOp(30, "dt_overlay", note="Arm only (its struct is under __arm__/__aarch64__)"),),
}
#: XEN_SYSCTL_INTERFACE_VERSION per release (unchanged from 4.17 to 4.20).
INTERFACE_VERSIONS = dict.fromkeys(("4.17", "4.18", "4.19", "4.20"), INTERFACE_VERSION)

TABLE = SubOpTable("sysctl", "XEN_SYSCTL_", OPS, interface_version=INTERFACE_VERSION)
TABLES = {
    "4.17": TABLE,
    **{
        r: TABLE.for_release(r, OPS + ADDED["4.18"], INTERFACE_VERSIONS[r])
        for r in ("4.18", "4.19", "4.20")
    },
}
lookup = TABLE.lookup
name = TABLE.name
