"""Every shipped plugin, through `xenvmi run`, against the lab's real Xen and guests.

Ground truth: each guest's own console report (processes, modules; groundtruth.py), what
the guest image is known to hold (busybox init on /dev/console and Xen's PV console, the
dummy module and so lo + dummy0, no disk, no network card), `xenvmi list` for devices,
and hypercalls this process makes itself through /dev/xen/privcmd while a tracing plugin
runs.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from xenvmi.lab.groundtruth import KMSG_LINE

from .conftest import (
    ARM,
    GUESTS,
    ground_truth,
    missing_from,
    no_pv_on_arm,
    report_after_now,
    unreported,
    warm_kernel,
    xenvmi,
)

#: A PVH and a KASLR HVM guest; the arm64 lab's guests are PVH on one kernel: one of them.
PLUGIN_GUESTS = ("xvm-pvh1",) if ARM else ("xvm-pvh1", "xvm-hvm")
SHIPPED = {
    "kernel",
    "ps",
    "lsmod",
    "dmesg",
    "regs",
    "hypercalls",
    "netdev",
    "files",
    "devices",
    "hcerrors",
}
MY_COMM = Path("/proc/self/comm").read_text().strip()

pytestmark = pytest.mark.timeout(1800)


def run_json(plugin: str, *args: str) -> dict:
    res = xenvmi("run", plugin, *args, "--json", "--timeout", "600")
    assert res.returncode == 0, f"run {plugin} {args}: exit {res.returncode}: {res.stderr}"
    got = json.loads(res.stdout)
    assert got["error"] is None and got["plugin"] == plugin
    return got


@pytest.fixture(scope="module", params=PLUGIN_GUESTS)
def guest(request, guests):
    """Each guest, after one (possibly cold) kernel discovery so the plugins hit the cache."""
    warm_kernel(request.param)
    return request.param


def test_every_shipped_plugin_is_ready_in_dom0(guests):
    res = xenvmi("plugins", "--json")
    assert res.returncode == 0, res.stderr
    infos = {p["name"]: p for p in json.loads(res.stdout)}
    assert SHIPPED <= set(infos)
    problems = {
        n: infos[n]["error"] or infos[n]["why_not"] for n in SHIPPED if not infos[n]["available"]
    }
    assert not problems, problems
    text = xenvmi("plugins")
    assert text.returncode == 0 and "ready" in text.stdout


# -- built-in guest views as plugins -------------------------------------------------------


def test_ps_plugin_matches_console(guest):
    before = report_after_now(guest)
    got = run_json("ps", guest)
    after = report_after_now(guest)
    ours = {(p["pid"], p["ppid"], p["comm"]) for p in got["rows"]}
    truth_b = {(p.pid, p.ppid, p.comm) for p in before.processes}
    truth_a = {(p.pid, p.ppid, p.comm) for p in after.processes}
    missing = missing_from(truth_b & truth_a, ours)
    extra = unreported(ours, truth_b | truth_a)
    assert not missing and not extra, (sorted(missing), sorted(extra))
    assert got["complete"], got["warnings"]


def test_lsmod_and_dmesg_plugins(guest):
    mods = {m["name"] for m in run_json("lsmod", guest)["rows"]}
    assert mods == set(ground_truth(guest).modules) and "dummy" in mods
    log = run_json("dmesg", guest, "-o", "tail=100000")
    assert KMSG_LINE.format(name=guest) in [r["text"] for r in log["rows"]]


# -- plugins/ ------------------------------------------------------------------------------


def test_netdev(guest):
    got = run_json("netdev", guest)
    by_name = {d["name"]: d for d in got["rows"]}
    lo = by_name["lo"]
    assert lo["ifindex"] == 1 and lo["mtu"] == 65536 and "LOOPBACK" in lo["flags"].split(",")
    assert lo["mac"] == "00:00:00:00:00:00"
    # The dummy module (loaded by the guest's init) creates dummy0 (numdummies=1).
    assert "dummy0" in by_name and by_name["dummy0"]["mac"].count(":") == 5
    assert len({d["netns"] for d in got["rows"]}) == 1  # busybox makes no namespaces
    assert len({d["ifindex"] for d in got["rows"]}) == len(got["rows"])
    assert got["complete"], got["warnings"]


#: Xen's PV console in the guests, where guest-init.sh puts init's fds 1-3 (3: its requests).
PV_CONSOLE = "/dev/hvc0"


def test_files_of_pid_1(guest):
    got = run_json("files", guest, "-o", "pid=1")
    fds = {f["fd"]: f for f in got["rows"]}
    # The kernel opened /dev/console for init on fds 0-2 (console_on_rootfs); guest-init.sh
    # opens the PV console on fd 3 and moves fds 1 and 2 there; busybox keeps the script on
    # fd 10. While init waits for a request (`read ... <&3`) fd 0 is the PV console too;
    # the report loop's `read -r stat < /proc/N/stat 2>/dev/null` moves fds 0 and 2 for a
    # moment (seen once: fd 0 /dev/null, fd 2 /proc/14/stat).
    assert fds[1]["path"] == PV_CONSOLE and fds[1]["mode"] == "rw", fds
    assert fds[3]["path"] == PV_CONSOLE and fds[3]["mode"] == "rw", fds
    assert fds[10]["path"] == "/init" and fds[10]["mode"] == "r", fds
    assert fds[0]["path"] in (PV_CONSOLE, "/dev/console", "/dev/null") or re.fullmatch(
        r"/proc/\d+/stat", fds[0]["path"]
    ), fds
    assert fds[2]["path"] in (PV_CONSOLE, "/dev/null") or re.fullmatch(
        r"/proc/\d+/stat", fds[2]["path"]
    ), fds
    assert {f["pid"] for f in got["rows"]} == {1}
    assert got["complete"], got["warnings"]


def test_files_of_a_background_script(guest):
    """xvm-alpha only loops on `sleep` (forked): its fds are stable, so exact. An ash
    background job without job control gets stdin from /dev/null (POSIX).

    The script's shell is the xvm-alpha whose parent is not one: each `sleep` is a fork
    named xvm-alpha until it execs, and ash closes the script's fd in such a child."""
    rows = run_json("ps", guest)["rows"]
    alpha = {p["pid"]: p["ppid"] for p in rows if p["comm"] == "xvm-alpha"}
    (shell,) = [pid for pid, ppid in alpha.items() if ppid not in alpha]
    got = run_json("files", guest, "-o", f"pid={shell}")
    fds = {f["fd"]: (f["path"], f["mode"]) for f in got["rows"]}
    assert fds == {
        0: ("/dev/null", "r"),
        1: (PV_CONSOLE, "rw"),
        2: (PV_CONSOLE, "rw"),
        10: ("/usr/bin/xvm-alpha", "r"),
    }, fds
    assert got["complete"], got["warnings"]


