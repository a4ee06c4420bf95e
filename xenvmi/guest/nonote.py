"""Find a guest kernel that has no usable VMCOREINFO note, from its vCPU's page tables.

A kernel built without crash-dump support has no note, and a note the validation refuses
is as good as none. What every x86-64 Linux kernel does have: page tables whose kernel
half maps the image at ``__START_KERNEL_map`` (0xffffffff80000000) plus the KASLR slide
(``cleanup_highmap`` clears the 2 MiB entries below ``_text``, so the first one left is
``_text``), a direct map of all RAM from physical 0, and the ``linux_banner`` text
"Linux version RELEASE (...)" in its read-only data. From CR3 this module finds

* ``_text`` (so the slide) and its physical address (so ``phys_base``): four reads;
* the direct map's base: the first 1 GiB slot of the kernel half that maps physical 0;
* the kallsyms tables by structure (:mod:`xenvmi.guest.kallsyms_tables`) in the image
  only (never all of RAM), checked against ``_text``; they give ``linux_banner`` (so the
  release), ``swapper_pg_dir``, ``init_uts_ns`` and ``_stext``;

and writes what a note would have said, as a note's text, so the rest of xenvmi (drgn's
loader, the BTF search, the per-boot cache) runs unchanged. Every value read is guest
data: entries must point inside the guest, the image must be physically contiguous, the
tables must decode to the very ``_text`` found here and in address order, the decoded
``linux_banner`` must be a banner, ``swapper_pg_dir`` must hold the kernel half that CR3
does, and ``init_uts_ns`` must name the banner's release.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from xenvmi.backends.memory import GuestMemory, PhysicalFault
from xenvmi.errors import GuestDataError
from xenvmi.guest import kallsyms_tables
from xenvmi.guest import vmcoreinfo as V

#: Set to 1, discovery ignores any VMCOREINFO note and finds the kernel from its page
#: tables (a diagnostic: the lab compares both ways on each kernel).
IGNORE_ENV = "XENVMI_IGNORE_VMCOREINFO"
START_KERNEL = 0xFFFF_FFFF_8100_0000  # __START_KERNEL: _text with no slide
PMD, PUD = 1 << 21, 1 << 30
ADDR_MASK = 0x000F_FFFF_FFFF_F000
PRESENT, HUGE = 0x1, 0x80
#: Lowest direct-map base (__PAGE_OFFSET_BASE_L4 / _L5); KASLR only moves it up.
DIRECT_MAP_FLOOR = {4: 0xFFFF_8880_0000_0000, 5: 0xFF11_0000_0000_0000}
BANNER = b"Linux version "
MAX_BANNER = 512
CHUNK = 4 << 20
#: How much of the image the kallsyms search reads at most (rodata is within the first
#: ~40 MiB of a distribution kernel).
MAX_SEARCH = 128 << 20
EXTRA = (
    "_stext",
    "init_uts_ns",
    "init_top_pgt",
    "swapper_pg_dir",
    "page_offset_base",
    "__start_notes",
    "__stop_notes",
)
MAX_NOTES = 64 << 10
NT_GNU_BUILD_ID = 3
_RELEASE = re.compile(rb"^[0-9]+\.[0-9]+[\x21-\x7e]{0,60}$")

Progress = Callable[[str], None]


def ignore_note() -> bool:
    return os.environ.get(IGNORE_ENV, "") == "1"


@dataclass
class Layout:
    """What the page tables say about the kernel image and the direct map."""

    pgd: int  # guest-physical: the top-level table CR3 names (kernel half)
    levels: int
    text: int  # virtual address of _text
    text_pa: int
    end: int  # virtual end of the last 2 MiB the image mapping holds
    direct_map: int | None

    @property
    def phys_base(self) -> int:
        return self.text_pa - (self.text - V.KERNEL_MAP)

    @property
    def slide(self) -> int:
        return self.text - START_KERNEL


def _table(mem: GuestMemory, pa: int) -> tuple[int, ...]:
    try:
        return struct.unpack("<512Q", mem.read_physical(pa, 4096, strict=True))
    except PhysicalFault:
        raise GuestDataError(f"page table at {pa:#x} is not readable") from None


def _next(mem: GuestMemory, entry: int) -> int | None:
    """The table an entry points to, or None (not present, or outside the guest)."""
    if not entry & PRESENT:
        return None
    pa = entry & ADDR_MASK
    return pa if pa < mem.max_physical_address else None


def _pud_table(mem: GuestMemory, pgd: int, levels: int, va: int) -> int | None:
    """The PUD table (1 GiB entries) for ``va``, or None where it is not mapped."""
    table: int | None = pgd
    for shift in (48, 39)[2 - (levels - 3) :]:
        assert table is not None
        table = _next(mem, _table(mem, table)[(va >> shift) & 511])
        if table is None:
            return None
    return table


def _kernel_pd(mem: GuestMemory, pgd: int, levels: int) -> tuple[int, ...] | None:
    pud = _pud_table(mem, pgd, levels, V.KERNEL_MAP)
    if pud is None:
        return None
    entry = _table(mem, pud)[(V.KERNEL_MAP >> 30) & 511]
    if entry & HUGE:  # one 1 GiB page: _text cannot be told from it
        return None
    pd = _next(mem, entry)
    return None if pd is None else _table(mem, pd)


def _pmd_pa(mem: GuestMemory, entry: int) -> int | None:
    """Physical address of the first byte a PMD entry maps (a 2 MiB page or a PTE table)."""
    if not entry & PRESENT:
        return None
    if entry & HUGE:
        pa = entry & ADDR_MASK & ~(PMD - 1)
        return pa if pa < mem.max_physical_address else None
    table = _next(mem, entry)
    if table is None:
        return None
    first = _table(mem, table)[0]
    return None if not first & PRESENT else first & ADDR_MASK


def layout(mem: GuestMemory, registers: dict[str, int]) -> Layout:
    """The kernel image and direct map from the vCPU's CR3 (GuestDataError if none)."""
    cr3, cr4 = registers.get("cr3"), registers.get("cr4") or 0
    if not cr3:
        raise GuestDataError("vCPU 0 has no CR3 (paging off, or a PV guest)")
    levels = 5 if cr4 & (1 << 12) else 4  # CR4.LA57
    pgd = cr3 & ADDR_MASK
    # With page-table isolation a vCPU in user mode runs on the user copy, the page after
    # the kernel's (an 8 KiB-aligned pair): the kernel's maps the image.
    for top in dict.fromkeys((pgd, pgd & ~0x1000)):
        if top >= mem.max_physical_address:
            continue
        pd = _kernel_pd(mem, top, levels)
        if pd is None:
            continue
        present = [i for i, e in enumerate(pd) if e & PRESENT]
        if not present:
            continue
        first = present[0]
        text = V.KERNEL_MAP + first * PMD
        if text < START_KERNEL:  # LOAD_PHYSICAL_ADDR: no slide puts _text lower
            raise GuestDataError(f"the kernel image mapping starts at {text:#x}, below _text")
        text_pa = _pmd_pa(mem, pd[first])
        if text_pa is None or text_pa % PMD:
            raise GuestDataError(f"the kernel image's first page at {text:#x} maps no RAM")
        for i in present[1:]:  # the image is physically contiguous (__pa_symbol)
            if pd[i] & HUGE and (pd[i] & ADDR_MASK & ~(PMD - 1)) - text_pa != (i - first) * PMD:
                raise GuestDataError(
                    f"the kernel image mapping at {text:#x} is not physically contiguous"
                )
        end = V.KERNEL_MAP + (present[-1] + 1) * PMD
        return Layout(top, levels, text, text_pa, end, direct_map(mem, top, levels))
    raise GuestDataError(
        f"vCPU 0's page tables (CR3 {cr3:#x}) map no kernel image at {V.KERNEL_MAP:#x}"
    )


