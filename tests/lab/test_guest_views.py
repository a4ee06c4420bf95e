"""`xenvmi kernel|ps|lsmod|dmesg|regs` on the lab's real guests, against their consoles.

No file is given to xenvmi: everything comes from guest memory. Ground truth is what
each guest's init prints to its console when asked (xenvmi/lab/groundtruth.py).
"""

from __future__ import annotations

import json

import pytest

from xenvmi.lab.groundtruth import KMSG_LINE, kaslr_slide

from .conftest import (
    ARM,
    expected_release,
    ground_truth,
    missing_from,
    needs_libvmi,
    no_pv_on_arm,
    randomized,
    report_after_now,
    selected,
    unreported,
    warm_kernel,
    xenvmi,
)

#: A guest of each kernel: Debian 12's 6.1 (KASLR HVM), Debian 11's 5.10 (KASLR HVM, no
#: kallsyms in VMCOREINFO) and Debian 13's 6.12 (PVH). 6.1 on PVH is read by the dump,
#: profile and plugin tests (xvm-pvh1) and by the pause and batch-read tests here
#: (xvm-pvh2); a slow machine of the kind took 4.5-8 min a memory guest in this file.
#: The arm64 lab's two PVH guests (dom0's 6.1, no KASLR) both run here.
MEMORY_GUESTS = selected(("xvm-pvh1", "xvm-pvh2") if ARM else ("xvm-hvm", "xvm-deb11", "xvm-deb13"))

pytestmark = pytest.mark.timeout(1800)


def xenvmi_json(*args: str) -> dict:
    res = xenvmi(*args, "--json")
    assert res.returncode == 0, f"xenvmi {' '.join(args)}: exit {res.returncode}: {res.stderr}"
    return json.loads(res.stdout)


def _key(p) -> tuple[int, int, str]:
    return (p.pid, p.ppid, p.comm) if hasattr(p, "pid") else (p["pid"], p["ppid"], p["comm"])


@pytest.fixture(scope="module", params=MEMORY_GUESTS)
def guest(request, guests):
    """Each memory guest, with one (possibly cold) run done so later ones hit the cache."""
    name = request.param
    warm_kernel(name)
    return name


def test_ps_matches_console(guest):
    before = report_after_now(guest)
    got = xenvmi_json("ps", guest)
    after = report_after_now(guest)
    ours = {_key(p) for p in got["rows"]}
    stable = {_key(p) for p in before.processes} & {_key(p) for p in after.processes}
    seen = {_key(p) for p in before.processes} | {_key(p) for p in after.processes}
    missing = missing_from(stable, ours)
    named = {k for k in stable & ours if k[2].startswith("kworker/") and "-" in k[2]}
    assert named, f"{guest}: no kworker shows the workqueue ps shows ({sorted(stable)[:20]})"
    extra = unreported(ours, seen)
    assert not missing, f"{guest}: ps misses {sorted(missing)}"
    assert not extra, f"{guest}: ps lists processes the guest never reported: {sorted(extra)}"
    comms = {p[2] for p in ours}
    assert {"init", "xvm-alpha", "xvm-parent", "xvm-child"} <= comms
    by_comm = {p["comm"]: p for p in got["rows"]}
    assert by_comm["xvm-child"]["ppid"] == by_comm["xvm-parent"]["pid"]
    # xvm-beta is a #!/bin/sh script: the kernel runs the interpreter with the script's
    # path and arguments after it, and that is the argv /proc/PID/cmdline (and ps) show
    assert by_comm["xvm-beta"]["cmdline"] == "/bin/sh /usr/bin/xvm-beta --role worker"
    assert by_comm["kthreadd"]["kernel_thread"] and by_comm["kthreadd"]["cmdline"] is None
    assert all(p["state"] in "RSDTtXZPI" for p in got["rows"])
    assert got["complete"], got["warnings"]
    assert_shape(got, "ps", "processes")


#: The text every lab guest's init plants (data/guest-init.sh) as xenvmi must show it.
HOSTILE_SHOWN = "ok\\x1b[2J\\x1b]0;owned\\x07\\u202eevil\\xff"


