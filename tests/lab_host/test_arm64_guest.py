"""The Linux views on real arm64 kernels' memory, against what each guest printed.

No Xen here: Debian's arm64 kernels (11's 5.10, 12's 6.1 with and without KASLR, 13's
6.12 with 4K and with 16K pages) boot under qemu-system-aarch64 (TCG) with the lab
guests' busybox init, which prints its process list, modules and release to the
console; QEMU's dump-guest-memory then
writes the guest's memory (xenvmi.lab.qemumem, kept under ~/.cache/xenvmi/arm64). The
views read that ELF core as they read a live domain: the architecture comes from the
file. Needs qemu-system-arm (`xenvmi lab deps`) and Debian's archive, not the lab.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from xenvmi.lab import qemumem
from xenvmi.lab.groundtruth import KMSG_LINE

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        bool(qemumem.missing_tools("arm64")),
        reason=f"needs {' '.join(qemumem.missing_tools('arm64'))} (xenvmi lab deps installs them)",
    ),
]

#: (kernel, QEMU's vmcoreinfo device, KASLR, CPU): 6.1 both ways (the note is in memory
#: either way, the kernel's own; the device only tells QEMU where); Debian 13's 16K-page
#: kernel (built for 52-bit VAs and PAs) on QEMU's "max" CPU, which has FEAT_LPA2, and on
#: a Cortex-A76, which has not: 47-bit VAs and 48-bit descriptors then.
CAPTURES = (
    ("deb12", True, True, None),
    ("deb12", False, False, None),
    ("deb11", True, True, None),
    ("deb13", True, True, None),
    ("deb13-16k", True, True, None),
    ("deb13-16k", True, True, "cortex-a76"),
)
#: The user translation regime (granule, VA bits, PA bits) each kernel sets up.
PAGING = {"deb13-16k": (16384, 52, 52), "deb13-16k-cortex-a76": (16384, 47, 48)}


def _id(c) -> str:
    return f"{c[0]}{'' if c[2] else '-nokaslr'}{f'-{c[3]}' if c[3] else ''}"


@pytest.fixture(scope="module", params=CAPTURES, ids=_id)
def capture(request, tmp_path_factory):
    """The guest's dump and report (built once, then kept), and a fresh discovery cache."""
    name, device, kaslr, cpu = request.param
    cap = qemumem.capture(name, vmcoreinfo_device=device, kaslr=kaslr, cpu=cpu)
    cap.id = _id(request.param)  # type: ignore[attr-defined]
    cap.cache = tmp_path_factory.mktemp(f"cache-{name}")  # type: ignore[attr-defined]
    cap.name = f"arm64-{name}"  # type: ignore[attr-defined]
    return cap


