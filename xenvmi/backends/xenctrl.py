"""libxenctrl through ctypes: a domain's info, pause and unpause, and its vCPUs' registers.

The native memory backend (:mod:`xenvmi.backends.native`) needs these where LibVMI is not
installed (Debian 13 has no LibVMI wheel for its Python). The structures are Xen's public
ABI, copied field for field from Debian 12's libxen-dev (Xen 4.17) headers:

* ``struct xen_domctl_getdomaininfo`` (xen/domctl.h): what ``xc_domain_getinfolist``
  fills. 4.17 has no ``xc_domain_getinfo_single`` (4.18 added it), and its
  ``xc_domain_getinfo`` fills libxenctrl's own ``xc_dominfo_t`` with bitfields, which
  4.18 removed: ``getinfolist`` exists in both, over the hypervisor's own structure.
* ``struct hvm_hw_cpu`` (xen/arch-x86/hvm/save.h), the HVM/PVH vCPU record that
  ``xc_domain_hvm_getcontext_partial(HVM_SAVE_CODE(CPU), vcpu)`` copies out.
* ``struct vcpu_guest_context`` for x86_64 (xen/arch-x86/xen.h, ``cpu_user_regs`` from
  xen-x86_64.h), what ``xc_vcpu_getcontext`` fills for a PV vCPU.

tests/unit/test_xenctrl.py compiles a C program against those headers to check every
size and offset here. Register dicts use the names LibVMI's Xen driver gives (which are
``hvm_hw_cpu``'s), so :func:`xenvmi.guest.regs_x86.decode_x86` reads both alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as os_errno
import platform
import uuid as uuidlib
from typing import Any

from xenvmi.errors import GuestDataError, NotFoundError, PermissionDenied, Unavailable

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
ulong = ctypes.c_ulong

# -- xen/domctl.h: XEN_DOMCTL_getdomaininfo -------------------------------------------------

XEN_DOMINF_dying = 1 << 0
XEN_DOMINF_hvm_guest = 1 << 1
XEN_DOMINF_shutdown = 1 << 2
XEN_DOMINF_paused = 1 << 3
XEN_DOMINF_blocked = 1 << 4
XEN_DOMINF_running = 1 << 5
#: arch-x86/xen.h: the emulated PIC is what an HVM guest has and a PVH guest never does
#: (Xen's emulation_flags_ok(): PVH gets LAPIC at most, HVM everything but VPCI).
XEN_X86_EMU_LAPIC = 1 << 0
XEN_X86_EMU_PIC = 1 << 5


class ArchDomainConfig(ctypes.Structure):
    _fields_ = [("emulation_flags", u32), ("misc_flags", u32)]


class DomainInfo(ctypes.Structure):
    """struct xen_domctl_getdomaininfo (uint64_aligned_t is plain u64 on x86_64)."""

    _fields_ = [
        ("domain", u16),
        ("pad1", u16),
        ("flags", u32),
        ("tot_pages", u64),
        ("max_pages", u64),
        ("outstanding_pages", u64),
        ("shr_pages", u64),
        ("paged_pages", u64),
        ("shared_info_frame", u64),
        ("cpu_time", u64),
        ("nr_online_vcpus", u32),
        ("max_vcpu_id", u32),
        ("ssidref", u32),
        ("handle", u8 * 16),
        ("cpupool", u32),
        ("gpaddr_bits", u8),
        ("pad2", u8 * 7),
        ("arch_config", ArchDomainConfig),
    ]


# -- xen/arch-x86/hvm/save.h: HVM_SAVE_CODE(CPU) ----------------------------------------------

#: DECLARE_HVM_SAVE_TYPE_COMPAT(CPU, 2, struct hvm_hw_cpu, ...)
HVM_SAVE_CODE_CPU = 2

_HVM_SEGS = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldtr")
_HVM_TABLES = ("idtr", "gdtr")
#: hvm_hw_cpu's registers in declaration order (after fpu_regs), each 64-bit unless named
#: in _HVM_U32; the rest of the record (pending event, error code, flags) is not a register.
HVM_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rbp", "rsi", "rdi", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "rip", "rflags", "cr0", "cr2", "cr3", "cr4",
    "dr0", "dr1", "dr2", "dr3", "dr6", "dr7",
    *(f"{s}_sel" for s in _HVM_SEGS),
    *(f"{s}_limit" for s in (*_HVM_SEGS, *_HVM_TABLES)),
    *(f"{s}_base" for s in (*_HVM_SEGS, *_HVM_TABLES)),
    *(f"{s}_arbytes" for s in _HVM_SEGS),
    "sysenter_cs", "sysenter_esp", "sysenter_eip", "shadow_gs",
    "msr_flags", "msr_lstar", "msr_star", "msr_cstar", "msr_syscall_mask", "msr_efer",
    "msr_tsc_aux", "tsc",
)  # fmt: skip
_HVM_U32 = {n for n in HVM_REGISTERS if n.endswith(("_sel", "_limit", "_arbytes"))}
#: Not registers a reader wants: msr_flags is obsolete (save.h: "ignored"), tsc is the
#: guest's clock at the moment of the call.
_HVM_NOT_SHOWN = {"msr_flags", "tsc"}


class HvmHwCpu(ctypes.Structure):
    _fields_ = [
        ("fpu_regs", u8 * 512),
        *((name, u32 if name in _HVM_U32 else u64) for name in HVM_REGISTERS),
        ("pending_event", u32),
        ("error_code", u32),
        ("flags", u32),
        ("pad0", u32),
    ]


# -- xen/arch-x86/xen.h + xen-x86_64.h: vcpu_guest_context (x86_64) ------------------------

VGCF_in_kernel = 1 << 2
VGCF_online = 1 << 5
#: cpu_user_regs' 64-bit registers in declaration order (every __DECL_REG is a u64 slot).
_PV_LEADING = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
               "rax", "rcx", "rdx", "rsi", "rdi")  # fmt: skip


class CpuUserRegs(ctypes.Structure):
    _fields_ = [
        *((name, u64) for name in _PV_LEADING),
        ("error_code", u32),
        ("entry_vector", u32),
        ("rip", u64),
        ("cs", u16),
        ("_pad0", u16),
        ("saved_upcall_mask", u8),
        ("_pad1", u8 * 3),
        ("rflags", u64),
        ("rsp", u64),
        ("ss", u16),
        ("_pad2", u16 * 3),
        ("es", u16),
        ("_pad3", u16 * 3),
        ("ds", u16),
        ("_pad4", u16 * 3),
        ("fs", u16),
        ("_pad5", u16 * 3),
        ("gs", u16),
        ("_pad6", u16 * 3),
    ]


class TrapInfo(ctypes.Structure):
    _fields_ = [("vector", u8), ("flags", u8), ("cs", u16), ("address", ulong)]


class VcpuGuestContextX8664(ctypes.Structure):
    _fields_ = [
        ("fpu_ctxt", u8 * 512),
        ("flags", ulong),
        ("user_regs", CpuUserRegs),
        ("trap_ctxt", TrapInfo * 256),
        ("ldt_base", ulong),
        ("ldt_ents", ulong),
        ("gdt_frames", ulong * 16),
        ("gdt_ents", ulong),
        ("kernel_ss", ulong),
        ("kernel_sp", ulong),
        ("ctrlreg", ulong * 8),
        ("debugreg", ulong * 8),
        ("event_callback_eip", ulong),
        ("failsafe_callback_eip", ulong),
        ("syscall_callback_eip", ulong),
        ("vm_assist", ulong),
        ("fs_base", u64),
        ("gs_base_kernel", u64),
        ("gs_base_user", u64),
    ]


#: xenctrl.h's vcpu_guest_context_any_t is a union of the x86_64 and x86_32 layouts (the
#: former is the larger); the buffer handed to xc_vcpu_getcontext gets this much slack on
#: top so a differently built library can never write past it.
CONTEXT_BUFFER = ctypes.sizeof(VcpuGuestContextX8664) + 4096


# -- register dicts ---------------------------------------------------------------------------


def hvm_registers(cpu: HvmHwCpu) -> dict[str, int]:
    """An HVM/PVH vCPU's registers by hvm_hw_cpu's names, which are LibVMI's."""
    return {n: int(getattr(cpu, n)) for n in HVM_REGISTERS if n not in _HVM_NOT_SHOWN}


