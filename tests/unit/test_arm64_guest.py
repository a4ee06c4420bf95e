"""arm64 guests on synthetic data: VMCOREINFO, RAM above 0, AArch64 walks, vmcores,
registers, data symbols found by structure, the initramfs writer.

The same code runs on real arm64 kernels' memory in tests/lab_host/test_arm64_guest.py;
these pin the pure logic, the hostile cases and the numbers.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest

from xenvmi.backends.dumpfile import DumpFileError, DumpMemory
from xenvmi.backends.memory import BytesMemory, PhysicalFault
from xenvmi.guest import discover, pagetable, vmcore
from xenvmi.guest import vmcoreinfo as V
from xenvmi.guest.pagetable import Aarch64Paging, translate_aarch64
from xenvmi.guest.regs_arm64 import Arm64Regs
from xenvmi.guest.regs_x86 import X86Regs
from xenvmi.lab.qemumem import cpio_newc
from xenvmi.vmcore_format import ARM64_PRSTATUS_SIZE, EM_AARCH64, PR_REG

RAM = 0x4000_0000  # Xen's GUEST_RAM0_BASE, QEMU virt's RAM
RAM_SIZE = 8 << 20
VOFF = 0xFFFF_CD17_2D80_0000  # kimage_voffset of a real Debian 12 guest (KASLR)
STEXT = VOFF + RAM + 0x21_0000  # _stext, at physical RAM + 0x210000 (0xffffcd176da10000)
UTS = STEXT + 0x10_0000  # init_uts_ns, 1 MiB into the image
PHYS_OFFSET = 0xFFFF_EAEC_4000_0000  # randomized linear map: negative memstart_addr
RELEASE = "6.1.0-57-arm64"


def note_text(**override: str) -> bytes:
    fields = {
        "OSRELEASE": RELEASE,
        "PAGESIZE": "4096",
        "SYMBOL(init_uts_ns)": f"{UTS:x}",
        "OFFSET(uts_namespace.name)": "0",
        "SYMBOL(_stext)": f"{STEXT:x}",
        "SYMBOL(mem_section)": "ffff15141fecf380",
        "NUMBER(VA_BITS)": "48",
        "NUMBER(kimage_voffset)": f"{VOFF:#x}",
        "NUMBER(PHYS_OFFSET)": f"{PHYS_OFFSET:#x}",
        "NUMBER(TCR_EL1_T1SZ)": "0x10",
        "NUMBER(MAX_PHYSMEM_BITS)": "48",
        "KERNELOFFSET": "4d1765a00000",
    }
    fields.update(override)
    return "".join(f"{k}={v}\n" for k, v in fields.items() if v is not None).encode()


# -- VMCOREINFO ------------------------------------------------------------------------


def test_arm64_note_places_image_and_linear_map():
    info = V.parse_text(note_text(), "aarch64")
    assert info.arch == "aarch64" and info.page_offset == 0xFFFF_0000_0000_0000
    assert info.kernel_image_pa(STEXT) == RAM + 0x21_0000
    assert info.kernel_image_pa(UTS) == RAM + 0x31_0000
    # __phys_to_virt: (pa - PHYS_OFFSET) | PAGE_OFFSET, and back
    assert info.linear_va(RAM) == 0xFFFF_1514_0000_0000
    assert info.linear_pa(0xFFFF_1514_1FEC_F380) == 0x5FEC_F380
    for pa in (RAM, RAM + 0x1234_5000, 0x8_8000_0000):
        assert info.linear_pa(info.linear_va(pa)) == pa
    assert info.in_image(UTS) and not info.in_image(0xFFFF_1514_1FEC_F380)


def test_arm64_note_without_randomized_linear_map():
    info = V.parse_text(note_text(**{"NUMBER(PHYS_OFFSET)": "0x40000000"}), "aarch64")
    assert info.linear_va(RAM) == 0xFFFF_0000_0000_0000
    assert info.linear_pa(0xFFFF_0000_0010_0000) == RAM + 0x10_0000


def test_the_architecture_decides_how_a_note_is_checked():
    with pytest.raises(V.NoteError, match="KERNELOFFSET"):
        V.parse_text(note_text())  # as x86-64: an arm64 slide is not one of x86-64's
    with pytest.raises(V.NoteError, match="outside the kernel image"):
        V.parse_text(note_text(KERNELOFFSET="0"))  # nor its image at __START_KERNEL_map


@pytest.mark.parametrize(
    "override, why",
    [
        ({"NUMBER(kimage_voffset)": None}, "kimage_voffset"),
        ({"NUMBER(PHYS_OFFSET)": None}, "PHYS_OFFSET"),
        ({"NUMBER(VA_BITS)": "50"}, "VA_BITS"),
        ({"PAGESIZE": "8192"}, "PAGESIZE"),
        ({"KERNELOFFSET": "4d1765a01000"}, "KERNELOFFSET"),
        ({"SYMBOL(_stext)": None}, "_stext"),
        ({"SYMBOL(_stext)": "ffff0000"}, "_stext"),
        ({"SYMBOL(init_uts_ns)": "ffff800000001000"}, "outside the kernel image"),
        ({"SYMBOL(mem_section)": "1000"}, "not a kernel address"),
    ],
)
def test_implausible_arm64_notes_are_refused(override, why):
    with pytest.raises(V.NoteError, match=why):
        V.parse_text(note_text(**override), "aarch64")


def test_unknown_symbols_outside_the_image_are_dropped():
    info = V.parse_text(note_text(**{"SYMBOL(something_new)": "ffff800000001000"}), "aarch64")
    assert "something_new" not in info.symbols
    assert any("something_new" in w for w in info.warnings)
    for size in ("4096", "16384", "65536"):
        assert V.parse_text(note_text(PAGESIZE=size), "aarch64").page_size == int(size)


# -- discovery with RAM at 0x40000000 --------------------------------------------------


def arm64_memory(registers=None) -> tuple[BytesMemory, int]:
    """8 MiB of "RAM" at 0x40000000 holding the kernel's utsname and its note."""
    img = bytearray(RAM_SIZE)
    info = V.parse_text(note_text(), "aarch64")
    uts = info.kernel_image_pa(UTS) - RAM
    img[uts : uts + 6] = b"Linux\0"
    img[uts + 130 : uts + 130 + len(RELEASE) + 1] = RELEASE.encode() + b"\0"
    text = note_text()
    note = struct.pack("<III", 11, len(text), 0) + b"VMCOREINFO\0\0" + text
    at = 0x20_0000  # low in RAM, above the image, as arm64 kernels put it
    img[at : at + len(note)] = note
    mem = BytesMemory(img, name="arm64", base=RAM, arch="aarch64", registers=registers)
    return mem, RAM + at


