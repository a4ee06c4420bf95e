"""Hostile guest memory, fuzzed: what a guest controls, corrupted at random, never hangs,
crashes or reaches the terminal raw.

A guest's kernel can be corrupt or malicious. These fuzzers corrupt what xenvmi reads from
it (the task list, modules and both kernel log formats in a synthetic kernel image; the
VMCOREINFO note; the kernel's BTF; kallsyms tables found by structure; the page tables,
banner and tables a kernel with no note is found by) and run the real
readers on the result. Each reader must end within its time bound with rows (possibly
partial, with warnings) or a one-line ``XenvmiError``; any other exception is a bug, and
every guest string in a row must be printable (no escape sequence reaches a terminal).

Hypothesis runs with a fixed seed (``derandomize``), so CI sees the same cases every time;
``XENVMI_FUZZ_EXAMPLES=5000 pytest tests/unit/test_fuzz_guest.py`` is the longer run.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import struct
import time
import types
from collections import Counter
from pathlib import Path

import pytest

drgn = pytest.importorskip("drgn")
hypothesis = pytest.importorskip("hypothesis")

import nonote_image  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from kallsyms_image import IMAGE_PA, TEXT_VA, build, symbols  # noqa: E402

from xenvmi.backends.memory import BytesMemory  # noqa: E402
from xenvmi.errors import XenvmiError  # noqa: E402
from xenvmi.guest import kallsyms_tables, linux, nonote, printk, vmcoreinfo  # noqa: E402
from xenvmi.guest.bounded import Budget  # noqa: E402
from xenvmi.guest.btf import Btf  # noqa: E402
from xenvmi.guest.btf_drgn import attach_btf  # noqa: E402
from xenvmi.guest.program import PLATFORM  # noqa: E402
from xenvmi.guest.synthetic import BASE, SyntheticKernel  # noqa: E402

EXAMPLES = int(os.environ.get("XENVMI_FUZZ_EXAMPLES", "150"))
#: Each view's deadline, and how long past it a view may take to notice and stop.
BOUND, SLACK = 2.0, 3.0
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

pytestmark = pytest.mark.timeout(900)


def _kernel(layout: str) -> SyntheticKernel:
    """A small kernel with something in every list the views walk."""
    k = SyntheticKernel(
        before_5_17=layout == "5.10",
        module_mem=layout == "6.4",
        legacy_log={"legacy-btf": "btf", "legacy-vmcoreinfo": "vmcoreinfo"}.get(layout),
    )
    init = k.add_task(1, b"init", start_ns=5_000_000)
    kthreadd = k.add_task(2, b"kthreadd")
    objects = [k.init_task, k.modules, k.prb, init, kthreadd]
    for pid in range(3, 9):
        objects.append(k.add_task(pid, f"kworker/0:{pid}".encode(), parent=kthreadd, state=0x402))
    parent = k.add_task(70, b"xvm-parent", parent=init, uid=1000, state=0)
    objects += [parent, k.add_task(71, b"xvm-child", parent=parent)]
    for name in (b"dummy", b"xen_netfront", b"xen_blkfront"):
        objects.append(k.add_module(name, refs=1))
    records = [(i * 1_000_000, f"line {i}: xenvmi-lab guest is up".encode()) for i in range(40)]
    if k.legacy_log:
        log = k.set_legacy_log(records, buf_len=4096)
    else:
        log = k.set_log(records, count_bits=6)
    objects += [v for v in log.values() if BASE <= v < BASE + k._next]
    k.objects = sorted(o - BASE for o in objects)  # where the fuzzer aims most edits
    return k


def _program(k: SyntheticKernel):
    kp = k.kernel_program()
    if k.legacy_log == "vmcoreinfo":  # its record layout comes from VMCOREINFO only
        kp.vmcoreinfo = types.SimpleNamespace(fields=k.legacy_vmcoreinfo())
    return kp


LAYOUTS = ("6.x", "5.10", "6.4", "legacy-btf", "legacy-vmcoreinfo")
TEMPLATES = {name: _kernel(name) for name in LAYOUTS}


def _values(used: int):
    """Integers a hostile guest would plant: limits, pointers into and out of the image,
    pointers at the image's own objects, user-space and non-canonical addresses."""
    return st.one_of(
        st.sampled_from(
            [
                0,
                1,
                0x7F,
                0xFF,
                0x7FFF_FFFF,
                0xFFFF_FFFF,
                1 << 63,
                (1 << 64) - 1,
                BASE,
                BASE + used,
                BASE + (1 << 20),
                0xFFFF_FFFF_8100_0000,
                0x40_0000,
                0xDEAD_BEEF_DEAD_BEEF,
            ]
        ),
        st.integers(0, used - 8).map(lambda off: BASE + off),
        st.integers(0, (1 << 64) - 1),
    )


