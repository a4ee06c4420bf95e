"""A real Prometheus scrapes `xenvmi exporter` running in the lab's dom0 (issue 23).

Runs on the host against the running lab (``xenvmi lab up``): the exporter runs in dom0
over the lab's ssh, which also forwards a loopback port to it (``ssh -L 127.0.0.1:...``);
the host's ``prometheus`` (Debian's package, from ``xenvmi lab deps``) scrapes it through
that port with ``contrib/prometheus/xenvmi-rules.yml`` loaded, and everything is checked
through Prometheus's HTTP API against ground truth: ``xl list``/``xl info`` in dom0 and the
guests' own console reports (xenvmi/lab/groundtruth.py). Every wait is on progress (the
target's scrapes, the guest reads' timestamps) with a cap meant for a 3x slower machine.

A lab whose image predates prometheus_client in dom0 can still run it: set
``XENVMI_LAB_DOM0_PYTHONPATH`` to a directory in dom0 holding the unpacked wheel;
``XENVMI_LAB_DOM0_SRC`` runs the exporter from another copy of the tree in dom0 than the
synced one (a change tried without re-syncing a lab others are using).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from xenvmi.lab import remote
from xenvmi.lab.paths import LabPaths
from xenvmi.lab.progress import wait_progress

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib/prometheus/xenvmi-rules.yml"
#: Read from memory: a PVH guest and the KASLR HVM guest.
READ = ("xvm-pvh1", "xvm-hvm")
#: Opted in but unreadable: a PV guest (no memory backend reads PV) and no such domain.
UNREADABLE = {"xvm-pv": "unavailable", "xvm-absent": "not_found"}
#: Prometheus's scrape interval and timeout, and the exporter's guest read interval: the
#: waits below are counted in them (the file took 8.3 min in CI with 30 s each, 3.4 min in
#: a quiet lab). A scrape is 1-2 s in the emulated dom0, but 10-20 s while a guest read
#: runs (the read's threads share the exporter's interpreter) with the lab's other tests
#: running: such a scrape may time out (the waits below go on to the next one).
SCRAPE_S = int(os.environ.get("XENVMI_PROM_SCRAPE_S", "10"))
GUEST_INTERVAL_S = int(os.environ.get("XENVMI_PROM_GUEST_INTERVAL_S", "10"))
#: Caps (each wait ends earlier on failure: a dead ssh, an unexpected read error). The
#: exporter starts in about 10 s here and a first guest read, kernel discovery included,
#: took up to a minute; 3x slower, with the lab's other tests sharing its one CPU.
START_CAP, READ_CAP = 600, 1500
#: Processes a guest may have had during the exporter's read that neither console report
#: holds: its scripts' `sleep 300` restart, a kworker started and gone between reports.
TRANSIENT_SLACK = 3

pytestmark = pytest.mark.timeout(3 * READ_CAP)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    paths: LabPaths
    port: int

    def run(self, command: str, timeout: float = 600) -> str:
        return remote.run(self.paths, self.port, command, timeout=timeout).stdout.decode()

    def py(self, code: str, timeout: float = 900) -> str:
        """Python in dom0's venv, with the synced tree's xenvmi."""
        return self.run(
            f"cd {remote.REMOTE_SRC} && {remote.REMOTE_PY} -c {shlex.quote(code)}", timeout
        )

    def report(self, name: str) -> dict:
        """The guest's first console report after now, and dom0's clock when it ended."""
        out = self.py(
            "import json, time\n"
            "from xenvmi.lab import dom0\n"
            f"r = dom0.fresh_report({name!r})\n"
            "print(json.dumps(None if r is None else {'pids': [p.pid for p in r.processes],"
            " 'modules': r.modules, 'at': time.time()}))\n"
        )
        got = json.loads(out.strip().splitlines()[-1])
        assert got is not None, f"{name} printed no console report when asked"
        return got


class Prom:
    """The Prometheus HTTP API of the instance under test."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params) -> dict:
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=30) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict, float]]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        data = self.get("/api/v1/query", **params)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def by(self, expr: str, label: str, at: float | None = None) -> dict[str, float]:
        return {m[label]: v for m, v in self.query(expr, at)}

    def target(self) -> dict:
        """The one target (empty until Prometheus's scrape manager has started it)."""
        targets = self.get("/api/v1/targets")["activeTargets"]
        assert len(targets) <= 1, targets
        return targets[0] if targets else {}


