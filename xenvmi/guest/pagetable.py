"""x86-64 page-table walks for reading a process's memory (its command line) from dom0.

A task's argument strings live in user memory, reachable only through that task's page
tables (``mm->pgd``). drgn's ``access_remote_vm`` walks them too, but through a Python read
callback per table entry and a drgn object per call; this walk reads the same entries from
the page cache directly. The tables are guest data: every entry is checked (present bit,
physical address inside the guest), the walk has a fixed depth, so it always ends.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

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


def read_user(read: ReadPhysical, pgd_pa: int, va: int, size: int, levels: int = 4) -> bytes:
    """Up to ``size`` bytes of user memory at ``va``: stops at the first page that is not
    mapped (swapped out, never touched), so the result may be short."""
    out = bytearray()
    while size > 0:
        pa = translate(read, pgd_pa, va, levels)
        if pa is None:
            break
        n = min(size, PAGE - (va & (PAGE - 1)))
        out += read(pa, n)
        va, size = va + n, size - n
    return bytes(out)
