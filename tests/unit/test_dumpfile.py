"""The dumpfile backend on good, foreign and hostile files; discovery on dumps."""

from __future__ import annotations

import os
import random
import struct

import pytest
import vmcore_image as I

from xenvmi import guests
from xenvmi.backends.dumpfile import MAX_NOTES, DumpMemory
from xenvmi.errors import GuestDataError, NotFoundError, UsageError, XenvmiError
from xenvmi.guest import discover, vmcore


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XENVMI_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def core(tmp_path_factory) -> bytes:
    """A good vmcore's bytes (with VMCOREINFO and two vCPUs)."""
    mem = I.memory()
    path = tmp_path_factory.mktemp("core") / "g.vmcore"
    vmcore.dump(mem, path, discovery=discover.scan(mem))
    return path.read_bytes()


def write(tmp_path, data: bytes, name: str = "x.vmcore"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def elf(
    phdrs: list[tuple],
    tail: bytes = b"",
    machine: int = 62,
    etype: int = 4,
    phnum: int | None = None,
) -> bytes:
    """A hand-made ELF core: header, program headers at 64, then ``tail``."""
    head = (
        b"\x7fELF\x02\x01\x01\x00"
        + bytes(8)
        + struct.pack(
            "<HHIQQQIHHHHHH",
            etype,
            machine,
            1,
            0,
            64,
            0,
            0,
            64,
            56,
            len(phdrs) if phnum is None else phnum,
            0,
            0,
            0,
        )
    )
    return head + b"".join(struct.pack("<IIQQQQQQ", *p) for p in phdrs) + tail


def load(offset, paddr, filesz, memsz=None):
    return (1, 7, offset, 0, paddr, filesz, filesz if memsz is None else memsz, 0)


# -- hostile files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda c: c[:40], "ELF header cut short"),
        (lambda c: c[: 64 + 56], "program headers"),
        (lambda c: c[: len(c) // 2], "past the end of the file"),
        (lambda c: c[:18] + struct.pack("<H", 40) + c[20:], "machine 40"),
        (lambda c: c[:16] + struct.pack("<H", 2) + c[18:], "not a core dump"),
        (lambda c: c[:4] + b"\x01" + c[5:], "64-bit"),
        (lambda c: c[:54] + struct.pack("<H", 32) + c[56:], "header size"),
        (lambda c: c[:56] + struct.pack("<H", 0) + c[58:], "program headers"),
        (lambda c: elf([load(4096, 0, 8192)], bytes(100)), "past the end"),
        (lambda c: elf([load(120, 0, 8192, 4096)], bytes(8192)), "bytes in the file"),
        (lambda c: elf([load(120, 1 << 60, 4096)], bytes(4096)), "physical"),
        (
            lambda c: elf(
                [(4, 0, 120, 0, 0, 24, 24, 4)], struct.pack("<III", 4, 4096, 1) + bytes(12)
            ),
            "note 1 runs past",
        ),
        (lambda c: elf([(4, 0, 120, 0, 0, 0, 0, 4)]), "no memory segments"),
        (lambda c: elf([], phnum=0xFFFF), "PN_XNUM"),
        (lambda c: b"", "empty"),
    ],
)
def test_corrupt_files_are_one_line_errors(tmp_path, core, make, why):
    path = write(tmp_path, make(core))
    with pytest.raises(GuestDataError) as e:
        DumpMemory(path)
    assert why in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)


def test_missing_file_directory_and_unreadable(tmp_path):
    with pytest.raises(NotFoundError, match="no such file"):
        DumpMemory(tmp_path / "nope")
    with pytest.raises(UsageError, match="not a regular file"):
        DumpMemory(tmp_path)


def test_random_damage_never_escapes_the_error_family(tmp_path, core):
    """Flip bytes in the headers and notes: the file opens or gives one error line."""
    rng = random.Random(7)
    head = core[: vmcore.EHDR + vmcore.PHDR * (1 + vmcore.MAX_LOADS) + 4096]
    for n in range(150):
        data = bytearray(head)
        for _ in range(rng.randint(1, 8)):
            pos = rng.choice(
                [rng.randrange(64), rng.randrange(64, 64 + 56 * 6), rng.randrange(len(head))]
            )
            data[pos] = rng.randrange(256)
        path = write(tmp_path, bytes(data) + core[len(head) : len(head) + 65536], f"{n}.core")
        try:
            with DumpMemory(path) as m:
                m.read_physical(0, 1 << 20)
                for v in range(m.vcpu_count()):
                    m.vcpu_registers(v)
        except XenvmiError as e:
            assert "\n" not in str(e)


def test_note_count_is_bounded(tmp_path):
    notes = struct.pack("<III", 4, 0, 7) + b"ABC\x00"
    count = MAX_NOTES + 100
    blob = notes * count
    data = elf(
        [(4, 0, 176, 0, 0, len(blob), len(blob), 4), load(176 + len(blob), 0, 4096)],
        blob + bytes(4096),
    )
    m = DumpMemory(write(tmp_path, data))
    assert any("notes" in w for w in m.warnings) and m.read_physical(0, 16) == bytes(16)