def test_hostile_guest_text_reaches_no_terminal_raw(guest):
    """Terminal safety on a real guest: the kernel log record and the command-line
    argument its init planted (a clear-screen, a window title, a bell, a right-to-left
    override, a byte that is not UTF-8) come out of `dmesg` and `ps`, as text and as
    JSON, escaped and whole: every character printed is printable."""
    outputs = {}
    for args in (("dmesg",), ("dmesg", "--json"), ("ps",), ("ps", "--json")):
        res = xenvmi(args[0], guest, *args[1:])
        assert res.returncode == 0, f"{args}: {res.stderr}"
        bad = sorted({c for c in res.stdout if not (c.isprintable() or c == "\n")})
        assert not bad, f"xenvmi {' '.join(args)} printed raw {bad!r}"
        outputs[args] = res.stdout
    planted = f"xenvmi-lab: hostile {HOSTILE_SHOWN} end"
    assert planted in outputs[("dmesg",)]
    assert planted in {r["text"] for r in json.loads(outputs[("dmesg", "--json")])["rows"]}
    argv = f"/bin/sh /usr/bin/xvm-gamma {HOSTILE_SHOWN}"
    assert argv in outputs[("ps",)]
    assert argv in {p["cmdline"] for p in json.loads(outputs[("ps", "--json")])["rows"]}


def assert_shape(got: dict, view: str, legacy: str) -> None:
    """Real output obeys the documented schema (docs/views.md), old key included."""
    import jsonschema

    from xenvmi.plugins.loader import builtin_views
    from xenvmi.plugins.schema import result_schema

    cls = next(c for c in builtin_views() if c.name == view)
    jsonschema.validate(got, result_schema(cls, legacy))
    assert got["plugin"] == view and got[legacy] == got["rows"]  # the 0.1 key, one release


def test_dmesg_has_lab_line(guest):
    got = xenvmi_json("dmesg", guest)
    texts = [r["text"] for r in got["rows"]]
    assert KMSG_LINE.format(name=guest) in texts
    assert any(t.startswith("Linux version") for t in texts)
    stamps = [r["timestamp"] for r in got["rows"]]
    assert stamps == sorted(stamps)


def test_lsmod_has_dummy(guest):
    got = xenvmi_json("lsmod", guest)
    names = {m["name"] for m in got["rows"]}
    truth = set(ground_truth(guest).modules)
    assert "dummy" in names and names == truth
    assert_shape(got, "lsmod", "modules")


def test_kernel_release_and_slide(guest):
    truth = ground_truth(guest)
    got = xenvmi_json("kernel", guest)["rows"][0]
    assert got["release"] == truth.release == expected_release(guest)
    assert got["kaslr_slide"] == kaslr_slide(truth)
    if randomized(guest):
        assert got["kaslr_slide"] != 0
    else:
        assert got["kaslr_slide"] == 0
    assert got["discovery_cached"]  # the fixture's first run filled the cache
    assert got["btf_size"] > 1_000_000 and got["symbols"] > 50_000
    assert {"vmcoreinfo", "symbols", "types", "kaslr_slide"} <= set(got["sources"])


def test_kernel_text_output(guest):
    res = xenvmi("kernel", guest)
    assert res.returncode == 0, res.stderr
    assert "KASLR slide:" in res.stdout and "from the cache" in res.stdout


def test_regs_decoded(guest):
    got = xenvmi_json("regs", guest)
    d = got["rows"][0]["decoded"]
    if ARM:
        assert_arm64_regs(guest, d)
        return
    assert d["cpu_mode"] == "64-bit" and d["paging_mode"] == "4-level"
    assert d["cr3"] and "PG" in d["cr0_flags"] and "LMA" in d["efer_flags"]


#: Where Xen puts an Arm guest's RAM (arch-arm.h GUEST_RAM0_BASE) and the lab guests' size.
ARM_RAM = (0x4000_0000, 0x4000_0000 + (256 << 20))


def assert_arm64_regs(guest: str, d: dict) -> None:
    """An arm64 vCPU from Xen's vcpu_guest_context: Debian's kernel regime (MMU on, 4K
    granule, 48-bit kernel VAs), its kernel page table (TTBR1) in the guest's RAM, and,
    when the vCPU was in the kernel (idle: nearly always), pc and sp in the kernel half
    at or above the _stext the guest's own kallsyms reported."""
    assert d["execution_state"] == "aarch64" and d["mmu_enabled"], d
    assert d["granule_ttbr1"] == 4096 and d["va_bits_ttbr1"] == 48, d
    assert ARM_RAM[0] <= d["ttbr1_base"] < ARM_RAM[1], hex(d["ttbr1_base"])
    if d["el"] == 1:
        kstext = ground_truth(guest).kstext
        assert kstext and d["pc"] >= kstext and d["sp"] >= 0xFFFF_0000_0000_0000, d


@no_pv_on_arm
def test_pv_regs_work(guests):
    got = xenvmi_json("regs", "xvm-pv")
    d = got["rows"][0]["decoded"]
    assert d["cr3"] and d["rip"]


