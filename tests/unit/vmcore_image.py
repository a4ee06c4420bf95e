"""A small synthetic x86-64 guest for the dump tests: RAM with holes, vCPU registers, a
VMCOREINFO note, an init_uts_ns release and real 4-level page tables (the direct map and
the kernel image mapping, both with 1 GiB pages), so drgn can translate addresses."""

from __future__ import annotations

import random
import struct

from xenvmi.backends.memory import BytesMemory

MiB = 1 << 20
RELEASE = "6.1.0-28-amd64"
KERNEL_MAP = 0xFFFF_FFFF_8000_0000
UTS = KERNEL_MAP + 15 * MiB  # init_uts_ns (phys_base 0: physical 15 MiB)
PGD = KERNEL_MAP + 14 * MiB  # swapper_pg_dir
NOTE_AT = 18 * MiB + 0x240
SIZE = 24 * MiB
#: A chunk-sized hole, a 2-page hole inside a chunk, one across a 4 MiB chunk boundary,
#: and no RAM at the top (ram_top is past the last RAM).
HOLES = (
    (4 * MiB, 8 * MiB),
    (9 * MiB + 4096, 9 * MiB + 12288),
    (11 * MiB, 13 * MiB),
    (20 * MiB, 24 * MiB),
)
RANGES = [
    (0, 4 * MiB),
    (8 * MiB, 9 * MiB + 4096),
    (9 * MiB + 12288, 11 * MiB),
    (13 * MiB, 20 * MiB),
]
REGS = {
    0: {
        "rip": 0xFFFF_FFFF_8100_0000,
        "rsp": 0xFFFF_C900_0000_3E90,
        "rflags": 0x246,
        "rax": 1,
        "r15": 15,
        "cr0": 0x8005_0033,
        "cr3": 14 * MiB,
        "cr4": 0x10EF0,
        "msr_efer": 0xD01,
        "cs_sel": 0x10,
        "ss_sel": 0x18,
        "cs_arbytes": 0xA9B,
    },
    1: {"rip": 0xFFFF_FFFF_8100_1000, "rsp": 0xFFFF_C900_0000_5E90, "rflags": 0x2, "rdi": 7},
}
DIRECT_MAP = 0xFFFF_8880_0000_0000


def note_text(release: str = RELEASE) -> bytes:
    return (
        f"OSRELEASE={release}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)={UTS:x}\n"
        f"OFFSET(uts_namespace.name)=4\nSYMBOL(swapper_pg_dir)={PGD:x}\n"
        f"NUMBER(phys_base)=0\nNUMBER(pgtable_l5_enabled)=0\nKERNELOFFSET=0\n"
    ).encode()


def note(text: bytes) -> bytes:
    return struct.pack("<III", 11, len(text), 0) + b"VMCOREINFO\x00\x00" + text


def image(seed: int = 1, pgd_index: int = 273, pud_index: int = 0) -> bytearray:
    """Random RAM with the kernel's pieces; the direct map at PGD/PUD slot given."""
    img = bytearray(random.Random(seed).randbytes(SIZE))
    uts = UTS - KERNEL_MAP
    img[uts + 4 + 130 : uts + 4 + 130 + 65] = RELEASE.encode().ljust(65, b"\x00")
    pgd = PGD - KERNEL_MAP
    img[pgd : pgd + 3 * 4096] = bytes(3 * 4096)
    struct.pack_into("<Q", img, pgd + pgd_index * 8, (pgd + 4096) | 0x63)
    struct.pack_into("<Q", img, pgd + 4096 + pud_index * 8, 0x83)  # 1 GiB at physical 0
    struct.pack_into("<Q", img, pgd + 511 * 8, (pgd + 8192) | 0x63)
    struct.pack_into("<Q", img, pgd + 8192 + 510 * 8, 0x83)  # the kernel image mapping
    n = note(note_text())
    img[NOTE_AT : NOTE_AT + len(n)] = n
    return img


def direct_map(pgd_index: int = 273, pud_index: int = 0) -> int:
    return 0xFFFF_0000_0000_0000 | pgd_index << 39 | pud_index << 30


def memory(img: bytearray | None = None, registers=REGS, holes=HOLES) -> BytesMemory:
    return BytesMemory(
        image() if img is None else img,
        name="g",
        holes=holes,
        registers={k: dict(v) for k, v in registers.items()},
    )


def expected(img: bytes, holes=HOLES) -> bytes:
    """The image as a dump must give it back: holes read as zeros."""
    out = bytearray(img)
    for start, end in holes:
        out[start:end] = bytes(end - start)
    return bytes(out)