def test_ram_above_zero_reads_as_a_hole_below():
    mem, _ = arm64_memory()
    assert mem.max_physical_address == RAM + RAM_SIZE
    assert not mem.page_readable(0) and not mem.page_readable(RAM - 4096)
    assert mem.page_readable(RAM) and mem.read_physical(RAM - 8, 16) == bytes(16)
    with pytest.raises(PhysicalFault):
        mem.read_physical(RAM - 4096, 8, strict=True)
    assert mem.read_physical(RAM + 0x20_000C, 12) == b"VMCOREINFO\0\0"


def test_scan_finds_the_note_of_an_arm64_guest():
    mem, at = arm64_memory()
    d = discover.scan(mem, timeout=60)
    assert d.note_address == at and d.info.arch == "aarch64"
    # bottom-up on arm64, the gigabyte below RAM skipped as a hole: 3 of the 8 MiB read
    assert d.info.osrelease == RELEASE and d.scanned_bytes == 3 << 20
    assert "matches" in d.sources["vmcoreinfo"]


def test_a_raw_image_of_an_arm64_guest_takes_the_notes_architecture(tmp_path, monkeypatch):
    """A raw image says nothing of its architecture (`xenvmi dump --format raw` of an Arm
    guest: byte N is physical N, RAM from 1 GiB): the note's own keys name arm64, the
    check against the kernel image confirms it, and the memory is arm64 from then on,
    for a scan and for the per-file cache's re-read alike."""
    monkeypatch.setenv("XENVMI_CACHE_DIR", str(tmp_path / "cache"))
    mem, at = arm64_memory()
    raw = tmp_path / "arm64.raw"
    with raw.open("wb") as f:
        f.seek(RAM)  # the gigabyte below RAM: a hole in the file, read as zeros
        f.write(mem.image)
    for cached in (False, True):
        with DumpMemory(raw) as m:
            assert m.kind == "image" and not m.arch_known and m.arch == "x86_64"
            d = discover.discover(m, timeout=60)
            assert d.from_cache == cached and d.note_address == at
            assert m.arch == d.info.arch == "aarch64"
    assert V.note_arch(note_text()) == "aarch64"
    assert V.note_arch(b"OSRELEASE=6.1.0\nNUMBER(phys_base)=0\n") == "x86_64"
    # a source that names its architecture is parsed by it, whatever a note says
    x86, _ = arm64_memory()
    x86.arch = "x86_64"
    with pytest.raises(discover.ScanFailed, match="Linux x86_64 guest"):
        discover.scan(x86, timeout=60)


