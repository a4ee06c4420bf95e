"""Struct layouts from BTF and the x86-64 user page walk: exact offsets, hostile tables."""

from __future__ import annotations

import struct

import pytest

drgn = pytest.importorskip("drgn")

from xenvmi.backends.memory import BytesMemory, PhysicalFault  # noqa: E402
from xenvmi.guest import pagetable  # noqa: E402
from xenvmi.guest.layout import Layout  # noqa: E402
from xenvmi.guest.synthetic import CRED, TASK, SyntheticKernel  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def prog():
    return SyntheticKernel().program()


def test_layout_offsets_follow_btf(prog):
    lay = Layout.of(
        prog,
        "struct task_struct",
        {
            "comm": ("comm",),
            "pid": ("pid",),
            "state": ("__state", "state"),
            "parent": ("real_parent",),
        },
    )
    assert lay.start == TASK["__state"]
    assert lay.span == TASK["real_parent"] + 8 - TASK["__state"]
    raw = bytearray(lay.span)
    struct.pack_into("<I", raw, TASK["__state"], 0x402)
    struct.pack_into("<i", raw, TASK["pid"], -5)  # pid_t is signed
    raw[TASK["comm"] : TASK["comm"] + 4] = b"init"
    struct.pack_into("<Q", raw, TASK["real_parent"], 0xFFFF_8880_0000_1000)
    got = lay.unpack(bytes(raw))
    assert got == {
        "comm": b"init".ljust(16, b"\0"),
        "pid": -5,
        "state": 0x402,
        "parent": 0xFFFF_8880_0000_1000,
    }


def test_layout_renamed_nested_and_optional_fields(prog):
    lay = Layout.of(
        prog,
        "struct task_struct",
        {"start": ("real_start_time", "start_boottime"), "gone": ("no_such_field",)},
        optional=("gone",),
    )
    assert lay.start == TASK["start_boottime"] and lay.span == 8
    assert lay.unpack(struct.pack("<Q", 7)) == {"start": 7, "gone": None}
    cred = Layout.of(prog, "struct cred", {"euid": ("euid.val",)})
    assert cred.start == CRED["euid"] and cred.unpack(struct.pack("<I", 1000)) == {"euid": 1000}
    with pytest.raises(LookupError):
        Layout.of(prog, "struct task_struct", {"x": ("no_such_field",)})
    with pytest.raises(LookupError):  # a struct member is neither scalar nor array
        Layout.of(prog, "struct task_struct", {"tasks": ("tasks",)})


def test_layout_is_cached_per_program(prog):
    fields = {"pid": ("pid",)}
    assert Layout.of(prog, "struct task_struct", fields) is Layout.of(
        prog, "struct task_struct", fields
    )


def test_layout_reads_through_drgn():
    k = SyntheticKernel()
    t = k.add_task(42, b"worker")
    prog = k.program()
    lay = Layout.of(prog, "struct task_struct", {"pid": ("pid",), "comm": ("comm",)})
    got = lay.read(prog.read, t)
    assert got["pid"] == 42 and got["comm"].rstrip(b"\0") == b"worker"
    with pytest.raises(drgn.FaultError):
        lay.read(prog.read, 0xFFFF_FFFF_0000_0000)


# -- page tables ---------------------------------------------------------------------

PML4, PDPT, PD, PT, DATA, DATA2, BIG = (i * 0x1000 for i in range(1, 8))
VA = 0x0000_7FFC_1234_5FF8  # 8 bytes before a page boundary: the read spans two pages
HUGE_PA = 0x20_0000  # a 2 MiB page


def _index(va: int, shift: int) -> int:
    return (va >> shift) & 511