def wait(what: str, done, progress, cap: float, abort=lambda: None, stall=None, detail=lambda: ""):
    out = wait_progress(done, progress, stall=stall or cap, cap=cap, poll=2.0, abort=abort)
    assert out.done, f"{what}: {out.reason} after {out.elapsed:.0f}s {detail()}"
    return out


@pytest.fixture(scope="module")
def stack():
    """The exporter in dom0 behind an ssh tunnel, and Prometheus scraping it; all of it
    stopped at the end, on failure too, and dom0 checked for a leftover exporter."""
    paths = LabPaths.default()
    state = paths.load_state()
    assert state is not None and remote.reachable(paths, state.port), (
        "the lab is not running: `xenvmi lab up` first"
    )
    prometheus = shutil.which("prometheus")
    assert prometheus, "no prometheus binary: `xenvmi lab deps` installs Debian's prometheus"
    lab = Lab(paths, state.port)
    t0 = time.monotonic()
    dport = int(
        lab.py(
            "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
            "print(s.getsockname()[1])"
        ).strip()
    )
    lport, pport = free_port(), free_port()
    extra = os.environ.get("XENVMI_LAB_DOM0_PYTHONPATH", "")
    env = f"PYTHONPATH={shlex.quote(extra)} " if extra else ""
    guests = ",".join((*READ, *UNREADABLE))
    src = os.environ.get("XENVMI_LAB_DOM0_SRC", remote.REMOTE_SRC)
    # The exporter's life is the ssh session's: when the test closes ssh's stdin (or dies),
    # cat ends in dom0 and the exporter is killed.
    command = (
        f"cd {shlex.quote(src)} || exit 1; {env}{remote.REMOTE_PY} -m xenvmi exporter "
        f"--listen 127.0.0.1:{dport} --guests {guests} --guest-budget 2 "
        f"--guest-interval {GUEST_INTERVAL_S} </dev/null & pid=$!; echo EXPORTER-PID $pid; "
        "cat >/dev/null; kill $pid 2>/dev/null; wait $pid"
    )
    argv = remote.ssh_argv(paths, state.port, [command])
    argv[1:1] = ["-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{lport}:127.0.0.1:{dport}"]
    tmp = Path(tempfile.mkdtemp(prefix="xenvmi-prom-"))
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        ssh_err = open(tmp / "ssh-exporter.log", "w+")
        cleanup.callback(ssh_err.close)
        ssh = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=ssh_err)
        pid: list[int] = []
        cleanup.callback(stop_ssh, lab, ssh, pid, dport)
        line = ssh.stdout.readline().decode()
        assert line.startswith("EXPORTER-PID "), f"ssh: {line!r} {tail(ssh_err)}"
        pid.append(int(line.split()[1]))
        print(f"\n[{time.monotonic() - t0:4.0f}s] exporter started in dom0 (port {dport})")

        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_S}s",
                "scrape_timeout": f"{SCRAPE_S}s",
                "evaluation_interval": f"{SCRAPE_S}s",
            },
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "xenvmi", "static_configs": [{"targets": [f"127.0.0.1:{lport}"]}]}
            ],
        }
        (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        prom_log = open(tmp / "prometheus.log", "w+")
        cleanup.callback(prom_log.close)
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{pport}",
            ],
            stdout=prom_log,
            stderr=subprocess.STDOUT,
        )
        cleanup.callback(stop, proc)
        prom = Prom(pport)

        def gone() -> str | None:
            if proc.poll() is not None:
                return f"prometheus exited {proc.returncode}: {tail(prom_log)}"
            if ssh.poll() is not None:
                return f"ssh to the exporter exited {ssh.returncode}: {tail(ssh_err)}"
            return None

        wait("prometheus ready", prom.ready, lambda: os.path.getsize(prom_log.name), 120, gone)
        print(f"[{time.monotonic() - t0:4.0f}s] prometheus ready on 127.0.0.1:{pport}")
        wait(
            "the exporter's target up",
            lambda: prom.target().get("health") == "up",
            lambda: prom.target().get("lastScrape"),
            START_CAP,
            gone,
            detail=lambda: f"(last scrape error: {prom.target().get('lastError')})",
        )
        print(f"[{time.monotonic() - t0:4.0f}s] the exporter's target is up")
        yield lab, prom, gone
        assert gone() is None, gone()
        # what the intervals cost: scrapes that timed out are `up` 0
        seen = {
            what: prom.query(f"{what}_over_time({series}[1h])")
            for what, series in (("count", "up"), ("sum", "up"), ("max", "scrape_duration_seconds"))
        }
        count, ok, slowest = (seen[k][0][1] if seen[k] else 0 for k in ("count", "sum", "max"))
        print(f"\nscrapes every {SCRAPE_S}s: {ok:.0f} of {count:.0f} up, slowest {slowest:.1f}s")