# -- AArch64 page tables ---------------------------------------------------------------


@pytest.mark.parametrize(
    "granule, va_bits, levels",
    [(4096, 48, 4), (4096, 39, 3), (4096, 52, 5), (16384, 47, 3), (16384, 48, 4)]
    + [(65536, 42, 2), (65536, 48, 3), (65536, 52, 3)],
)
def test_walk_depth_follows_granule_and_va_size(granule, va_bits, levels):
    assert Aarch64Paging(granule, va_bits).levels == levels


def test_regimes_aarch64_cannot_have_are_refused():
    for bad in ((8192, 48), (4096, 64), (4096, 16)):
        with pytest.raises(ValueError):
            Aarch64Paging(*bad)


class Tables:
    """Page tables in a dict of physical pages, read like guest memory."""

    def __init__(self, granule: int = 4096) -> None:
        self.granule, self.pages, self.next = granule, {}, 0x4010_0000

    def table(self) -> int:
        addr, self.next = self.next, self.next + self.granule
        self.pages[addr] = bytearray(self.granule)
        return addr

    def set(self, table: int, index: int, desc: int) -> None:
        struct.pack_into("<Q", self.pages[table], index * 8, desc)

    def read(self, pa: int, n: int) -> bytes:
        base = pa - pa % self.granule
        if base not in self.pages:
            raise PhysicalFault(pa)
        return bytes(self.pages[base][pa - base : pa - base + n])


def test_4k_48bit_walk_pages_blocks_and_holes():
    t = Tables()
    l0, l1, l2, l3 = t.table(), t.table(), t.table(), t.table()
    va = 0x0000_AAAA_B7B5_1234  # a user address of a 48-bit arm64 process
    i0, i1, i2, i3 = ((va >> s) & 511 for s in (39, 30, 21, 12))
    t.set(l0, i0, l1 | 3)
    t.set(l1, i1, l2 | 3)
    t.set(l2, i2, l3 | 3)
    t.set(l3, i3, 0x4567_8000 | 0x7C3)  # a page, with attribute bits set
    p = Aarch64Paging()
    assert translate_aarch64(t.read, l0, va, p) == 0x4567_8234
    t.set(l2, i2 + 1, 0x8020_0000 | 0x701)  # a 2 MiB block
    assert translate_aarch64(t.read, l0, va + (1 << 21), p) == 0x8020_0000 | (va & 0x1F_FFFF)
    t.set(l1, i1 + 1, 0xC000_0000 | 1)  # a 1 GiB block
    assert translate_aarch64(t.read, l0, va + (1 << 30), p) == 0xC000_0000 | (va & 0x3FFF_FFFF)
    t.set(l3, i3 + 1, 0x4567_9000 | 1)  # "block" at the last level: reserved, invalid
    t.set(l3, i3 + 2, 0x4567_A000 | 2)  # bit 0 clear: invalid
    assert translate_aarch64(t.read, l0, va + 0x1000, p) is None
    assert translate_aarch64(t.read, l0, va + 0x2000, p) is None
    assert translate_aarch64(t.read, l0, va + 0x3000, p) is None  # never mapped
    assert translate_aarch64(t.read, l0, 1 << 48, p) is None  # beyond TTBR0's range


def test_64k_granule_lpa_and_4k_lpa2_output_addresses():
    p64 = Aarch64Paging(65536, 52, 52)
    assert p64.output(0x0000_1234_5678_0000 | 0x5 << 12 | 3) == 0x0005_1234_5678_0000
    t = Tables(65536)
    l1, l2, l3 = t.table(), t.table(), t.table()
    va = 0x000F_1234_5678_9ABC
    t.set(l1, (va >> 42) & 0x1FFF, l2 | 3)
    t.set(l2, (va >> 29) & 0x1FFF, l3 | 3)
    t.set(l3, (va >> 16) & 0x1FFF, 0x0000_0008_0000_0000 | 0x9 << 12 | 3)
    assert translate_aarch64(t.read, l1, va, p64) == 0x0009_0008_0000_0000 | (va & 0xFFFF)
    lpa2 = Aarch64Paging(4096, 52, 52)
    assert lpa2.output(0x0001_2345_6789_A000 | 0x3 << 8 | 3) == 0x000D_2345_6789_A000
    assert Aarch64Paging(16384).output(0x0000_1234_5678_A003) == 0x0000_1234_5678_8000