def run(cap, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XENVMI_CACHE_DIR=str(cap.cache))
    res = subprocess.run(
        [sys.executable, "-m", "xenvmi", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if ok:
        assert res.returncode == 0, f"xenvmi {' '.join(args)}: exit {res.returncode}: {res.stderr}"
    return res


def view(cap, command: str, *args: str, target: Path | None = None) -> dict:
    res = run(cap, command, *args, "--json", str(target or cap.core))
    return json.loads(res.stdout)


#: ELF e_machine -> the registers in its NT_PRSTATUS: arm64's user_pt_regs (x0-x30, sp,
#: pc, pstate), x86-64's user_regs_struct (r15 ... gs).
PRSTATUS_REGS = {183: 34, 62: 27}


def prstatus(path: Path, machine: int = 183) -> list[tuple[int, ...]]:
    """Each NT_PRSTATUS's registers (PRSTATUS_REGS of ``machine``, which the file must
    be), read here from the ELF file with nothing of xenvmi's."""
    with open(path, "rb") as f:
        head = f.read(64)
        assert head[:4] == b"\x7fELF" and struct.unpack_from("<H", head, 18)[0] == machine
        phoff, phnum = struct.unpack_from("<Q", head, 32)[0], struct.unpack_from("<H", head, 56)[0]
        f.seek(phoff)
        table = f.read(56 * phnum)
        out = []
        for n in range(phnum):
            ptype, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", table, n * 56)
            if ptype != 4:
                continue
            f.seek(off)
            data, pos = f.read(filesz), 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
                desc = pos + 12 + (namesz + 3) // 4 * 4
                if data[pos + 12 : pos + 16] == b"CORE" and ntype == 1:
                    out.append(struct.unpack_from(f"<{PRSTATUS_REGS[machine]}Q", data, desc + 112))
                pos = desc + (descsz + 3) // 4 * 4
    return out


def test_kernel_release_hostname_and_slide(capture):
    got = view(capture, "kernel")["rows"][0]
    assert got["release"] == capture.report.release == capture.release
    assert got["hostname"] == capture.name
    console = capture.console.read_text(errors="replace")
    if "KASLR enabled" in console:
        assert got["kaslr_slide"] > 0 and got["kaslr_slide"] % 0x10000 == 0
    else:
        assert got["kaslr_slide"] == 0
    assert got["btf_types"] > 10_000 and got["symbols"] > 10_000


def test_ps_matches_console(capture):
    got = view(capture, "ps")
    ours = {p["pid"]: p for p in got["rows"]}
    truth = {p.pid: p for p in capture.report.processes}
    # the dump is taken right after the report: every process reported is there, with its
    # parent; a kernel worker's workqueue may have changed in between, nothing else
    missing = sorted(set(truth) - set(ours))
    assert not missing, f"ps misses {[truth[p] for p in missing]}"
    for pid, p in truth.items():
        assert ours[pid]["ppid"] == p.ppid, (p, ours[pid])
        if not p.comm.startswith("kworker/"):
            assert ours[pid]["comm"] == p.comm, (p, ours[pid])
    extra = [p for pid, p in ours.items() if pid not in truth and not p["kernel_thread"]]
    assert not extra, f"ps lists user processes the guest never reported: {extra}"
    # (bullseye's busybox names its script processes "sh": the command lines tell them apart)
    by_cmd = {p["cmdline"]: p for p in got["rows"]}
    assert "/bin/sh /usr/bin/xvm-beta --role worker" in by_cmd
    child, parent = by_cmd["/bin/sh /usr/bin/xvm-child"], by_cmd["/bin/sh /usr/bin/xvm-parent"]
    assert child["ppid"] == parent["pid"] == truth[child["pid"]].ppid
    kthreadd = next(p for p in got["rows"] if p["comm"] == "kthreadd")
    assert kthreadd["kernel_thread"] and kthreadd["cmdline"] is None
    assert got["complete"], got["warnings"]


def test_shell_helpers_walk_the_pid_namespace(capture):
    """drgn's own task helpers start at init_pid_ns, a data symbol kallsyms of functions
    only lacks: found from init_task's pid (where kallsyms has no data symbols), they list
    every pid `ps` lists."""
    res = run(
        capture,
        "shell",
        str(capture.core),
        "-q",
        "-c",
        "print(hex(prog['init_pid_ns'].address_of_().value_())); "
        "print(sorted({t.pid.value_() for t in for_each_task(prog)}))",
    )
    ns, pids = res.stdout.splitlines()[:2]
    assert {p["pid"] for p in view(capture, "ps")["rows"]} == set(json.loads(pids)) - {0}
    sources = view(capture, "kernel")["rows"][0]["sources"]
    if "data symbols" in sources:  # Debian 13's kallsyms has them all (KALLSYMS_ALL)
        assert f"init_pid_ns at {ns}" in sources["data symbols"], sources
        assert "init_net at " in sources["data symbols"], sources


def test_netdev_plugin_lists_loopback_and_dummy(capture):
    """The netdev plugin starts at init_net, found from init_task's nsproxy where kallsyms
    has no data symbols: the guest's lo and the dummy module's dummy0."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), XENVMI_CACHE_DIR=str(capture.cache))
    res = subprocess.run(
        [sys.executable, "-m", "xenvmi", "run", "netdev", str(capture.core), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr
    by_name = {d["name"]: d for d in json.loads(res.stdout)["rows"]}
    assert by_name["lo"]["ifindex"] == 1 and "dummy0" in by_name, by_name


def test_lsmod_matches_console(capture):
    got = view(capture, "lsmod")
    assert {m["name"] for m in got["rows"]} == set(capture.report.modules) == {"dummy"}
    assert all(m["state"] == "live" and m["size"] > 0 for m in got["rows"])


def test_dmesg_has_the_guest_line(capture):
    texts = [r["text"] for r in view(capture, "dmesg")["rows"]]
    assert KMSG_LINE.format(name=capture.name) in texts
    assert any(t.startswith(f"Linux version {capture.release} ") for t in texts)


def test_regs_are_the_dumps_prstatus(capture):
    rows = view(capture, "regs", "--vcpu", "all")["rows"]
    notes = prstatus(capture.core)
    assert len(rows) == len(notes) == 2
    for row, regs in zip(rows, notes):
        d = row["decoded"]
        assert (d["pc"], d["sp"], d["pstate"]) == (regs[32], regs[31], regs[33])
        assert d["execution_state"] == "aarch64" and d["el"] == 1  # idle in the kernel
        assert row["raw"]["x29"] == regs[29]


def test_dump_is_an_arm64_vmcore_drgn_opens(capture, tmp_path):
    drgn = pytest.importorskip("drgn")
    out = tmp_path / "arm64.vmcore"
    res = run(capture, "dump", str(capture.core), str(out))
    assert "warning" not in res.stderr, res.stderr  # the RAM map read (iomem_resource found)
    notes = prstatus(out)
    assert [n[32] for n in notes] == [n[32] for n in prstatus(capture.core)]  # pc per vCPU
    prog = drgn.Program()
    prog.set_core_dump(str(out))  # a Linux kernel core: drgn reads our VMCOREINFO note
    assert prog.platform.arch == drgn.Architecture.AARCH64
    assert prog["UTS_RELEASE"].string_().decode() == capture.release
    ours = {(p["pid"], p["ppid"], p["comm"]) for p in view(capture, "ps", target=out)["rows"]}
    orig = {(p["pid"], p["ppid"], p["comm"]) for p in view(capture, "ps")["rows"]}
    assert ours == orig


def test_isf_profile(capture, tmp_path):
    out = tmp_path / "arm64.isf.json"
    run(capture, "isf", str(capture.core), "-o", str(out))
    doc = json.loads(out.read_text())
    symbols = doc["symbols"]
    assert symbols["init_task"]["type"] == {"kind": "struct", "name": "task_struct"}
    assert "linux_banner" in symbols and "task_struct" in doc["user_types"]


def test_aarch64_walk_agrees_with_drgn(capture, monkeypatch):
    """xenvmi's own AArch64 walk (command lines) reads what drgn's page-table walk reads,
    for every user process, and its regime is the kernel's (4K granule, 48-bit VAs; on
    the 16K kernel 16K pages, 52-bit VAs, LPA2's 52-bit output addresses)."""
    from drgn import Object
    from drgn.helpers.linux.mm import access_remote_vm

    from xenvmi.guest import pagetable
    from xenvmi.guests import open_guest

    monkeypatch.setenv("XENVMI_CACHE_DIR", str(capture.cache))
    with open_guest(capture.core) as g:
        kp = g.kernel_program()
        want = PAGING.get(capture.id, (4096, 48, 48))
        assert kp.arm64_paging == pagetable.Aarch64Paging(*want)
        prog, checked = kp.prog, 0
        for p in g.processes().rows:
            if p.kernel_thread:
                continue
            mm = Object(prog, "struct task_struct", address=p.task).mm
            start, end = mm.arg_start.value_(), mm.arg_end.value_()
            pgd_pa = kp.kernel_pa(mm.pgd.value_())
            assert pgd_pa is not None  # the linear map holds every page table
            ours = pagetable.read_user(
                lambda pa, n: kp.memory.read_physical(pa, n, strict=True),
                pgd_pa,
                start,
                end - start,
                arm64=kp.arm64_paging,
            )
            assert ours == access_remote_vm(mm, start, end - start), p
            checked += 1
        assert checked >= 9
