"""arm64 kernel layout from VMCOREINFO: the kernel image, the linear map, the user regime.

arm64 kernels export what crash tools need to place them (arch/arm64/kernel/crash_core.c):
``kimage_voffset`` (image virtual - physical), ``PHYS_OFFSET`` and ``VA_BITS`` (the linear
map), ``TCR_EL1_T1SZ`` (the VA size in use) and, in the generic part, ``PAGESIZE`` and
``MAX_PHYSMEM_BITS``. :mod:`xenvmi.guest.program` checks each map derived here against
the guest's page tables before reading through it.
"""

from __future__ import annotations

from xenvmi.backends.memory import PAGE
from xenvmi.guest import pagetable
from xenvmi.guest.vmcoreinfo import VmcoreInfo


def image(info: VmcoreInfo) -> tuple[int, int] | None:
    """(start, size) of the part of the arm64 kernel image known to be mapped: from
    _stext to the page after the last image symbol VMCOREINFO names (its .data and
    .bss ones). Its Image header is not kept in memory, so _end is not known."""
    stext = info.symbols.get("_stext")
    if stext is None:
        return None
    last = max((a for a in info.symbols.values() if info.in_image(a)), default=stext)
    end = (last | (PAGE - 1)) + 1
    return stext, end - stext


def linear_maps(kp) -> list[tuple[str, int, int, int, int]]:
    """(name, virtual start, size, physical start, probe offset) of arm64's linear map
    (RAM from PHYS_OFFSET up when it is a real address, else from 0, as a randomized
    linear map makes it negative) and its kernel image (:func:`image`, also kept in
    ``kp.image``), for the KernelProgram ``kp``."""
    mem, info = kp.memory, kp.discovery.info
    phys_offset = info.numbers["PHYS_OFFSET"]
    pa = phys_offset if phys_offset < 1 << 63 else 0
    maps = []
    if pa < mem.ram_top:
        probe_pa = kp.discovery.note_address or info.kernel_image_pa(info.symbols["_stext"])
        maps.append(("direct map", info.linear_va(pa), mem.ram_top - pa, pa, probe_pa - pa))
    found = image(info)
    if found is not None:
        text, size = found
        maps.append(("kernel image", text, size, info.kernel_image_pa(text), 0))
        kp.image = found
    return maps


def user_paging(info: VmcoreInfo) -> pagetable.Aarch64Paging | None:
    """The user (TTBR0) translation regime: PAGESIZE, the VA size TCR_EL1_T1SZ gives
    (Linux sets T0SZ alike), else VA_BITS, and MAX_PHYSMEM_BITS; None for numbers no
    AArch64 regime has."""
    t1sz = info.numbers.get("TCR_EL1_T1SZ")
    va_bits = 64 - t1sz if t1sz else info.va_bits
    pa_bits = info.numbers.get("MAX_PHYSMEM_BITS", 48)
    if info.page_size != 65536 and va_bits < 52:
        # 52-bit PAs with 4K/16K pages are FEAT_LPA2's, which a 52-bit kernel without
        # 52-bit VAs (no LPA2 in the CPU) does not use: bits 9:8 are then shareability
        pa_bits = min(pa_bits, 48)
    try:
        return pagetable.Aarch64Paging(info.page_size, va_bits, pa_bits)
    except ValueError:
        return None