def test_read_user_stops_at_the_first_unmapped_page_and_faults_on_bad_tables():
    t = Tables()
    l0, l1, l2, l3 = t.table(), t.table(), t.table(), t.table()
    data = t.table()
    t.pages[data][-5:] = b"argv\0"
    va = 0x0000_AAAA_0000_0FFB
    idx = [(va >> s) & 511 for s in (39, 30, 21, 12)]
    for table, nxt, i in ((l0, l1, idx[0]), (l1, l2, idx[1]), (l2, l3, idx[2])):
        t.set(table, i, nxt | 3)
    t.set(l3, idx[3], data | 3)
    got = pagetable.read_user(t.read, l0, va, 4096, arm64=Aarch64Paging())
    assert got == b"argv\0"  # the next page is not mapped: a short read
    t.set(l3, idx[3] + 1, 0x7000_0000 | 3)  # a page outside the guest
    with pytest.raises(PhysicalFault):
        pagetable.read_user(t.read, l0, va, 4096, arm64=Aarch64Paging())


# -- vmcores ---------------------------------------------------------------------------

REGS = {**{f"x{n}": 0x1000 + n for n in range(31)}, "sp": 0xFFFF_8000_080C_3DE0}
REGS.update(pc=0xFFFF_CD17_6E6D_A26C, pstate=0x4000_00C5)


def test_arm64_prstatus_layout_and_xen_names():
    raw = vmcore.prstatus(1, REGS, "aarch64")
    assert len(raw) == ARM64_PRSTATUS_SIZE == 392
    assert struct.unpack_from("<i", raw, 32)[0] == 2  # pr_pid: vCPU + 1
    values = struct.unpack_from("<34Q", raw, PR_REG)
    assert values[:31] == tuple(0x1000 + n for n in range(31))
    assert values[31:] == (REGS["sp"], REGS["pc"], REGS["pstate"])
    xen = {"pc64": 0x10, "cpsr": 0x3C5, "sp_el1": 0x20, "sp_el0": 0x30}  # vcpu_guest_core_regs
    assert struct.unpack_from("<3Q", vmcore.prstatus(0, xen, "aarch64"), PR_REG + 31 * 8) == (
        0x20,
        0x10,
        0x3C5,
    )


def test_dump_of_an_arm64_guest_reads_back(tmp_path):
    mem, at = arm64_memory(registers={0: dict(REGS), 1: dict(REGS, pc=0x42)})
    d = discover.scan(mem, timeout=60)
    out = tmp_path / "arm64.vmcore"
    summary = vmcore.dump(mem, out, discovery=d)
    assert summary.ranges == [(RAM, RAM + RAM_SIZE)] and summary.vcpus == 2
    head = out.read_bytes()[:64]
    assert struct.unpack_from("<H", head, 18)[0] == EM_AARCH64
    phoff = struct.unpack_from("<Q", head, 32)[0]
    with open(out, "rb") as f:
        f.seek(phoff + 56)  # the PT_LOAD after the PT_NOTE
        _, _, _, vaddr, paddr = struct.unpack("<IIQQQ", f.read(32))
    assert (vaddr, paddr) == (d.info.linear_va(RAM), RAM) == (0xFFFF_1514_0000_0000, RAM)
    back = DumpMemory(out)
    try:
        assert back.arch == "aarch64" and back.vcpu_count() == 2
        assert back.vcpu_registers(1)["pc"] == 0x42
        assert back.read_physical(at, 24)[12:] == b"VMCOREINFO\0\0"
        again = discover.discover(back, use_cache=False)
        assert again.info.arch == "aarch64" and again.note_address == at
    finally:
        back.close()


def elf_core(machine: int, notes: bytes) -> bytes:
    """A core with one PT_NOTE and one PT_LOAD of a page at 0x40000000, as QEMU writes."""
    ehdr = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr += struct.pack("<HHIQQQIHHHHHH", 4, machine, 1, 0, 64, 0, 0, 64, 56, 2, 0, 0, 0)
    note_off = 64 + 2 * 56
    load_off = note_off + len(notes)
    ph = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), len(notes), 0)
    ph += struct.pack("<IIQQQQQQ", 1, 0, load_off, RAM, RAM, 4096, 4096, 0)
    return ehdr + ph + notes + bytes(4096)


