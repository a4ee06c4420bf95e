"""Pieces of the drgn Program builder: the guarded memory reader and the per-boot caches."""

from __future__ import annotations

import pytest

drgn = pytest.importorskip("drgn")
from drgn import Symbol, SymbolBinding, SymbolKind  # noqa: E402

from xenvmi.backends.memory import BytesMemory  # noqa: E402
from xenvmi.guest import program, symcache  # noqa: E402
from xenvmi.guest.bounded import Budget, DeadlineExceeded  # noqa: E402


class _KP:
    def __init__(self, seconds):
        self.budget = Budget(seconds)


def test_reader_faults_and_deadline():
    mem = BytesMemory(bytearray(b"\x07" * 16384), holes=((4096, 8192),))
    kp = _KP(60)
    read = program._reader([kp], mem)
    assert read(0, 4, 0, True) == b"\x07" * 4
    with pytest.raises(drgn.FaultError):
        read(4000, 200, 4000, True)
    kp.budget = Budget(-1)
    with pytest.raises(DeadlineExceeded):
        read(0, 4, 0, True)


def test_deadline_stops_drgn_itself():
    """drgn's own loops (here a big read) end when a read raises DeadlineExceeded."""
    mem = BytesMemory(bytearray(1 << 20))
    kp = _KP(-1)
    prog = drgn.Program(program.PLATFORM)
    prog.add_memory_segment(0, 1 << 20, program._reader([kp], mem), physical=False)
    with pytest.raises(DeadlineExceeded):
        prog.read(0, 1 << 20)


def syms():
    G, L = SymbolBinding.GLOBAL, SymbolBinding.UNKNOWN
    return [
        Symbol("_text", 0xFFFFFFFF81000000, 0, G, SymbolKind.FUNC),
        Symbol("_stext", 0xFFFFFFFF81000000, 0x10, G, SymbolKind.FUNC),
        Symbol("start_kernel", 0xFFFFFFFF82000000, 0x200, G, SymbolKind.FUNC),
        Symbol("init_task", 0xFFFFFFFF82A00000, 0x2000, G, SymbolKind.OBJECT),
        Symbol("dup", 0xFFFFFFFF82B00000, 8, L, SymbolKind.UNKNOWN),
        Symbol("dup", 0xFFFFFFFF82B00010, 8, L, SymbolKind.UNKNOWN),
    ]


def test_symbol_cache_roundtrip(tmp_path):
    path = tmp_path / "k.kallsyms"
    symcache.save_symbols(path, syms())
    finder = symcache.load_symbols(path)
    assert len(finder) == 6
    (s,) = finder(None, "start_kernel", None, True)
    assert s.address == 0xFFFFFFFF82000000 and s.kind == SymbolKind.FUNC
    assert [x.address for x in finder(None, "dup", None, False)] == [
        0xFFFFFFFF82B00000,
        0xFFFFFFFF82B00010,
    ]
    (s,) = finder(None, None, 0xFFFFFFFF82A00010, True)
    assert s.name == "init_task"
    assert {x.name for x in finder(None, None, 0xFFFFFFFF81000000, False)} == {"_text", "_stext"}
    assert finder(None, None, 0xFFFFFFFF80000000, True) == []
    assert finder(None, "nope", None, True) == []
    for _ in range(20):  # past the first lookups (a scan) to the dict built once
        assert [x.address for x in finder(None, "dup", None, False)] == [
            0xFFFFFFFF82B00000,
            0xFFFFFFFF82B00010,
        ]
        assert finder(None, "init_task", None, True)[0].size == 0x2000
        assert finder(None, "nope", None, True) == []
    prog = drgn.Program(program.PLATFORM)
    prog.register_symbol_finder("cached", finder, enable_index=0)
    assert prog.symbol("init_task").size == 0x2000
    assert len(prog.symbols()) == 6


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:-1],  # truncated names
        lambda d: b"XVMSYM99" + d[8:],  # wrong magic
        lambda d: d[:8] + (10**8).to_bytes(4, "little") + d[12:],  # absurd count
        lambda d: d[: 16 + 16 * 6] + b"\x7f" + d[16 + 16 * 6 + 1 :],  # unknown kind
        lambda d: b"",
    ],
)
def test_symbol_cache_rejects_damage(tmp_path, damage):
    path = tmp_path / "k.kallsyms"
    symcache.save_symbols(path, syms())
    path.write_bytes(damage(path.read_bytes()))
    assert symcache.load_symbols(path) is None


def test_btf_cache_checks_size_and_magic(tmp_path):
    path = tmp_path / "k.btf"
    symcache.save_btf(path, b"\x9f\xeb\x01\x00" + bytes(100))
    assert symcache.load_btf(path, 104) is not None
    assert symcache.load_btf(path, 105) is None
    path.write_bytes(bytes(104))
    assert symcache.load_btf(path, 104) is None
    assert symcache.load_btf(tmp_path / "absent", 104) is None


# -- linear maps ------------------------------------------------------------------------

POB, TEXT, KPHYS = 0xFFFF_8880_0000_0000, 0xFFFF_FFFF_8100_0000, 1 << 20


