"""The Linux views on real x86-64 kernels' memory, against what each guest printed.

No Xen here: Debian's amd64 kernels (11's 5.10, 12's 6.1 with KASLR and with
``nokaslr``, 13's 6.12) boot under ``qemu-system-x86_64 -accel tcg`` with the lab guests'
busybox init, which prints its process list, modules, release and where its kernel text
is to the console; QEMU's dump-guest-memory then writes the guest's memory
(xenvmi.lab.qemumem, kept under ~/.cache/xenvmi/x86). The arch-neutral checks are
test_arm64_guest.py's own, run here on these captures; the slide, the registers and the
dump are x86's. Ubuntu 20.04's 5.4 (fetched from archive.ubuntu.com the same way, its
archive keys checked by fingerprint) has BTF and the kallsyms tables in VMCOREINFO, and
the log_buf of kernels before 5.10: every view gives the console's ground truth.
Needs qemu-system-x86 (`xenvmi lab deps`) and the archives, not the lab.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab_host import test_arm64_guest as arm64_guest
from tests.lab_host.test_arm64_guest import (  # noqa: F401 (collected here, on x86 captures)
    run,
    test_dmesg_has_the_guest_line,
    test_isf_profile,
    test_lsmod_matches_console,
    test_ps_matches_console,
    view,
)
from xenvmi.lab import qemumem

pytestmark = [
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        bool(qemumem.missing_tools("amd64")),
        reason=f"needs {' '.join(qemumem.missing_tools('amd64'))} (xenvmi lab deps installs it)",
    ),
]

#: (kernel, QEMU's vmcoreinfo device, KASLR, CPU), as test_arm64_guest.CAPTURES.
CAPTURES = (
    ("x86-deb12", True, True, None),
    ("x86-deb12", False, False, None),
    ("x86-deb11", True, True, None),
    ("x86-deb13", True, True, None),
    ("x86-focal", True, True, None),
)
#: Where x86-64's kernel text starts without KASLR (__START_KERNEL).
START_KERNEL = 0xFFFF_FFFF_8100_0000


def _id(c) -> str:
    return f"{c[0]}{'' if c[2] else '-nokaslr'}"


def open_capture(param, tmp_path_factory):
    name, device, kaslr, cpu = param
    cap = qemumem.capture(name, vmcoreinfo_device=device, kaslr=kaslr, cpu=cpu)
    cap.id = _id(param)  # type: ignore[attr-defined]
    cap.cache = tmp_path_factory.mktemp(f"cache-{name}")  # type: ignore[attr-defined]
    cap.name = cap.hostname  # type: ignore[attr-defined]
    return cap


@pytest.fixture(scope="module", params=CAPTURES, ids=_id)
def capture(request, tmp_path_factory):
    """The guest's dump and report (built once, then kept), and a fresh discovery cache."""
    return open_capture(request.param, tmp_path_factory)


def prstatus(path: Path) -> list[tuple[int, ...]]:
    """Each NT_PRSTATUS's user_regs_struct (r15 ... gs, 27 u64) of an x86-64 core."""
    return arm64_guest.prstatus(path, machine=62)


def test_kernel_release_hostname_and_slide(capture):
    """The slide is where the guest's /proc/kallsyms put _text, less __START_KERNEL."""
    got = view(capture, "kernel")["rows"][0]
    assert got["release"] == capture.report.release == capture.release
    assert got["hostname"] == capture.name
    assert capture.report.ktext is not None
    command_line = next(
        ln
        for ln in capture.console.read_text(errors="replace").splitlines()
        if "Command line:" in ln
    )
    assert command_line.split()[-1] == ("nokaslr" if capture.id.endswith("-nokaslr") else "kaslr")
    assert got["kaslr_slide"] == capture.report.ktext - START_KERNEL
    if capture.id.endswith("-nokaslr"):
        assert got["kaslr_slide"] == 0
    else:  # 2 MiB-aligned; 0 would be one chance in 500 (the capture is kept: it is not)
        assert got["kaslr_slide"] > 0 and got["kaslr_slide"] % 0x20_0000 == 0
    assert got["btf_types"] > 10_000 and got["symbols"] > 10_000


def test_regs_are_the_dumps_prstatus(capture):
    rows = view(capture, "regs", "--vcpu", "all")["rows"]
    notes = prstatus(capture.core)
    assert len(rows) == len(notes) == 2
    for row, regs in zip(rows, notes):
        d = row["decoded"]
        assert (d["rip"], d["rsp"], d["rflags"]) == (regs[16], regs[19], regs[18])
        assert d["cpl"] == 0 and d["cs_sel"] == regs[17] == 0x10  # idle in the kernel
        assert row["raw"]["rbp"] == regs[4] and row["raw"]["gs_base"] == regs[22]


def test_dump_is_an_x86_vmcore_drgn_opens(capture, tmp_path):
    drgn = pytest.importorskip("drgn")
    out = tmp_path / "x86.vmcore"
    res = run(capture, "dump", str(capture.core), str(out))
    assert "warning" not in res.stderr, res.stderr
    assert [n[16] for n in prstatus(out)] == [n[16] for n in prstatus(capture.core)]
    prog = drgn.Program()
    prog.set_core_dump(str(out))
    assert prog.platform.arch == drgn.Architecture.X86_64
    assert prog["UTS_RELEASE"].string_().decode() == capture.release
    ours = {(p["pid"], p["ppid"], p["comm"]) for p in view(capture, "ps", target=out)["rows"]}
    orig = {(p["pid"], p["ppid"], p["comm"]) for p in view(capture, "ps")["rows"]}
    assert ours == orig