def test_qemu_style_arm64_core_gives_user_pt_regs(tmp_path):
    desc = bytearray(392)
    struct.pack_into("<34Q", desc, PR_REG, *range(100, 134))
    path = tmp_path / "qemu.core"
    path.write_bytes(elf_core(EM_AARCH64, vmcore.note(b"CORE\0", 1, bytes(desc))))
    mem = DumpMemory(path)
    try:
        regs = mem.vcpu_registers(0)
        assert mem.arch == "aarch64" and regs["x0"] == 100 and regs["x30"] == 130
        assert (regs["sp"], regs["pc"], regs["pstate"]) == (131, 132, 133)
        assert mem.ranges() == [(RAM, RAM + 4096)]
    finally:
        mem.close()
    short = tmp_path / "short.core"
    short.write_bytes(elf_core(EM_AARCH64, vmcore.note(b"CORE\0", 1, bytes(336))))
    mem = DumpMemory(short)
    assert mem.vcpu_count() == 0 and "too short for aarch64" in mem.warnings[0]
    mem.close()
    arm32 = tmp_path / "arm32.core"
    arm32.write_bytes(elf_core(40, b""))
    with pytest.raises(DumpFileError, match="machine 40"):
        DumpMemory(arm32)


# -- registers -------------------------------------------------------------------------


def test_regs_view_decodes_by_the_memory_architecture():
    from xenvmi.guests import Guest
    from xenvmi.render import to_jsonable
    from xenvmi.tui.codec import from_jsonable
    from xenvmi.views.regs import Regs, registers_text

    mem, _ = arm64_memory(registers={0: dict(REGS)})
    row = Guest(mem).registers(0).rows[0]
    assert isinstance(row.decoded, Arm64Regs)
    assert row.decoded.mode == "EL1h" and row.decoded.sp == REGS["sp"]
    text = registers_text(row)
    assert "aarch64 EL1h" in text and f"pc {REGS['pc']:#018x}" in text and "x30" in text
    cells = [c.value(row) for c in Regs.columns[1:]]
    assert cells == ["EL1h", 1, f"{REGS['pc']:#018x}", "-"]
    back = from_jsonable(type(row), to_jsonable(row))
    assert isinstance(back.decoded, Arm64Regs) and back.decoded == row.decoded
    x86 = Guest(BytesMemory(bytes(4096), registers={0: {"rip": 5, "cr0": 1}})).registers(0)
    again = from_jsonable(type(row), to_jsonable(x86.rows[0]))
    assert isinstance(again.decoded, X86Regs) and again.decoded.rip == 5


# -- data symbols found by structure ---------------------------------------------------


def synthetic_kp():
    pytest.importorskip("drgn")
    from xenvmi.guest.synthetic import BASE, SyntheticKernel

    k = SyntheticKernel()
    k.add_task(1, b"init")
    k.add_task(2, b"swapper/0")  # a decoy: pid 2, its parent is not itself
    k.add_module(b"dummy")
    k.add_module(b"xen_netfront")
    prog = k.program()
    info = SimpleNamespace(
        numbers={"MODULES_VADDR": BASE, "VMALLOC_END": BASE + k.size},
        image_window=lambda: (BASE, BASE + 0x100),  # "the image": init_task, modules
    )
    kp = SimpleNamespace(prog=prog, read=prog.read, discovery=SimpleNamespace(info=info))
    return k, kp, BASE, bytes(k.mem)


def test_init_task_and_modules_are_found_in_data():
    from xenvmi.guest import datasyms

    k, kp, base, data = synthetic_kp()
    assert datasyms.find_init_task(kp, base, data) == k.init_task
    # the task list's head also links to objects with a small int first (the tasks'
    # state): only the module list's entries have module names
    assert datasyms.find_modules(kp, base, data) == k.modules


def test_a_corrupt_init_task_or_module_list_is_not_taken():
    from xenvmi.guest import datasyms

    k, kp, base, _ = synthetic_kp()
    k.put(k.init_task + 24, "i", 7)  # init_task's pid is not 0
    first = k.read_q(k.modules)
    k.put_bytes(first - 8 + 24, b"\x01bad")  # the first module's name is not printable
    kp.prog = k.program()
    kp.read = kp.prog.read
    data = bytes(k.mem)
    assert datasyms.find_init_task(kp, base, data) is None
    assert datasyms.find_modules(kp, base, data) is None