def direct_map(mem: GuestMemory, pgd: int, levels: int) -> int | None:
    """The direct map's base: the first present 1 GiB slot from __PAGE_OFFSET_BASE up
    that maps physical 0 (KASLR moves the base up in 1 GiB steps), or None. At most one
    top-level table and 256 PUD tables are read."""
    from xenvmi.guest.pagetable import translate

    floor = DIRECT_MAP_FLOOR[levels]
    shift = 48 if levels == 5 else 39
    read = _reader(mem)
    top = _table(mem, pgd)
    for i in range((floor >> shift) & 511, 511):
        sub = _next(mem, top[i])
        if sub is None:
            continue
        base = (0xFFFF << 48 if levels == 4 else 0xFF << 56) | i << shift
        if levels == 5:  # the first present PML4 slot of this PML5 slot
            pml4 = _table(mem, sub)
            j = next((j for j, e in enumerate(pml4) if _next(mem, e) is not None), None)
            if j is None:
                continue
            base |= j << 39
        pud = _pud_table(mem, pgd, levels, base)
        if pud is None:
            continue
        entries = _table(mem, pud)
        k = next((k for k, e in enumerate(entries) if e & PRESENT), None)
        if k is None:
            continue
        base |= k << 30
        try:
            if translate(read, pgd, base, levels) == 0:
                return base
        except PhysicalFault:
            pass
        return None  # the first slot after the floor is the direct map, or there is none
    return None