def test_pn_xnum_program_header_count(tmp_path):
    """More than 65534 headers: e_phnum is 0xffff and the count is in section 0."""
    ph = load(4096, 0, 4096)
    body = elf([ph], phnum=0xFFFF)
    shoff = len(body)
    body = bytearray(body + struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 1, 0, 0))
    struct.pack_into("<Q", body, 40, shoff)  # e_shoff
    struct.pack_into("<H", body, 60, 1)  # e_shnum
    body += bytes(4096 - len(body)) + b"\x42" * 4096
    m = DumpMemory(write(tmp_path, bytes(body)))
    assert m.read_physical(0, 4) == b"\x42" * 4


def test_foreign_layouts(tmp_path):
    """kdump repeats the kernel image in a second PT_LOAD; makedumpfile leaves
    p_filesz < p_memsz for zero pages; /proc/kcore has p_paddr -1 segments."""
    a, b = b"\x11" * 8192, b"\x44" * 4096 + b"\x22" * 4096
    data = elf(
        [
            load(4096, 0, 8192),
            load(12288, 4096, 8192),  # half inside the first
            load(20480, 65536, 4096, 16384),  # 12 KiB of zeros after 4 KiB of data
            (1, 7, 20480, 0xFFFF_C900_0000_0000, (1 << 64) - 1, 4096, 4096, 0),
        ]
    )
    data += bytes(4096 - len(data)) + a + b + b"\x33" * 4096
    m = DumpMemory(write(tmp_path, data))
    assert m.ranges() == [(0, 8192), (8192, 8192 + 4096), (65536, 65536 + 16384)]
    assert m.read_physical(0, 8192) == a and m.read_physical(8192, 4096) == b"\x22" * 4096
    assert m.read_physical(65536, 8192) == b"\x33" * 4096 + bytes(4096)
    assert m.page_readable(65536 + 12288) and not m.page_readable(32768)
    assert m.vcpu_count() == 0 and m.vmcoreinfo is None


def test_raw_image(tmp_path):
    data = random.Random(3).randbytes(3 * 4096 + 100)
    m = DumpMemory(write(tmp_path, data, "g.raw"))
    assert m.kind == "image" and m.max_physical_address == 4 * 4096 == m.ram_top
    assert m.read_physical(0, len(data)) == data and m.read_physical(len(data), 8) == bytes(8)
    with pytest.raises(NotFoundError, match="raw memory image has no vCPU"):
        m.vcpu_registers(0)
    m.close()
    m.close()  # twice is fine


def test_cache_key_follows_the_file(tmp_path):
    path = write(tmp_path, bytes(8192), "g.raw")
    key = DumpMemory(path).cache_key
    assert DumpMemory(path).cache_key == key
    os.utime(path, ns=(1, 1))
    assert DumpMemory(path).cache_key != key


# -- discovery -----------------------------------------------------------------------------


def test_vmcore_discovery_uses_its_note_not_a_scan(tmp_path, core, cache):
    m = DumpMemory(write(tmp_path, core))
    d = discover.discover(m)
    assert d.info.raw == I.note_text() and d.note_address == I.NOTE_AT
    assert "note of the dump" in d.sources["vmcoreinfo"] and "matches" in d.sources["vmcoreinfo"]
    assert m.stats["backend_bytes"] <= 2 * 4096  # init_uts_ns, nothing scanned
    assert d.cache_path and d.cache_path.startswith(str(cache))  # kallsyms/BTF cache key


def test_vmcore_with_a_bad_note_falls_back_to_a_scan(tmp_path, core, cache):
    text = I.note_text()
    bad = core.replace(text, text.replace(b"OSRELEASE=6", b"OSRELEASE=9"), 1)
    m = DumpMemory(write(tmp_path, bad))
    d = discover.discover(m, use_cache=False)
    assert d.note_address == I.NOTE_AT and "scan" in d.sources["vmcoreinfo"]
    assert any("unusable" in w for w in d.warnings)


def test_raw_image_discovery_scans_then_caches_by_file(tmp_path, cache):
    mem = I.memory()
    raw = tmp_path / "g.raw"
    vmcore.dump(mem, raw, fmt="raw")
    first = discover.discover(DumpMemory(raw))
    assert not first.from_cache and first.note_address == I.NOTE_AT
    again = DumpMemory(raw)
    second = discover.discover(again)
    assert second.from_cache and again.stats["backend_bytes"] < 64 * 1024
    assert "file-" in os.path.basename(first.cache_path)


# -- targets -------------------------------------------------------------------------------


def test_file_targets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, b"x", "xvm-dump")
    assert guests.is_file_target("./anything") and guests.is_file_target(tmp_path / "y")
    assert guests.is_file_target("xvm-dump")  # an existing file by its bare name
    assert not guests.is_file_target("xvm-pvh1") and not guests.is_file_target("3")
    assert not guests.is_file_target(3)
    assert isinstance(guests.open_memory("./xvm-dump"), DumpMemory)
    with pytest.raises(NotFoundError):
        guests.open_memory("./missing.vmcore")