def _mutations(used: int, objects: list[int]):
    """Edits anywhere in the image, or (mostly) in the first 128 bytes of an object the
    views walk: list heads, tasks, modules, the log's ring and indexes."""
    aimed = st.tuples(st.sampled_from(objects), st.integers(0, 127)).map(
        lambda at: min(at[0] + at[1], used - 8)
    )
    where = st.one_of(aimed, aimed, aimed, st.integers(0, used - 8))
    word = st.tuples(where, st.sampled_from("QIHB"), _values(used))
    blob = st.tuples(where, st.just("raw"), st.binary(min_size=1, max_size=96))
    return st.lists(st.one_of(word, blob), min_size=1, max_size=8)


def _apply(k: SyntheticKernel, mutations) -> None:
    for offset, fmt, value in mutations:
        if fmt == "raw":
            end = min(offset + len(value), len(k.mem))
            k.mem[offset:end] = value[: end - offset]
            continue
        size = struct.calcsize("<" + fmt)
        k.put(BASE + offset, fmt, value & ((1 << (8 * size)) - 1))


def _check_rows(rows) -> None:
    for row in rows:
        for f in dataclasses.fields(row):
            value = getattr(row, f.name)
            if isinstance(value, str):
                assert value.isprintable(), f"{type(row).__name__}.{f.name}={value!r}"


def _run_view(view, kp, outcomes: Counter) -> None:
    budget = Budget(BOUND)
    start = time.monotonic()
    try:
        rows = view(kp, budget)
    except XenvmiError as e:
        assert "\n" not in str(e).strip(), f"not one line: {e}"
        outcomes[view.__name__, "error"] += 1
        return
    finally:
        took = time.monotonic() - start
        assert took < BOUND + SLACK, f"{view.__name__} ran {took:.1f}s past a {BOUND}s bound"
    _check_rows(rows)
    assert budget.complete or budget.warnings, "an incomplete result must say why"
    outcomes[view.__name__, "complete" if budget.complete else "partial"] += 1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_on_a_sane_kernel_are_complete(layout):
    """The fuzzers' starting point reads whole, so what they break is what they change."""
    kp = _program(TEMPLATES[layout])
    for view, want in ((linux.processes, 10), (linux.modules, 3), (printk.kernel_log, 40)):
        budget = Budget(BOUND)
        assert len(view(kp, budget)) == want and budget.complete, (layout, view.__name__)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_survive_corrupted_kernel_memory(layout):
    used = TEMPLATES[layout]._next
    outcomes: Counter = Counter()

    @FUZZ
    @given(mutations=_mutations(used, TEMPLATES[layout].objects))
    def run(mutations):
        k = _kernel(layout)  # a fresh image (a few milliseconds)
        _apply(k, mutations)
        kp = _program(k)
        for view in (linux.processes, linux.modules, printk.kernel_log):
            _run_view(view, kp, outcomes)

    run()
    print(f"{layout}: {dict(sorted(outcomes.items()))}")  # the README's figures (-s)
    for view in ("processes", "modules", "kernel_log"):  # the corruption reached each walk
        assert outcomes[view, "partial"] + outcomes[view, "error"] > 0, (view, outcomes)


NOTE = (
    b"OSRELEASE=6.1.0-35-amd64\nBUILD-ID=0123456789abcdef0123456789abcdef01234567\n"
    b"PAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82a1b2c0\n"
    b"SYMBOL(node_online_map)=ffffffff82b0c9e8\nSYMBOL(swapper_pg_dir)=ffffffff8280a000\n"
    b"SYMBOL(_stext)=ffffffff81000000\nSYMBOL(vmemmap)=ffffea0000000000\n"
    b"SYMBOL(prb)=ffffffff82a0b4e0\nOFFSET(task_struct.tasks)=2256\n"
    b"SIZE(page)=64\nNUMBER(phys_base)=0\nKERNELOFFSET=0\nNUMBER(VMALLOC_START)=0x"
    b"ffffc90000000000\nCRASHTIME=1733000000\n\x00"
)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(NOTE) - 1), st.binary(min_size=1, max_size=24)),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 4096),
)
def test_vmcoreinfo_text_survives_corruption(edits, tail):
    raw = bytearray(NOTE + b"A=" * tail)
    for at, data in edits:
        raw[at : at + len(data)] = data
    try:
        info = vmcoreinfo.parse_text(bytes(raw))
    except (XenvmiError, vmcoreinfo.NoteError) as e:
        assert "\n" not in str(e)
        return
    assert all(isinstance(v, int) for v in info.symbols.values())
    assert len(info.warnings) <= vmcoreinfo.MAX_LINES + 1


def test_found_by_fuzzing_a_page_size_that_is_not_a_number():
    """The fuzzer's first find: PAGESIZE=4 96 escaped as a ValueError (a traceback in
    discovery) instead of refusing the note."""
    with pytest.raises(vmcoreinfo.NoteError, match="PAGESIZE is not a number"):
        vmcoreinfo.parse_text(NOTE.replace(b"PAGESIZE=4096", b"PAGESIZE=4 96"))


BTF_FILE = Path("/sys/kernel/btf/vmlinux")


def _small_btf() -> bytes:
    return TEMPLATES["6.x"].btf