def pv_registers(ctx: VcpuGuestContextX8664) -> dict[str, int]:
    """A 64-bit PV vCPU's registers by the names LibVMI gives them.

    As LibVMI's Xen driver: cr3 is the page-table frame as an address (Xen keeps it in
    its cr3 encoding, ``xen_pfn_to_cr3``), ``gs_base`` the base in use. A PV kernel runs
    in ring 3 on a selector Xen chose, so no segment selectors or attributes are given:
    the decoder would otherwise report CPL 3 for the guest's kernel.
    """
    regs = ctx.user_regs
    out = {n: int(getattr(regs, n)) for n in _PV_LEADING}
    out["rip"], out["rsp"], out["rflags"] = int(regs.rip), int(regs.rsp), int(regs.rflags)
    cr = ctx.ctrlreg
    out.update(cr0=int(cr[0]), cr2=int(cr[2]), cr3=(int(cr[3]) >> 12) << 12, cr4=int(cr[4]))
    for i in (0, 1, 2, 3, 6, 7):
        out[f"dr{i}"] = int(ctx.debugreg[i])
    kernel, user = int(ctx.gs_base_kernel), int(ctx.gs_base_user)
    in_kernel = bool(ctx.flags & VGCF_in_kernel)
    out["fs_base"] = int(ctx.fs_base)
    out["gs_base"], out["shadow_gs"] = (kernel, user) if in_kernel else (user, kernel)
    return out


