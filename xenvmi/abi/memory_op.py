"""XENMEM_* commands of memory_op (hypercall 12) in Xen 4.17 (xen/include/public/memory.h).

memory_op is the busiest hypercall a tracer sees (ballooning, foreign mapping, mem_access
for VMI). The low 6 bits of its cmd are the command; the rest hold the extent a preempted
call resumes from, so decode with ``split_cmd``. Static data, checked against
/usr/include/xen/memory.h by the tests.
"""

from xenvmi.abi.subops import REMOVED, SubOp, SubOpTable

#: xen/include/xen/hypercall.h: cmd[:6] == start_extent, cmd & MEMOP_CMD_MASK == command.
MEMOP_EXTENT_SHIFT = 6
MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1

_TOOLS = "tools only (__XEN__/__XEN_TOOLS__)"

OPS: tuple[SubOp, ...] = (
    SubOp(0, "increase_reservation"),
    SubOp(1, "decrease_reservation"),
    SubOp(2, "maximum_ram_page"),
    SubOp(3, "current_reservation"),
    SubOp(4, "maximum_reservation"),
    SubOp(5, "machphys_mfn_list"),
    SubOp(6, "populate_physmap"),
    SubOp(7, "add_to_physmap"),
    SubOp(8, "translate_gpfn_list", REMOVED),
    SubOp(9, "memory_map"),
    SubOp(10, "machine_memory_map"),
    SubOp(11, "exchange", note="PV guests only"),
    SubOp(12, "machphys_mapping"),
    SubOp(13, "set_memory_map"),
    SubOp(14, "maximum_gpfn"),
    SubOp(15, "remove_from_physmap"),
    SubOp(16, "set_pod_target"),
    SubOp(17, "get_pod_target"),
    SubOp(18, "get_sharing_freed_pages", note=_TOOLS),
    SubOp(19, "get_sharing_shared_pages", note=_TOOLS),
    SubOp(20, "paging_op", note=_TOOLS + "; sub-ops XENMEM_paging_op_*"),
    SubOp(21, "access_op", note=_TOOLS + "; sub-ops XENMEM_access_op_*"),
    SubOp(22, "sharing_op", note=_TOOLS + "; sub-ops XENMEM_sharing_op_*"),
    SubOp(23, "add_to_physmap_batch", note="alias add_to_physmap_range (interface < 0x40400)"),
    SubOp(24, "claim_pages", note=_TOOLS),
    SubOp(25, "machphys_compat_mfn_list"),
    SubOp(26, "get_vnumainfo"),
    SubOp(27, "reserved_device_memory_map", note=_TOOLS),
    SubOp(28, "acquire_resource"),
)

PAGING_OPS: tuple[SubOp, ...] = (
    SubOp(0, "nominate"),
    SubOp(1, "evict"),
    SubOp(2, "prep"),
)

ACCESS_OPS: tuple[SubOp, ...] = (
    SubOp(0, "set_access"),
    SubOp(1, "get_access"),
    SubOp(2, "enable_emulate", REMOVED, "unused, number reserved"),
    SubOp(3, "disable_emulate", REMOVED, "unused, number reserved"),
    SubOp(4, "set_access_multi"),
)

SHARING_OPS: tuple[SubOp, ...] = (
    SubOp(0, "nominate_gfn"),
    SubOp(1, "nominate_gref"),
    SubOp(2, "share"),
    SubOp(3, "debug_gfn"),
    SubOp(4, "debug_mfn"),
    SubOp(5, "debug_gref"),
    SubOp(6, "add_physmap"),
    SubOp(7, "audit"),
    SubOp(8, "range_share"),
    SubOp(9, "fork"),
    SubOp(10, "fork_reset"),
)

TABLE = SubOpTable(
    "memory_op", "XENMEM_", OPS, aliases={"add_to_physmap_range": "add_to_physmap_batch"}
)
PAGING_TABLE = SubOpTable("memory_op paging_op", "XENMEM_paging_op_", PAGING_OPS)
ACCESS_TABLE = SubOpTable("memory_op access_op", "XENMEM_access_op_", ACCESS_OPS)
SHARING_TABLE = SubOpTable("memory_op sharing_op", "XENMEM_sharing_op_", SHARING_OPS)
#: Per release: 4.18 to 4.20's headers have the same commands as 4.17's.
TABLES = {"4.17": TABLE, **{r: TABLE.for_release(r) for r in ("4.18", "4.19", "4.20")}}
lookup = TABLE.lookup


def split_cmd(cmd: int) -> tuple[int, int]:
    """Split a traced memory_op cmd into (command, start_extent)."""
    return cmd & MEMOP_CMD_MASK, cmd >> MEMOP_EXTENT_SHIFT


def name(cmd: int) -> str:
    """Name of a traced memory_op cmd, continuation bits ignored."""
    return TABLE.name(split_cmd(cmd)[0])