def _reader(mem: GuestMemory) -> Callable[[int, int], bytes]:
    return lambda pa, n: mem.read_physical(pa, n, strict=True)


def banner_at(mem: GuestMemory, pa: int) -> bytes:
    """The ``linux_banner`` text at ``pa``: "Linux version " and a plausible release,
    printable, ending in a newline and NUL (GuestDataError otherwise)."""
    data = mem.read_physical(pa, MAX_BANNER)
    end = data.find(b"\n\x00")
    text = data[:end] if end > 0 else b""
    release = text[len(BANNER) :].split(b" ", 1)[0]
    if not (
        text.startswith(BANNER) and _RELEASE.match(release) and all(0x20 <= c < 0x7F for c in text)
    ):
        raise GuestDataError(f"no Linux banner at kallsyms' linux_banner: {data[:24]!r}")
    return text


def locate(mem: GuestMemory, timeout: float = 600.0, progress: Progress = lambda m: None):
    """The kernel's facts as a VMCOREINFO note would give them, found without one:
    (VmcoreInfo, Layout, banner physical address, banner bytes, how)."""
    t0 = time.monotonic()
    progress(f"finding {mem.name}'s kernel from its page tables (no VMCOREINFO note)")
    lay = layout(mem, mem.vcpu_registers(0))
    size = min(lay.end - lay.text, MAX_SEARCH)
    progress(f"found a kernel image at {lay.text:#x}: searching it for kallsyms")
    # Only _text is known exactly: a kernel may hold several banner texts (6.1 has three),
    # so linux_banner, swapper_pg_dir and init_uts_ns are checked once decoded.
    tables = kallsyms_tables.find(
        _reader_zero(mem),
        lay.text_pa,
        lay.text,
        size,
        {"_text": lay.text},
        timeout=max(1.0, timeout - (time.monotonic() - t0)),
        progress=progress,
        extra=(*EXTRA, "linux_banner"),
        min_anchors=1,
    )
    got = tables.resolved
    banner_va = got.get("linux_banner")
    if banner_va is None or not lay.text <= banner_va < lay.end:
        raise GuestDataError("the kallsyms tables found put no linux_banner in the image")
    banner = banner_at(mem, banner_va - lay.text + lay.text_pa)
    release = banner[len(BANNER) :].split(b" ", 1)[0].decode("ascii")
    pgd_va = got.get("init_top_pgt", got.get("swapper_pg_dir"))
    if pgd_va is None or "init_uts_ns" not in got:
        raise GuestDataError("the kernel's kallsyms tables name no swapper_pg_dir or init_uts_ns")
    if not lay.text <= got["init_uts_ns"] < lay.end:
        raise GuestDataError(
            f"kallsyms puts init_uts_ns at {got['init_uts_ns']:#x}, outside the image"
        )
    _check_pgd(mem, lay, pgd_va)
    lines = [
        f"OSRELEASE={release}",
        "PAGESIZE=4096",
        f"SYMBOL(swapper_pg_dir)={pgd_va:x}",
        f"SYMBOL(init_uts_ns)={got['init_uts_ns']:x}",
        f"SYMBOL(_stext)={got.get('_stext', lay.text):x}",
        f"NUMBER(phys_base)={lay.phys_base}",
        f"NUMBER(pgtable_l5_enabled)={int(lay.levels == 5)}",
        f"KERNELOFFSET={lay.slide:x}",
    ]
    build_id = _build_id(mem, lay, got)
    if build_id:  # what a note gives too: drgn checks a --vmlinux against it
        lines.append(f"BUILD-ID={build_id}")
    text = "\n".join(lines).encode() + b"\n" + tables.vmcoreinfo_lines({"_stext": 0})
    try:
        info = V.parse_text(text)
    except V.NoteError as e:
        raise GuestDataError(f"the kernel found from its page tables is implausible: {e}") from None
    from xenvmi.guest.discover import verify

    try:
        verify(mem, info)
    except V.NoteError as e:
        raise GuestDataError(f"the banner's release is not init_uts_ns's: {e}") from None
    if lay.direct_map is not None and lay.text <= got.get("page_offset_base", 0) < lay.end:
        pob_pa = info.kernel_image_pa(got["page_offset_base"])
        pob = struct.unpack("<Q", mem.read_physical(pob_pa, 8))
        if pob[0] != lay.direct_map:
            info.warnings.append(
                f"page_offset_base is {pob[0]:#x}, the page tables map physical 0 at "
                f"{lay.direct_map:#x}"
            )
    dm = f"{lay.direct_map:#x}" if lay.direct_map is not None else "not found"
    how = (
        f"vCPU 0's page tables (CR3 {lay.pgd:#x}: _text {lay.text:#x} at physical "
        f"{lay.text_pa:#x}, direct map {dm}), linux_banner at {banner_va:#x}, "
        f"kallsyms {tables.describe()}"
    )
    return info, lay, banner_va - lay.text + lay.text_pa, banner, how


