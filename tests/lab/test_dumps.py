"""`xenvmi dump` on the lab's real guests: every view of the dump equals the live guest's.

Each guest is dumped while paused with `xl pause`, and the live views are taken in the
same pause, so the dump and the live guest must agree exactly (pids, modules, kernel,
registers). Not xenvmi's own --pause there: LibVMI's pause skips an already paused domain
but its resume always unpauses, which would undo `xl pause`. `--pause` on a running guest
is tested on its own, with the raw format. drgn (its Python API and its CLI) must open the vmcores.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xenvmi.lab.groundtruth import KMSG_LINE

from .conftest import (
    ARM,
    DUMP_GUESTS,
    TRANSIENT,
    ground_truth,
    missing_from,
    no_pv_on_arm,
    report_after_now,
    xenvmi,
    xenvmi_json,
    xl,
)

pytestmark = pytest.mark.timeout(1800)


def _key(p: dict) -> tuple[int, int, str]:
    return p["pid"], p["ppid"], p["comm"]


@pytest.fixture(params=DUMP_GUESTS)
def dumped(request, paused_dump):
    """(guest, vmcore path, dump summary, live views taken in the same pause)."""
    d = paused_dump(request.param)
    return d.name, d.path, d.summary, d.live


def test_dump_summary(dumped):
    name, path, summary, live = dumped
    assert summary["path"] == str(path) and summary["bytes"] == path.stat().st_size
    assert summary["vmcoreinfo"] and summary["vcpus"] == len(live["regs"]["rows"])
    assert summary["ram_bytes"] >= 200 << 20 and summary["ranges"]
    if ARM:  # the linear map is VMCOREINFO's (PHYS_OFFSET, VA_BITS): nothing to look for
        assert summary["direct_map"] is None and not summary["warnings"], summary
    else:
        assert summary["direct_map"] is not None, summary["warnings"]  # found in page tables
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(path.parent.glob(".*partial*"))


def test_ps_on_the_dump_equals_live(dumped):
    name, path, _, live = dumped
    got = xenvmi_json("ps", str(path))
    assert got["domain"] == str(path) and got["complete"], got["warnings"]
    assert {_key(p) for p in got["rows"]} == {_key(p) for p in live["ps"]["rows"]}
    assert {"init", "xvm-alpha", "xvm-parent", "xvm-child"} <= {p["comm"] for p in got["rows"]}


def test_lsmod_on_the_dump_equals_live(dumped):
    name, path, _, live = dumped
    got = {m["name"] for m in xenvmi_json("lsmod", str(path))["rows"]}
    assert got == {m["name"] for m in live["lsmod"]["rows"]} and "dummy" in got


def test_kernel_on_the_dump_equals_live(dumped):
    name, path, _, live = dumped
    got = xenvmi_json("kernel", str(path))["rows"][0]
    want = live["kernel"]["rows"][0]
    for key in (
        "release",
        "version",
        "build_id",
        "kaslr_slide",
        "phys_base",
        "vmcoreinfo_address",
        "btf_size",
        "btf_types",
    ):
        assert got[key] == want[key], key
    assert got["symbols"] > 50_000
    assert got["release"] == ground_truth(name).release
    assert "note of the dump" in got["sources"]["vmcoreinfo"]  # no scan of the file
    res = xenvmi("kernel", str(path))
    assert res.returncode == 0 and "from the dump's note" in res.stdout, res.stderr


def test_dmesg_on_the_dump(dumped):
    name, path, _, _ = dumped
    texts = [r["text"] for r in xenvmi_json("dmesg", str(path))["rows"]]
    assert KMSG_LINE.format(name=name) in texts


def test_regs_on_the_dump_equal_live(dumped):
    name, path, _, live = dumped
    got = xenvmi_json("regs", str(path), "--vcpu", "all")
    assert got["rows"][0]["raw"] == live["regs"]["rows"][0]["raw"]
    if not ARM:
        assert got["rows"][0]["decoded"]["paging_mode"] == "4-level"
        return
    from xenvmi.backends.dumpfile import DumpMemory
    from xenvmi.guest.vmcoreinfo import parse_text

    # Xen's TTBR1 is the kernel's own page table: swapper_pg_dir as the note places it
    with DumpMemory(path) as m:
        info = parse_text(m.vmcoreinfo, m.arch)
    swapper = info.kernel_image_pa(info.symbols["swapper_pg_dir"])
    for row in got["rows"]:
        assert row["decoded"]["execution_state"] == "aarch64"
        assert row["decoded"]["ttbr1_base"] == swapper, (hex(row["raw"]["ttbr1"]), hex(swapper))


def test_drgn_opens_the_dump(dumped):
    """drgn's own core-dump reader: a Linux kernel, the note where xenvmi found it, and
    init_uts_ns through the page tables (KASLR slide and phys_base from VMCOREINFO)."""
    import drgn

    from xenvmi.backends.dumpfile import DumpMemory
    from xenvmi.guest.discover import utsname_offset
    from xenvmi.guest.vmcoreinfo import parse_text

    name, path, summary, live = dumped
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    with DumpMemory(path) as m:
        info = parse_text(m.vmcoreinfo, m.arch)
        uts = info.symbols["init_uts_ns"]
        offset = info.fields.get("OFFSET(uts_namespace.name)")  # exported since 5.13
        if offset is None:
            offset = utsname_offset(m, info.kernel_image_pa(uts), info.osrelease)
    note_at = live["kernel"]["rows"][0]["vmcoreinfo_address"]
    assert prog.read(note_at + 12, 11, True) == b"VMCOREINFO\x00"
    mapped = info.linear_va(note_at) if ARM else summary["direct_map"] + note_at
    assert prog.read(mapped + 12, 11) == b"VMCOREINFO\x00"
    if ARM:
        assert prog.platform.arch == drgn.Architecture.AARCH64
    uts += int(offset)
    release = prog.read(uts + 2 * 65, 65).split(b"\x00")[0].decode()
    assert release == ground_truth(name).release
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "drgn",
            "-q",
            "-c",
            str(path),
            "-e",
            "import drgn; print(bool(prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL))",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0 and res.stdout.strip() == "True", res.stderr


def test_shell_on_the_dump(dumped):
    name, path, _, live = dumped
    res = xenvmi(
        "shell",
        str(path),
        "-q",
        "-c",
        "print(prog['init_task'].comm.string_().decode()); "
        "print(sorted({t.pid.value_() for t in for_each_task(prog)}))",
    )
    assert res.returncode == 0, res.stderr
    comm, pids = res.stdout.splitlines()[:2]
    assert comm == "swapper/0"
    assert {p["pid"] for p in live["ps"]["rows"]} <= set(json.loads(pids))


def test_paused_raw_image_of_a_running_guest(guests, dump_dir):
    """--pause on a running guest: a consistent dump (every process alive before and after
    it is in it), the guest running again after; and the raw format, whose kernel is found
    by a scan of the file (a raw image has no note). One dump for both: each costs minutes."""
    name = "xvm-pvh1"
    path = dump_dir / "pvh1.raw"
    before = report_after_now(name)
    summary = xenvmi_json("dump", name, str(path), "--pause", "--format", "raw", "-q")
    state = xl("list", name).splitlines()[-1].split()[4]
    assert "p" not in state, f"{name} left paused: {state}"
    after = report_after_now(name)
    assert summary["format"] == "raw"  # memory only: no notes, no registers
    assert summary["bytes"] == path.stat().st_size == summary["ranges"][-1]["end"]
    got = xenvmi_json("kernel", str(path))["rows"][0]
    assert got["release"] == ground_truth(name).release
    processes = {_key(p) for p in xenvmi_json("ps", str(path))["rows"]}
    stable = {(p.pid, p.ppid, p.comm) for p in before.processes} & {
        (p.pid, p.ppid, p.comm) for p in after.processes
    }
    missing = missing_from(stable, processes)
    assert not missing, f"the dump misses {sorted(missing)}"
    assert {"init", "xvm-alpha"} <= {comm for _, _, comm in processes} - TRANSIENT
    path.unlink()


def test_dump_refuses_an_existing_file(guests, dump_dir):
    path = dump_dir / "exists"
    path.write_text("keep")
    res = xenvmi("dump", "xvm-pvh1", str(path), "-q")
    assert res.returncode == 2 and "--force" in res.stderr and path.read_text() == "keep"


@no_pv_on_arm
def test_pv_dump_is_one_clear_line(guests, dump_dir):
    res = xenvmi("dump", "xvm-pv", str(dump_dir / "pv.vmcore"), "-q")
    assert res.returncode == 5 and "PV" in res.stderr and "Traceback" not in res.stderr
    assert not (dump_dir / "pv.vmcore").exists() and not list(dump_dir.glob(".pv*"))
