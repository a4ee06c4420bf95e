"""VMCOREINFO discovery on synthetic guest-physical memory, real and hostile notes."""

from __future__ import annotations

import json
import struct
import threading

import pytest

from xenvmi.backends.memory import BytesMemory, PhysicalFault
from xenvmi.errors import GuestDataError
from xenvmi.guest import discover
from xenvmi.guest import vmcoreinfo as V

MiB = 1 << 20
UTS_SYM = 0xFFFF_FFFF_8210_0000  # init_uts_ns: pa 0x2100000 with phys_base 0
UTS_PA = UTS_SYM - V.KERNEL_MAP
RELEASE = "6.1.0-28-amd64"


def note_text(release: str = RELEASE, extra: str = "", uts: int = UTS_SYM) -> bytes:
    return (
        f"OSRELEASE={release}\nBUILD-ID=0123abcd\nPAGESIZE=4096\n"
        f"SYMBOL(init_uts_ns)={uts:x}\nOFFSET(uts_namespace.name)=4\n"
        f"SYMBOL(kallsyms_names)=ffffffff82200000\nSYMBOL(kallsyms_num_syms)=ffffffff82200100\n"
        f"SYMBOL(kallsyms_token_table)=ffffffff82200200\n"
        f"SYMBOL(kallsyms_token_index)=ffffffff82200300\n"
        f"NUMBER(phys_base)=0\nKERNELOFFSET=0\n{extra}"
    ).encode()


def note(
    text: bytes, descsz: int | None = None, name: bytes = V.NOTE_NAME, ntype: int = 0
) -> bytes:
    size = len(text) if descsz is None else descsz
    return struct.pack("<III", len(name), size, ntype) + name + b"\x00" + text


def image(
    size: int = 48 * MiB, notes: dict[int, bytes] | None = None, release: str = RELEASE
) -> bytearray:
    img = bytearray(size)
    rel = release.encode()
    img[UTS_PA + 4 : UTS_PA + 4 + 6] = b"Linux\x00"  # struct new_utsname name at offset 4
    img[UTS_PA + 4 + 130 : UTS_PA + 4 + 130 + len(rel)] = rel
    for addr, data in (notes or {}).items():
        img[addr : addr + len(data)] = data
    return img


def memory(img, **kw) -> BytesMemory:
    return BytesMemory(img, name="guest", **kw)


# -- parsing ------------------------------------------------------------------------------


def test_parse_real_shape():
    info = V.parse_note(note(note_text(extra="KERNELOFFSET=ignored-dup\n")))
    assert info.osrelease == RELEASE and info.page_size == 4096
    assert info.symbols["init_uts_ns"] == UTS_SYM and info.has_kallsyms()
    assert info.kernel_offset == 0 and info.phys_base == 0
    assert any("duplicate KERNELOFFSET" in w for w in info.warnings)


@pytest.mark.parametrize(
    "bad, why",
    [
        (note(note_text(), ntype=1), "type"),
        (note(note_text(), descsz=1 << 30), "out of bounds"),
        (note(note_text(), name=b"VMCOREINFX\x00"), "name"),
        (note(b"PAGESIZE=4096\n"), "OSRELEASE"),
        (note(note_text(release="evil\x1b[0m")), "OSRELEASE"),
        (note(note_text(extra="KERNELOFFSET=123\n").replace(b"KERNELOFFSET=0\n", b"")), "slide"),
        (note(note_text(uts=0x4141_4141_4141_4141)), "outside the kernel image"),
        (note(note_text(extra="SYMBOL(mem_section)=7fff00001000\n")), "not a kernel address"),
        (note(note_text(extra="SYMBOL(vmemmap)=ffffffff81000000\n")), "not a kernel address"),
        (note(note_text(extra="SYMBOL(_stext)=ffff888000000000\n")), "outside the kernel image"),
        (note(note_text().replace(b"PAGESIZE=4096", b"PAGESIZE=65536")), "PAGESIZE"),
        (note(note_text())[:30], "truncated"),
    ],
)
def test_parse_rejects_hostile_notes(bad, why):
    with pytest.raises(V.NoteError, match=why):
        V.parse_note(bad)


def test_parse_accepts_mem_section_in_the_direct_map():
    """Debian 6.1 (SPARSEMEM_EXTREME) prints mem_section's value: an allocated address."""
    info = V.parse_note(note(note_text(extra="SYMBOL(mem_section)=ffff88800ffcd000\n")))
    assert info.symbols["mem_section"] == 0xFFFF_8880_0FFC_D000


def test_parse_accepts_vmemmap_and_leaves_out_unknown_symbols_outside_the_image():
    """Debian 13's 6.12 exports SYMBOL(vmemmap)=ffffea0000000000 (the struct page array);
    a symbol the kernel exports in future and that points elsewhere is left out, with a
    warning, instead of refusing the kernel's own note."""
    info = V.parse_note(
        note(
            note_text(
                extra="SYMBOL(vmemmap)=ffffea0000000000\nSYMBOL(new_thing)=ffffc90000000000\n"
            )
        )
    )
    assert info.symbols["vmemmap"] == 0xFFFF_EA00_0000_0000
    assert "new_thing" not in info.symbols
    assert any("SYMBOL(new_thing)" in w for w in info.warnings)


