"""The vmcore writer: layout, round trip through the dumpfile backend, real drgn, pausing,
deadlines, progress, and never a partial file left behind."""

from __future__ import annotations

import os
import struct

import pytest
import vmcore_image as I

from xenvmi.backends.dumpfile import DumpMemory
from xenvmi.backends.memory import BytesMemory
from xenvmi.errors import GuestDataError, UsageError
from xenvmi.guest import discover, vmcore

drgn = pytest.importorskip("drgn")


@pytest.fixture
def mem():
    return I.memory()


@pytest.fixture
def disc(mem):
    return discover.scan(mem)


def only_file(tmp_path, name):
    """The directory holds exactly ``name`` (no hidden partial files)."""
    assert sorted(os.listdir(tmp_path)) == [name]


def phdrs(path):
    data = open(path, "rb").read(64 + 56 * 64)
    (phoff,) = struct.unpack_from("<Q", data, 32)
    (phnum,) = struct.unpack_from("<H", data, 56)
    return [struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i) for i in range(phnum)]


def test_elf_layout(tmp_path, mem, disc):
    path = tmp_path / "g.vmcore"
    s = vmcore.dump(mem, path, discovery=disc)
    assert s.ranges == I.RANGES and s.vcpus == 2 and s.vmcoreinfo and s.format == "elf"
    assert s.bytes == path.stat().st_size and oct(path.stat().st_mode & 0o777) == "0o600"
    heads = phdrs(path)
    assert heads[0][0] == vmcore.PT_NOTE
    loads = [h for h in heads if h[0] == vmcore.PT_LOAD]
    assert [(h[4], h[4] + h[5]) for h in loads] == I.RANGES  # p_paddr, p_filesz
    assert all(h[3] == I.DIRECT_MAP + h[4] and h[5] == h[6] for h in loads)  # p_vaddr
    assert all(h[2] % 4096 == 0 for h in loads)
    assert s.direct_map == I.DIRECT_MAP and s.warnings == []
    only_file(tmp_path, "g.vmcore")


def test_prstatus_layout():
    raw = vmcore.prstatus(1, I.REGS[1])
    assert len(raw) == 336 and struct.unpack_from("<i", raw, 32) == (2,)  # pr_pid = CPU + 1
    regs = dict(zip(vmcore.USER_REGS, struct.unpack_from("<27Q", raw, 112)))
    assert regs["rip"] == I.REGS[1]["rip"] and regs["rdi"] == 7 and regs["eflags"] == 2


def test_round_trip_byte_for_byte(tmp_path, mem, disc):
    path = tmp_path / "g.vmcore"
    vmcore.dump(mem, path, discovery=disc)
    with DumpMemory(path) as back:
        assert back.kind == "dump" and back.name == str(path)
        assert back.ranges() == I.RANGES
        assert back.read_physical(0, I.SIZE) == I.expected(mem.image)
        assert not back.page_readable(5 * I.MiB) and not back.page_readable(9 * I.MiB + 4096)
        assert back.page_readable(9 * I.MiB) and back.page_readable(13 * I.MiB)
        assert back.vcpu_count() == 2
        assert back.vcpu_registers(0) == I.REGS[0] and back.vcpu_registers(1) == I.REGS[1]
        assert back.vmcoreinfo == I.note_text() and back.vmcoreinfo_address == I.NOTE_AT
        assert back.warnings == []


def test_raw_image_round_trip(tmp_path, mem):
    path = tmp_path / "g.raw"
    s = vmcore.dump(mem, path, fmt="raw")
    data = path.read_bytes()
    assert s.bytes == len(data) == 20 * I.MiB  # up to the end of the last RAM range
    assert data == I.expected(mem.image)[: 20 * I.MiB]
    with DumpMemory(path) as back:
        assert back.kind == "image" and back.read_physical(0, len(data)) == data


def test_drgn_opens_the_vmcore(tmp_path, mem, disc):
    path = tmp_path / "g.vmcore"
    vmcore.dump(mem, path, discovery=disc)
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL  # it read our VMCOREINFO
    want = I.expected(mem.image)
    for addr in (0, 8 * I.MiB, 9 * I.MiB + 12288, 19 * I.MiB + 123):
        assert prog.read(addr, 64, True) == want[addr : addr + 64]
        assert prog.read(I.DIRECT_MAP + addr, 64) == want[addr : addr + 64]  # p_vaddr
    # Through the page tables VMCOREINFO's swapper_pg_dir names (the kernel mapping):
    assert prog.read(I.KERNEL_MAP + 3 * I.MiB, 64) == want[3 * I.MiB : 3 * I.MiB + 64]
    with pytest.raises(drgn.FaultError):
        prog.read(5 * I.MiB, 8, True)


