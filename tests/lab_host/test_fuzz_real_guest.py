"""Hostile guest memory, fuzzed from real kernels' memory: Debian's arm64 kernels (5.10,
6.1 with and without KASLR, 6.12 with 4K and 16K pages) captured under
qemu-system-aarch64, and Debian's amd64 kernels (5.10, 6.1 with and without KASLR, 6.12)
and Ubuntu 20.04's 5.4 under qemu-system-x86_64 (xenvmi.lab.qemumem, as
test_arm64_guest.py and test_x86_guest.py), their structures
found with drgn on the clean capture, then corrupted with what a hostile guest would
plant, through a copy-on-write overlay of the dump (tests/lab_host/realdump.py).

Two fuzzers per capture. The structure fuzzer edits task list links, a task's comm, mm
and argument pointers and its command line, the module list, the printk ring's indexes,
descriptors and text, init_uts_ns's strings and the iomem resource tree, then runs ps,
lsmod, dmesg, kernel and the RAM map (and every DUMP_EVERY-th case a dump to a temporary
file) on the kernel found once. The discovery fuzzer lies in the VMCOREINFO note (in
memory, or as the dump's ELF note) and corrupts the kallsyms tables and the BTF blob, then
finds the kernel again from scratch and runs the views. Each run must end within its
bound with rows whose strings are printable and warnings, or one XenvmiError line;
anything else (another exception, a run past its bound) is a crash, collected with its
case so that one run lists them all. Peak RSS is measured and bounded.

Hypothesis with a fixed seed; ``XENVMI_FUZZ_EXAMPLES=N`` sets the structure cases per
capture (the discovery fuzzer, slower, a twelfth as many) for a long run; ``-s`` prints figures.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
import traceback
from collections import Counter

import pytest

drgn = pytest.importorskip("drgn")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.lab_host import test_x86_guest  # noqa: E402
from tests.lab_host.realdump import OverlayMemory, discovery_fields, locate  # noqa: E402
from tests.lab_host.test_arm64_guest import CAPTURES, _id  # noqa: E402
from xenvmi.errors import LabError, XenvmiError  # noqa: E402
from xenvmi.guest import linux  # noqa: E402
from xenvmi.guests import Guest  # noqa: E402
from xenvmi.lab import qemumem  # noqa: E402

EXAMPLES = int(os.environ.get("XENVMI_FUZZ_EXAMPLES", "80"))
DISCOVERY_EXAMPLES = max(4, EXAMPLES // 12)
VERBOSE = bool(os.environ.get("XENVMI_FUZZ_VERBOSE"))
#: A view's deadline, and how long past it a view may take to notice and stop.
BOUND, SLACK = 2.0, 3.0
#: Finding the kernel again (a scan, else the page tables and kallsyms by structure).
DISCOVERY_BOUND = 60.0
DUMP_EVERY = 50
U64 = (1 << 64) - 1
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

pytestmark = [pytest.mark.timeout(3600)]
#: Every capture of both architectures (a missing QEMU skips its captures).
PARAMS = [pytest.param(c, id=_id(c)) for c in CAPTURES]
PARAMS += [pytest.param(c, id=test_x86_guest._id(c)) for c in test_x86_guest.CAPTURES]
#: Physical addresses that are no RAM in each machine: QEMU virt's GIC and UART; q35's
#: legacy VGA window, IOAPIC and local APIC.
MMIO = {"arm64": (0x0800_0000, 0x0900_0000), "amd64": (0xA_0000, 0xFEC0_0000, 0xFEE0_0000)}

#: Every case's outcome, over the whole module: the README's figures.
TOTALS: Counter = Counter()


@dataclasses.dataclass
class Real:
    """A capture opened once: its overlay memory, the kernel found on the clean dump,
    and the fields to corrupt."""

    id: str
    mem: OverlayMemory
    guest: Guest
    kp: object
    fields: list
    discovery: list
    holes: list[int]
    mmio: tuple[int, ...]
    groups: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in self.fields:
            self.groups.setdefault(_group(f.name), []).append(f)


def _group(name: str) -> str:
    """The walk a field belongs to: task links, task data, mm and command lines,
    modules, the printk ring (or log_buf before 5.10), uts, iomem."""
    head = name.split("[")[0].split(".")[0]
    if head.startswith("log_"):
        return "prb"
    if " pte " in name or head == "pte":
        return "page tables"
    if head == "task":
        return "task links" if ".tasks." in name or "parent" in name else "task"
    return {"args": "mm", "modules": "module", "desc": "prb", "info": "prb", "log text": "prb"}.get(
        head, {"log ring": "prb", "iomem": "iomem_resource"}.get(head, head)
    )


@pytest.fixture(scope="module", params=PARAMS)
def real(request, tmp_path_factory):
    name, device, kaslr, cpu = request.param
    arch = qemumem.KERNELS[name].arch
    try:
        cap = qemumem.capture(name, vmcoreinfo_device=device, kaslr=kaslr, cpu=cpu)
    except LabError as e:
        pytest.skip(f"no {arch} capture of {name}: {e}")
    mem = OverlayMemory(cap.core)
    guest = Guest(mem, use_cache=False)
    kp = guest.kernel_program()
    clean = guest.processes(timeout=60)
    assert clean.complete and len(clean.rows) > 40, clean.warnings
    fields = locate(kp, clean.rows)
    kinds = Counter(f.kind for f in fields)
    assert kinds["ptr"] > 50 and kinds["str"] > 10 and kinds["text"] >= 2, kinds
    # linear-map addresses of the machine's MMIO (holes in the dump) and of physical
    # memory past the end of RAM
    direct = next((d for d in kp.linear if d[0] < d[1]), None)
    holes = []
    if direct is not None:
        holes = [pa + direct[2] for pa in (*MMIO[arch], mem.ram_top + (1 << 20))]
    real_id = _id(request.param) if arch == "arm64" else test_x86_guest._id(request.param)
    yield Real(real_id, mem, guest, kp, fields, discovery_fields(kp), holes, MMIO[arch])
    mem.close()


# -- values a hostile guest plants -------------------------------------------------------

PAYLOADS = [
    b"\x1b[2J\x1b[H\x1b]0;owned\x07",  # clear the screen, set the title
    b"\x1b]52;c;cm0gLXJmIC8K\x07",  # OSC 52: write the clipboard
    b"\x9b31m\x85\x1b[6n",  # C1 CSI, NEL, a terminal query
    b"line\nforged: root logged in\r\n",
    "\u202egnp.exe\u200b".encode(),  # right-to-left override
    b"\xff\xfe\x80\xc0\xaf bad utf-8",
    bytes(range(1, 32)),
]


def _pointers(real: Real, va: int):
    ptrs = [f.va for f in real.fields if f.kind == "ptr"]
    # a command line's end 64 KiB and 1 MiB past its start
    ptrs += [f.va + n for f in real.fields if f.kind == "text" for n in (65536, 1 << 20)]
    return st.one_of(
        st.sampled_from(
            [0, 1, U64, 1 << 63, 0x00FF_0000_0000_0000, 0xDEAD_BEEF_DEAD_BEEF]
            + [0x0000_AAAA_D000_0000, va, va - 8, va + 8, *real.holes]
        ),
        st.sampled_from(ptrs),  # at each other: lists that cross and loop
        st.integers(0, U64),
    )


def _descriptors(real: Real, table: int):
    """Page table descriptors that loop (a table pointing at itself or at a table above
    it), point at MMIO or past RAM, or are blocks and pages of anything (1 and 3 are
    arm64's block and table bits, x86's present and writable; 0x80 x86's huge page)."""
    tables = sorted({f.va for f in real.fields if f.kind == "pte"})
    targets = [table, *tables, *real.mmio, real.mem.ram_top + (1 << 20), 1 << 47]
    return st.one_of(
        st.tuples(st.sampled_from(targets), st.sampled_from([1, 3, 0x83])).map(
            lambda t: t[0] | t[1]
        ),
        st.sampled_from([0, 2, U64, 0x0040_0000_0000_0703]),
        st.integers(0, U64),
    )


COUNTS = st.one_of(
    st.sampled_from([0, 1, 2, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 40, 1 << 63, U64]),
    st.integers(0, U64),
)


def _string(size: int):
    return st.one_of(
        st.sampled_from(PAYLOADS),
        st.just(b"A" * size),  # unterminated
        st.binary(min_size=1, max_size=max(1, size)),
    )


TEXT = st.one_of(
    st.sampled_from(PAYLOADS),
    st.sampled_from([b"A" * 65536, (b"\x1b[31m" * 13108)[:65536], bytes(range(256)) * 256]),
    st.binary(min_size=1, max_size=512),
)


@st.composite
def _edits(draw, real: Real):
    out = []
    for _ in range(draw(st.integers(1, 6))):
        group = draw(st.sampled_from(sorted(real.groups)))  # each walk as often
        f = draw(st.sampled_from(real.groups[group]))
        if f.kind == "ptr":
            out.append((f, draw(_pointers(real, f.va)).to_bytes(8, "little")[: f.size]))
        elif f.kind == "pte":
            out.append((f, draw(_descriptors(real, f.va)).to_bytes(8, "little")))
        elif f.kind == "count":
            value = draw(COUNTS) & ((1 << (8 * min(f.size, 8))) - 1)
            out.append((f, value.to_bytes(min(f.size, 8), "little")))
        elif f.kind == "str":
            out.append((f, draw(_string(f.size))[: f.size]))
        else:
            out.append((f, draw(TEXT)))
    return out


# -- running the views -------------------------------------------------------------------


def _printable(what: str, value) -> None:
    if isinstance(value, str):
        assert value.isprintable(), f"{what}={value!r}"
    elif isinstance(value, dict):
        for k, v in value.items():
            _printable(f"{what}[{k!r}]", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _printable(f"{what}[{i}]", v)
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _printable(f"{what}.{f.name}", getattr(value, f.name))


def _run(name: str, fn, bound: float, outcomes: Counter, crashes: list, case) -> None:
    """One run of a view: rows or one error line within its bound; anything else is
    a crash, recorded with the case."""
    start = time.monotonic()
    try:
        view = fn()
        took = time.monotonic() - start
        outcomes[name, "slowest ms"] = max(outcomes[name, "slowest ms"], int(took * 1000))
        assert took < bound + SLACK, f"ran {took:.1f}s past a {bound:.0f}s bound"
        if view is None:  # the RAM map: a list of ranges
            outcomes[name, "complete"] += 1
            return
        _printable(name, getattr(view, "rows", view))
        _printable(f"{name} warnings", getattr(view, "warnings", []))
        if getattr(view, "complete", True):
            outcomes[name, "complete"] += 1
        else:
            assert view.warnings, "an incomplete result must say why"
            outcomes[name, "partial"] += 1
            if VERBOSE:
                print(f"  {name} partial: {view.warnings[:2]} <- {case}")
    except XenvmiError as e:
        took = time.monotonic() - start
        outcomes[name, "error"] += 1
        if VERBOSE:
            print(f"  {name} error: {e} <- {case}")
        if "\n" in str(e).strip() or took >= bound + SLACK:
            crashes.append((name, f"{type(e).__name__}: {e!r} after {took:.1f}s", case))
    except Exception as e:  # the fuzzer's finding: collected, reported at the end
        outcomes[name, "crash"] += 1
        where = traceback.extract_tb(e.__traceback__)[-1]
        crashes.append((name, f"{type(e).__name__}: {e} at {where.filename}:{where.lineno}", case))


def _ram_map(kp):
    budget = kp.view(BOUND)
    ranges = linux.ram_ranges(kp, budget)
    assert all(0 <= s < e for s, e in ranges), ranges
    return None


def _views(guest: Guest, outcomes, crashes, case, bound=BOUND) -> None:
    _run("ps", lambda: guest.processes(timeout=BOUND), bound, outcomes, crashes, case)
    _run("lsmod", lambda: guest.modules(timeout=BOUND), bound, outcomes, crashes, case)
    _run("dmesg", lambda: guest.kernel_log(timeout=BOUND), bound, outcomes, crashes, case)
    _run("kernel", lambda: guest.kernel_info(timeout=BOUND), bound, outcomes, crashes, case)


def _report(real: Real, what: str, outcomes: Counter, crashes: list, seconds: float) -> None:
    for k, v in outcomes.items():
        if k != "cases":
            key = (what, *k)
            TOTALS[key] = max(TOTALS[key], v) if k[1] == "slowest ms" else TOTALS[key] + v
    TOTALS[what, "cases"] += outcomes["cases"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{real.id} {what}: {outcomes['cases']} cases in {seconds:.0f}s, peak RSS {peak:.0f} MiB"
    )
    print(
        "  "
        + ", ".join(
            f"{k[0]} {k[1]}: {v}" for k, v in sorted(outcomes.items(), key=str) if k != "cases"
        )
    )
    distinct = {(n, msg): case for n, msg, case in crashes}
    for (n, msg), case in distinct.items():
        print(f"  CRASH {n}: {msg}\n    case: {case}")
    assert not distinct, f"{len(distinct)} distinct crashes: {list(distinct)[:5]}"


def test_structure_fuzz(real, tmp_path):
    outcomes: Counter = Counter()
    crashes: list = []
    target = tmp_path / "fuzzed.vmcore"
    t0 = time.monotonic()

    @FUZZ
    @given(edits=_edits(real))
    def run(edits):
        real.mem.reset()
        for f, data in edits:
            real.mem.patch(f.pa, data)
        case = [
            (f.name, data[:24].hex() + (f"..+{len(data)}" if len(data) > 24 else ""))
            for f, data in edits
        ]
        outcomes["cases"] += 1
        _views(real.guest, outcomes, crashes, case)
        _run("ram map", lambda: _ram_map(real.kp), BOUND, outcomes, crashes, case)
        if outcomes["cases"] % DUMP_EVERY == 1:
            _run("dump", lambda: _dump(real.guest, target), 120.0, outcomes, crashes, case)

    try:
        run()
    finally:
        real.mem.reset()
    _report(real, "structures", outcomes, crashes, time.monotonic() - t0)
    for view in ("ps", "lsmod", "dmesg"):  # the corruption reached each walk
        reached = outcomes[view, "partial"] + outcomes[view, "error"]
        assert reached > 0 or EXAMPLES < 40, outcomes


def _dump(guest: Guest, target):
    """A dump of the corrupted guest: a vmcore, or an error that leaves no file."""
    try:
        summary = guest.dump(target, force=True, timeout=120.0)
    except XenvmiError:
        assert not target.exists(), "a failed dump left a partial file"
        raise
    with open(target, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    target.unlink()
    return dataclasses.replace(summary, ranges=[])


NOTE_VALUES = [b"0", b"-1", b"ffffffffffffffff", b"4 96", b"x", b"f" * 4096, b"1" * 40]
NOTE_VALUES += [b"0x40000000", b"\x1b[2J", b"18446744073709551616", b""]


@st.composite
def _lies(draw, real: Real):
    """Edits of what discovery reads: VMCOREINFO lines (in memory or as the ELF note),
    kallsyms tables, BTF."""
    note_text = real.kp.discovery.info.raw
    lines = note_text.split(b"\n")
    out = []
    for _ in range(draw(st.integers(1, 4))):
        f = draw(st.sampled_from(real.discovery))
        if f.kind == "note":
            i = draw(st.integers(0, len(lines) - 1))
            key = lines[i].partition(b"=")[0]
            how = draw(st.sampled_from(["value", "drop", "dup", "bytes"]))
            if how == "value":
                lines[i] = key + b"=" + draw(st.sampled_from(NOTE_VALUES) | st.binary(max_size=24))
            elif how == "drop":
                lines[i] = b""
            elif how == "dup":
                lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))])
            else:
                lines[i] = draw(st.binary(min_size=1, max_size=64))
        else:
            at = draw(st.integers(0, min(f.size, 1 << 16) - 1))
            value = draw(COUNTS).to_bytes(8, "little")[: draw(st.sampled_from([1, 2, 4, 8]))]
            out.append((f, at, draw(st.one_of(st.just(value), st.binary(min_size=1, max_size=16)))))
    where = draw(st.sampled_from(["memory", "elf note"]))
    text = b"\n".join(lines)
    return out, (None if text == note_text else (where, text))