@pytest.mark.parametrize("source", ["synthetic", "host kernel"])
def test_btf_parser_survives_corruption(source):
    if source == "host kernel" and not BTF_FILE.exists():
        pytest.skip("this kernel has no /sys/kernel/btf/vmlinux")
    blob = _small_btf() if source == "synthetic" else BTF_FILE.read_bytes()
    examples = EXAMPLES if source == "synthetic" else max(10, EXAMPLES // 10)

    @settings(FUZZ, max_examples=examples)
    @given(
        st.lists(
            st.tuples(st.integers(0, len(blob) - 1), st.binary(min_size=1, max_size=8)),
            min_size=1,
            max_size=6,
        )
    )
    def run(edits):
        data = bytearray(blob)
        for at, patch in edits:
            data[at : at + len(patch)] = patch
        start = time.monotonic()
        try:
            btf = Btf(bytes(data))
            for tid in btf.ids_by_name("task_struct")[:2]:
                for m in btf.members(btf.get(tid))[:64]:
                    btf.get(btf.skip_modifiers(m.type))
            prog = drgn.Program(PLATFORM)  # and as the views meet it: through drgn
            attach_btf(prog, bytes(data))
            for m in prog.type("struct task_struct").members[:64]:
                m.type.type_name()
        except XenvmiError as e:
            assert "\n" not in str(e)
        except LookupError:
            pass  # drgn's "no such type": the views then say the kernel lacks it
        assert time.monotonic() - start < 30

    run()


TABLES = build(symbols(count=600), layout="6.4+", encoding="base-relative")


@settings(FUZZ, max_examples=max(20, EXAMPLES // 3))
@given(
    st.lists(
        st.tuples(st.integers(0, len(TABLES.image) - 1), st.binary(min_size=1, max_size=16)),
        min_size=1,
        max_size=6,
    )
)
def test_kallsyms_search_survives_corruption(edits):
    image = bytearray(TABLES.image)
    for at, patch in edits:
        image[at : at + len(patch)] = patch

    def read(pa: int, size: int) -> bytes:
        off = pa - IMAGE_PA
        data = bytes(image[off : off + size])
        return data + bytes(size - len(data))

    known = TABLES.known()
    start = time.monotonic()
    try:
        found = kallsyms_tables.find(read, IMAGE_PA, TEXT_VA, len(image), known, timeout=10)
    except XenvmiError as e:
        assert "\n" not in str(e)
    else:  # a table that passed must still agree with what VMCOREINFO says
        syms = found.symbols()
        assert all(
            syms.get(name, addr) == addr for name, addr in known.items() if name in found.agreed
        )
        assert len(found.agreed) >= kallsyms_tables.MIN_ANCHORS
    assert time.monotonic() - start < 10 + SLACK


NONOTE = nonote_image.kernel(size=24 << 20, text_pa=0x80_0000)
#: What the page-table discovery reads: the tables (CR3's, swapper's PGD, PUD and PD),
#: the banner, init_uts_ns, page_offset_base and the kallsyms tables.
NONOTE_REGIONS = [
    (nonote_image.PROC_PGD, 8192),
    *(
        (NONOTE.pa(NONOTE.text + o), 4096)
        for o in range(nonote_image.PGD_OFF, nonote_image.PGD_OFF + 0x4000, 0x1000)
    ),
    (NONOTE.pa(NONOTE.text + nonote_image.BANNER_OFF), 256),
    (NONOTE.pa(NONOTE.text + nonote_image.UTS_OFF), 0x1008),
    (NONOTE.pa(NONOTE.text + 0x80_0000), 0x4000),
]


@settings(FUZZ, max_examples=max(20, EXAMPLES // 3))
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(NONOTE_REGIONS) - 1),
            st.integers(0, 0x3FFF),
            st.binary(min_size=1, max_size=16),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_discovery_without_a_note_survives_corruption(edits):
    """The page tables, banner, init_uts_ns and kallsyms tables corrupted: the discovery
    from the page tables ends in time with a one-line error, or with a kernel that still
    satisfies every check (its _text mapped where it says, its release init_uts_ns's)."""
    image = NONOTE.image
    saved = []
    for region, off, patch in edits:
        start, size = NONOTE_REGIONS[region]
        at = start + off % size
        saved.append((at, bytes(image[at : at + len(patch)])))
        image[at : at + len(patch)] = patch
    mem = BytesMemory(image, name="g", registers=NONOTE.regs)
    start = time.monotonic()
    try:
        info, lay, _, banner, _ = nonote.locate(mem, timeout=10)
    except XenvmiError as e:
        assert "\n" not in str(e)
    else:
        assert info.kernel_image_pa(lay.text) == lay.text_pa
        assert banner.startswith(b"Linux version " + info.osrelease.encode())
    finally:
        for at, old in reversed(saved):
            image[at : at + len(old)] = old
    assert time.monotonic() - start < 10 + SLACK


def test_fuzzing_did_not_grow_memory_without_bound():
    """Peak RSS of this process after the fuzzers (run first in this file): a reader that
    allocated what a hostile count asked for would show here."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mib < 1024, f"peak RSS {peak_mib:.0f} MiB"