def tail(f, lines: int = 15) -> str:
    f.flush()
    f.seek(0)
    return " | ".join(f.read().strip().splitlines()[-lines:])


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def stop_ssh(lab: Lab, ssh: subprocess.Popen, pid: list[int], dport: int) -> None:
    """End the session (the exporter ends with it), then make sure dom0 has no
    exporter of ours left: one would be a leak this test must report."""
    ssh.stdin.close()
    try:
        ssh.wait(120)
    except subprocess.TimeoutExpired:
        stop(ssh)
    # [x]: the pattern must not match this command's own shell
    mine = shlex.quote(f"[x]envmi exporter --listen 127.0.0.1:{dport} ")
    left = lab.run(f'p=$(pgrep -f {mine}); [ -z "$p" ] || kill -9 $p; echo $p').split()
    assert not left, f"the exporter (pid {pid}) outlived its ssh session: {left}"


def readable(prom: Prom, gone):
    """Wait until both memory guests have been read; fail at once on a read error that
    is not the budget (a slow first read is `budget` until it lands)."""

    def abort() -> str | None:
        errors = {
            (m["domain"], m["reason"])
            for m, _ in prom.query("xenvmi_guest_read_error")
            if m["domain"] in READ and m["reason"] != "budget"
        }
        return gone() or (f"guest read errors {sorted(errors)}" if errors else None)

    def done() -> bool:
        return prom.by("xenvmi_guest_read_ok", "domain").keys() >= set(READ) and all(
            prom.by("xenvmi_guest_read_ok", "domain")[g] == 1 for g in READ
        )

    out = wait(
        "the guests read",
        done,
        lambda: prom.by("xenvmi_exporter_scrapes_total", "job"),
        READ_CAP,
        abort,
    )
    if out.elapsed > 1:
        print(f"guests {', '.join(READ)} read {out.elapsed:.0f}s after the first wait began")


def test_rules_file_loaded_with_its_alerts(stack):
    _, prom, _ = stack
    want = set(re.findall(r"^\s*- alert: (\w+)\s*$", RULES.read_text(), re.M))
    assert len(want) >= 9

    def evaluated() -> bool:
        rules = [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]
        return bool(rules) and all(r["health"] == "ok" for r in rules)

    wait("the rules evaluated", evaluated, time.monotonic, 10 * SCRAPE_S)
    groups = prom.get("/api/v1/rules")["groups"]
    assert {g["file"] for g in groups} == {str(RULES)}
    got = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(got) == want
    assert {"XenGuestKernelOops", "XenGuestUnreadable", "XenDomainCrashed"} <= want