def _found(guest: Guest) -> None:
    guest.kernel_program()
    _printable("discovery", guest._kp.warnings)


def test_discovery_fuzz(real):
    """Corrupted VMCOREINFO, kallsyms and BTF: the kernel is found again from scratch."""
    outcomes: Counter = Counter()
    crashes: list = []
    t0 = time.monotonic()
    note = next((f for f in real.discovery if f.kind == "note"), None)

    @settings(FUZZ, max_examples=DISCOVERY_EXAMPLES)
    @given(lie=_lies(real))
    def run(lie):
        edits, note_text = lie
        real.mem.reset()
        for f, at, data in edits:
            real.mem.patch(f.pa + at, data)
        if note_text is not None:
            where, text = note_text
            if where == "elf note" or note is None:
                real.mem.vmcoreinfo = text
            else:  # the text after the header (12 bytes, then "VMCOREINFO\0" padded to 12)
                real.mem.patch(note.pa + 24, text[: note.size] + b"\0")
        case = [(f.name, at, data.hex()) for f, at, data in edits] + [note_text]
        outcomes["cases"] += 1
        guest = Guest(real.mem, use_cache=False, discovery_timeout=DISCOVERY_BOUND)
        bound = DISCOVERY_BOUND + BOUND
        _run("discovery", lambda: _found(guest), bound, outcomes, crashes, case)
        if guest._kp is not None:
            _views(guest, outcomes, crashes, case, bound)

    try:
        run()
    finally:
        real.mem.reset()
    _report(real, "discovery", outcomes, crashes, time.monotonic() - t0)


