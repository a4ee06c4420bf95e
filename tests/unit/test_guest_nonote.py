"""Finding a kernel with no VMCOREINFO note from its page tables and banner, on synthetic
guests laid out as Linux maps itself (KASLR, lazy-TLB CR3, PTI user tables), and on
hostile ones; the result must equal what the note would have said."""

from __future__ import annotations

import struct

import pytest
from nonote_image import BANNER_OFF, PGD_OFF, PROC_PGD, RELEASE, UTS_OFF, Kernel, kernel
from vmcore_image import note

from xenvmi.backends.memory import BytesMemory
from xenvmi.errors import GuestDataError
from xenvmi.guest import discover, nonote
from xenvmi.guest import vmcoreinfo as V


def mem_of(k: Kernel, **kw) -> BytesMemory:
    return BytesMemory(k.image, name="g", registers=k.regs, **kw)


def with_note(k: Kernel, at: int = 60 << 20) -> Kernel:
    n = note(k.note_text())
    k.image[at : at + len(n)] = n
    return k


@pytest.mark.parametrize(
    "kw",
    [
        {},  # KASLR, CR3 a process's tables (an idle vCPU keeps the last mm)
        {"cr3_is_swapper": True, "slide": 0, "text_pa": 0x100_0000},  # no KASLR
        {"pti_user": True},  # a vCPU in user mode with page-table isolation
        {"dm_slot": 273, "dm_pud": 0},  # the direct map not randomized
        {"slide": 0x3E00_0000, "text_pa": 0x80_0000},  # phys_base far below
        {"decoy_banner": True},  # another banner text before linux_banner
    ],
)
def test_the_kernel_found_from_the_page_tables_is_what_the_note_says(kw):
    k = kernel(**kw)
    info, lay, banner_pa, banner, how = nonote.locate(mem_of(k))
    want = V.parse_text(k.note_text())
    assert info.osrelease == want.osrelease == RELEASE
    assert info.kernel_offset == want.kernel_offset == k.slide
    assert info.phys_base == want.phys_base == k.phys_base
    for name in ("swapper_pg_dir", "init_uts_ns", "_stext"):
        assert info.symbols[name] == want.symbols[name], name
    assert info.has_kallsyms() and not info.warnings
    assert lay.direct_map == k.direct_map
    assert banner_pa == k.pa(k.text + BANNER_OFF) and banner.startswith(b"Linux version 5.10")
    assert "linux_banner" in how and f"{k.text:#x}" in how


class _Recording(BytesMemory):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.ranges: list[tuple[int, int]] = []

    def _read_pages(self, addr, size):
        self.ranges.append((addr, addr + size))
        return super()._read_pages(addr, size)


def test_the_build_id_comes_from_the_kernels_notes():
    k = kernel(build_id=bytes(range(20)))
    info, *_ = nonote.locate(mem_of(k))
    assert info.build_id == bytes(range(20)).hex()
    assert kernel().note_text() and nonote.locate(mem_of(kernel()))[0].build_id is None


def test_only_the_kernel_image_is_read():
    """256 MiB of RAM: the search reads the image's mapped 2 MiB pages (and the page
    tables in low memory), nothing of the rest of RAM."""
    k = kernel(size=256 << 20, text_pa=0x300_0000)
    mem = _Recording(k.image, name="g", registers=k.regs)
    _, lay, *_ = nonote.locate(mem)
    image = (k.text_pa, k.text_pa + lay.end - lay.text)
    outside = [r for r in mem.ranges if not (image[0] <= r[0] and r[1] <= image[1])]
    assert all(end <= PROC_PGD + 0x2000 for _, end in outside), outside
    assert lay.end - lay.text == 10 << 20 and mem.stats["backend_bytes"] < 3 * (10 << 20)


def test_discover_falls_back_to_the_page_tables_and_drgn_reads_the_kernel():
    pytest.importorskip("drgn")
    from xenvmi.guest import program

    k = kernel()
    mem = mem_of(k)
    d = discover.discover(mem, use_cache=False, timeout=60)
    assert d.method == "page tables" and d.note_address == 0
    assert "no valid VMCOREINFO note" in d.sources["kernel"]
    kp = program.build(mem, d, use_cache=False)
    assert kp.prog.symbol("linux_banner").address == k.syms["linux_banner"]
    assert kp.prog.read(k.syms["linux_banner"], 14) == b"Linux version "
    assert kp.prog.type("struct task_struct").size > 0
    assert "found by structure" in kp.sources["symbols"]
    assert kp.sources["direct map"].startswith(f"{k.direct_map:#x}")


