"""`xenvmi trace hypercalls` against the real Xen in the lab's dom0 (4.17, or 4.20 in trixie's).

The tracer runs as a subprocess (as a user would run it) while this process makes
hypercalls with known outcomes through /dev/xen/privcmd (xenvmi.backends.privcmd), and `xl list`
makes its usual failing xsm_op. Each outcome was first observed in the lab:

  domctl getdomaininfo(domid=999)            -> -ESRCH  (no domain with id >= 999)
  domctl getdomaininfo, interface 0x14       -> -EACCES (4.17 wants 0x15, 4.20 0x17)
  dm_op(domid=0, 1 buf) hypercall            -> -EPERM  from Xen (dm_op on the caller itself)
  privcmd dm_op ioctl, domid 0, nr_vcpus     -> -EPERM  from Xen, via the dm_op ioctl
  xen_version on a restricted privcmd fd     -> -EPERM  from privcmd itself (no hypercall)
  xsm_op from `xl list` (no XSM/FLASK)       -> -ENOSYS
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from xenvmi.backends.privcmd import Privcmd

from .conftest import ARM

READY_TIMEOUT = 600  # BPF compiles: 5-20 s on two emulated CPUs, minutes on one under load
#: dm_op has no Arm implementation in Debian's Xen 4.17 (no device models there): -ENOSYS.
DM_OP_ERROR, DM_OP_ERRNO = ("ENOSYS", -38) if ARM else ("EPERM", -1)
ME = os.getpid()
MY_COMM = Path("/proc/self/comm").read_text().strip()


class Tracer:
    """`python -m xenvmi trace hypercalls ARGS` in the background, stdout to a file."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.out_path = tmp_path / "trace.out"
        self.err_path = tmp_path / "trace.err"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xenvmi", "trace", "hypercalls", *args],
            stdout=self.out_path.open("w"),
            stderr=self.err_path.open("w"),
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while "Tracing" not in self.err_path.read_text():
            if self.proc.poll() is not None:
                pytest.fail(f"tracer exited {self.proc.returncode}: {self.err_path.read_text()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"tracer not ready in {READY_TIMEOUT}s: {self.err_path.read_text()}")
            time.sleep(0.2)
        time.sleep(0.5)  # the banner is printed just before the first poll

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def xl(*args: str) -> str:
    """Run xl (tests/lab/conftest.py has the same helper; a tests dir without __init__.py
    cannot import it relatively)."""
    return subprocess.run(
        ["xl", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


DMOP_NR_VCPUS = 20  # XEN_DMOP_nr_vcpus: harmless, and answered for HVM guests
WRONG_VERSION = 0x14  # an interface version older than every release the lab runs
#: XEN_DOMCTL_INTERFACE_VERSION of each lab release (public/domctl.h).
DOMCTL_VERSIONS = {"4.17": 0x15, "4.20": 0x17}


@functools.cache
def xen() -> SimpleNamespace:
    """The running hypervisor as `xl info` says (the ground truth the outcomes are keyed
    by), and that release's known outcomes."""
    info = dict(re.findall(r"^(xen_major|xen_minor)\s*:\s*(\d+)", xl("info"), re.MULTILINE))
    major, minor = int(info["xen_major"]), int(info["xen_minor"])
    release = f"{major}.{minor}"
    assert release in DOMCTL_VERSIONS, f"the lab runs Xen {release}: add its outcomes here"
    return SimpleNamespace(
        version=(major << 16) | minor,
        domctl_version=DOMCTL_VERSIONS[release],
    )


def provoke() -> dict[str, int]:
    """The known hypercalls, with what privcmd told us (negative errno)."""
    with Privcmd() as p, Privcmd() as restricted:
        got = {
            "version": p.xen_version(),
            "esrch": p.domctl(5, 999),
            "eacces": p.domctl(5, 0, version=WRONG_VERSION),
            "dm_op": p.dm_op(0, DMOP_NR_VCPUS),
            "dm_op_ioctl": p.dm_op_ioctl(0, DMOP_NR_VCPUS),
            "restrict": restricted.restrict(0),
        }
        got["restricted"] = restricted.xen_version()
    return got


def find(events: list[dict], **want) -> list[dict]:
    return [e for e in events if all(e.get(k) == v for k, v in want.items())]


@pytest.fixture(scope="module")
def unfiltered(tmp_path_factory):
    """One unfiltered JSON trace around provoke() and an `xl list`."""
    tracer = Tracer(tmp_path_factory.mktemp("trace"), "--json", "--duration", "600")
    try:
        results = provoke()
        xl("list")
        time.sleep(1)
    finally:
        code = tracer.stop()
    return tracer, results, code


def test_privcmd_results_are_the_known_ones(unfiltered):
    _, got, _ = unfiltered
    assert got == {
        "version": xen().version,
        "esrch": -3,
        "eacces": -13,
        "dm_op": DM_OP_ERRNO,
        "dm_op_ioctl": DM_OP_ERRNO,
        "restrict": 0,
        "restricted": -1,
    }


def test_tracer_stops_cleanly_on_sigint(unfiltered):
    tracer, _, code = unfiltered
    assert code == 0, tracer.stderr
    assert "Traceback" not in tracer.stderr


def test_domctl_on_missing_domain_is_esrch(unfiltered):
    tracer, _, _ = unfiltered
    [ev] = find(tracer.events(), pid=ME, name="domctl", domid=999)
    assert ev["subop_name"] == "getdomaininfo" and ev["subop"] == 5
    assert ev["ret"] == -3 and ev["error"] == "ESRCH" and ev["version"] == xen().domctl_version
    assert ev["comm"] == MY_COMM and ev["tid"] > 0 and ev["latency_ns"] > 0
    assert ev["text"].startswith(
        f"{MY_COMM}[{ME}] domctl getdomaininfo(domid=999) -> -ESRCH (No such process) "
    )


def test_wrong_interface_version_is_eacces(unfiltered):
    tracer, _, _ = unfiltered
    [ev] = find(tracer.events(), pid=ME, name="domctl", version=WRONG_VERSION)
    assert (ev["subop_name"], ev["domid"], ev["error"]) == ("getdomaininfo", 0, "EACCES")
    want = xen().domctl_version  # the running release's table decoded it
    text = f"version={WRONG_VERSION:#x}, want {want:#x}) -> -EACCES (Permission denied)"
    assert text in ev["text"]
    assert ev["expected_version"] == want


def test_xen_eperm_from_dm_op_hypercall_and_ioctl(unfiltered):
    tracer, _, _ = unfiltered
    evs = tracer.events()
    [hc] = find(evs, pid=ME, kind="hypercall", name="dm_op")
    assert (hc["domid"], hc["ret"], hc["error"]) == (0, DM_OP_ERRNO, DM_OP_ERROR)
    [io] = find(evs, pid=ME, kind="dm_op")
    assert (io["name"], io["subop_name"], io["domid"], io["error"]) == (
        "dm_op",
        "nr_vcpus",
        0,
        DM_OP_ERROR,
    )
    assert io["text"].startswith(
        f"{MY_COMM}[{ME}] privcmd dm_op nr_vcpus(domid=0) -> -{DM_OP_ERROR}"
    )


def test_privcmd_eperm_on_restricted_fd(unfiltered):
    tracer, _, _ = unfiltered
    evs = tracer.events()
    [r] = find(evs, pid=ME, kind="restrict")
    assert (r["domid"], r["ret"]) == (0, 0)
    versions = find(evs, pid=ME, name="xen_version")
    assert sorted(e["ret"] for e in versions) == [-1, xen().version]


def test_xl_list_xsm_op_is_enosys(unfiltered):
    tracer, _, _ = unfiltered
    evs = find(tracer.events(), comm="xl", name="xsm_op")
    assert evs, "no xsm_op from xl list"
    assert {(e["op"], e["ret"], e["error"]) for e in evs} == {(27, -38, "ENOSYS")}
    assert find(tracer.events(), comm="xl", name="sysctl", error=None)  # and it worked


def test_bpf_filters_and_count(tmp_path):
    """--errors-only --pid in the kernel: our successes and everyone else stay out;
    -n 3 ends the trace by itself."""
    tracer = Tracer(tmp_path, "--json", "--errors-only", "--pid", str(ME), "-n", "3", "-d", "300")
    try:
        with Privcmd() as p:
            p.xen_version()
            xl("list")
            results = [
                p.domctl(5, 999),
                p.domctl(5, 0, version=WRONG_VERSION),
                p.dm_op(0, DMOP_NR_VCPUS),
            ]
            p.xen_version()
        code = tracer.wait(timeout=60)
    finally:
        tracer.stop()
    assert results == [-3, -13, DM_OP_ERRNO] and code == 0, tracer.stderr
    evs = tracer.events()
    assert [(e["name"], e["error"]) for e in evs] == [
        ("domctl", "ESRCH"),
        ("domctl", "EACCES"),
        ("dm_op", DM_OP_ERROR),
    ]
    assert {e["pid"] for e in evs} == {ME}


def test_kernel_side_summary_and_histogram(tmp_path):
    """--summary without events: counts come from the BPF maps."""
    tracer = Tracer(
        tmp_path, "--comm", "xl", "--op", "xsm_op", "--summary", "--hist", "--json", "-d", "300"
    )
    try:
        for _ in range(3):
            xl("list")
    finally:
        code = tracer.stop(signal.SIGTERM)
    assert code == 0, tracer.stderr
    lines = tracer.stdout.splitlines()
    assert len(lines) == 1, lines  # nothing streamed, one summary
    summary = json.loads(lines[0])["summary"]
    [row] = summary["ops"]
    assert row["name"] == "xsm_op" and row["calls"] >= 3 and row["errors"] == row["calls"]
    assert [(e["error"], e["count"]) for e in summary["errors"]] == [("ENOSYS", row["calls"])]
    hist = summary["latency_usecs_log2"]["xsm_op"]
    assert sum(b["count"] for b in hist) == row["calls"]


def test_text_lines(tmp_path):
    tracer = Tracer(tmp_path, "--pid", str(ME), "--op", "domctl:getdomaininfo", "-n", "1")
    try:
        with Privcmd() as p:
            p.xen_version()
            p.domctl(5, 999)
        code = tracer.wait(timeout=60)
    finally:
        tracer.stop()
    assert code == 0, tracer.stderr
    [line] = tracer.stdout.splitlines()
    assert line.startswith(
        f"{MY_COMM}[{ME}] domctl getdomaininfo(domid=999) -> -ESRCH (No such process) "
    )
    assert line.rsplit(" ", 1)[1][-2:] in ("ns", "us", "ms")