def test_found_by_fuzzing_kallsyms_without_stext(real):
    """The real-dump fuzzer's first find: kallsyms tables that decode to no _stext (here
    a symbol count of 1) raised drgn's BadDataError out of the Program build, a
    traceback, instead of one error line. (Before 6.0 the tables found by structure are
    searched for again, and none passes.)"""
    num = next(f for f in real.discovery if f.name == "kallsyms_num_syms")
    real.mem.reset()
    real.mem.patch(num.pa, (1).to_bytes(4, "little"))
    try:
        with pytest.raises(XenvmiError, match="kallsyms") as e:
            Guest(real.mem, use_cache=False).processes(timeout=BOUND)
    finally:
        real.mem.reset()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("where", ["memory", "elf note"])
def test_found_by_fuzzing_a_note_without_pagesize(real, where):
    """The second find: a VMCOREINFO note whose PAGESIZE line is garbage (xenvmi assumes
    4096 then) passed discovery, and drgn's BadDataError ("VMCOREINFO does not contain
    valid PAGESIZE") escaped the Program build."""
    note = next(f for f in real.discovery if f.kind == "note")
    text = real.kp.discovery.info.raw
    lines = [b"P0,\x1a" if ln.startswith(b"PAGESIZE=") else ln for ln in text.split(b"\n")]
    real.mem.reset()
    if where == "memory":
        real.mem.patch(note.pa + 24, b"\n".join(lines)[: note.size] + b"\0")
    else:
        real.mem.vmcoreinfo = b"\n".join(lines)
    try:
        with pytest.raises(XenvmiError, match="drgn rejected the guest's VMCOREINFO") as e:
            Guest(real.mem, use_cache=False).processes(timeout=BOUND)
    finally:
        real.mem.reset()
    assert "\n" not in str(e.value)


def test_peak_memory_is_bounded():
    """Peak RSS over every case above (the mmap of a 256 MiB dump read whole by a dump
    counts in it): a reader allocating what a hostile count asked for would show here."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nall captures: {dict(sorted(TOTALS.items(), key=str))}\npeak RSS {peak:.0f} MiB")
    assert peak < 1536, f"peak RSS {peak:.0f} MiB"
