"""Finding kallsyms tables by structure (kernels whose VMCOREINFO does not name them),
on images laid out as scripts/kallsyms.c does in each version, and on hostile ones."""

from __future__ import annotations

import struct
import time

import pytest
from kallsyms_image import IMAGE_PA, TEXT_VA, Tables, build, symbols

from xenvmi.errors import GuestDataError
from xenvmi.guest import kallsyms_tables as KT


def find(t: Tables, known=None, limit=None, timeout=60.0):
    image = t.image

    def read(pa: int, size: int) -> bytes:
        off = pa - IMAGE_PA
        data = image[off : off + size]
        return data + bytes(size - len(data))

    return KT.find(
        read,
        IMAGE_PA,
        TEXT_VA,
        limit or len(image),
        t.known() if known is None else known,
        timeout=timeout,
    )


CASES = [
    ("before 6.4", "absolute-percpu", True),
    ("before 6.4", "base-relative", False),
    ("before 6.4", "absolute", True),
    ("6.4+", "absolute-percpu", True),
    ("6.4+", "base-relative", False),
    ("6.4+", "place-relative", False),
]


@pytest.mark.parametrize("layout,encoding,percpu", CASES)
def test_each_layout_and_encoding_is_found_exactly(layout, encoding, percpu):
    t = build(symbols(percpu=percpu), layout=layout, encoding=encoding)
    found = find(t)
    assert found.symbols() == {
        k: v for k, v in t.at.items() if k not in ("kallsyms_markers", "kallsyms_seqs_of_names")
    }
    assert found.markers == t.at["kallsyms_markers"]
    assert (found.layout, found.encoding, found.num_syms) == (layout, encoding, len(t.syms))
    assert "_stext" in found.agreed and "init_uts_ns" in found.agreed


def test_two_byte_name_lengths_and_pointer_sized_markers():
    t = build(symbols(long_names=True), marker_width=8)
    found = find(t)
    assert found.names == t.at["kallsyms_names"] and found.num_syms == len(t.syms)
    longest = max(t.syms, key=lambda s: len(s[1]))
    assert len(longest[1]) > 300  # compressed to 128 bytes or more: a two-byte length


def test_odd_marker_count_with_alignment_padding():
    """Five u32 markers end 4 bytes short of the 8-aligned token table: one word of
    padding zeros sits between them (Debian 11's 5.10 is laid out so)."""
    t = build(symbols(count=1100))
    assert t.at["kallsyms_token_table"] - t.at["kallsyms_markers"] == 5 * 4 + 4
    assert find(t).markers == t.at["kallsyms_markers"]


@pytest.mark.parametrize("count", [1100, 1500])
def test_seqs_of_names_between_markers_and_token_table(count):
    """6.2 put kallsyms_seqs_of_names (3 bytes a symbol) between the markers and the
    token table; Debian's 6.1 carries it as a backport (seen in the lab's 6.1 guest)."""
    t = build(symbols(count=count), seqs=True)
    found = find(t)
    assert found.markers == t.at["kallsyms_markers"]
    assert found.names == t.at["kallsyms_names"] and found.num_syms == len(t.syms)


def test_decoy_digit_runs_before_the_table_are_skipped():
    lead = b"version 0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00 and more" * 3
    t = build(lead=lead)
    assert find(t).token_table == t.at["kallsyms_token_table"]


def test_table_that_disagrees_with_vmcoreinfo_is_refused():
    t = build()
    known = dict(t.known(), _stext=t.known()["_stext"] + 0x1000)
    with pytest.raises(GuestDataError, match="no address encoding gives"):
        find(t, known=known)


def test_too_few_vmcoreinfo_symbols_to_check_against():
    t = build()
    with pytest.raises(GuestDataError, match="too few kernel symbols"):
        find(t, known={"_stext": t.known()["_stext"]})


def _patch(t: Tables, name: str, delta: int, data: bytes) -> Tables:
    image = bytearray(t.image)
    off = t.at[name] - TEXT_VA + delta
    image[off : off + len(data)] = data
    return Tables(bytes(image), t.at, t.syms)


def test_token_index_that_does_not_point_at_the_tokens():
    t = _patch(build(), "kallsyms_token_index", 2 * 0x31, struct.pack("<H", 7))
    with pytest.raises(GuestDataError, match="no token index"):
        find(t)


def test_marker_that_does_not_point_at_a_name():
    t = _patch(build(), "kallsyms_markers", 4, struct.pack("<I", 0x7FF0))
    with pytest.raises(GuestDataError, match="no marker array|no names stream"):
        find(t)


def test_names_with_a_wild_length_or_count():
    t = _patch(build(), "kallsyms_num_syms", 0, struct.pack("<I", 0xFFFFFFF0))
    with pytest.raises(GuestDataError, match="no names stream"):
        find(t)
    t = _patch(build(), "kallsyms_names", 0, b"\xff\xff")  # a 32 KiB "name"
    with pytest.raises(GuestDataError, match="no names stream"):
        find(t)


def test_unsorted_addresses_are_refused():
    t = build(symbols(percpu=False), encoding="base-relative")
    t = _patch(t, "kallsyms_offsets", 4 * 100, struct.pack("<I", 0x7FFFFFF))
    with pytest.raises(GuestDataError, match="no address encoding"):
        find(t)


def test_garbage_ends_in_time_with_one_error():
    rnd = bytearray((i * 2654435761 >> 7) & 0xFF for i in range(4 << 20))
    for at in range(0x1000, len(rnd), 0x40000):  # digit runs everywhere
        rnd[at : at + len(KT.DIGITS)] = KT.DIGITS
    t = Tables(bytes(rnd), {}, symbols())
    t0 = time.monotonic()
    with pytest.raises(GuestDataError, match="no kallsyms tables"):
        find(t)
    assert time.monotonic() - t0 < 20


def test_a_reader_that_gives_nothing_ends_the_search():
    with pytest.raises(GuestDataError, match="no kallsyms tables"):
        KT.find(lambda pa, n: b"", IMAGE_PA, TEXT_VA, 64 << 20, build().known(), timeout=5)


def test_search_stays_within_its_limit():
    t = build()
    with pytest.raises(GuestDataError, match="first 4 MiB"):
        find(t, limit=4 << 20)  # the tables sit at 8 MiB


def test_drgn_loads_symbols_from_the_lines_we_write():
    """The found locations, as SYMBOL() lines in the note text, drive drgn's own loader."""
    drgn = pytest.importorskip("drgn")
    from drgn.helpers.linux.kallsyms import load_vmlinux_kallsyms

    from xenvmi.guest.program import PLATFORM

    for layout, encoding, percpu in CASES:
        t = build(symbols(percpu=percpu), layout=layout, encoding=encoding)
        found = find(t)
        text = (
            b"OSRELEASE=5.10.0-test\nPAGESIZE=4096\n"
            + "".join(f"SYMBOL({k})={v:x}\n" for k, v in t.known().items()).encode()
            + found.vmcoreinfo_lines(t.known())
        )
        prog = drgn.Program(PLATFORM)
        image = t.image
        prog.set_linux_kernel_custom(text, True)
        prog.add_memory_segment(
            TEXT_VA,
            len(image),
            lambda a, n, off, phys, image=image: image[off : off + n],
            physical=False,
        )
        index = load_vmlinux_kallsyms(prog)
        prog.register_symbol_finder("kallsyms", index, enable_index=0)
        for _, name, addr in t.syms[::97]:
            assert prog.symbol(name).address == addr, (layout, encoding, name)
