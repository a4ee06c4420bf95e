"""Event-id tables for xentrace files, transcribed from each Xen release's public/trace.h,
and the layouts of the extra words of the events xenvmi interprets (FIELD_DECODERS).

Kept as literal tables (not parsed at run time) so decoding works on hosts without
libxen-dev; tests/unit/test_xentrace.py checks every release's names against its trace.h
in tests/unit/data/xen-headers/. Word layouts cite the Xen 4.17 function that writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from xenvmi.errors import UsageError

if TYPE_CHECKING:
    from xenvmi.abi.hypercalls import Hypercall

# -- record header layout (public/trace.h: struct t_rec, TRC_HD_*) ----------------------
TRC_HD_EVENT_MASK = 0x0FFFFFFF  # TRC_HD_TO_EVENT
TRACE_EXTRA_SHIFT = 28
TRACE_EXTRA_MAX = 7
TRC_HD_CYCLE_FLAG = 1 << 31
TRC_64_FLAG = 0x100  # "addresses are 64 bits" variant of an event
TRC_HVM_NESTEDFLAG = 0x400  # HVM event raised while running a nested guest
TRC_PV_HYPERCALL_V2_ARG_MASK = 0xFFF00000

# -- events the decoder interprets ------------------------------------------------------
TRC_LOST_RECORDS = 0x0001F001
TRC_TRACE_WRAP_BUFFER = 0x0001F002
TRC_TRACE_CPU_CHANGE = 0x0001F003
#: xentrace.c CPU_CHANGE_HEADER: cpu_change event, 2 extra words (cpu, window size), no TSC.
CPU_CHANGE_HEADER = TRC_TRACE_CPU_CHANGE | (2 << TRACE_EXTRA_SHIFT)

TRC_SCHED_RUNSTATE_CHANGE = 0x00021001  # | old_state << 8 | new_state << 4 (sched/core.c)
TRC_SCHED_CONTINUE_RUNNING = 0x00021002
TRC_SCHED_DOM_ADD = 0x00028001
TRC_SCHED_DOM_REM = 0x00028002
TRC_SCHED_SLEEP = 0x00028003
TRC_SCHED_WAKE = 0x00028004
TRC_SCHED_YIELD = 0x00028005
TRC_SCHED_BLOCK = 0x00028006
TRC_SCHED_SHUTDOWN = 0x00028007
TRC_SCHED_ADJDOM = 0x00028009
TRC_SCHED_SWITCH = 0x0002800A
TRC_SCHED_SWITCH_INFPREV = 0x0002800E
TRC_SCHED_SWITCH_INFNEXT = 0x0002800F
TRC_SCHED_SHUTDOWN_CODE = 0x00028010
TRC_SCHED_SWITCH_INFCONT = 0x00028011
TRC_SCHED_CLASS = 0x00022000
TRC_DOM0_DOM_ADD = 0x00041001
TRC_DOM0_DOM_REM = 0x00041002
TRC_PV_HYPERCALL = 0x00201001
TRC_PV_HYPERCALL_V2 = 0x0020100D
TRC_PV_HYPERCALL_SUBCALL = 0x0020200E
TRC_HVM_VMMCALL = 0x00082012

#: public/vcpu.h RUNSTATE_* (only two bits of each survive in the runstate event id).
RUNSTATE_NAMES = ("running", "runnable", "blocked", "offline")
#: public/xen.h DOMID_IDLE: the idle vCPUs' domain, seen in scheduler records.
DOMID_IDLE = 0x7FFF

#: Main classes: bits 16-27 of an event id (public/trace.h "Trace classes").
CLASS_NAMES = {
    0x0001F000: "TRC_GEN",
    0x0002F000: "TRC_SCHED",
    0x0004F000: "TRC_DOM0OP",
    0x0008F000: "TRC_HVM",
    0x0010F000: "TRC_MEM",
    0x0020F000: "TRC_PV",
    0x0040F000: "TRC_SHADOW",
    0x0080F000: "TRC_HW",
    0x0800F000: "TRC_GUEST",
}
_CLASS_BY_MAIN = {mask >> 16: name for mask, name in CLASS_NAMES.items()}

#: Subclass masks (bits 12-15 within a class).
SUBCLASS_NAMES = {
    0x00081000: "TRC_HVM_ENTRYEXIT",
    0x00082000: "TRC_HVM_HANDLER",
    0x00084000: "TRC_HVM_EMUL",
    0x00021000: "TRC_SCHED_MIN",
    0x00022000: "TRC_SCHED_CLASS",
    0x00028000: "TRC_SCHED_VERBOSE",
    0x00041000: "TRC_DOM0_DOMOPS",
    0x00801000: "TRC_HW_PM",
    0x00802000: "TRC_HW_IRQ",
    0x00201000: "TRC_PV_ENTRY",
    0x00202000: "TRC_PV_SUBCALL",
}

#: TRC_SCHED_CLASS_EVT scheduler ids (bits 9-11 of a TRC_SCHED_CLASS event).
SCHEDULER_IDS = {0: "CSCHED", 1: "CSCHED2", 3: "ARINC653", 4: "RTDS", 5: "SNULL"}

#: Every event id #defined in public/trace.h (4.17), by value. EVENT_NAMES_BY_RELEASE
#: has the other releases'.
EVENT_NAMES = {
    0x0001F001: "TRC_LOST_RECORDS",
    0x0001F002: "TRC_TRACE_WRAP_BUFFER",
    0x0001F003: "TRC_TRACE_CPU_CHANGE",
    0x00021001: "TRC_SCHED_RUNSTATE_CHANGE",
    0x00021002: "TRC_SCHED_CONTINUE_RUNNING",
    0x00028001: "TRC_SCHED_DOM_ADD",
    0x00028002: "TRC_SCHED_DOM_REM",
    0x00028003: "TRC_SCHED_SLEEP",
    0x00028004: "TRC_SCHED_WAKE",
    0x00028005: "TRC_SCHED_YIELD",
    0x00028006: "TRC_SCHED_BLOCK",
    0x00028007: "TRC_SCHED_SHUTDOWN",
    0x00028008: "TRC_SCHED_CTL",
    0x00028009: "TRC_SCHED_ADJDOM",
    0x0002800A: "TRC_SCHED_SWITCH",
    0x0002800B: "TRC_SCHED_S_TIMER_FN",
    0x0002800C: "TRC_SCHED_T_TIMER_FN",
    0x0002800D: "TRC_SCHED_DOM_TIMER_FN",
    0x0002800E: "TRC_SCHED_SWITCH_INFPREV",
    0x0002800F: "TRC_SCHED_SWITCH_INFNEXT",
    0x00028010: "TRC_SCHED_SHUTDOWN_CODE",
    0x00028011: "TRC_SCHED_SWITCH_INFCONT",
    0x00041001: "TRC_DOM0_DOM_ADD",
    0x00041002: "TRC_DOM0_DOM_REM",
    0x0010F001: "TRC_MEM_PAGE_GRANT_MAP",
    0x0010F002: "TRC_MEM_PAGE_GRANT_UNMAP",
    0x0010F003: "TRC_MEM_PAGE_GRANT_TRANSFER",
    0x0010F004: "TRC_MEM_SET_P2M_ENTRY",
    0x0010F005: "TRC_MEM_DECREASE_RESERVATION",
    0x0010F010: "TRC_MEM_POD_POPULATE",
    0x0010F011: "TRC_MEM_POD_ZERO_RECLAIM",
    0x0010F012: "TRC_MEM_POD_SUPERPAGE_SPLINTER",
    0x00201001: "TRC_PV_HYPERCALL",
    0x00201003: "TRC_PV_TRAP",
    0x00201004: "TRC_PV_PAGE_FAULT",
    0x00201005: "TRC_PV_FORCED_INVALID_OP",
    0x00201006: "TRC_PV_EMULATE_PRIVOP",
    0x00201007: "TRC_PV_EMULATE_4GB",
    0x00201008: "TRC_PV_MATH_STATE_RESTORE",
    0x00201009: "TRC_PV_PAGING_FIXUP",
    0x0020100A: "TRC_PV_GDT_LDT_MAPPING_FAULT",
    0x0020100B: "TRC_PV_PTWR_EMULATION",
    0x0020100C: "TRC_PV_PTWR_EMULATION_PAE",
    0x0020100D: "TRC_PV_HYPERCALL_V2",
    0x0020200E: "TRC_PV_HYPERCALL_SUBCALL",
    0x0040F001: "TRC_SHADOW_NOT_SHADOW",
    0x0040F002: "TRC_SHADOW_FAST_PROPAGATE",
    0x0040F003: "TRC_SHADOW_FAST_MMIO",
    0x0040F004: "TRC_SHADOW_FALSE_FAST_PATH",
    0x0040F005: "TRC_SHADOW_MMIO",
    0x0040F006: "TRC_SHADOW_FIXUP",
    0x0040F007: "TRC_SHADOW_DOMF_DYING",
    0x0040F008: "TRC_SHADOW_EMULATE",
    0x0040F009: "TRC_SHADOW_EMULATE_UNSHADOW_USER",
    0x0040F00A: "TRC_SHADOW_EMULATE_UNSHADOW_EVTINJ",
    0x0040F00B: "TRC_SHADOW_EMULATE_UNSHADOW_UNHANDLED",
    0x0040F00C: "TRC_SHADOW_WRMAP_BF",
    0x0040F00D: "TRC_SHADOW_PREALLOC_UNPIN",
    0x0040F00E: "TRC_SHADOW_RESYNC_FULL",
    0x0040F00F: "TRC_SHADOW_RESYNC_ONLY",
    0x00081001: "TRC_HVM_VMENTRY",
    0x00081002: "TRC_HVM_VMEXIT",
    0x00081102: "TRC_HVM_VMEXIT64",
    0x00082001: "TRC_HVM_PF_XEN",
    0x00082101: "TRC_HVM_PF_XEN64",
    0x00082002: "TRC_HVM_PF_INJECT",
    0x00082102: "TRC_HVM_PF_INJECT64",
    0x00082003: "TRC_HVM_INJ_EXC",
    0x00082004: "TRC_HVM_INJ_VIRQ",
    0x00082005: "TRC_HVM_REINJ_VIRQ",
    0x00082006: "TRC_HVM_IO_READ",
    0x00082007: "TRC_HVM_IO_WRITE",
    0x00082008: "TRC_HVM_CR_READ",
    0x00082108: "TRC_HVM_CR_READ64",
    0x00082009: "TRC_HVM_CR_WRITE",
    0x00082109: "TRC_HVM_CR_WRITE64",
    0x0008200A: "TRC_HVM_DR_READ",
    0x0008200B: "TRC_HVM_DR_WRITE",
    0x0008200C: "TRC_HVM_MSR_READ",
    0x0008200D: "TRC_HVM_MSR_WRITE",
    0x0008200E: "TRC_HVM_CPUID",
    0x0008200F: "TRC_HVM_INTR",
    0x00082010: "TRC_HVM_NMI",
    0x00082011: "TRC_HVM_SMI",
    0x00082012: "TRC_HVM_VMMCALL",
    0x00082013: "TRC_HVM_HLT",
    0x00082014: "TRC_HVM_INVLPG",
    0x00082114: "TRC_HVM_INVLPG64",
    0x00082015: "TRC_HVM_MCE",
    0x00082016: "TRC_HVM_IOPORT_READ",
    0x00082017: "TRC_HVM_IOMEM_READ",
    0x00082018: "TRC_HVM_CLTS",
    0x00082019: "TRC_HVM_LMSW",
    0x00082119: "TRC_HVM_LMSW64",
    0x0008201A: "TRC_HVM_RDTSC",
    0x00082020: "TRC_HVM_INTR_WINDOW",
    0x00082021: "TRC_HVM_NPF",
    0x00082022: "TRC_HVM_REALMODE_EMULATE",
    0x00082023: "TRC_HVM_TRAP",
    0x00082024: "TRC_HVM_TRAP_DEBUG",
    0x00082025: "TRC_HVM_VLAPIC",
    0x00082126: "TRC_HVM_XCR_READ64",
    0x00082127: "TRC_HVM_XCR_WRITE64",
    0x00082216: "TRC_HVM_IOPORT_WRITE",
    0x00082217: "TRC_HVM_IOMEM_WRITE",
    0x00084001: "TRC_HVM_EMUL_HPET_START_TIMER",
    0x00084002: "TRC_HVM_EMUL_PIT_START_TIMER",
    0x00084003: "TRC_HVM_EMUL_RTC_START_TIMER",
    0x00084004: "TRC_HVM_EMUL_LAPIC_START_TIMER",
    0x00084005: "TRC_HVM_EMUL_HPET_STOP_TIMER",
    0x00084006: "TRC_HVM_EMUL_PIT_STOP_TIMER",
    0x00084007: "TRC_HVM_EMUL_RTC_STOP_TIMER",
    0x00084008: "TRC_HVM_EMUL_LAPIC_STOP_TIMER",
    0x00084009: "TRC_HVM_EMUL_PIT_TIMER_CB",
    0x0008400A: "TRC_HVM_EMUL_LAPIC_TIMER_CB",
    0x0008400B: "TRC_HVM_EMUL_PIC_INT_OUTPUT",
    0x0008400C: "TRC_HVM_EMUL_PIC_KICK",
    0x0008400D: "TRC_HVM_EMUL_PIC_INTACK",
    0x0008400E: "TRC_HVM_EMUL_PIC_POSEDGE",
    0x0008400F: "TRC_HVM_EMUL_PIC_NEGEDGE",
    0x00084010: "TRC_HVM_EMUL_PIC_PEND_IRQ_CALL",
    0x00084011: "TRC_HVM_EMUL_LAPIC_PIC_INTR",
    0x00801001: "TRC_PM_FREQ_CHANGE",
    0x00801002: "TRC_PM_IDLE_ENTRY",
    0x00801003: "TRC_PM_IDLE_EXIT",
    0x00802001: "TRC_HW_IRQ_MOVE_CLEANUP_DELAY",
    0x00802002: "TRC_HW_IRQ_MOVE_CLEANUP",
    0x00802003: "TRC_HW_IRQ_BIND_VECTOR",
    0x00802004: "TRC_HW_IRQ_CLEAR_VECTOR",
    0x00802005: "TRC_HW_IRQ_MOVE_FINISH",
    0x00802006: "TRC_HW_IRQ_ASSIGN_VECTOR",
    0x00802007: "TRC_HW_IRQ_UNMAPPED_VECTOR",
    0x00802008: "TRC_HW_IRQ_HANDLED",
}

#: 4.19 split the HVM exit event into a VMX and an SVM one (SVM's takes the next id).
_EVENT_NAMES_4_19 = {
    **EVENT_NAMES,
    0x00081002: "TRC_HVM_VMX_EXIT",
    0x00081102: "TRC_HVM_VMX_EXIT64",
    0x00081003: "TRC_HVM_SVM_EXIT",
    0x00081103: "TRC_HVM_SVM_EXIT64",
}
#: Event names per Xen release (the keys of xenvmi.abi.releases.KNOWN).
EVENT_NAMES_BY_RELEASE = {
    "4.17": EVENT_NAMES,
    "4.18": EVENT_NAMES,
    "4.19": _EVENT_NAMES_4_19,
    "4.20": _EVENT_NAMES_4_19,
}


def event_names(release: str | None = None) -> dict[int, str]:
    """The event-id table of a known release (4.17's for None)."""
    if release is None:
        return EVENT_NAMES
    try:
        return EVENT_NAMES_BY_RELEASE[release]
    except KeyError:
        known = ", ".join(EVENT_NAMES_BY_RELEASE)
        raise UsageError(f"xentrace: no event names for Xen {release!r} (known: {known})") from None


#: Fallback hypercall names (public/xen.h __HYPERVISOR_*; 48/49 are the x86 arch_0/arch_1
#: users mca and paging_domctl_cont). Used when xenvmi.abi.hypercalls is not available.
HYPERCALL_NAMES = {
    0: "set_trap_table",
    1: "mmu_update",
    2: "set_gdt",
    3: "stack_switch",
    4: "set_callbacks",
    5: "fpu_taskswitch",
    6: "sched_op_compat",
    7: "platform_op",
    8: "set_debugreg",
    9: "get_debugreg",
    10: "update_descriptor",
    12: "memory_op",
    13: "multicall",
    14: "update_va_mapping",
    15: "set_timer_op",
    16: "event_channel_op_compat",
    17: "xen_version",
    18: "console_io",
    19: "physdev_op_compat",
    20: "grant_table_op",
    21: "vm_assist",
    22: "update_va_mapping_otherdomain",
    23: "iret",
    24: "vcpu_op",
    25: "set_segment_base",
    26: "mmuext_op",
    27: "xsm_op",
    28: "nmi_op",
    29: "sched_op",
    30: "callback_op",
    31: "xenoprof_op",
    32: "event_channel_op",
    33: "physdev_op",
    34: "hvm_op",
    35: "sysctl",
    36: "domctl",
    37: "kexec_op",
    38: "tmem_op",
    39: "argo_op",
    40: "xenpmu_op",
    41: "dm_op",
    42: "hypfs_op",
    48: "mca",
    49: "paging_domctl_cont",
    50: "arch_2",
    51: "arch_3",
    52: "arch_4",
    53: "arch_5",
    54: "arch_6",
    55: "arch_7",
}


def class_name(event: int) -> str:
    """The main class of an event id, e.g. ``TRC_PV``; ``TRC_CLASS_0x...`` if unknown."""
    main = (event >> 16) & 0xFFF
    return _CLASS_BY_MAIN.get(main) or f"TRC_CLASS_0x{main:03x}"


def event_name(event: int, release: str | None = None) -> str:
    """The trace.h name of an event id in ``release`` (4.17 for None), allowing for the flag
    bits Xen ORs into some ids."""
    names = event_names(release)
    name = names.get(event)
    if name is not None:
        return name
    main = (event >> 16) & 0xFFF
    if main == 0x002:
        if event & 0xFFFFF00F == TRC_SCHED_RUNSTATE_CHANGE:
            return "TRC_SCHED_RUNSTATE_CHANGE"
        if event & 0xFFFFF000 == TRC_SCHED_CLASS:
            sched = SCHEDULER_IDS.get((event >> 9) & 7, str((event >> 9) & 7))
            return f"TRC_SCHED_CLASS_EVT({sched},{event & 0x1FF})"
    elif main == 0x008 and event & TRC_HVM_NESTEDFLAG:
        base = names.get(event & ~TRC_HVM_NESTEDFLAG)
        if base:
            return base + "|NESTED"
    elif main == 0x020 and event & TRC_64_FLAG:
        base = names.get(event & ~TRC_64_FLAG)
        if base:
            return base + "64"
    elif main == 0x040:
        # Shadow events carry the guest paging levels in bits 8-11 (xenalyze shadow_process).
        base = names.get(event & ~0xF00)
        if base:
            return base
    return f"{class_name(event)}_0x{event:07x}"


_hypercall_cache: dict[int, str] = {}


def hypercall_name(number: int) -> str:
    """Hypercall name by number, preferring xenvmi.abi.hypercalls when it exists."""
    name = _hypercall_cache.get(number)
    if name is None:
        name = None
        if _abi_lookup is not None:
            try:  # xentrace exists only on x86, so prefer x86 names of arch_N slots
                found = _abi_lookup(number)
                show = getattr(found, "display_name", None)
                name = show("x86_64-pv") if callable(show) else getattr(found, "name", None)
            except Exception:  # unknown number, or that table's own error: fall back
                name = None
        name = str(name) if name else HYPERCALL_NAMES.get(number, f"hypercall_{number}")
        if len(_hypercall_cache) < 4096:  # hostile files carry arbitrary numbers
            _hypercall_cache[number] = name
    return name


_abi_lookup: Callable[..., Hypercall] | None  # abi.hypercalls.lookup(number_or_name, arch=None)
try:  # another module owns the authoritative table; use it when present
    from xenvmi.abi.hypercalls import lookup as _abi_lookup
except Exception:  # pragma: no cover - depends on the tree's state
    _abi_lookup = None


# -- per-event field decoders: (event, extra words) -> dict -----------------------------


def _dom_vcpu_packed(ev, x):
    # sched/core.c trace_runstate_change: struct { uint32_t vcpu:16, domain:16; }
    if not x:
        return {}
    out = {"domid": x[0] >> 16, "vcpu": x[0] & 0xFFFF}
    if ev & 0xF == 1:
        out["old_state"] = RUNSTATE_NAMES[(ev >> 8) & 3]
        out["new_state"] = RUNSTATE_NAMES[(ev >> 4) & 3]
    return out


def _words(*names):
    def decode(ev, x):
        return dict(zip(names, x))

    return decode


def _arg_plan(codes: int) -> tuple:
    """(arg index, first word, width) for each argument present, per 12-bit A0..A5 code."""
    plan, word = [], 1
    for i in range(6):  # same walk as xenalyze pv_hypercall_gather_args
        present = (codes >> (2 * i)) & 3
        if present == 3:  # reserved: nothing after it can be trusted
            plan.append((i, -1, 0))
            break
        if present:
            plan.append((i, word, present))
        word += present
    return tuple(plan)


#: Plans by code, filled as codes are seen: all 4096 up front were most of this module's
#: import time, paid by every command that registers `xenvmi xentrace` (`--help` too).
_ARG_PLANS: dict[int, tuple] = {}


def _hypercall_v2(ev: int, x: Sequence[int]) -> dict[str, Any]:
    # common/trace.c __trace_hypercall: word 0 = op | 2-bit arg-present codes A0..A5
    # from bit 20 (01 = 32-bit, 10 = 64-bit), then the present arguments' words in order.
    if not x:
        return {}
    w0 = x[0]
    op = w0 & 0xFFFFF
    out: dict[str, Any] = {"op": op, "hypercall": _hypercall_cache.get(op) or hypercall_name(op)}
    if w0 >> 20:
        args: list[int | None] = [None] * 6
        n = len(x)
        plan = _ARG_PLANS.get(w0 >> 20)
        if plan is None:
            plan = _ARG_PLANS[w0 >> 20] = _arg_plan(w0 >> 20)
        for i, word, width in plan:
            if width == 1 and word < n:
                args[i] = x[word]
            elif width == 2 and word + 1 < n:
                args[i] = x[word] | (x[word + 1] << 32)
            elif width == 0:
                out["reserved_arg_code"] = i
        out["args"] = args
    return out


def _hypercall_v1(ev, x):
    # xenalyze pv_hypercall_process: {eip, eax}, eip 64-bit when TRC_64_FLAG is set.
    if ev & TRC_64_FLAG and len(x) >= 3:
        eip, op = x[0] | (x[1] << 32), x[2]
    elif len(x) >= 2:
        eip, op = x[0], x[1]
    else:
        return {}
    return {"op": op, "hypercall": hypercall_name(op), "eip": eip}


def _vmmcall(ev, x):
    # hvm/svm/svm.c, vmx/vmx.c: HVMTRACE_1D(VMMCALL, regs->eax)
    if not x:
        return {}
    return {"op": x[0], "hypercall": _hypercall_cache.get(x[0]) or hypercall_name(x[0])}


def _lost(ev, x):
    # common/trace.c insert_lost_records: u32 count, u16 did, u16 vid, u64 first_tsc
    if len(x) < 4:
        return {}
    return {
        "lost": x[0],
        "domid": x[1] & 0xFFFF,
        "vcpu": x[1] >> 16,
        "first_tsc": x[2] | (x[3] << 32),
    }


def _slice(time_name):
    def decode(ev, x):
        out = dict(zip(("domid", "vcpu", time_name, "slice_ns"), x))
        if out.get("slice_ns", 0) >= 1 << 31:  # prev->next_time, signed (xenalyze: int slice)
            out["slice_ns"] -= 1 << 32
        return out

    return decode


FIELD_DECODERS = {
    TRC_TRACE_CPU_CHANGE: _words("cpu", "window_size"),
    TRC_LOST_RECORDS: _lost,
    TRC_SCHED_CONTINUE_RUNNING: _dom_vcpu_packed,
    TRC_SCHED_DOM_ADD: _words("domid"),
    TRC_SCHED_DOM_REM: _words("domid"),
    TRC_SCHED_SLEEP: _words("domid", "vcpu"),
    TRC_SCHED_WAKE: _words("domid", "vcpu"),
    TRC_SCHED_YIELD: _words("domid", "vcpu"),
    TRC_SCHED_BLOCK: _words("domid", "vcpu"),
    TRC_SCHED_SHUTDOWN: _words("domid", "vcpu", "reason"),
    TRC_SCHED_SHUTDOWN_CODE: _words("domid", "vcpu", "reason"),
    TRC_SCHED_ADJDOM: _words("domid"),
    # sched/core.c sched_switch_units: ids are sched-unit ids (= vCPU ids at sched-gran=cpu)
    TRC_SCHED_SWITCH: _words("prev_domid", "prev_vcpu", "next_domid", "next_vcpu"),
    TRC_SCHED_SWITCH_INFPREV: _words("domid", "vcpu", "runtime_ns"),
    TRC_SCHED_SWITCH_INFNEXT: _slice("runnable_ns"),
    TRC_SCHED_SWITCH_INFCONT: _slice("runtime_ns"),
    TRC_DOM0_DOM_ADD: _words("domid"),
    TRC_DOM0_DOM_REM: _words("domid"),
    TRC_PV_HYPERCALL: _hypercall_v1,
    TRC_PV_HYPERCALL | TRC_64_FLAG: _hypercall_v1,
    TRC_PV_HYPERCALL_V2: _hypercall_v2,
    TRC_PV_HYPERCALL_SUBCALL: _hypercall_v2,
    TRC_HVM_VMMCALL: _vmmcall,
}
for _old in range(4):
    for _new_state in range(4):
        FIELD_DECODERS[TRC_SCHED_RUNSTATE_CHANGE | _old << 8 | _new_state << 4] = _dom_vcpu_packed
