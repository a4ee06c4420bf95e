"""The native backend (libxenctrl + libxenforeignmemory) against LibVMI on the lab's guests.

For a guest of each type (HVM with KASLR, PVH, PV) both backends must describe the
domain alike, read identical bytes with identical holes (RAM, its end, the hole past it,
the special pages at the top, MMIO, a large batch read), and give identical registers
for every key LibVMI gives; ``xenvmi ps --backend native`` must list the processes
``--backend libvmi`` lists. The guests keep running (a soak may be pausing them): bytes
and registers that change between reads are re-read, as described at each comparison.
"""

from __future__ import annotations

import json

import pytest

from xenvmi.backends.memory import PAGE
from xenvmi.errors import Unavailable

from .conftest import TRANSIENT, needs_libvmi, xenvmi

GUESTS = {"xvm-hvm": "hvm", "xvm-pvh1": "pvh", "xvm-pv": "pv"}
MiB = 1 << 20
#: How often a page or a register set that changed between two reads is read again.
RETRIES = 20

pytestmark = [pytest.mark.timeout(1800), needs_libvmi]


@pytest.fixture(params=list(GUESTS))
def pair(request, guests):
    """(native, libvmi) memories of one guest; LibVMI reads every page itself (its batch
    reader is the native backend's own, so it would compare the code with itself)."""
    from xenvmi.backends.libvmi import LibvmiMemory
    from xenvmi.backends.native import NativeMemory

    name = request.param
    native, lv = NativeMemory(name), LibvmiMemory(name)
    lv._foreign = False
    yield native, lv
    native.close()
    lv.close()


def ranges(mem) -> list[tuple[str, int, int]]:
    """(what, page-aligned start, size) for a guest of ``mem``'s size."""
    top = mem.max_physical_address
    ram_end = mem.memsize // PAGE * PAGE
    return [
        ("low memory (BIOS, real-mode area)", 0, MiB),
        ("large batch read in the kernel's area", 16 * MiB, 8 * MiB),
        ("the end of RAM and the hole after it", ram_end - MiB, 2 * MiB),
        ("the hole past RAM", mem.ram_top, MiB),
        ("MMIO (HVM: the emulated VGA's memory)", 0xF000_0000, 256 * 1024),
        ("special pages at the top", top - 256 * 1024, 256 * 1024),
    ]


def test_same_domain_description(pair):
    native, lv = pair
    assert native.kind == GUESTS[native.name] == lv.kind
    for attr in ("name", "domid", "uuid", "max_physical_address", "memsize", "ram_top"):
        assert getattr(native, attr) == getattr(lv, attr), attr
    assert native.vcpu_count() == lv.vcpu_count() >= 1


def test_same_bytes_and_holes(pair):
    """Each range: readable flags equal page for page; bytes equal, or for a page the
    guest wrote meanwhile (both backends' reads straddle a write), equal when both read
    it again (single pages, up to RETRIES times)."""
    native, lv = pair
    if native.kind == "pv":
        for mem in (native, lv):
            with pytest.raises(Unavailable, match="PV guest"):
                mem.read_physical(0, PAGE)
        return
    report = []
    for what, start, size in ranges(native):
        n_data, n_ok = native._read_pages(start, size)
        l_data, l_ok = lv._read_pages(start, size)
        assert n_ok == l_ok, f"{what}: readable pages differ"
        changed = 0
        for i in range(size // PAGE):
            page = slice(i * PAGE, (i + 1) * PAGE)
            if n_data[page] == l_data[page]:
                continue
            changed += 1
            addr = start + i * PAGE
            for _ in range(RETRIES):
                if native._read_page(addr) == lv._read_page(addr):
                    break
            else:
                pytest.fail(f"{what}: page {addr:#x} differs on every read")
        report.append(f"{what}: {sum(n_ok)}/{len(n_ok)} readable, {changed} changed")
        if "hole past RAM" in what:
            assert not any(n_ok), what
        if "batch" in what:
            assert all(n_ok), what
        if "low memory" in what:  # RAM, with HVM's legacy VGA hole (0xa0000-0xbffff)
            assert n_ok[0] and any(n_ok[0xC0:]) and n_ok[0xA0:0xC0] == [native.kind != "hvm"] * 32
    # the page cache's single-page fills and strict reads through the interface
    for addr in (0x1000, 16 * MiB, native.ram_top):
        assert any(native._read_page(addr) == lv._read_page(addr) for _ in range(RETRIES))
    assert native.page_readable(0x1000) and not native.page_readable(native.ram_top)
    print("; ".join(report))


def test_same_registers(pair):
    """vCPU 0: every register LibVMI gives, the native backend gives with the same value.
    A running vCPU changes between reads, so a set is taken when two native reads around
    the LibVMI one agree; control registers and MSRs must agree every time."""
    native, lv = pair
    stable = ("cr0", "cr4", "msr_efer", "msr_lstar", "msr_star", "msr_cstar", "sysenter_eip")
    for _ in range(RETRIES):
        before, theirs, after = (
            native.vcpu_registers(0),
            lv.vcpu_registers(0),
            native.vcpu_registers(0),
        )
        assert set(theirs) <= set(before), f"native lacks {sorted(set(theirs) - set(before))}"
        for key in stable:
            if key in theirs:
                assert before[key] == theirs[key] == after[key], key
        ours = {k: before[k] for k in theirs}
        if ours == {k: after[k] for k in theirs}:
            diff = {k: (hex(ours[k]), hex(theirs[k])) for k in theirs if ours[k] != theirs[k]}
            if not diff:
                return
    pytest.fail(f"{native.name}: registers never agreed: {diff}")


def pids(name: str, backend: str) -> tuple[int, set[int]]:
    res = xenvmi("ps", name, "--backend", backend, "--json", "-q", timeout=1200)
    if res.returncode != 0:
        return res.returncode, set()
    rows = json.loads(res.stdout)["rows"]
    return 0, {r["pid"] for r in rows if r["comm"] not in TRANSIENT}


@pytest.mark.parametrize("name", list(GUESTS))
def test_ps_same_pids(name, guests):
    """libvmi, native, libvmi: every process both LibVMI listings hold the native one
    holds, and it holds nothing neither holds (short-lived commands left out). A PV
    guest's memory is refused by both alike (exit 5, one line)."""
    code1, first = pids(name, "libvmi")
    code_n, ours = pids(name, "native")
    if GUESTS[name] == "pv":
        res = xenvmi("ps", name, "--backend", "native", "-q", timeout=600)
        assert code1 == code_n == res.returncode == 5
        assert len(res.stderr.strip().splitlines()) == 1 and "PV guest" in res.stderr
        # registers work for PV through both (rip may be user or kernel code: it runs)
        ours, theirs = (json.loads(xenvmi("regs", name, "--backend", b, "--json").stdout)
                        ["rows"][0]["raw"] for b in ("native", "libvmi"))  # fmt: skip
        assert ours["rip"] and ours["cr3"]
        assert (ours["cr0"], ours["cr4"]) == (theirs["cr0"], theirs["cr4"])
        return
    code2, second = pids(name, "libvmi")
    assert code1 == code_n == code2 == 0
    assert first & second <= ours, f"native missed {sorted(first & second - ours)}"
    assert ours <= first | second, f"native listed {sorted(ours - first - second)}"
    assert len(ours) > 20
