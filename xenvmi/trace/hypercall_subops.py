"""Command tables the hypercall tracer needs that xenvmi.abi does not (yet) hold.

sched_op (public/sched.h SCHEDOP_*), event_channel_op (public/event_channel.h EVTCHNOP_*)
and dm_op (public/hvm/dm_op.h XEN_DMOP_*), the same in Xen 4.17 to 4.20, in the same
SubOpTable shape as xenvmi.abi's tables so the tracer names every multiplexing hypercall one
way; ``tables(release)`` puts them with that release's domctl, sysctl, memory_op and hvm_op.
tests/unit/test_trace_hypercalls.py checks them against every release's headers.
"""

from __future__ import annotations

from xenvmi.abi import memory_op, releases
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


def _tables(release: str) -> dict[int, SubOpTable]:
    abi = releases.get(release).subop_tables
    return {
        12: abi["memory_op"],
        29: _as_of(SCHED_OP, release),
        32: _as_of(EVENT_CHANNEL_OP, release),
        34: abi["hvm_op"],
        35: abi["sysctl"],
        36: abi["domctl"],
        41: _as_of(DM_OP, release),
    }


def _as_of(table: SubOpTable, release: str) -> SubOpTable:
    """The same commands, labelled with ``release`` (for its error messages)."""
    return table if table.release == release else table.for_release(release)


#: Release -> hypercall number -> the table naming its command. domctl/sysctl read the
#: command from the struct arg[0] points to; memory_op masks arg[0]; dm_op reads it from
#: bufs[0]; the rest take it from arg[0] as is.
TABLES_BY_RELEASE: dict[str, dict[int, SubOpTable]] = {r: _tables(r) for r in releases.KNOWN}
#: The default release's (4.17).
TABLES = TABLES_BY_RELEASE[releases.DEFAULT]


def tables(release: str | None = None) -> dict[int, SubOpTable]:
    """The command tables of a known release (DEFAULT for None); UsageError if unknown."""
    return TABLES_BY_RELEASE[releases.get(release).version]


def subop_name(op: int, subop: int, release: str | None = None) -> str | None:
    """Name of command ``subop`` of hypercall ``op``; None if ``op`` has no table."""
    table = tables(release).get(op)
    if table is None:
        return None
    if op == 12:
        subop &= memory_op.MEMOP_CMD_MASK
    return table.name(subop)


def lookup_subop(op: int, text: str, release: str | None = None) -> int:
    """The command number ``text`` names for hypercall ``op`` (raises NotFound/UsageError)."""
    known = tables(release)
    table = known.get(op)
    if table is None:
        raise UsageError(
            f"trace: hypercall {op} has no command table; give only its name "
            f"(commands are known for "
            f"{', '.join(t.title for t in known.values())})"
        )
    return table.lookup(text).number