def _tables(image: bytearray, va: int, levels: int = 4) -> int:
    """Map ``va`` and the next page to DATA, DATA2; returns the top table's address."""
    chain = [PML4, PDPT, PD, PT] if levels == 4 else [BIG, PML4, PDPT, PD, PT]
    shifts = (48, 39, 30, 21)[4 - (levels - 1) :] if levels == 5 else (39, 30, 21)
    for table, nxt, shift in zip(chain, chain[1:], shifts):
        struct.pack_into("<Q", image, table + _index(va, shift) * 8, nxt | 0x67)
    struct.pack_into("<Q", image, PT + _index(va, 12) * 8, DATA | 0x67)
    struct.pack_into("<Q", image, PT + _index(va + 8, 12) * 8, DATA2 | 0x67)
    image[DATA + 0xFF8 : DATA + 0x1000] = b"/sbin/in"
    image[DATA2 : DATA2 + 8] = b"it\0-v\0\0\0"
    return chain[0]


def _read(mem: BytesMemory):
    return lambda pa, n: mem.read_physical(pa, n, strict=True)


@pytest.mark.parametrize("levels", [4, 5])
def test_read_user_across_pages(levels):
    image = bytearray(0x40_0000)
    top = _tables(image, VA, levels)
    mem = BytesMemory(image)
    assert pagetable.read_user(_read(mem), top, VA, 14, levels) == b"/sbin/init\0-v\0"
    assert pagetable.translate(_read(mem), top, VA, levels) == DATA + 0xFF8


def test_read_user_stops_at_an_unmapped_page():
    image = bytearray(0x40_0000)
    _tables(image, VA, 4)
    struct.pack_into("<Q", image, PT + _index(VA + 8, 12) * 8, DATA2)  # not present
    mem = BytesMemory(image)
    assert pagetable.read_user(_read(mem), PML4, VA, 14) == b"/sbin/in"
    assert pagetable.read_user(_read(mem), PML4, 0x1000, 8) == b""  # nothing mapped there


def test_read_user_huge_page():
    image = bytearray(0x40_0000)
    va = 0x0000_5555_5560_0000 + 0x1234
    struct.pack_into("<Q", image, PML4 + _index(va, 39) * 8, PDPT | 0x67)
    struct.pack_into("<Q", image, PDPT + _index(va, 30) * 8, PD | 0x67)
    struct.pack_into("<Q", image, PD + _index(va, 21) * 8, HUGE_PA | 0xE7)  # PS set
    image[HUGE_PA + 0x1234 : HUGE_PA + 0x1238] = b"bash"
    assert pagetable.read_user(_read(BytesMemory(image)), PML4, va, 4) == b"bash"


def test_hostile_entry_outside_the_guest_faults():
    image = bytearray(0x40_0000)
    _tables(image, VA, 4)
    struct.pack_into("<Q", image, PDPT + _index(VA, 30) * 8, 0x7_0000_0000 | 0x67)
    with pytest.raises(PhysicalFault):
        pagetable.read_user(_read(BytesMemory(image)), PML4, VA, 14)


def test_self_referencing_tables_still_end():
    """A PML4 entry pointing to the PML4 itself: the walk has a fixed depth, so it ends."""
    image = bytearray(0x40_0000)
    for shift in (39,):
        struct.pack_into("<Q", image, PML4 + _index(VA, shift) * 8, PML4 | 0x67)
    got = pagetable.read_user(_read(BytesMemory(image)), PML4, VA, 4096)
    assert len(got) <= 4096


def test_fields_far_apart_are_read_in_separate_chunks(monkeypatch):
    from xenvmi.guest import layout as L

    monkeypatch.setattr(L, "GAP", 8)  # the synthetic task is small: make its gaps count
    k = SyntheticKernel()
    t = k.add_task(42, b"worker", uid=7)
    prog = k.program()
    lay = Layout.of(
        prog,
        "struct task_struct",
        {"state": ("__state",), "exit": ("exit_state",), "pid": ("pid",), "comm": ("comm",)},
    )
    assert [c[0] for c in lay._chunks] == [TASK["__state"], TASK["pid"]]
    reads = []

    def read(addr, n):
        reads.append((addr - t, n))
        return prog.read(addr, n)

    got = lay.read(read, t)
    assert reads == [(TASK["__state"], 8), (TASK["pid"], TASK["comm"] + 16 - TASK["pid"])]
    assert got["pid"] == 42 and got["comm"].rstrip(b"\0") == b"worker" and got["exit"] == 0
    assert lay.unpack(prog.read(t + lay.start, lay.span)) == got
