"""Lab integration tests: they run inside the lab's dom0 against the real Xen and guests.

Run them from the host with `xenvmi lab exec -- pytest -m xen tests/lab`. Outside a Xen
dom0 they fail (never skip): a lab that is not there is a failed lab.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from xenvmi.lab import dom0
from xenvmi.lab.groundtruth import GuestReport, last_boot, latest_report, parse_reports
from xenvmi.lab.progress import printable

from .forkrun import preload, run_forked

#: Every lab guest: (type, kernel). "dom0" is dom0's own kernel (Debian 12's 6.1); the
#: others are Debian releases' kernels fetched by xenvmi.lab.kernels (deb11: 5.10, whose
#: VMCOREINFO names no kallsyms tables; deb13: 6.12). HVM guests boot the compressed
#: kernel's stub, so they are the KASLR guests.
X86_GUESTS = {
    "xvm-pvh1": ("pvh", "dom0"),
    "xvm-pvh2": ("pvh", "dom0"),
    "xvm-hvm": ("hvm", "dom0"),
    "xvm-pv": ("pv", "dom0"),
    "xvm-deb11": ("hvm", "deb11"),
    "xvm-deb13": ("pvh", "deb13"),
}
#: An arm64 lab (`xenvmi lab up --arch arm64`): every Arm guest is PVH-like, on dom0's kernel.
ARM = platform.machine() == "aarch64"
ARM64_GUESTS = {"xvm-pvh1": ("pvh", "dom0"), "xvm-pvh2": ("pvh", "dom0")}
LAB_GUESTS = ARM64_GUESTS if ARM else X86_GUESTS
GUESTS = tuple(LAB_GUESTS)

#: Why a test cannot run in an arm64 dom0 (xen-lab-notes, issue 20's known facts). The
#: guest views, dumps, profiles and plugins run there on the native backend.
NOT_ON_ARM = {
    "test_native_backend.py": "compares the native backend with LibVMI, which has no aarch64 "
    "build (and runs on x86 guest types)",
    "test_kernels.py": "the other Debian releases' guest kernels are amd64 kernels",
    "test_trace_xentrace.py": "xentrace records nothing on Arm (Xen 4.17 traces no Arm events)",
}
#: Tests of PV guests, which Xen on Arm does not have (every Arm guest is PVH-like).
no_pv_on_arm = pytest.mark.skipif(ARM, reason="Xen on Arm has no PV guests")


def expected_release(name: str) -> str:
    """The kernel release the guest must report: dom0's, or its kernel's as fetched."""
    kernel = LAB_GUESTS[name][1]
    if kernel == "dom0":
        return os.uname().release
    return (dom0.LAB_DIR / "kernels" / kernel / "kernel-release").read_text().strip()


def randomized(name: str) -> bool:
    """Whether the guest's kernel runs at a KASLR slide (HVM guests do; PV/PVH never)."""
    return LAB_GUESTS[name][0] == "hvm"


def selected(guests: tuple[str, ...]) -> tuple[str, ...]:
    """``guests``, or only those named in $XENVMI_LAB_MEMORY_GUESTS (comma-separated):
    tests/run-all.sh runs the per-guest memory views on the KASLR HVM guest only, to keep
    CI short; unset, every guest runs."""
    want = os.environ.get("XENVMI_LAB_MEMORY_GUESTS", "").strip()
    if not want:
        return guests
    names = tuple(n.strip() for n in want.split(",") if n.strip())
    unknown = set(names) - set(guests)
    if unknown:
        raise pytest.UsageError(f"XENVMI_LAB_MEMORY_GUESTS names unknown guests {sorted(unknown)}")
    return names


#: Short-lived children of the guests' report loop and named scripts: a process list may or
#: may not hold them. "exe" is busybox running an applet (the scripts' `sleep 30`) by
#: re-executing /proc/self/exe: the name a child has for an instant while it starts.
TRANSIENT = {"sleep", "cut", "grep", "tr", "uname", "ps", "cat", "sh", "exe"}


def unreported(ours: set[tuple[int, int, str]], seen: set[tuple[int, int, str]]):
    """(pid, ppid, comm) read from a guest that no console report holds, less what can be
    missing from reports for good reason: transient names, kworkers (renamed as they
    work), and a child still named like its parent (forked, not yet exec'ed): a named
    script's `sleep` can start and end between two reports."""
    names = {pid: comm for pid, _, comm in ours}
    return {
        p
        for p in ours - seen
        if not (p[2] in TRANSIENT or p[2].startswith("kworker/") or names.get(p[1]) == p[2])
    }


def _libvmi_here() -> bool:
    from xenvmi.backends.libvmi import importable

    return importable()


#: For tests that compare with LibVMI itself: a dom0 without it (Debian 13, whose Python
#: has no libvmi wheel) skips them, saying so; every view there runs on the native backend.
needs_libvmi = pytest.mark.skipif(
    not _libvmi_here(),
    reason="no LibVMI in this dom0 (PyPI has no libvmi wheel for its Python): "
    "the native backend serves the views here",
)


def pytest_sessionstart(session):
    preload()
    session.config.stash[_DOMIDS] = dom0.running_domains() or {}