def domain_type(info: DomainInfo) -> str:
    """ "pv", "pvh" or "hvm", as libxl's /libxl/DOMID/type names it, from Xen alone. On
    Arm every domain is an HVM container with no emulated platform, which libxl calls PVH
    (and arch_config is Arm's: no x86 emulation flags to read)."""
    if not info.flags & XEN_DOMINF_hvm_guest:
        return "pv"
    if platform.machine() in ("aarch64", "arm64"):
        return "pvh"
    return "hvm" if info.arch_config.emulation_flags & XEN_X86_EMU_PIC else "pvh"


def domain_uuid(info: DomainInfo) -> str:
    return str(uuidlib.UUID(bytes=bytes(info.handle)))


# -- the library ------------------------------------------------------------------------------

#: public/version.h XENVER_version: the hypervisor's major << 16 | minor.
XENVER_VERSION = 0

#: Xen versions its libxenctrl's soname (libxenctrl.so.4.17); the unversioned name exists
#: only with libxen-dev. Debian 12's name first, then whatever the dynamic linker knows.
LIBRARIES = ("libxenctrl.so.4.17", "libxenctrl.so")


def load_library(names: tuple[str, ...] = LIBRARIES):
    """libxenctrl with the signatures xenvmi uses; Unavailable if it is not installed."""
    found = ctypes.util.find_library("xenctrl")
    errors = []
    for name in (*names, *([found] if found else [])):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            break
        except OSError as e:
            errors.append(str(e))
    else:
        raise Unavailable(
            f"libxenctrl cannot be loaded ({'; '.join(errors[:2])}): Debian's libxenctrl "
            "package (part of the Xen tools) provides it"
        )
    vp, c_int, c_uint = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint
    sigs = {
        "xc_interface_open": (vp, [vp, vp, c_uint]),
        "xc_interface_close": (c_int, [vp]),
        "xc_domain_getinfolist": (c_int, [vp, u32, c_uint, vp]),
        "xc_domain_maximum_gpfn": (c_int, [vp, u32, ctypes.POINTER(ulong)]),
        "xc_domain_get_guest_width": (c_int, [vp, u32, ctypes.POINTER(c_uint)]),
        "xc_domain_pause": (c_int, [vp, u32]),
        "xc_domain_unpause": (c_int, [vp, u32]),
        "xc_domain_hvm_getcontext_partial": (c_int, [vp, u32, u16, u16, vp, u32]),
        "xc_vcpu_getcontext": (c_int, [vp, u32, u32, vp]),
        "xc_version": (c_int, [vp, c_int, vp]),
    }
    for fn, (restype, argtypes) in sigs.items():
        try:
            f = getattr(lib, fn)
        except AttributeError:
            raise Unavailable(f"libxenctrl has no {fn}: an unsupported Xen release") from None
        f.restype, f.argtypes = restype, argtypes
    return lib


def _quiet_logger():
    """A libxentoollog logger that prints only critical messages: with none, libxenctrl
    writes every failed call to stderr, where xenvmi's own one-line error says it better.
    None (libxenctrl's default logger) when libxentoollog is missing."""
    try:
        xtl = ctypes.CDLL("libxentoollog.so.1")
        libc = ctypes.CDLL(None)
        stderr = ctypes.c_void_p.in_dll(libc, "stderr")
    except (OSError, ValueError):
        return None, None
    xtl.xtl_createlogger_stdiostream.restype = ctypes.c_void_p
    xtl.xtl_createlogger_stdiostream.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint]
    xtl.xtl_logger_destroy.argtypes = [ctypes.c_void_p]
    xtl_critical, hide_progress = 9, 0o4  # xentoollog.h: XTL_CRITICAL, ..._HIDE_PROGRESS
    return xtl, xtl.xtl_createlogger_stdiostream(stderr, xtl_critical, hide_progress)


def _errno_text(code: int) -> str:
    return f"{os_errno.errorcode.get(code, code)}"