def test_randomized_direct_map(tmp_path):
    """Memory KASLR moves page_offset_base: p_vaddr must follow it, drgn reads by it."""
    mem = I.memory(I.image(pgd_index=290, pud_index=7))
    d = discover.scan(mem)
    assert vmcore.direct_map_base(mem, d.info) == I.direct_map(290, 7)
    s = vmcore.dump(mem, tmp_path / "g.vmcore", discovery=d)
    assert s.direct_map == I.direct_map(290, 7) and not s.warnings
    prog = drgn.Program()
    prog.set_core_dump(str(tmp_path / "g.vmcore"))
    assert prog.read(I.direct_map(290, 7) + 16 * I.MiB, 32) == mem.image[16 * I.MiB :][:32]


def test_direct_map_with_small_pages_and_a_decoy(disc):
    """Page 0 unmapped (4 KiB pages); a slot before it maps other memory (not 1:1)."""
    img = I.image()
    pgd = I.PGD - I.KERNEL_MAP
    pud, pmd, pt = pgd + 4096, pgd + 3 * 4096, pgd + 4 * 4096
    img[pmd : pmd + 2 * 4096] = bytes(2 * 4096)
    struct.pack_into("<Q", img, pud, 0x4000_0083)  # slot 0: 1 GiB page at 1 GiB (a decoy)
    struct.pack_into("<Q", img, pud + 8 * 2, pmd | 0x63)  # slot 2: the direct map
    struct.pack_into("<Q", img, pmd, pt | 0x63)
    struct.pack_into("<Q", img, pt + 8, 0x1000 | 0x63)  # page 0 absent, page 1 mapped
    assert vmcore.direct_map_base(I.memory(img), disc.info) == I.direct_map(273, 2)
    struct.pack_into("<Q", img, pt + 8, 0x5000 | 0x63)  # not 1:1: no direct map at all
    assert vmcore.direct_map_base(I.memory(img), disc.info) is None


def test_no_direct_map_falls_back_with_a_warning(tmp_path, disc):
    img = I.image()
    pgd = I.PGD - I.KERNEL_MAP
    img[pgd : pgd + 8 * 511] = bytes(8 * 511)  # only the kernel image mapping is left
    s = vmcore.dump(I.memory(img), tmp_path / "g.vmcore", discovery=disc)
    assert s.direct_map is None and "direct map" in s.warnings[0]
    assert phdrs(tmp_path / "g.vmcore")[1][3] == I.DIRECT_MAP


def test_without_vmcoreinfo(tmp_path, mem):
    s = vmcore.dump(mem, tmp_path / "g.vmcore")
    assert not s.vmcoreinfo
    with DumpMemory(tmp_path / "g.vmcore") as back:
        assert back.vmcoreinfo is None and back.read_physical(0, I.SIZE) == I.expected(mem.image)


def test_one_pass_in_chunks(tmp_path, mem):
    vmcore.dump(mem, tmp_path / "g.raw", fmt="raw")
    # 6 chunks: one bulk read each plus a few single-page probes, never page by page.
    assert mem.stats["backend_reads"] < 60
    assert mem.stats["backend_bytes"] < I.SIZE + 64 * 4096


class Counting(BytesMemory):
    pauses = resumes = 0

    def _pause(self):
        self.pauses += 1

    def _resume(self):
        self.resumes += 1


def counting():
    return Counting(I.image(), name="g", holes=I.HOLES, registers=I.REGS)