def test_parse_reads_hex_numbers():
    """6.3+ prints NUMBER(VMALLOC_START)=0xffffc90000000000."""
    info = V.parse_note(note(note_text(extra="NUMBER(VMALLOC_START)=0xffffc90000000000\n")))
    assert info.numbers["VMALLOC_START"] == 0xFFFF_C900_0000_0000
    assert not any("VMALLOC_START" in w for w in info.warnings)


def test_parse_accepts_a_negative_phys_base():
    """A KASLR HVM guest's image may sit physically below its virtual offset."""
    text = note_text().replace(b"NUMBER(phys_base)=0", b"NUMBER(phys_base)=-895483904")
    info = V.parse_note(note(text))
    assert info.phys_base == -0x35600000
    assert info.kernel_image_pa(0xFFFF_FFFF_B700_0000) == 0x1A00000


def test_parse_rejects_a_phys_base_below_the_image():
    text = note_text().replace(b"NUMBER(phys_base)=0", b"NUMBER(phys_base)=-2147483648")
    with pytest.raises(V.NoteError, match="phys_base"):
        V.parse_note(note(text))


def test_parse_garbage_lines_are_warnings():
    junk = "no equals sign\n" + "X" * 2000 + "=1\n" + "SYMBOL(a b)=1\n\xff\xfe=\x01\n"
    info = V.parse_note(note(note_text(extra=junk).replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe")))
    assert info.osrelease == RELEASE
    assert len([w for w in info.warnings if "malformed" in w]) >= 3


def test_parse_bounds_line_count():
    info = V.parse_note(note(note_text(extra="A=1\n" * 3000)[: V.MAX_DESC]))
    assert any("lines" in w for w in info.warnings)


# -- scanning -----------------------------------------------------------------------------


def test_scan_finds_note_near_top():
    addr = 46 * MiB + 0x1230
    d = discover.scan(memory(image(notes={addr: note(note_text())})))
    assert d.note_address == addr and d.info.osrelease == RELEASE
    assert d.scanned_bytes <= 3 * MiB  # top-down: found in the first chunks
    assert "scan" in d.sources["vmcoreinfo"] and "matches" in d.sources["vmcoreinfo"]


def test_scan_note_across_chunk_boundary():
    addr = 40 * MiB - 15  # marker straddles the 1 MiB boundary
    d = discover.scan(memory(image(notes={addr: note(note_text())})))
    assert d.note_address == addr


def test_planted_notes_are_rejected():
    """A process can write look-alikes anywhere; only one matching init_uts_ns wins."""
    real = 10 * MiB
    fakes = {
        47 * MiB: note(note_text(release="6.6.6-evil")),  # release != kernel's
        46 * MiB: note(note_text(uts=0xFFFF_8880_0000_0000)),  # symbol outside the image
        45 * MiB: note(note_text(), descsz=70000),  # oversized
    }
    d = discover.scan(memory(image(notes={real: note(note_text()), **fakes})))
    assert d.note_address == real
    assert sum("look-alike" in w for w in d.warnings) == 3


def test_note_without_the_utsname_offset_is_checked_too():
    """Before 5.13 VMCOREINFO has SYMBOL(init_uts_ns) but not OFFSET(uts_namespace.name)
    (Debian 11's 5.10): the utsname is found in init_uts_ns by its ABI layout, and a
    look-alike naming another release is still refused."""
    old = note_text().replace(b"OFFSET(uts_namespace.name)=4\n", b"")
    real, fake = 10 * MiB, 47 * MiB
    d = discover.scan(
        memory(
            image(
                notes={real: note(old), fake: note(old.replace(RELEASE.encode(), b"5.10.0-evil"))}
            )
        )
    )
    assert d.note_address == real and "matches" in d.sources["vmcoreinfo"]
    assert not any("could not be checked" in w for w in d.warnings)
    with pytest.raises(GuestDataError, match="no valid VMCOREINFO"):
        discover.scan(memory(image(notes={real: note(old)}, release="9.9.9")))


def test_no_note_is_a_clear_error():
    with pytest.raises(GuestDataError, match="no valid VMCOREINFO"):
        discover.scan(memory(image(size=4 * MiB)))


def test_scan_deadline():
    with pytest.raises(GuestDataError, match="deadline"):
        discover.scan(memory(image(notes={1 * MiB: note(note_text())})), timeout=-1)


def test_scan_skips_holes():
    img = image(notes={35 * MiB: note(note_text())})
    mem = memory(img, holes=((36 * MiB, 48 * MiB),))
    d = discover.scan(mem)
    assert d.note_address == 35 * MiB
    assert mem.stats["backend_bytes"] < 2 * MiB  # the 12 MiB hole was probed, not read


def test_many_candidates_bounded():
    notes = {i * MiB + 64: note(note_text(release="9.9.9-fake")) for i in range(2, 47)}
    notes.update({i * MiB + 2048: note(note_text(release="9.9.8-fake")) for i in range(2, 47)})
    with pytest.raises(GuestDataError, match="rejected"):
        discover.scan(memory(image(notes=notes)))


# -- cache --------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XENVMI_CACHE_DIR", str(tmp_path))
    return tmp_path


def live(img) -> BytesMemory:
    mem = memory(img)
    mem.domid, mem.uuid = 7, "d8449218-3fb0-46da-9ece-674f4e7f5a92"
    return mem


def test_cache_second_run_skips_scan(cache):
    img = image(notes={20 * MiB: note(note_text())})
    first = discover.discover(live(img))
    assert not first.from_cache and first.cache_path
    mem = live(img)
    second = discover.discover(mem)
    assert second.from_cache and second.note_address == 20 * MiB
    assert mem.stats["backend_bytes"] < 64 * 1024  # re-read the note only
    assert "cache" in second.sources["vmcoreinfo"]


def test_cache_miss_when_note_changed(cache):
    img = image(notes={20 * MiB: note(note_text())})
    discover.discover(live(img))
    img[20 * MiB : 21 * MiB] = bytes(MiB)  # rebooted: the note moved
    img[30 * MiB : 30 * MiB + 600] = note(note_text()).ljust(600, b"\0")
    d = discover.discover(live(img))
    assert not d.from_cache and d.note_address == 30 * MiB


def test_corrupt_cache_is_ignored(cache):
    img = image(notes={20 * MiB: note(note_text())})
    path = discover.discover(live(img)).cache_path
    with open(path, "w") as f:
        f.write("{not json")
    assert not discover.discover(live(img)).from_cache
    with open(path, "w") as f:
        json.dump({"version": 1, "note_address": "x", "note": "zz"}, f)
    assert not discover.discover(live(img)).from_cache


def test_failed_scan_is_remembered_for_the_boot(cache, monkeypatch):
    """A guest with no usable note answers at once on the next command (Debian 13 was
    scanned again by every command, 26-41 s each), until the failure is FAILED_SCAN_TTL
    old or the user asks with --no-cache; a scan cut short by its deadline is not kept."""
    img = image()
    with pytest.raises(GuestDataError, match="no valid VMCOREINFO"):
        discover.discover(live(img))
    mem = live(img)
    with pytest.raises(GuestDataError, match="remembered from a scan .* --no-cache"):
        discover.discover(mem)
    assert mem.stats["backend_bytes"] == 0
    with pytest.raises(GuestDataError, match="no valid VMCOREINFO note in"):
        discover.discover(live(img), use_cache=False)
    img[20 * MiB : 20 * MiB + 600] = note(note_text()).ljust(600, b"\0")  # booted now
    with pytest.raises(GuestDataError, match="remembered"):
        discover.discover(live(img))
    monkeypatch.setattr(discover, "FAILED_SCAN_TTL", 0.0)
    assert discover.discover(live(img)).note_address == 20 * MiB


def test_scan_cut_short_is_not_remembered(cache):
    img = image(notes={1 * MiB: note(note_text())})
    with pytest.raises(GuestDataError, match="deadline"):
        discover.discover(live(img), timeout=-1)
    assert discover.discover(live(img)).note_address == 1 * MiB


def test_images_without_identity_are_not_cached(cache):
    img = image(notes={20 * MiB: note(note_text())})
    assert discover.discover(memory(img)).cache_path is None


# -- the memory interface ----------------------------------------------------------------


def test_bytes_memory_holes_and_strict():
    mem = memory(bytearray(b"\x01" * (64 * 1024)), holes=((8192, 12288),))
    assert mem.read_physical(8190, 4) == b"\x01\x01\x00\x00"
    with pytest.raises(PhysicalFault):
        mem.read_physical(8190, 4, strict=True)
    assert mem.read_physical(70000, 4) == bytes(4)
    with pytest.raises(PhysicalFault):
        mem.read_physical(65534, 4, strict=True)
    assert mem.read_physical(65534, 4) == b"\x01\x01\x00\x00"


def test_page_cache_and_snapshot():
    img = bytearray(64 * 1024)
    mem = memory(img)
    assert mem.read_physical(100, 4) == bytes(4)
    img[100:104] = b"abcd"
    assert mem.read_physical(100, 4) == bytes(4)  # same snapshot: cached
    with mem.snapshot():
        assert mem.read_physical(100, 4) == b"abcd"


def test_owner_thread_enforced():
    mem = memory(bytearray(8192))
    errors = []

    def other():
        try:
            mem.read_physical(0, 4)
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors and "thread" in errors[0]


def test_paused_always_resumes():
    calls = []

    class Pausable(BytesMemory):
        def _pause(self):
            calls.append("pause")

        def _resume(self):
            calls.append("resume")

    mem = Pausable(bytearray(4096))
    with pytest.raises(ZeroDivisionError):
        with mem.paused():
            1 / 0
    assert calls == ["pause", "resume"]
