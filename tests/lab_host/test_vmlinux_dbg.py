"""`--vmlinux` with Debian's real debug kernel: the views read a lab guest's dump with the
types from the vmlinux's DWARF instead of the kernel's BTF, and answer the same.

Runs on the host against the running lab: the host copies dom0's dump of the 5.10 KASLR
HVM guest (the one the dom0 suite leaves, or one made now of the running guest: both
readings see the same bytes, so a torn list would differ in neither), and fetches (once,
then cached; about 800 MB) the exact ``linux-image-*-dbg`` of the kernel the lab gave
that guest. Too big and too slow for the
emulated dom0: drgn indexes 640 MiB of DWARF. A lab that is not running fails this test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xenvmi.lab import kernels, remote
from xenvmi.lab.paths import LabPaths

GUEST, KERNEL = "xvm-deb11", kernels.KERNELS[0]
KEPT_DUMP = "/var/tmp/xenvmi-lab-kept/xvm-deb11.vmcore"  # as tests/lab/conftest.py

pytestmark = pytest.mark.timeout(3600)


def xenvmi(*args: str) -> dict | list:
    res = subprocess.run(
        [sys.executable, "-m", "xenvmi", *args, "--json", "-q"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def dump_and_vmlinux(tmp_path_factory) -> tuple[Path, Path]:
    assert KERNEL.name == "deb11"
    paths = LabPaths.default()
    state = paths.load_state()
    assert state is not None and remote.reachable(paths, state.port), (
        "the lab is not running: `xenvmi lab up` first"
    )
    vmlinux = kernels.debug_vmlinux(paths, KERNEL)
    # The dom0 suite leaves its dump of this guest (tests/lab/conftest.py KEPT_DUMP);
    # without it (this file run alone), dom0 makes one.
    remote.run(
        paths,
        state.port,
        f"test -s {KEPT_DUMP} || (mkdir -p {Path(KEPT_DUMP).parent} && cd {remote.REMOTE_SRC} && "
        f"{remote.REMOTE_PY} -m xenvmi dump {GUEST} {KEPT_DUMP} --force -q)",
        timeout=1800,
    )
    dump = tmp_path_factory.mktemp("vmlinux") / "deb11.vmcore"
    with dump.open("wb") as out:
        res = subprocess.run(
            remote.ssh_argv(paths, state.port, ["cat", KEPT_DUMP]),
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=1800,
        )
    assert res.returncode == 0, res.stderr
    return dump, vmlinux


def rows(view: dict | list) -> list[dict]:
    return view["rows"] if isinstance(view, dict) else view


def test_kernel_types_come_from_the_vmlinux(dump_and_vmlinux):
    dump, vmlinux = dump_and_vmlinux
    with_btf = xenvmi("kernel", str(dump))
    with_dwarf = xenvmi("kernel", str(dump), "--vmlinux", str(vmlinux))
    assert "BTF" in json.dumps(with_btf)
    text = json.dumps(with_dwarf)
    assert f"DWARF from {vmlinux}" in text and "agrees with kallsyms" in text
    kernel_release = LabPaths.default().root / "kernels" / KERNEL.name / "kernel-release"
    assert kernel_release.read_text().strip() in text


def test_ps_and_lsmod_agree_with_btf(dump_and_vmlinux):
    dump, vmlinux = dump_and_vmlinux
    for view, key, least in (
        ("ps", ("pid", "ppid", "name", "state"), 40),
        ("lsmod", ("name", "size"), 1),  # the lab guests load one module, dummy
    ):
        btf = rows(xenvmi(view, str(dump)))
        dwarf = rows(xenvmi(view, str(dump), "--vmlinux", str(vmlinux)))
        assert len(btf) >= least, btf
        assert sorted(tuple(r.get(k) for k in key) for r in dwarf) == sorted(
            tuple(r.get(k) for k in key) for r in btf
        ), view


def test_another_kernels_vmlinux_is_one_line(dump_and_vmlinux, tmp_path):
    """A file that is not this kernel's: here the real vmlinux with its build ID note
    changed, which drgn must refuse (the guest's VMCOREINFO names the real one)."""
    dump, vmlinux = dump_and_vmlinux
    notes = subprocess.run(
        ["readelf", "-n", str(vmlinux)], capture_output=True, text=True, check=True
    ).stdout
    [build_id] = re.findall(r"Build ID: ([0-9a-f]+)", notes)
    data = bytearray(vmlinux.read_bytes())
    at = data.find(bytes.fromhex(build_id))
    assert at > 0
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    other = tmp_path / "vmlinux-other"
    other.write_bytes(data)
    res = subprocess.run(
        [sys.executable, "-m", "xenvmi", "ps", str(dump), "--vmlinux", str(other), "-q"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert res.returncode != 0 and "Traceback" not in res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "--vmlinux" in line, line