def test_files_of_every_process(guest):
    got = run_json("files", guest, "-o", "pid=all")
    pids = {f["pid"] for f in got["rows"] if f["path"] == PV_CONSOLE}
    ps = {p["comm"]: p["pid"] for p in run_json("ps", guest)["rows"]}
    # Init's children inherited fds 1-2 on the PV console.
    assert {1, ps["xvm-alpha"], ps["xvm-parent"]} <= pids
    assert all(not p.startswith("?") for p in (f["path"] for f in got["rows"])), got["rows"]


def test_files_unknown_pid_exit_code(guest):
    res = xenvmi("run", "files", guest, "-o", "pid=99999", "--timeout", "600")
    assert res.returncode == 3 and "no process with pid 99999" in res.stderr


def test_backends_every_guest_connected(guests):
    got = run_json("devices")
    rows = got["rows"]
    for name in GUESTS:
        mine = [r for r in rows if r["domain"] == name]
        consoles = [r for r in mine if r["kind"] == "console"]
        assert consoles and all(r["ok"] for r in consoles), (name, consoles)
        bad = [r for r in mine if r["kind"] in ("console", "vbd", "vif") and not r["ok"]]
        assert not bad, (name, bad)
    listed = json.loads(xenvmi("list", "--json").stdout)
    devices = {(d["domid"], dev["kind"], dev["devid"]) for d in listed for dev in d["devices"]}
    assert devices == {(r["domid"], r["kind"], r["devid"]) for r in rows if r["domain"] != "(gone)"}


def test_backends_one_domain(guests):
    got = run_json("devices", "xvm-pvh1")
    assert {r["domain"] for r in got["rows"]} == {"xvm-pvh1"}


@no_pv_on_arm
def test_pv_guest_is_one_clear_line(guests):
    res = xenvmi("run", "netdev", "xvm-pv", "--timeout", "600")
    assert res.returncode == 5, res
    assert res.stderr.strip().splitlines()[-1].startswith("xenvmi: error: ")
    assert "PV" in res.stderr and "Traceback" not in res.stderr


# -- tracing plugins: this process makes the hypercalls they must see ----------------------


#: How long the tracing plugins trace: time for dozens of the provoker's calls even where
#: dom0 runs its Python 3x slower than here.
TRACE_SECONDS = 10


class Provoker:
    """domctl getdomaininfo(999) -> -ESRCH every 0.2 s until stopped, from this process."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.results: list[int] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from xenvmi.backends.privcmd import Privcmd

        with Privcmd() as p:
            while not self.stop.wait(0.2):
                self.results.append(p.domctl(5, 999))

    def __enter__(self) -> Provoker:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def test_hypercalls_plugin(guests):
    # seconds= counts from the probes' attach (after the BPF compile, 5-20 s under
    # emulation), so every second of it sees the provoker's calls, five a second.
    with Provoker() as prov:
        got = run_json("hypercalls", "-o", f"seconds={TRACE_SECONDS}")
    assert prov.results and set(prov.results) == {-3}
    rows = [r for r in got["rows"] if (r["call"], r["subop"]) == ("domctl", "getdomaininfo")]
    assert rows and rows[0]["errors"] >= 1 and rows[0]["calls"] >= rows[0]["errors"]


def test_hcerrors_plugin(guests):
    with Provoker() as prov:
        got = run_json("hcerrors", "-o", f"seconds={TRACE_SECONDS}")
    assert prov.results and set(prov.results) == {-3}
    mine = [r for r in got["rows"] if r["comm"] == MY_COMM[:15] and r["call"] == "domctl"]
    assert mine, got["rows"]
    assert mine[0]["subop"] == "getdomaininfo" and mine[0]["error"].startswith("-ESRCH")
    assert "999" in mine[0]["domains"].split(",") and mine[0]["count"] >= 1
