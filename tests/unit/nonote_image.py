"""A synthetic x86-64 guest with no VMCOREINFO note, for the page-table discovery tests.

RAM holds a kernel image (kallsyms tables from :mod:`kallsyms_image`, a linux_banner, an
init_uts_ns, the vmlinux BTF of :mod:`xenvmi.guest.synthetic`) at ``text_pa``, mapped
as Linux maps it: 2 MiB pages from ``_text`` (0xffffffff81000000 + slide) in the kernel
image mapping, nothing below, and a direct map of RAM from physical 0 in 1 GiB pages at
a randomized base. vCPU 0's CR3 is a process's tables (the idle vCPU's lazy TLB) sharing
the kernel half with swapper_pg_dir, or swapper_pg_dir itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from kallsyms_image import build, symbols

from xenvmi.guest.synthetic import _btf

MiB = 1 << 20
KERNEL_MAP = 0xFFFF_FFFF_8000_0000
START_KERNEL = 0xFFFF_FFFF_8100_0000
RELEASE = "5.10.0-32-amd64"
BANNER = (
    f"Linux version {RELEASE} (debian-kernel@lists.debian.org) (gcc-10 (Debian 10.2.1-6) "
    "10.2.1 20210110, GNU ld (GNU Binutils for Debian) 2.35.2) #1 SMP Debian 5.10.223-1 "
    "(2024-08-10)\n"
).encode()
#: Offsets from _text of the pieces the kallsyms image leaves room for (its first 8 MiB).
PGD_OFF, PUD_OFF, PD_OFF, DM_PUD_OFF = 0x50_0000, 0x50_1000, 0x50_2000, 0x50_3000
BANNER_OFF, UTS_OFF, POB_OFF, NOTES_OFF = 0x60_0000, 0x40_0000, 0x40_1000, 0x40_2000
BTF_OFF = 0xA0_0000
PROC_PGD = 0x10000  # a process's top-level table, in low memory


@dataclass
class Kernel:
    image: bytearray
    regs: dict[int, dict[str, int]]
    text: int
    text_pa: int
    direct_map: int
    syms: dict[str, int]

    @property
    def slide(self) -> int:
        return self.text - START_KERNEL

    @property
    def phys_base(self) -> int:
        return self.text_pa - (self.text - KERNEL_MAP)

    def pa(self, va: int) -> int:
        return va - self.text + self.text_pa

    def note_text(self) -> bytes:
        """The VMCOREINFO text this kernel would have written."""
        return (
            f"OSRELEASE={RELEASE}\nPAGESIZE=4096\n"
            f"SYMBOL(init_uts_ns)={self.syms['init_uts_ns']:x}\n"
            f"SYMBOL(_stext)={self.syms['_stext']:x}\n"
            f"SYMBOL(swapper_pg_dir)={self.syms['init_top_pgt']:x}\n"
            f"NUMBER(phys_base)={self.phys_base}\nNUMBER(pgtable_l5_enabled)=0\n"
            f"KERNELOFFSET={self.slide:x}\n"
        ).encode()


def kernel(
    slide: int = 0x1E00_0000,
    text_pa: int = 0x300_0000,
    dm_slot: int = 300,
    dm_pud: int = 5,
    cr3_is_swapper: bool = False,
    pti_user: bool = False,
    size: int = 64 * MiB,
    btf: bool = True,
    build_id: bytes | None = None,
    decoy_banner: bool = False,
) -> Kernel:
    text = START_KERNEL + slide
    syms = [s for s in symbols(count=800, text_va=text) if s[1] != "init_top_pgt"]
    extra = [
        ("D", "init_uts_ns", text + UTS_OFF),
        ("D", "page_offset_base", text + POB_OFF),
        ("D", "init_top_pgt", text + PGD_OFF),
        ("R", "linux_banner", text + BANNER_OFF),
    ]
    notes = b""
    if build_id is not None:  # a Xen note first, then the GNU build ID, as vmlinux has
        notes = struct.pack("<III", 4, 4, 1) + b"Xen\0" + b"\x01\0\0\0"
        notes += struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id
        extra += [
            ("R", "__start_notes", text + NOTES_OFF),
            ("R", "__stop_notes", text + NOTES_OFF + len(notes)),
        ]
    syms = sorted([s for s in syms if s[1] != "init_uts_ns"] + extra, key=lambda s: s[2])
    tables = build(syms, text_va=text)
    img = bytearray(size)
    img[text_pa : text_pa + len(tables.image)] = tables.image
    by_name = {name: addr for _, name, addr in syms}
    k = Kernel(img, {}, text, text_pa, 0, by_name)
    dm = 0xFFFF_0000_0000_0000 | dm_slot << 39 | dm_pud << 30
    k.direct_map = dm
    put = img.__setitem__
    put(slice(k.pa(text + BANNER_OFF), k.pa(text + BANNER_OFF) + len(BANNER) + 1), BANNER + b"\0")
    uts = k.pa(text + UTS_OFF)  # 5.10's struct uts_namespace: a kref, then the name
    put(slice(uts + 4, uts + 10), b"Linux\0")
    rel = RELEASE.encode() + b"\0"
    put(slice(uts + 4 + 130, uts + 4 + 130 + len(rel)), rel)
    if decoy_banner:  # 6.1 holds other banner texts before and after linux_banner
        decoy = b"Linux version 9.9.9-decoy (x) #1\n\0"
        at = k.pa(text + BANNER_OFF - 0x8000)
        put(slice(at, at + len(decoy)), decoy)
    struct.pack_into("<Q", img, k.pa(text + POB_OFF), dm)
    put(slice(k.pa(text + NOTES_OFF), k.pa(text + NOTES_OFF) + len(notes)), notes)
    if btf:
        blob = _btf()
        put(slice(k.pa(text + BTF_OFF), k.pa(text + BTF_OFF) + len(blob)), blob)
    pgd, pud, pd, dm_pud_pa = (k.pa(text + o) for o in (PGD_OFF, PUD_OFF, PD_OFF, DM_PUD_OFF))
    struct.pack_into("<Q", img, pgd + 511 * 8, pud | 0x63)
    struct.pack_into("<Q", img, pud + 510 * 8, pd | 0x63)
    first = (text - KERNEL_MAP) >> 21
    for i in range((len(tables.image) + (2 * MiB) - 1) >> 21):
        struct.pack_into("<Q", img, pd + (first + i) * 8, (text_pa + i * 2 * MiB) | 0xE3)
    struct.pack_into("<Q", img, pgd + dm_slot * 8, dm_pud_pa | 0x63)
    struct.pack_into("<Q", img, dm_pud_pa + dm_pud * 8, 0x83)  # 1 GiB at physical 0
    img[PROC_PGD : PROC_PGD + 8192] = bytes(8192)
    img[PROC_PGD + 2048 : PROC_PGD + 4096] = img[pgd + 2048 : pgd + 4096]  # the kernel half
    cr3 = pgd if cr3_is_swapper else PROC_PGD
    if pti_user:
        cr3 |= 0x1000  # the user copy: maps no kernel image
    k.regs = {0: {"cr3": cr3, "cr4": 0x3506F0, "cr0": 0x8005_0033}}
    return k