def _build_id(mem: GuestMemory, lay: Layout, got: dict[str, int]) -> str | None:
    """The kernel's GNU build ID from its notes (``__start_notes``..``__stop_notes``,
    ELF notes in the image), or None."""
    start, stop = got.get("__start_notes"), got.get("__stop_notes")
    if start is None or stop is None or not lay.text <= start < stop <= lay.end:
        return None
    if stop - start > MAX_NOTES:
        return None
    data = mem.read_physical(start - lay.text + lay.text_pa, stop - start)
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        name_end = pos + 12 + (namesz + 3) // 4 * 4
        desc_end = name_end + (descsz + 3) // 4 * 4
        if desc_end > len(data):
            return None
        if ntype == NT_GNU_BUILD_ID and data[pos + 12 : pos + 12 + namesz] == b"GNU\0":
            desc = data[name_end : name_end + descsz]
            return desc.hex() if 8 <= descsz <= 64 else None
        pos = desc_end
    return None


def _reader_zero(mem: GuestMemory) -> Callable[[int, int], bytes]:
    return lambda pa, n: mem.read_physical(pa, n)


def _check_pgd(mem: GuestMemory, lay: Layout, pgd_va: int) -> None:
    """The decoded swapper_pg_dir must be a page of the image holding the same kernel
    half as the tables CR3 names (every process's tables copy it from there)."""
    if pgd_va % 4096 or not lay.text <= pgd_va < lay.end:
        raise GuestDataError(f"kallsyms gives swapper_pg_dir {pgd_va:#x}: not a page of the image")
    ours = _table(mem, lay.pgd)
    theirs = _table(mem, pgd_va - V.KERNEL_MAP + lay.phys_base)
    if ours[511] != theirs[511]:
        raise GuestDataError(
            f"swapper_pg_dir at {pgd_va:#x} does not map the kernel image as CR3's tables do"
        )


def still_there(
    mem: GuestMemory, text_va: int, text_pa: int, banner_pa: int, banner: bytes
) -> bool:
    """A cached discovery still holds: the banner is where it was and the page tables
    still map _text at the same physical address (a reboot with KASLR moves both)."""
    try:
        if mem.read_physical(banner_pa, len(banner), strict=True) != banner:
            return False
        lay = layout(mem, mem.vcpu_registers(0))
    except (GuestDataError, NotImplementedError):
        return False
    return (lay.text, lay.text_pa) == (text_va, text_pa)