def test_the_diagnostic_switch_ignores_a_good_note(monkeypatch):
    k = with_note(kernel())
    mem = mem_of(k)
    with_it = discover.discover(mem, use_cache=False, timeout=60)
    assert with_it.method == "note"
    monkeypatch.setenv(nonote.IGNORE_ENV, "1")
    without = discover.discover(mem, use_cache=False, timeout=60)
    assert without.method == "page tables"
    assert without.sources["vmcoreinfo"] == "none used"
    for attr in ("osrelease", "kernel_offset", "phys_base"):
        assert getattr(without.info, attr) == getattr(with_it.info, attr), attr
    assert without.info.symbols["swapper_pg_dir"] == with_it.info.symbols["swapper_pg_dir"]


def test_cached_per_boot_and_refused_after_the_kernel_moved(monkeypatch, tmp_path):
    monkeypatch.setenv("XENVMI_CACHE_DIR", str(tmp_path))
    k = kernel()
    mem = mem_of(k)
    mem.domid, mem.uuid = 7, "u-1"
    first = discover.discover(mem, timeout=60)
    assert not first.from_cache and first.cache_path
    again = discover.discover(mem, timeout=60)
    assert again.from_cache and again.method == "page tables"
    assert again.info.raw == first.info.raw
    # A reboot: the same domain key, but the kernel elsewhere (another KASLR slide).
    moved = kernel(slide=0x2000_0000)
    mem2 = mem_of(moved)
    mem2.domid, mem2.uuid = 7, "u-1"
    fresh = discover.discover(mem2, timeout=60)
    assert not fresh.from_cache and fresh.info.kernel_offset == 0x2000_0000
    # The diagnostic mode keeps its own entry: a note found later is not mixed with it.
    monkeypatch.setenv(nonote.IGNORE_ENV, "1")
    assert discover._cache_file(mem, tmp_path) != (tmp_path / "discovery" / "u-1-7.json")


def _break(k: Kernel, what: str) -> None:
    img = k.image
    pgd = k.pa(k.text + PGD_OFF)
    if what == "no cr3":
        k.regs[0]["cr3"] = 0
    elif what == "no kernel half":
        img[PROC_PGD + 4088 : PROC_PGD + 4096] = bytes(8)
        img[pgd + 4088 : pgd + 4096] = bytes(8)
    elif what == "pointer outside RAM":
        struct.pack_into("<Q", img, PROC_PGD + 511 * 8, (1 << 45) | 0x63)
    elif what == "no banner":
        at = k.pa(k.text + BANNER_OFF)
        img[at : at + 5] = b"Xinux"
    elif what == "uts disagrees":
        at = k.pa(k.text + UTS_OFF) + 4 + 130
        img[at : at + 4] = b"9.99"
    elif what == "swapper is not the kernel half":
        struct.pack_into("<Q", img, pgd + 511 * 8, 0x12345063)
    elif what == "image not contiguous":
        pd = k.pa(k.text + PGD_OFF + 0x2000)
        first = (k.text - V.KERNEL_MAP) >> 21
        struct.pack_into("<Q", img, pd + (first + 2) * 8, 0x7000_0000 | 0xE3)
    elif what == "below _text":
        pd = k.pa(k.text + PGD_OFF + 0x2000)
        struct.pack_into("<Q", img, pd, 0xE3)


@pytest.mark.parametrize(
    "what,message",
    [
        ("no cr3", "no CR3"),
        ("no kernel half", "map no kernel image"),
        ("pointer outside RAM", "map no kernel image"),
        ("no banner", "no Linux banner at kallsyms' linux_banner"),
        ("uts disagrees", "not init_uts_ns's"),
        ("swapper is not the kernel half", "does not map the kernel image as CR3"),
        ("image not contiguous", "not physically contiguous"),
        ("below _text", "below _text"),
    ],
)
def test_hostile_page_tables_and_image_give_one_line_errors(what, message):
    k = kernel()
    _break(k, what)
    with pytest.raises(GuestDataError, match=message) as e:
        nonote.locate(mem_of(k), timeout=30)
    assert "\n" not in str(e.value)


def test_discover_names_both_ways_when_neither_works():
    k = kernel()
    _break(k, "no banner")
    with pytest.raises(discover.ScanFailed) as e:
        discover.discover(mem_of(k), use_cache=False, timeout=60)
    text = str(e.value)
    assert "no valid VMCOREINFO note" in text and "without a note: no Linux banner" in text


def test_a_memory_with_no_vcpu_state_says_so():
    k = kernel()
    with pytest.raises(GuestDataError, match="no vCPU 0"):
        nonote.locate(BytesMemory(k.image, name="g"))
