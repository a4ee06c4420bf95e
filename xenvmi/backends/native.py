"""GuestMemory on Xen's own libraries: a live domain read without LibVMI.

LibVMI's only Python package is a cp311 x86_64 wheel, so a dom0 on another Python
(Debian 13's 3.13) cannot read guests through it. Everything xenvmi asks of LibVMI is a
thin layer over two Xen libraries dom0 always has, reached here through ctypes:

* guest frames: libxenforeignmemory, through :class:`~xenvmi.backends.xenforeign.
  ForeignMemory` (batches of 256 frames for large reads, one reused mapping call for
  the page cache's single pages);
* the domain's size, type, vCPU count and registers, pause and unpause: libxenctrl
  (:mod:`xenvmi.backends.xenctrl`).

It behaves as :class:`~xenvmi.backends.libvmi.LibvmiMemory` does, so every view gives the
same answer on either (tests/lab/test_native_backend.py checks it on each guest type):
the same domain resolution (:func:`~xenvmi.backends.domain_lookup.resolve_domain`), the
same address-space size and RAM top, a page Xen will not map reads as unreadable (zeros
plus False, or PhysicalFault when strict), register dicts under LibVMI's names, and PV
guests' memory refused (their frame numbers are machine frames, not guest-physical).

Pausing differs in one way, for the better: Xen counts the toolstack's pauses
(``controller_pause_count``), so a pause here is always undone by exactly one unpause,
and a guest someone else paused (``xl pause``) stays paused after we let go.
"""

from __future__ import annotations

import errno as os_errno
import functools
import logging
from typing import Any

from xenvmi.backends.domain_lookup import _Store, check_dom0, resolve_domain
from xenvmi.backends.memory import PAGE, GuestMemory
from xenvmi.errors import NotFoundError, PermissionDenied, Unavailable, UsageError, XenvmiError

log = logging.getLogger(__name__)

#: The largest single backend read: callers read in chunks (a dump reads 4 MiB at a
#: time); anything bigger is a bug that would otherwise allocate the guest's size.
MAX_READ = 256 << 20


@functools.cache
def unavailable() -> str | None:
    """Why this backend cannot work here (its libraries do not load), or None."""
    from xenvmi.backends import xenctrl, xenforeign

    try:
        xenctrl.load_library()
        xenforeign.load_library()
    except Unavailable as e:
        return str(e)
    return None


def ram_top(max_address: int, memsize: int) -> int:
    """Where a Xen guest's RAM probably ends, for scans. Below 4 GiB, Xen's HVM/PVH
    layout puts RAM at [0, memsize) and only special pages near 0xfeff0000 (where the
    address space ends) above a big hole: scanning that hole would be slow for nothing."""
    if max_address > 1 << 32:
        return max_address
    return min(max_address, (memsize + (64 << 20)) & ~((1 << 20) - 1))