def test_pause_only_when_asked_and_always_resumed(tmp_path):
    m = counting()
    vmcore.dump(m, tmp_path / "a", fmt="raw")
    assert m.pauses == m.resumes == 0
    vmcore.dump(m, tmp_path / "b", fmt="raw", pause=True)
    assert m.pauses == m.resumes == 1

    def boom(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vmcore.dump(m, tmp_path / "c", pause=True, progress=boom)
    assert m.pauses == m.resumes == 2
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # no c, no partial file


def test_deadline_removes_the_file(tmp_path, mem):
    with pytest.raises(vmcore.DumpTimeout, match="deadline"):
        vmcore.dump(mem, tmp_path / "g.vmcore", timeout=0)
    assert os.listdir(tmp_path) == []


def test_progress_reports_bytes_done_of_total(tmp_path, mem):
    seen = []
    vmcore.dump(mem, tmp_path / "g.vmcore", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (I.SIZE, I.SIZE) and len(seen) == I.SIZE // vmcore.CHUNK
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_more_holes_than_load_slots(tmp_path, mem, monkeypatch):
    monkeypatch.setattr(vmcore, "MAX_LOADS", 2)
    s = vmcore.dump(mem, tmp_path / "g.vmcore")
    assert len(s.ranges) == 2  # the later holes are written as zeros
    with DumpMemory(tmp_path / "g.vmcore") as back:
        assert back.read_physical(0, I.SIZE) == I.expected(mem.image)


def test_vcpus_without_registers_are_skipped(tmp_path):
    class HalfRegs(BytesMemory):
        def vcpu_count(self):
            return 2

        def vcpu_registers(self, vcpu=0):
            if vcpu == 1:
                raise GuestDataError("cannot read vCPU 1 of g")
            return dict(I.REGS[0])

    m = HalfRegs(I.image(), holes=I.HOLES)
    s = vmcore.dump(m, tmp_path / "g.vmcore")
    assert s.vcpus == 1 and "vCPU 1" in s.warnings[0]
    s = vmcore.dump(BytesMemory(I.image()), tmp_path / "n.vmcore")  # no registers at all
    assert s.vcpus == 0


def test_nothing_readable(tmp_path):
    with pytest.raises(GuestDataError, match="no readable memory"):
        vmcore.dump(BytesMemory(bytes(8 * I.MiB), holes=((0, 8 * I.MiB),)), tmp_path / "x")
    assert os.listdir(tmp_path) == []


def test_existing_file_needs_force(tmp_path, mem):
    path = tmp_path / "g.vmcore"
    path.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="--force"):
        vmcore.dump(mem, path)
    assert path.read_bytes() == b"keep me"
    vmcore.dump(mem, path, force=True)
    assert path.stat().st_size > I.MiB
    only_file(tmp_path, "g.vmcore")
    with pytest.raises(UsageError, match="directory"):
        vmcore.dump(mem, tmp_path)
    with pytest.raises(UsageError, match="format"):
        vmcore.dump(mem, tmp_path / "y", fmt="qcow2")


#: A RAM island probing cannot see: the chunk's first page, middle and last page are holes.
ISLAND = (17 * I.MiB, 17 * I.MiB + 64 * 1024)
ISLAND_HOLES = I.HOLES[:3] + ((16 * I.MiB, ISLAND[0]), (ISLAND[1], 24 * I.MiB))


def test_probing_alone_loses_an_island_the_ram_map_keeps(tmp_path):
    img = I.image()
    m = I.memory(img, holes=ISLAND_HOLES)
    s = vmcore.dump(m, tmp_path / "probed.raw", fmt="raw")
    assert ISLAND not in s.ranges  # the limit of probing alone
    m = I.memory(img, holes=ISLAND_HOLES)
    s = vmcore.dump(m, tmp_path / "g.raw", fmt="raw", ram_ranges=[(16 * I.MiB, 20 * I.MiB)])
    assert s.ranges[-1] == ISLAND
    with open(tmp_path / "g.raw", "rb") as f:
        assert f.read() == I.expected(img, ISLAND_HOLES)[: ISLAND[1]]


def test_a_ram_map_adds_to_probing_and_never_hides_memory(tmp_path, mem):
    """The map is the guest's word: RAM it leaves out is still found by probing, and RAM
    it claims past the top or inside holes costs reads, not a wrong dump."""
    lying = [(5 * I.MiB, 6 * I.MiB), (9 * I.MiB, 10 * I.MiB), (30 * I.MiB, 1 << 40)]
    s = vmcore.dump(mem, tmp_path / "g.raw", fmt="raw", ram_ranges=lying)
    assert s.ranges == I.RANGES
    with DumpMemory(tmp_path / "g.raw") as back:
        assert back.read_physical(0, I.SIZE) == I.expected(mem.image)
