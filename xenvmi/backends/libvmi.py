"""GuestMemory on LibVMI (PyPI ``libvmi``): a live Xen domain's memory and vCPUs from dom0.

Only LibVMI's partial init is used (no OS profile, no System.map: Debian ships neither),
so opening takes well under a second and everything about the kernel is discovered by
xenvmi itself. LibVMI is not thread-safe: a handle belongs to the thread that opened it
(enforced by :class:`~xenvmi.backends.memory.GuestMemory`).

PV guests have no guest-physical address space LibVMI can read (their "physical"
addresses are not guest frames): registers work, memory reads raise ``Unavailable``.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, Literal

from xenvmi.backends.domain_lookup import (  # noqa: F401 (their old home: kept importable)
    _listed_domains,
    _Store,
    check_dom0,
    paused_now,
    resolve_domain,
    xenstore_read,
)
from xenvmi.backends.memory import PAGE, GuestMemory
from xenvmi.errors import GuestDataError, NotFoundError, Unavailable

if TYPE_CHECKING:
    from xenvmi.backends.xenforeign import ForeignMemory

log = logging.getLogger(__name__)

#: Reads of at least this many bytes go through Xen's batch mapping when it is there.
BULK_READ = 16 * PAGE
#: Registers LibVMI's registers_t does not carry, read one by one (name -> MSR enum name).
_EXTRA_MSRS = {
    "msr_cstar": "CSTAR",
    "msr_syscall_mask": "SYSCALL_MASK",
    "shadow_gs": "SHADOW_GS_BASE",
}


@functools.cache
def importable() -> bool:
    """Whether the libvmi package imports here (the backend chosen by default if so)."""
    try:
        _import_libvmi()
    except Unavailable:
        return False
    return True


def _import_libvmi():
    try:
        import libvmi
    except ImportError as e:
        raise Unavailable(
            f"the libvmi Python package cannot be loaded ({e}); in dom0 run "
            "`pip install libvmi` (needs the libglib2.0-0 and libxen-dev packages)"
        ) from None
    return libvmi


class LibvmiMemory(GuestMemory):
    """A live Xen domain opened with LibVMI's partial init (by name)."""

    domid: int  # a live domain always has one

    def __init__(self, domain: str | int) -> None:
        super().__init__()
        check_dom0()
        libvmi = _import_libvmi()
        self._libvmi = libvmi
        store = _Store()
        try:
            self._open(domain, store, libvmi)
        finally:
            store.close()

    def _open(self, domain: str | int, store: _Store, libvmi) -> None:
        name, domid = resolve_domain(domain, store)
        try:
            self._vmi = libvmi.Libvmi(name, init_flags=libvmi.INIT_DOMAINNAME, partial=True)
        except libvmi.LibvmiError as e:
            reason = str(e)
            if "VM_NOT_FOUND" in reason:
                raise NotFoundError(f"no domain named {name!r} (see `xl list`)") from None
            if "DRIVER" in reason:
                raise Unavailable(
                    f"LibVMI cannot talk to Xen ({reason}): is libxen-dev installed in dom0?"
                ) from None
            raise GuestDataError(f"LibVMI could not open {name}: {reason}") from None
        self.name = name
        self.domid = domid
        vm_path = store.read(f"/local/domain/{self.domid}/vm") or ""
        self.uuid = vm_path.rsplit("/", 1)[-1] or None
        self.kind = store.read(f"/libxl/{self.domid}/type") or "unknown"
        self._max = int(self._vmi.get_max_physical_address())
        self.memsize = int(self._vmi.get_memsize())
        self._paused = 0
        self._external_pause: bool | None = None
        # ForeignMemory for large reads; False once it cannot be used
        self._foreign: ForeignMemory | Literal[False] | None = None
        # (ffi, lib, page buffer, byte count) for _read_page
        self._page_buf: tuple[Any, Any, Any, Any] | None = None
        self.foreign_failures = 0

    # -- memory ---------------------------------------------------------------------

    @property
    def max_physical_address(self) -> int:
        return self._max

    @property
    def ram_top(self) -> int:
        # Below 4 GiB, Xen's HVM/PVH layout puts RAM at [0, memsize) and only special
        # pages near 0xfeff0000 (where max_physical_address points) above a big hole.
        if self._max > 1 << 32:
            return self._max
        return min(self._max, (self.memsize + (64 << 20)) & ~((1 << 20) - 1))

    def _check_readable(self) -> None:
        if self.kind == "pv":
            raise Unavailable(
                f"{self.name} is a PV guest: LibVMI cannot read its memory "
                "(PV guests have no guest-physical address space); "
                "`xenvmi regs` works"
            )

    def _read_pages(self, addr: int, size: int) -> tuple[bytes, list[bool]]:
        self._check_readable()
        if size >= BULK_READ:
            foreign = self._bulk_reader()
            if foreign is not None:
                try:
                    return foreign.read_pages(addr, size)
                except OSError:  # Xen refused the batch: LibVMI reads it page by page
                    self.foreign_failures += 1
                    if self.foreign_failures >= 3:
                        self._close_foreign()
                        self._foreign = False
        if size < BULK_READ:  # a few pages: one C call each (see _read_page)
            pages = [self._read_page(page) for page in range(addr, addr + size, PAGE)]
            return (b"".join(p or bytes(PAGE) for p in pages), [p is not None for p in pages])
        out = bytearray()
        ok: list[bool] = []
        pos, end = addr, addr + size
        while pos < end:
            data, got = self._vmi.read_pa(pos, end - pos, padding=True)
            good_pages = got // PAGE
            out += data[: good_pages * PAGE]
            ok += [True] * good_pages
            pos += good_pages * PAGE
            if pos < end:  # LibVMI stops at the first unreadable page: skip it, go on
                out += bytes(PAGE)
                ok.append(False)
                pos += PAGE
        return bytes(out), ok

    def _read_page(self, addr: int) -> bytes | None:
        """One page straight through LibVMI's C API into a reused buffer: the libvmi
        package's ``read_pa`` allocates two cffi objects and an enum per call, which cost
        more than the read itself on a view's hundreds of single-page fills."""
        if self._page_buf is None:
            self._check_readable()
            from _libvmi import ffi, lib  # the libvmi package's own cffi module

            self._page_buf = (ffi, lib, ffi.new("char[]", PAGE), ffi.new("size_t *"))
        ffi, lib, buf, got = self._page_buf
        got[0] = 0
        lib.vmi_read_pa(self._vmi.vmi, addr, PAGE, buf, got)
        return ffi.unpack(buf, PAGE) if got[0] == PAGE else None

    def _bulk_reader(self):
        """Xen's batch mapping for large reads (see :mod:`xenvmi.backends.xenforeign`),
        opened on first use; None where it cannot be (LibVMI then reads everything)."""
        if self._foreign is None:
            from xenvmi.backends.xenforeign import ForeignMemory

            try:
                self._foreign = ForeignMemory(self.domid)
            except Unavailable:
                self._foreign = False
        return self._foreign or None

    def _close_foreign(self) -> None:
        foreign, self._foreign = self._foreign, None
        if foreign:
            foreign.close()

    def drop_mappings(self) -> None:
        """Unmap LibVMI's page cache (up to its MAX_PAGE_CACHE_SIZE single-page mappings,
        an LRU trimmed by half when full, so its size follows the reads' history) and the
        batch reader's kept blocks."""
        self.check_thread()
        if self._vmi is not None:
            self._vmi.pagecache_flush()
        if self._foreign:
            self._foreign.drop_mappings()

    # -- vCPUs ----------------------------------------------------------------------

    def vcpu_count(self) -> int:
        self.check_thread()
        return int(self._vmi.get_num_vcpus())

    def vcpu_registers(self, vcpu: int = 0) -> dict[str, int]:
        """Raw x86 registers by LibVMI's names (rip, cr3, msr_efer, cs_arbytes, ...)."""
        self.check_thread()
        count = self.vcpu_count()
        if not 0 <= vcpu < count:
            raise NotFoundError(f"{self.name} has {count} vCPU(s): no vCPU {vcpu}")
        lv = self._libvmi
        try:
            x86 = self._vmi.get_vcpuregs(vcpu).cffi_regs.x86
            out = {f: int(getattr(x86, f)) for f in dir(x86) if not f.startswith("_")}
        except lv.LibvmiError as e:
            # PV guests: LibVMI's all-registers call fails, one register at a time works.
            out = self._registers_one_by_one(vcpu)
            if "rip" not in out:
                raise GuestDataError(f"cannot read vCPU {vcpu} of {self.name}: {e}") from None
        for key, msr in _EXTRA_MSRS.items():
            try:
                out[key] = int(self._vmi.get_vcpureg(lv.MSR[msr].value, vcpu))
            except (lv.LibvmiError, KeyError, AttributeError):
                pass
        return out

    def _registers_one_by_one(self, vcpu: int) -> dict[str, int]:
        """Every register LibVMI's Python enums name, read singly; unreadable ones left out."""
        lv, out = self._libvmi, {}
        for name, reg in lv.X86Reg.__members__.items():
            try:
                out[name.lower()] = int(self._vmi.get_vcpureg(reg.value, vcpu))
            except lv.LibvmiError:
                continue
        for key, msr in (("msr_efer", "EFER"), ("msr_star", "STAR"), ("msr_lstar", "LSTAR")):
            try:
                out[key] = int(self._vmi.get_vcpureg(lv.MSR[msr].value, vcpu))
            except (lv.LibvmiError, KeyError):
                continue
        return out

    # -- pause, close ---------------------------------------------------------------

    def _pause(self) -> None:
        # LibVMI's pause is a no-op on a domain that is already paused, but its resume
        # always unpauses: never resume a guest someone else (xl pause) paused.
        if self._paused == 0 and self._external_pause is None:
            self._external_pause = paused_now(self.domid)
        if not self._external_pause:
            self._vmi.pause_vm()
        self._paused += 1

    def _resume(self) -> None:
        if self._paused:
            self._paused -= 1
            if not self._external_pause:
                self._vmi.resume_vm()
            if self._paused == 0:
                self._external_pause = None

    def check_alive(self) -> None:
        store = _Store()
        try:
            name = store.read(f"/local/domain/{self.domid}/name")
        finally:
            store.close()
        if name != self.name:
            raise NotFoundError(f"{self.name} (domain {self.domid}) went away while being read")

    def close(self) -> None:
        super().close()
        if getattr(self, "_foreign", None):
            self._close_foreign()
        vmi, self._vmi = getattr(self, "_vmi", None), None
        if vmi is not None:
            while self._paused:  # never leave a guest paused behind us
                self._resume_on_close(vmi)
            try:
                vmi.destroy()
            except self._libvmi.LibvmiError as e:  # the handle is dropped either way
                log.debug("closing LibVMI for %s: %s", self.name, e)

    def _resume_on_close(self, vmi) -> None:
        """Resume a guest a view left paused (closing after an error); if Xen refuses, say
        so loudly: a guest left paused is the one harm a reader can do."""
        self._paused -= 1
        if self._external_pause:
            return
        try:
            vmi.resume_vm()
        except self._libvmi.LibvmiError as e:
            log.error(
                "could not resume domain %s (%s): run `xl unpause %s`", self.name, e, self.domid
            )