class NativeMemory(GuestMemory):
    """A live Xen domain (by name or id) through libxenctrl and libxenforeignmemory.

    ``ctrl``, ``foreign`` and ``store`` stand in for the libraries and xenstore in tests;
    left out, the real ones are opened (root in dom0 needed)."""

    def __init__(self, domain: str | int, *, ctrl=None, foreign=None, store=None) -> None:
        super().__init__()
        # the libraries' handles (XenCtrl, ForeignMemory) or tests' stand-ins
        self._ctrl: Any = None
        self._foreign: Any = None
        self._paused = 0
        if ctrl is None:
            check_dom0()
            from xenvmi.backends.xenctrl import XenCtrl

            ctrl = XenCtrl()
        self._ctrl = ctrl
        own_store = store is None
        store = store if store is not None else _Store()
        try:
            self._open(domain, store, foreign)
        except BaseException:
            self.close()
            raise
        finally:
            if own_store:
                store.close()

    def _open(self, domain: str | int, store, foreign) -> None:
        from xenvmi.backends.xenctrl import domain_type, domain_uuid
        from xenvmi.backends.xenctrl_arm import guest_arch

        self.name, self.domid = resolve_domain(domain, store)
        # the hypervisor's guests' architecture (an Arm Xen runs only Arm guests)
        self.arch = guest_arch(self._ctrl.capabilities())
        info = self._ctrl.domain_info(self.domid)
        self.kind = domain_type(info, self.arch)
        vm_path = store.read(f"/local/domain/{self.domid}/vm") or ""
        self._handle = domain_uuid(info)  # Xen's own id of this domain, for check_alive
        self.uuid = vm_path.rsplit("/", 1)[-1] or self._handle
        # As LibVMI's Xen driver: RAM in use (its own and shared pages), and the address
        # space through the highest frame Xen has mapped (for PV, whose highest frame is
        # about its page count, through its maximum allowed).
        self.memsize = (int(info.tot_pages) + int(info.shr_pages)) * PAGE
        top_frame = self._ctrl.maximum_gpfn(self.domid)
        if self.kind == "pv":
            top_frame = max(top_frame, int(info.max_pages))
        self._max = (top_frame + 1) * PAGE
        self._vcpus = int(info.max_vcpu_id) + 1 if info.max_vcpu_id != 0xFFFFFFFF else 0
        if foreign is None and self.kind != "pv":
            from xenvmi.backends.xenforeign import ForeignMemory

            foreign = ForeignMemory(self.domid)
        self._foreign = foreign

    # -- memory ---------------------------------------------------------------------

    @property
    def max_physical_address(self) -> int:
        return self._max

    @property
    def ram_top(self) -> int:
        if self.arch == "aarch64":
            from xenvmi.backends import xenctrl_arm

            return xenctrl_arm.ram_top(self._max, self.memsize)
        return ram_top(self._max, self.memsize)

    def _check_readable(self) -> None:
        if self.kind == "pv":
            raise Unavailable(
                f"{self.name} is a PV guest: its memory cannot be read as guest-physical "
                "(PV frame numbers are machine frames); `xenvmi regs` works"
            )

    def _read_pages(self, addr: int, size: int) -> tuple[bytes, list[bool]]:
        self._check_readable()
        if size > MAX_READ:
            raise UsageError(f"a read of {size} bytes from {self.name} (at most {MAX_READ})")
        try:
            return self._foreign.read_pages(addr, size)
        except OSError as e:  # Xen refused the call as a whole: find the pages it refuses
            self._refused(e)
        if size == PAGE:
            return bytes(PAGE), [False]
        half = (size // PAGE // 2) * PAGE
        low, low_ok = self._read_pages(addr, half)
        high, high_ok = self._read_pages(addr + half, size - half)
        return low + high, low_ok + high_ok

    def _read_page(self, addr: int) -> bytes | None:
        self._check_readable()
        try:
            return self._foreign.read_page(addr)
        except OSError as e:
            self._refused(e)
            return None

    def _refused(self, e: OSError) -> None:
        """A mapping call Xen refused whole: the domain's end or our rights end the read
        with an error; anything else means a frame it will not map (a hole)."""
        if e.errno == os_errno.ESRCH:
            raise NotFoundError(f"domain {self.name} ({self.domid}) is gone") from None
        if e.errno in (os_errno.EPERM, os_errno.EACCES):
            raise PermissionDenied(f"Xen refused to map {self.name}'s memory: {e}") from None

    # -- vCPUs ----------------------------------------------------------------------

    def vcpu_count(self) -> int:
        return self._vcpus

    def vcpu_registers(self, vcpu: int = 0) -> dict[str, int]:
        """Raw x86 registers under LibVMI's names (rip, cr3, msr_efer, cs_arbytes, ...):
        hvm_hw_cpu for HVM and PVH guests, the PV context for PV ones; an arm64 guest's
        under Xen's (x0-x30, pc64, cpsr, sp_el1, ttbr1, ...)."""
        from xenvmi.backends.xenctrl import hvm_registers, pv_registers

        self.check_thread()
        if not 0 <= vcpu < self._vcpus:
            raise NotFoundError(f"{self.name} has {self._vcpus} vCPU(s): no vCPU {vcpu}")
        if self.arch == "aarch64":
            from xenvmi.backends.xenctrl_arm import VcpuGuestContextArm, arm64_registers

            raw = self._ctrl.vcpu_context(self.domid, vcpu)
            return arm64_registers(VcpuGuestContextArm.from_buffer_copy(raw))
        if self.kind != "pv":
            return hvm_registers(self._ctrl.hvm_cpu(self.domid, vcpu))
        width = self._ctrl.guest_width(self.domid)
        if width != 8:
            raise Unavailable(f"{self.name} is a {width * 8}-bit PV guest: only 64-bit ones")
        return pv_registers(self._ctrl.pv_context(self.domid, vcpu))

    def check_alive(self) -> None:
        """NotFoundError once Xen has no such domain, or has another under its id (a
        destroyed domain's frames fail to map like holes: a dump asks this as it goes)."""
        from xenvmi.backends.xenctrl import XEN_DOMINF_dying, domain_uuid

        try:
            info = self._ctrl.domain_info(self.domid)
        except NotFoundError:
            info = None
        if info is None or info.flags & XEN_DOMINF_dying or domain_uuid(info) != self._handle:
            raise NotFoundError(f"{self.name} (domain {self.domid}) went away while being read")

    def drop_mappings(self) -> None:
        """Unmap the guest frames kept mapped for single-page reads (a cache of up to
        ``xenforeign.MAX_BLOCKS`` blocks, whose size follows what the views touched): the
        next reads map afresh. For a count of what a process holds beyond that cache."""
        self.check_thread()
        if self._foreign is not None:
            self._foreign.drop_mappings()

    # -- pause, close ---------------------------------------------------------------

    def paused_now(self) -> bool:
        """Whether Xen has the domain paused at this moment (by anyone)."""
        from xenvmi.backends.xenctrl import XEN_DOMINF_paused

        return bool(self._ctrl.domain_info(self.domid).flags & XEN_DOMINF_paused)

    def _pause(self) -> None:
        self._ctrl.pause(self.domid)
        self._paused += 1

    def _resume(self) -> None:
        if self._paused:
            self._paused -= 1
            self._ctrl.unpause(self.domid)

    def close(self) -> None:
        super().close()
        ctrl, self._ctrl = self._ctrl, None
        foreign, self._foreign = self._foreign, None
        if foreign is not None:
            foreign.close()
        if ctrl is None:
            return
        while self._paused:  # never leave a guest paused behind us
            self._paused -= 1
            try:
                ctrl.unpause(self.domid)
            except XenvmiError as e:
                log.error(
                    "could not resume domain %s (%s): run `xl unpause %s`", self.name, e, self.domid
                )
        ctrl.close()