def test_host_and_domains_agree_with_xl(stack):
    lab, prom, _ = stack
    info = dict(
        (k.strip(), v.strip())
        for k, _, v in (ln.partition(":") for ln in lab.run("xl info").splitlines())
    )
    before = xl_list(lab.run("xl list"))
    after_xl = time.time()

    def scraped() -> bool:  # a scrape that started after `xl list` returned
        return any(v > after_xl for _, v in prom.query("timestamp(xenvmi_xen_up)"))

    wait("a fresh scrape", scraped, time.monotonic, 20 * SCRAPE_S, stall=20 * SCRAPE_S)
    at = time.time()
    after = xl_list(lab.run("xl list"))
    assert {n: d[:2] for n, d in before.items()} == {n: d[:2] for n, d in after.items()}, (
        "the lab's domains changed during the test"
    )
    assert prom.query("xenvmi_xen_up", at)[0][1] == 1
    domids = {m["domain"]: int(m["domid"]) for m, _ in prom.query("xen_domain_info", at)}
    assert domids == {n: d[0] for n, d in after.items()}
    online = prom.by("xen_domain_online_vcpus", "domain", at)
    assert online == {n: d[1] for n, d in after.items()}
    vcpus = prom.by("xen_domain_vcpus", "domain", at)
    assert all(vcpus[n] >= online[n] for n in online)
    types = {m["domain"]: m["type"] for m, _ in prom.query("xen_domain_info", at)}
    assert types["Domain-0"] == "pv" and types["xvm-hvm"] == "hvm" and types["xvm-pvh1"] == "pvh"
    cpu = prom.by("xen_domain_cpu_seconds_total", "domain", at)
    for name, (_, _, t_before) in before.items():
        # xl prints tenths: the scrape's sample came between the two `xl list`
        assert t_before - 0.1 <= cpu[name] <= after[name][2] + 0.1, (name, cpu[name])
    assert prom.query("xen_host_cpus", at)[0][1] == int(info["nr_cpus"])
    total = prom.query("xen_host_memory_total_bytes", at)[0][1]
    assert int(total // 2**20) == int(info["total_memory"])
    assert prom.query("xen_host_domains", at)[0][1] == len(after)
    (version,) = [m["xen_version"] for m, _ in prom.query("xen_host_info", at)]
    assert version == info["xen_version"]
    duration = prom.query("xenvmi_exporter_scrape_duration_seconds", at)[0][1]
    assert 0 < duration < SCRAPE_S


def xl_list(text: str) -> dict[str, tuple[int, int, float]]:
    """name -> (domid, vCPUs, CPU seconds) from `xl list`."""
    out = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 6:
            out[f[0]] = (int(f[1]), int(f[3]), float(f[-1]))
    return out


def test_unreadable_guests_say_why_and_alert(stack):
    _, prom, gone = stack
    readable(prom, gone)
    errors = {m["domain"]: m["reason"] for m, _ in prom.query("xenvmi_guest_read_error == 1")}
    assert {g: errors.get(g) for g in UNREADABLE} == UNREADABLE
    assert not set(READ) & set(errors)

    def pending() -> bool:
        alerts = prom.get("/api/v1/alerts")["alerts"]
        return {
            a["labels"]["domain"]
            for a in alerts
            if a["labels"]["alertname"] == "XenGuestUnreadable"
        } >= set(UNREADABLE)

    wait("XenGuestUnreadable pending", pending, time.monotonic, 10 * SCRAPE_S)
    alerts = prom.get("/api/v1/alerts")["alerts"]
    states = {
        a["labels"]["domain"]: a["state"]
        for a in alerts
        if a["labels"]["alertname"] == "XenGuestUnreadable"
    }
    assert {states[g] for g in UNREADABLE} == {"pending"}  # for: 10m


@pytest.mark.parametrize("guest", READ)
def test_guest_series_agree_with_the_console(stack, guest):
    lab, prom, gone = stack
    readable(prom, gone)
    before = lab.report(guest)
    started = f'(xenvmi_guest_read_timestamp_seconds{{domain="{guest}"}} - ' + (
        f'xenvmi_guest_read_seconds{{domain="{guest}"}})'
    )
    seen: list[float] = []

    def read_since() -> bool:  # a read that began after the report ended (dom0's clock)
        at = time.time()
        got = prom.query(started, at)
        if got and got[0][1] >= before["at"]:
            seen.append(at)
        return bool(seen)

    wait(
        f"{guest} read again",
        read_since,
        lambda: prom.query(started),
        READ_CAP,
        gone,
        stall=READ_CAP,
    )
    at = seen[0]
    after = lab.report(guest)
    count = prom.query(f'sum(xenvmi_guest_processes{{domain="{guest}"}})', at)[0][1]
    stable = set(before["pids"]) & set(after["pids"])
    union = set(before["pids"]) | set(after["pids"])
    assert len(stable) <= count <= len(union) + TRANSIENT_SLACK, (count, len(stable), len(union))
    modules = prom.query(f'xenvmi_guest_modules{{domain="{guest}"}}', at)[0][1]
    assert modules == len(before["modules"]) == len(after["modules"])
    assert prom.query(f'xenvmi_guest_read_complete{{domain="{guest}"}}', at)[0][1] == 1
    logged = prom.query(f'xenvmi_guest_log_records_logged_total{{domain="{guest}"}}', at)[0][1]
    levels = prom.by(f'xenvmi_guest_log_records{{domain="{guest}"}}', "level", at)
    assert logged >= sum(levels.values()) > 0 and levels["info"] > 0
    kthreads = prom.query(f'xenvmi_guest_kernel_threads{{domain="{guest}"}}', at)[0][1]
    assert 0 < kthreads < count