@no_pv_on_arm
def test_pv_ps_is_one_clear_line(guests):
    res = xenvmi("ps", "xvm-pv")
    assert res.returncode == 5, res
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("xenvmi: error:") and "PV" in lines[-1]
    assert "Traceback" not in res.stderr


def test_unknown_domain():
    res = xenvmi("ps", "no-such-guest")
    assert res.returncode == 3 and "no domain 'no-such-guest'" in res.stderr


def test_ps_by_domid(guests):
    got = xenvmi_json("ps", str(guests["xvm-pvh1"].domid))
    assert got["domain"] == "xvm-pvh1" and len(got["rows"]) > 10


def test_pause_leaves_a_guest_paused_by_someone_else_paused():
    """LibVMI's resume always unpauses: `--pause` on an `xl pause`d guest must not."""
    import subprocess

    subprocess.run(["xl", "pause", "xvm-pvh2"], check=True, timeout=60)
    try:
        res = xenvmi("lsmod", "xvm-pvh2", "--pause", "--json")
        assert res.returncode == 0, res.stderr
        state = (
            subprocess.run(
                ["xl", "list", "xvm-pvh2"], capture_output=True, text=True, check=True, timeout=60
            )
            .stdout.splitlines()[-1]
            .split()[4]
        )
        assert "p" in state, f"xvm-pvh2 was unpaused by xenvmi --pause (state {state})"
    finally:
        subprocess.run(["xl", "unpause", "xvm-pvh2"], timeout=60)


@needs_libvmi
def test_batch_reads_equal_libvmi_page_reads():
    """Large reads go through Xen's batch mapping (libxenforeignmemory); on a paused guest
    they must equal LibVMI's page-by-page reads byte for byte, holes included (as must
    the single-page reads of the page cache), and the live backend must really take that
    path for a large read."""
    import subprocess

    from xenvmi.backends.libvmi import BULK_READ, LibvmiMemory
    from xenvmi.backends.xenforeign import ForeignMemory

    subprocess.run(["xl", "pause", "xvm-pvh2"], check=True, timeout=60)
    try:
        mem = LibvmiMemory("xvm-pvh2")
        try:
            fm = ForeignMemory(mem.domid)
            top = mem.memsize // 4096 * 4096
            for start, size in ((0x100000, 2 << 20), (top - (1 << 20), 2 << 20)):
                fast, fast_ok = fm.read_pages(start, size)
                slow, slow_ok = b"", []
                for page in range(start, start + size, 4096):  # LibVMI, one page each
                    data, got = mem._vmi.read_pa(page, 4096, padding=True)
                    ok = [got == 4096]
                    slow, slow_ok = slow + (data if ok[0] else bytes(4096)), slow_ok + ok
                    # the page cache's fills (LibVMI's C call into a reused buffer)
                    assert mem._read_page(page) == (data if ok[0] else None), hex(page)
                    assert mem._read_pages(page, 4096) == (slow[-4096:], ok), hex(page)
                assert fast_ok == slow_ok, hex(start)
                assert fast == slow, hex(start)
            assert not all(fast_ok) and any(fast_ok)  # the second range crosses the top
            fm.close()
            mem._read_pages(0x100000, BULK_READ)
            assert mem._foreign and mem.foreign_failures == 0
        finally:
            mem.close()
    finally:
        subprocess.run(["xl", "unpause", "xvm-pvh2"], timeout=60)


def guest_frame_mappings() -> int:
    """This process's mappings of guest frames (privcmd; hypercall buffers are not)."""
    import psutil

    return sum(m.path == "/dev/xen/privcmd" for m in psutil.Process().memory_maps(grouped=False))


@pytest.mark.parametrize("backend", [pytest.param("libvmi", marks=needs_libvmi), "native"])
def test_drop_mappings_gives_back_every_guest_frame(backend):
    """A live backend keeps guest frames mapped as a cache whose size follows the last
    reads (LibVMI's page cache held 329 after a cold read of a PVH guest and 150 after a
    warm one); drop_mappings, which the churn soak calls before counting a process's
    mappings, must leave none of them behind, and reads must work after it."""
    from xenvmi.guests import open_guest

    name = "xvm-pvh2"
    before = guest_frame_mappings()
    with open_guest(name, backend=backend) as g:
        first = g.processes(timeout=1500)
        kept = guest_frame_mappings() - before
        assert kept > 0, "no guest frame kept mapped after a view: the cache is not exercised"
        g.memory.drop_mappings()
        assert guest_frame_mappings() == before
        again = g.processes(timeout=600)
        assert {p.pid for p in again.rows} & {p.pid for p in first.rows}
        g.memory.drop_mappings()
        assert guest_frame_mappings() == before
    assert guest_frame_mappings() == before
