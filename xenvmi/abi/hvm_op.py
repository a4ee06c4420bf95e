"""HVMOP_* commands of hvm_op (hypercall 34) in Xen 4.17 (xen/include/public/hvm/hvm_op.h).

hvm_op carries HVM params and altp2m, which VMI tools (DRAKVUF, LibVMI) drive heavily.
Several numbers survive in the header only for old callers; 4.17's do_hvm_op answers them
with -ENOSYS, and Arm handles only set_param, get_param and guest_request_vm_event.
Static data, checked against /usr/include/xen/hvm/hvm_op.h by the tests.
"""

from xenvmi.abi.subops import LEGACY, SubOp, SubOpTable

#: HVMOP_ALTP2M_INTERFACE_VERSION, the ``version`` field of struct xen_hvm_altp2m_op.
ALTP2M_INTERFACE_VERSION = 0x00000001

_X86 = "x86 only"
_DMOP = "interface < 0x40900 only; use dm_op"
_MEMACC = "tools only; deprecated by XENMEM_access_op"

OPS: tuple[SubOp, ...] = (
    SubOp(0, "set_param"),
    SubOp(1, "get_param"),
    SubOp(2, "set_pci_intx_level", LEGACY, _DMOP),
    SubOp(3, "set_isa_irq_level", LEGACY, _DMOP),
    SubOp(4, "set_pci_link_route", LEGACY, _DMOP),
    SubOp(5, "flush_tlbs", note=_X86),
    SubOp(9, "pagetable_dying", note=_X86),
    SubOp(10, "get_time", note=_X86),
    SubOp(11, "xentrace", note=_X86),
    SubOp(12, "set_mem_access", LEGACY, _MEMACC),
    SubOp(13, "get_mem_access", LEGACY, _MEMACC),
    SubOp(15, "get_mem_type", note=_X86),
    SubOp(23, "set_evtchn_upcall_vector", note=_X86),
    SubOp(24, "guest_request_vm_event"),
    SubOp(25, "altp2m", note=_X86 + "; sub-ops HVMOP_altp2m_*"),
)

ALTP2M_OPS: tuple[SubOp, ...] = (
    SubOp(1, "get_domain_state"),
    SubOp(2, "set_domain_state"),
    SubOp(3, "vcpu_enable_notify"),
    SubOp(4, "create_p2m"),
    SubOp(5, "destroy_p2m"),
    SubOp(6, "switch_p2m"),
    SubOp(7, "set_mem_access"),
    SubOp(8, "change_gfn"),
    SubOp(9, "set_mem_access_multi"),
    SubOp(10, "set_suppress_ve"),
    SubOp(11, "get_suppress_ve"),
    SubOp(12, "get_mem_access"),
    SubOp(13, "vcpu_disable_notify"),
    SubOp(14, "get_p2m_idx"),
    SubOp(15, "set_suppress_ve_multi"),
    SubOp(16, "set_visibility"),
)

TABLE = SubOpTable("hvm_op", "HVMOP_", OPS)
ALTP2M_TABLE = SubOpTable(
    "hvm_op altp2m", "HVMOP_altp2m_", ALTP2M_OPS, interface_version=ALTP2M_INTERFACE_VERSION
)
#: Per release: 4.18 to 4.20's headers have the same commands as 4.17's.
TABLES = {"4.17": TABLE, **{r: TABLE.for_release(r) for r in ("4.18", "4.19", "4.20")}}
lookup = TABLE.lookup
name = TABLE.name
