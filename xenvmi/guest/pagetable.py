"""x86-64 and AArch64 page-table walks for reading a process's memory (its command line).

A task's argument strings live in user memory, reachable only through that task's page
tables (``mm->pgd``). drgn's ``access_remote_vm`` walks them too, but through a Python read
callback per table entry and a drgn object per call; this walk reads the same entries from
the page cache directly. The tables are guest data: every entry is checked (present bit,
physical address inside the guest), the walk has a fixed depth, so it always ends.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

PAGE = 4096
ADDR_MASK = 0x000F_FFFF_FFFF_F000  # bits 12..51 of an entry: the next table or the page
PRESENT = 0x1
HUGE = 0x80  # PS bit: a 1 GiB (PUD level) or 2 MiB (PMD level) page
_U64 = struct.Struct("<Q")

ReadPhysical = Callable[[int, int], bytes]  # raises on an unreadable address


def translate(read: ReadPhysical, pgd_pa: int, va: int, levels: int = 4) -> int | None:
    """The guest-physical address of user virtual address ``va`` through the page tables
    at ``pgd_pa`` (4- or 5-level), or None if it is not mapped."""
    if levels not in (4, 5):
        raise ValueError(f"{levels}-level paging is not x86-64")
    table = pgd_pa
    for shift in (48, 39, 30, 21, 12)[5 - levels :]:
        entry = _U64.unpack(read(table + ((va >> shift) & 511) * 8, 8))[0]
        if not entry & PRESENT:
            return None
        if shift in (30, 21) and entry & HUGE:
            size = 1 << shift
            return (entry & ADDR_MASK & ~(size - 1)) | (va & (size - 1))
        table = entry & ADDR_MASK
    return table | (va & (PAGE - 1))


@dataclass(frozen=True)
class Aarch64Paging:
    """An AArch64 translation regime as Linux sets it up: the granule (4K, 16K, 64K), the
    VA size (TCR_EL1.T0SZ = T1SZ: 39, 42, 47, 48 or 52 bits) and the PA size (52 bits:
    FEAT_LPA's descriptor layout with 64K pages, FEAT_LPA2's with 4K and 16K)."""

    granule: int = 4096
    va_bits: int = 48
    pa_bits: int = 48

    def __post_init__(self) -> None:
        if self.granule not in (4096, 16384, 65536) or not 25 <= self.va_bits <= 52:
            raise ValueError(f"not an AArch64 regime: {self}")

    @property
    def shift(self) -> int:
        return self.granule.bit_length() - 1

    @property
    def levels(self) -> int:
        per = self.shift - 3  # a table of 8-byte descriptors fills one granule
        return -(-(self.va_bits - self.shift) // per)

    def output(self, desc: int) -> int:
        """The output address of a descriptor (next table, block or page)."""
        if self.pa_bits < 52:
            return desc & 0x0000_FFFF_FFFF_F000 & ~(self.granule - 1)
        if self.granule == 65536:  # FEAT_LPA: OA[51:48] in descriptor bits 15:12
            return (desc & 0x0000_FFFF_FFFF_0000) | ((desc >> 12) & 0xF) << 48
        # FEAT_LPA2: OA[49:shift] in place, OA[51:50] in descriptor bits 9:8
        return (desc & 0x0003_FFFF_FFFF_F000 & ~(self.granule - 1)) | ((desc >> 8) & 3) << 50


def translate_aarch64(
    read: ReadPhysical, table_pa: int, va: int, paging: Aarch64Paging
) -> int | None:
    """The physical address of user (TTBR0) address ``va`` through the tables at
    ``table_pa``, or None if not mapped. Descriptors: bits 1:0 = 3 a table (or at the last
    level a page), 1 a block, else invalid; the walk has ``paging.levels`` steps."""
    if va < 0 or va >> paging.va_bits:
        return None
    per, table = paging.shift - 3, table_pa
    for level in range(paging.levels):
        shift = paging.shift + per * (paging.levels - 1 - level)
        desc = _U64.unpack(read(table + ((va >> shift) & ((1 << per) - 1)) * 8, 8))[0]
        last = level == paging.levels - 1
        kind = desc & 3
        if kind == 0 or kind == 2 or (last and kind == 1):
            return None
        out = paging.output(desc)
        if kind == 1:  # a block at a table level
            size = 1 << shift
            return (out & ~(size - 1)) | (va & (size - 1))
        if last:
            return out | (va & (paging.granule - 1))
        table = out
    return None


def read_user(
    read: ReadPhysical,
    pgd_pa: int,
    va: int,
    size: int,
    levels: int = 4,
    arm64: Aarch64Paging | None = None,
) -> bytes:
    """Up to ``size`` bytes of user memory at ``va``: stops at the first page that is not
    mapped (swapped out, never touched), so the result may be short. ``arm64``: walk
    AArch64 tables of that regime instead of x86-64's."""
    out = bytearray()
    page = PAGE if arm64 is None else arm64.granule
    while size > 0:
        if arm64 is None:
            pa = translate(read, pgd_pa, va, levels)
        else:
            pa = translate_aarch64(read, pgd_pa, va, arm64)
        if pa is None:
            break
        n = min(size, page - (va & (page - 1)))
        out += read(pa, n)
        va, size = va + n, size - n
    return bytes(out)