def _linear_setup(table_shift: int = 0):
    """A guest whose "page tables" (drgn virtual segments counting their reads) map the
    direct map at POB (off by ``table_shift``: a lie) and the kernel image at TEXT."""
    import random
    from types import SimpleNamespace

    img = bytearray(random.Random(3).randbytes(16 << 20))
    img[KPHYS + 0x1000 : KPHYS + 0x1008] = POB.to_bytes(8, "little")  # page_offset_base
    mem = BytesMemory(img)
    walks = []
    prog = drgn.Program(program.PLATFORM)
    prog.add_memory_segment(0, len(img), lambda a, n, o, p: bytes(img[a : a + n]), physical=True)

    def table(phys):
        def read(a, n, o, p):
            walks.append(a)
            return bytes(img[phys + o : phys + o + n])

        return read

    prog.add_memory_segment(POB, len(img) - table_shift, table(table_shift), physical=False)
    prog.add_memory_segment(TEXT, 2 << 20, table(KPHYS), physical=False)
    G = SymbolBinding.GLOBAL
    table_syms = [
        Symbol("_text", TEXT, 0, G, SymbolKind.FUNC),
        Symbol("_end", TEXT + (2 << 20), 0, G, SymbolKind.OBJECT),
        Symbol("page_offset_base", TEXT + 0x1000, 8, G, SymbolKind.OBJECT),
    ]
    prog.register_symbol_finder(
        "t",
        lambda p, name, addr, one: [s for s in table_syms if s.name == name][:1],
        enable_index=0,
    )
    info = SimpleNamespace(kernel_image_pa=lambda va: va - TEXT + KPHYS)
    d = SimpleNamespace(note_address=0x5000, info=info)
    kp = program.KernelProgram(prog, mem, d, Budget(60))
    return kp, img, walks


def test_linear_maps_skip_the_page_table_walk():
    kp, img, walks = _linear_setup()
    program._linear_maps(kp, [kp])
    assert not kp.warnings and {"direct map", "kernel image"} <= set(kp.sources)
    walks.clear()
    assert kp.prog.read(POB + 0x123456, 32) == bytes(img[0x123456 : 0x123456 + 32])
    assert kp.prog.read(TEXT + 0x2000, 16) == bytes(img[KPHYS + 0x2000 : KPHYS + 0x2010])
    assert walks == []
    with pytest.raises(drgn.FaultError):  # past the guest's RAM: a fault, as in the tables
        kp.prog.read(POB + (16 << 20), 8)
    # KernelProgram.read (the views' reader) goes straight to memory in the maps
    assert kp.read(POB + 0x123456, 32) == bytes(img[0x123456 : 0x123456 + 32])
    assert kp.kernel_pa(TEXT + 0x2000) == KPHYS + 0x2000 and kp.kernel_pa(0x1000) is None
    assert walks == []
    with pytest.raises(drgn.FaultError):
        kp.read(POB + (16 << 20) - 4, 8)  # runs past the map's end: drgn faults it


def test_linear_map_that_disagrees_with_the_page_tables_is_not_used():
    kp, img, walks = _linear_setup(table_shift=4096)
    program._linear_maps(kp, [kp])
    assert "direct map" not in kp.sources and "kernel image" in kp.sources
    assert any("direct map" in w and "page tables" in w for w in kp.warnings)
    walks.clear()
    assert kp.prog.read(POB, 16) == bytes(img[4096 : 4096 + 16])  # the tables' answer
    assert kp.read(POB, 16) == bytes(img[4096 : 4096 + 16]) and kp.kernel_pa(POB) is None
    assert walks


# -- kallsyms staging ---------------------------------------------------------------------


def _staging(symbols: dict[str, int]):
    from types import SimpleNamespace

    img = bytearray(range(256)) * (64 << 10)  # 16 MiB of a known pattern
    prog = drgn.Program(program.PLATFORM)  # no page tables: only the staged segment reads
    info = SimpleNamespace(symbols=symbols, kernel_image_pa=lambda va: va - TEXT + KPHYS)
    kp = program.KernelProgram(prog, BytesMemory(img), SimpleNamespace(info=info), Budget(60))
    return kp, img


def test_kallsyms_tables_are_staged_from_one_bulk_read():
    names, index = TEXT + 0x10_0010, TEXT + 0x12_3456
    kp, img = _staging(
        {
            "kallsyms_names": names,
            "kallsyms_num_syms": names - 8,
            "kallsyms_token_table": index - 0x400,
            "kallsyms_token_index": index,
        }
    )
    reads = kp.memory.stats["backend_reads"]
    program._stage_kallsyms(kp)
    assert kp.memory.stats["backend_reads"] == reads + 1 and not kp.warnings
    for va, n in ((names - 8, 8), (names, 100), (index, 512)):  # the token index's 256 u16
        pa = va - TEXT + KPHYS
        assert kp.prog.read(va, n) == bytes(img[pa : pa + n])
    with pytest.raises(drgn.FaultError):  # nothing staged outside the tables
        kp.prog.read(TEXT, 8)


def test_hostile_kallsyms_addresses_stage_nothing():
    kp, _ = _staging({"kallsyms_names": TEXT, "kallsyms_token_index": TEXT + (128 << 20)})
    program._stage_kallsyms(kp)
    assert any("spread over" in w for w in kp.warnings)
    kp2, _ = _staging({"kallsyms_names": 0x1000, "kallsyms_token_index": TEXT})
    program._stage_kallsyms(kp2)  # a user-space address: not a kernel table
    for k in (kp, kp2):
        with pytest.raises(drgn.FaultError):
            k.prog.read(TEXT, 8)