class XenCtrl:
    """One libxenctrl handle (xc_interface_open), used by one thread."""

    def __init__(self, lib=None) -> None:
        self._lib = lib if lib is not None else load_library()
        self._xtl: Any
        self._logger: Any
        self._xtl, self._logger = _quiet_logger() if lib is None else (None, None)
        self._xch = self._lib.xc_interface_open(self._logger, self._logger, 0)
        if not self._xch:
            code = ctypes.get_errno()
            self._destroy_logger()
            if code in (os_errno.EACCES, os_errno.EPERM):
                raise PermissionDenied("libxenctrl needs root in dom0 (try sudo)")
            raise Unavailable(
                f"xc_interface_open failed ({_errno_text(code)}): is this a Xen dom0 "
                "with /dev/xen/privcmd?"
            )

    def _fail(self, what: str, domid: int) -> None:
        code = ctypes.get_errno()
        if code == os_errno.ESRCH:
            raise NotFoundError(f"domain {domid} is gone ({what}: ESRCH)")
        if code in (os_errno.EACCES, os_errno.EPERM):
            raise PermissionDenied(f"{what} for domain {domid}: {_errno_text(code)}")
        raise GuestDataError(f"{what} for domain {domid} failed ({_errno_text(code)})")

    def domain_info(self, domid: int) -> DomainInfo:
        """The hypervisor's record of ``domid``; NotFoundError if there is none."""
        buf = ctypes.create_string_buffer(ctypes.sizeof(DomainInfo) + 4096)
        n = self._lib.xc_domain_getinfolist(self._xch, domid, 1, buf)
        if n < 0:
            self._fail("xc_domain_getinfolist", domid)
        info = DomainInfo.from_buffer_copy(buf)
        if n != 1 or info.domain != domid:  # getinfolist starts at the next domain id
            raise NotFoundError(f"no domain with id {domid} (see `xl list`)")
        return info

    def maximum_gpfn(self, domid: int) -> int:
        out = ulong()
        if self._lib.xc_domain_maximum_gpfn(self._xch, domid, ctypes.byref(out)) < 0:
            self._fail("xc_domain_maximum_gpfn", domid)
        return int(out.value)

    def guest_width(self, domid: int) -> int:
        """A PV guest's word size in bytes (8 for 64-bit, 4 for 32-bit)."""
        out = ctypes.c_uint()
        if self._lib.xc_domain_get_guest_width(self._xch, domid, ctypes.byref(out)) < 0:
            self._fail("xc_domain_get_guest_width", domid)
        return int(out.value)

    def pause(self, domid: int) -> None:
        if self._lib.xc_domain_pause(self._xch, domid) < 0:
            self._fail("xc_domain_pause", domid)

    def unpause(self, domid: int) -> None:
        if self._lib.xc_domain_unpause(self._xch, domid) < 0:
            self._fail("xc_domain_unpause", domid)

    def hvm_cpu(self, domid: int, vcpu: int) -> HvmHwCpu:
        cpu = HvmHwCpu()
        rc = self._lib.xc_domain_hvm_getcontext_partial(
            self._xch, domid, HVM_SAVE_CODE_CPU, vcpu, ctypes.byref(cpu), ctypes.sizeof(cpu)
        )
        if rc < 0:
            self._fail(f"reading vCPU {vcpu} (xc_domain_hvm_getcontext_partial)", domid)
        return cpu

    def pv_context(self, domid: int, vcpu: int) -> VcpuGuestContextX8664:
        buf = ctypes.create_string_buffer(CONTEXT_BUFFER)
        if self._lib.xc_vcpu_getcontext(self._xch, domid, vcpu, buf) < 0:
            self._fail(f"reading vCPU {vcpu} (xc_vcpu_getcontext)", domid)
        return VcpuGuestContextX8664.from_buffer_copy(buf)

    def xen_version(self) -> tuple[int, int]:
        """(major, minor) of the running hypervisor: xc_version(XENVER_version) returns
        major << 16 | minor (public/version.h)."""
        rc = self._lib.xc_version(self._xch, XENVER_VERSION, None)
        if rc < 0:
            raise Unavailable(f"xc_version failed ({_errno_text(ctypes.get_errno())})")
        return rc >> 16, rc & 0xFFFF

    def _destroy_logger(self) -> None:
        logger, self._logger = self._logger, None
        if logger and self._xtl is not None:
            self._xtl.xtl_logger_destroy(logger)

    def close(self) -> None:
        xch, self._xch = self._xch, None
        if xch:
            self._lib.xc_interface_close(xch)
        self._destroy_logger()