# -- the arm64 guest's initramfs -------------------------------------------------------


def test_cpio_newc_archive_as_the_kernel_reads_it():
    entries = [
        ("bin", 0o040755, b""),
        ("bin/sh", 0o120777, b"busybox"),
        ("init", 0o100755, b"x" * 5),
    ]
    blob = cpio_newc(entries)
    pos, got = 0, []
    while True:
        assert blob[pos : pos + 6] == b"070701" and pos % 4 == 0
        fields = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = blob[pos + 110 : pos + 110 + namesize - 1].decode()
        start = -(-(pos + 110 + namesize) // 4) * 4
        if name == "TRAILER!!!":
            break
        got.append((name, fields[1], blob[start : start + filesize]))
        pos = -(-(start + filesize) // 4) * 4
    assert got == entries


@pytest.mark.parametrize(
    "page, t1sz, physmem, want",
    [
        ("4096", "0x10", "48", (4096, 48, 48)),
        ("16384", "0xc", "52", (16384, 52, 52)),  # 52-bit VAs: FEAT_LPA2 descriptors
        ("16384", "0x11", "52", (16384, 47, 48)),  # a 52-bit kernel on a CPU without LPA2
        ("65536", "0x10", "52", (65536, 48, 52)),  # FEAT_LPA is independent of the VA size
    ],
)
def test_the_user_regime_comes_from_vmcoreinfo(page, t1sz, physmem, want):
    from xenvmi.guest.program import KernelProgram

    text = note_text(
        PAGESIZE=page,
        **{"NUMBER(TCR_EL1_T1SZ)": t1sz, "NUMBER(MAX_PHYSMEM_BITS)": physmem},
        **{"NUMBER(VA_BITS)": "52" if physmem == "52" else "48"},
    )
    info = V.parse_text(text, "aarch64")
    mem = BytesMemory(bytes(4096), base=RAM, arch="aarch64")
    kp = KernelProgram(None, mem, SimpleNamespace(info=info), None)  # type: ignore[arg-type]
    assert kp.arm64_paging == Aarch64Paging(*want)
    kp.memory = BytesMemory(bytes(4096))  # x86-64: no AArch64 regime
    assert kp.arm64_paging is None


def test_iomem_resource_is_found_by_its_name_span_and_children():
    from xenvmi.guest import datasyms

    k, kp, base, _ = synthetic_kp()
    decoy = k.alloc(64)  # spans everything too, but is not "PCI mem"
    k.put(decoy, "QQ", 0, (1 << 64) - 1)
    k.put(decoy + 16, "Q", k.alloc(8))
    k.put_bytes(k.read_q(decoy + 16), b"PCI IO\0")
    children = k.set_iomem([(0x4000_0000, 0x4FFF_FFFF, b"System RAM")])
    root = k.symbols["iomem_resource"]
    name = k.alloc(8)
    k.put_bytes(name, b"PCI mem\0")
    k.put(root + 16, "Q", name)
    kp.prog = k.program()
    kp.read = kp.prog.read
    assert datasyms.find_iomem(kp, base, bytes(k.mem)) == root
    k.put(children[0] + 40, "Q", decoy)  # its child names another parent: not the root
    kp.prog = k.program()
    kp.read = kp.prog.read
    assert datasyms.find_iomem(kp, base, bytes(k.mem)) is None


def test_linear_map_and_vmalloc_area_before_and_since_the_5_4_flip():
    new = V.parse_text(note_text(**{"NUMBER(PHYS_OFFSET)": "0x40000000"}), "aarch64")
    old = V.parse_text(
        note_text(OSRELEASE="4.19.0-27-arm64", **{"NUMBER(PHYS_OFFSET)": "0x40000000"}), "aarch64"
    )
    assert new.linear_va(RAM) == 0xFFFF_0000_0000_0000  # 5.4+: the lower half
    assert old.linear_va(RAM) == 0xFFFF_8000_0000_0000  # before: the upper half
    assert old.linear_pa(0xFFFF_8000_0012_3000) == RAM + 0x12_3000
    assert new.vmalloc_area == (0xFFFF_8000_0000_0000, 1 << 64)
    assert old.vmalloc_area == (0xFFFF_0000_0000_0000, 0xFFFF_8000_0000_0000)
