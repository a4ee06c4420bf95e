"""Command tables the hypercall tracer needs that xenvmi.abi does not (yet) hold.

sched_op (public/sched.h SCHEDOP_*), event_channel_op (public/event_channel.h EVTCHNOP_*)
and dm_op (public/hvm/dm_op.h XEN_DMOP_*), Xen 4.17, in the same SubOpTable shape as
xenvmi.abi's tables so the tracer names every multiplexing hypercall one way. They belong in
xenvmi.abi; they live here until the owner of that package takes them.
tests/unit/test_trace_hypercalls.py checks them against /usr/include/xen.
"""

from __future__ import annotations

from xenvmi.abi import domctl, hvm_op, memory_op, sysctl
from xenvmi.abi.subops import INTERNAL, SubOp, SubOpTable
from xenvmi.errors import UsageError

SCHED_OP = SubOpTable(
    "sched_op",
    "SCHEDOP_",
    (
        SubOp(0, "yield"),
        SubOp(1, "block"),
        SubOp(2, "shutdown"),
        SubOp(3, "poll"),
        SubOp(4, "remote_shutdown"),
        SubOp(5, "shutdown_code"),
        SubOp(6, "watchdog"),
        SubOp(7, "pin_override"),
    ),
)

EVENT_CHANNEL_OP = SubOpTable(
    "event_channel_op",
    "EVTCHNOP_",
    (
        SubOp(0, "bind_interdomain"),
        SubOp(1, "bind_virq"),
        SubOp(2, "bind_pirq"),
        SubOp(3, "close"),
        SubOp(4, "send"),
        SubOp(5, "status"),
        SubOp(6, "alloc_unbound"),
        SubOp(7, "bind_ipi"),
        SubOp(8, "bind_vcpu"),
        SubOp(9, "unmask"),
        SubOp(10, "reset"),
        SubOp(11, "init_control"),
        SubOp(12, "expand_array"),
        SubOp(13, "set_priority"),
        SubOp(14, "reset_cont", INTERNAL, "continuation of reset, inside Xen only"),
    ),
)

DM_OP = SubOpTable(
    "dm_op",
    "XEN_DMOP_",
    (
        SubOp(1, "create_ioreq_server"),
        SubOp(2, "get_ioreq_server_info"),
        SubOp(3, "map_io_range_to_ioreq_server"),
        SubOp(4, "unmap_io_range_from_ioreq_server"),
        SubOp(5, "set_ioreq_server_state"),
        SubOp(6, "destroy_ioreq_server"),
        SubOp(7, "track_dirty_vram"),
        SubOp(8, "set_pci_intx_level"),
        SubOp(9, "set_isa_irq_level"),
        SubOp(10, "set_pci_link_route"),
        SubOp(11, "modified_memory"),
        SubOp(12, "set_mem_type"),
        SubOp(13, "inject_event"),
        SubOp(14, "inject_msi"),
        SubOp(15, "map_mem_type_to_ioreq_server"),
        SubOp(16, "remote_shutdown"),
        SubOp(17, "relocate_memory"),
        SubOp(18, "pin_memory_cacheattr"),
        SubOp(19, "set_irq_level"),
        SubOp(20, "nr_vcpus"),
    ),
)

#: Hypercall number -> the table naming its command. domctl/sysctl read the command from
#: the struct arg[0] points to; memory_op masks arg[0]; dm_op reads it from bufs[0];
#: the rest take it from arg[0] as is.
TABLES: dict[int, SubOpTable] = {
    12: memory_op.TABLE,
    29: SCHED_OP,
    32: EVENT_CHANNEL_OP,
    34: hvm_op.TABLE,
    35: sysctl.TABLE,
    36: domctl.TABLE,
    41: DM_OP,
}


def subop_name(op: int, subop: int) -> str | None:
    """Name of command ``subop`` of hypercall ``op``; None if ``op`` has no table."""
    table = TABLES.get(op)
    if table is None:
        return None
    if op == 12:
        subop &= memory_op.MEMOP_CMD_MASK
    return table.name(subop)


def lookup_subop(op: int, text: str) -> int:
    """The command number ``text`` names for hypercall ``op`` (raises NotFound/UsageError)."""
    table = TABLES.get(op)
    if table is None:
        raise UsageError(
            f"trace: hypercall {op} has no command table; give only its name "
            f"(commands are known for "
            f"{', '.join(t.title for t in TABLES.values())})"
        )
    return table.lookup(text).number