_DOMIDS = pytest.StashKey[dict]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A guest that died or restarted during the run is a lab defect to find, not noise:
    name it, with the end of its console (a panic's trace is there; its domain is gone
    for good once Xen destroyed it)."""
    start = config.stash.get(_DOMIDS, {})
    now = dom0.running_domains() or {}
    for name in GUESTS:
        if name in start and now.get(name) != start[name]:
            tail = printable(dom0.read_console(name)).strip().splitlines()[-40:]
            terminalreporter.section(
                f"lab guest {name}: domain {start[name]} -> {now.get(name, 'gone')}"
            )
            terminalreporter.write_line("\n".join(tail))


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.xen)
        why = NOT_ON_ARM.get(item.path.name) if ARM else None
        if why:
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session", autouse=True)
def in_dom0():
    caps = Path("/proc/xen/capabilities")
    if not caps.exists() or "control_d" not in caps.read_text():
        pytest.fail(
            "lab tests must run in a Xen dom0: `xenvmi lab exec -- pytest -m xen tests/lab`"
        )
    if os.geteuid() != 0:
        pytest.fail("lab tests need root in dom0")


@pytest.fixture(scope="session")
def guests() -> dict[str, dom0.GuestStatus]:
    """The lab guests, all of which must be up (started by `xenvmi lab up`)."""
    found = {g.name: g for g in dom0.status()}
    missing = [n for n in GUESTS if n not in found or not found[n].up]
    assert not missing, f"lab guests not up: {missing}; run `xenvmi lab up`"
    return found


def ground_truth(name: str) -> GuestReport:
    """The guest's latest complete report of itself, from its console log."""
    report = latest_report(last_boot(dom0.read_console(name)))
    assert report is not None, f"{name} has no complete report on its console"
    return report


def xl(*args: str) -> str:
    return subprocess.run(
        ["xl", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def xenvmi(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The xenvmi command of this tree, as a user runs it, in its own process forked from
    this one (interpreter start-up and imports paid once per run: forkrun.py)."""
    return run_forked(list(args), timeout=timeout)


def warm_kernel(name: str) -> None:
    """Find the guest's kernel once (the per-boot cache then serves every later run). A
    cold discovery's time follows the machine's speed (57 s of scanning alone on a loaded
    one), so it gets 25 minutes (within the tests' 30), not a view's 120 s default."""
    res = xenvmi("kernel", name, "--json", "--timeout", "1500", timeout=1600)
    assert res.returncode == 0, res.stderr


def reports(name: str):
    """Every complete report of the guest's current boot, oldest first."""
    return parse_reports(last_boot(dom0.read_console(name)))


def worker_key(key: tuple[int, int, str]) -> tuple[int, int, str]:
    """(pid, ppid, name) with a kworker's name cut to the worker: the "-events" (or
    "+events" while busy) after it names the workqueue it served last, which changes
    from one moment to the next."""
    pid, ppid, comm = key
    if comm.startswith("kworker/"):
        comm = comm.replace("+", "-").split("-", 1)[0]
    return pid, ppid, comm


def missing_from(stable, ours) -> set:
    """The processes of ``stable`` (in the ground truth before and after a read) that
    ``ours`` lacks, kworkers compared by worker."""
    have = {worker_key(k) for k in ours}
    return {k for k in stable if worker_key(k) not in have}


def report_after_now(name: str):
    """The guest's first report that starts after this moment (asked for now through its
    console): a process in a report before a read and in this one was alive during the
    whole read."""
    report = dom0.fresh_report(name)
    if report is None:
        pytest.fail(f"{name} printed no report when asked (its console stopped advancing)")
    return report


def xenvmi_json(*args: str, timeout: float = 1800) -> dict:
    res = xenvmi(*args, "--json", timeout=timeout)
    assert res.returncode == 0, f"xenvmi {' '.join(args)}: exit {res.returncode}: {res.stderr}"
    return json.loads(res.stdout)


@contextlib.contextmanager
def xl_paused(name: str):
    xl("pause", name)
    try:
        yield
    finally:
        xl("unpause", name)


#: The guests dumped, one of each kernel: Debian 12's 6.1 (PVH), 11's 5.10 (HVM, with
#: KASLR) and 13's 6.12 (PVH). A PV guest cannot be dumped (test_dumps says so). The arm64
#: lab's guests share one kernel (dom0's 6.1): one is dumped.
DUMP_GUESTS = ("xvm-pvh1",) if ARM else ("xvm-pvh1", "xvm-deb11", "xvm-deb13")


#: Where the run leaves its dump of the 5.10 guest for tests/lab_host/test_vmlinux_dbg.py,
#: which would otherwise make one more (minutes of the emulated CPU). dom0's disk is made
#: afresh by every `lab up`, so a kept dump is always of this lab's guest kernel.
KEPT_DUMP = Path("/var/tmp/xenvmi-lab-kept/xvm-deb11.vmcore")


@pytest.fixture(scope="session")
def dump_dir():
    path = Path(tempfile.mkdtemp(prefix="xenvmi-dumps-", dir="/var/tmp"))
    yield path
    kept = path / KEPT_DUMP.name
    if kept.exists():
        KEPT_DUMP.parent.mkdir(exist_ok=True)
        kept.replace(KEPT_DUMP)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def paused_dump(guests, dump_dir):
    """name -> the guest's vmcore, made once per run while the guest is paused with `xl
    pause`, with its live views taken in the same pause: (name, path, dump summary, live
    views). test_dumps and test_isf share them: a 256 MiB guest's dump takes minutes
    on the lab's emulated CPU. Not xenvmi's own --pause: LibVMI's pause skips an already
    paused domain but its resume always unpauses, which would undo `xl pause`."""

    @functools.cache
    def get(name: str) -> SimpleNamespace:
        warm_kernel(name)
        path = dump_dir / f"{name}.vmcore"
        with xl_paused(name):
            live = {view: xenvmi_json(view, name) for view in ("ps", "lsmod", "kernel")}
            live["regs"] = xenvmi_json("regs", name, "--vcpu", "all")
            summary = xenvmi_json("dump", name, str(path), "-q")
        return SimpleNamespace(name=name, path=path, summary=summary, live=live)

    return get
