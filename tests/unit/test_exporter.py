"""The Prometheus exporter: metric names, labels and values from fake samplers and a
synthetic guest, the guest budget, the HTTP server, the loopback rule, hostile names."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from xenvmi import cli
from xenvmi import exporter as E
from xenvmi.commands import exporter as command
from xenvmi.errors import GuestDataError, UsageError
from xenvmi.model.guest import LogRecord, Module, Process
from xenvmi.model.host import Daemon, Domain, DomainSample, HostSample, NodeSample

ROOT = Path(__file__).resolve().parents[2]


def dsample(domid: int, name: str, state: str = "--b---", **kw) -> DomainSample:
    base = dict(
        time=1.0,
        domid=domid,
        name=name,
        state=state,
        cpu_ns=2_500_000_000,
        cpu_seconds=2.5,
        cpu_percent=None,
        memory_kib=262144,
        memory_percent=4.2,
        memory_max_kib=263168,
        memory_max_percent=4.3,
        vcpus=2,
        vcpus_online=1,
        nets=1,
        net_tx_bytes=1000,
        net_rx_bytes=2000,
        vbds=1,
        vbd_oo=0,
        vbd_rd=10,
        vbd_wr=20,
        vbd_rsect=8,
        vbd_wsect=16,
        ssid=0,
    )
    base.update(kw)
    return DomainSample(**base)  # type: ignore[arg-type]


NODE = NodeSample(
    time=1.0,
    xen_version="4.17.5",
    cpus=4,
    cpu_mhz=2400,
    memory_total_kib=6 << 20,
    memory_free_kib=3 << 20,
    domains=2,
)


def domain(domid: int, name: str, dtype: str) -> Domain:
    return Domain(
        domid=domid,
        name=name,
        uuid=f"00000000-0000-0000-0000-00000000000{domid}",
        type=dtype,
        state=None,
        memory_target_kib=262144,
        memory_max_kib=263168,
        vcpus=2,
        vcpus_online=1,
    )


HOST = HostSample(
    time=1.0,
    hostname="dom0",
    kernel="6.1",
    cpus=1,
    cpu_percent=12.5,
    load_1m=0.5,
    memory_total_kib=1 << 20,
    memory_available_kib=1 << 19,
    memory_used_kib=1 << 19,
    daemons=(
        Daemon("xenstored", 10, True),
        Daemon("xenconsoled", None, False),
        Daemon("qemu", 20, True, domid=1),
    ),
)

SAMPLES = [dsample(0, "Domain-0", "-----r"), dsample(1, "xvm-hvm")]
DOMAINS = [domain(0, "Domain-0", "pv"), domain(1, "xvm-hvm", "hvm")]


def facts(**kw) -> E.GuestFacts:
    procs = [
        Process(1, 0, "init", "S", 0, 0.5, "/sbin/init", False, 1),
        Process(2, 0, "kthreadd", "S", 0, 0.0, None, True, 2),
        Process(30, 1, "dd", "D", 0, 9.0, "dd if=/dev/sda", False, 3),
        Process(31, 1, "odd", "\x1b", 0, 9.0, None, False, 4),  # a hostile state letter
    ]
    mods = [Module("dummy", 4096, "live", 0, 0xFFFFFFFFC0000000)]
    records = [
        LogRecord(0, 0.0, 6, 0, "Linux version 6.1"),
        LogRecord(1, 1.0, 3, 0, "Out of memory: Killed process 123 (hog) total-vm:1kB"),
        LogRecord(2, 2.0, 4, 0, "BUG: kernel NULL pointer dereference, address: 0"),
        LogRecord(3, 3.5, 1, 0, "Oops: 0002 [#1] PREEMPT SMP"),
        LogRecord(4, 4.0, 99, 0, "a bogus level"),
    ]
    return E.facts_from_views(procs, mods, records, True, 0.25)


def collector(guests=None, **kw) -> E.XenvmiCollector:
    return E.XenvmiCollector(
        sample_xen=kw.get("sample_xen", lambda: (NODE, SAMPLES)),
        domains=kw.get("domains", lambda: DOMAINS),
        sample_host=kw.get("sample_host", lambda: HOST),
        guests=guests,
    )


def scrape(col: E.XenvmiCollector, openmetrics: bool = False) -> dict:
    """One scrape, parsed back by prometheus_client's own parser: {name: family}."""
    text = E.exposition(E.registry(col), openmetrics).decode()
    parse = om_parse if openmetrics else text_string_to_metric_families
    return {f.name: f for f in parse(text)}


def value(fams: dict, name: str, **labels) -> float:
    family = name.removesuffix("_total")
    hits = [
        s.value
        for s in fams[family].samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(hits) == 1, (name, labels, fams[family].samples)
    return hits[0]


def test_domain_and_host_metrics():
    fams = scrape(collector())
    lbl = {"domain": "xvm-hvm", "domid": "1", "type": "hvm"}
    assert value(fams, "xen_domain_cpu_seconds_total", **lbl) == 2.5
    assert fams["xen_domain_cpu_seconds"].type == "counter"
    assert value(fams, "xen_domain_vcpus", **lbl) == 2
    assert value(fams, "xen_domain_online_vcpus", **lbl) == 1
    assert value(fams, "xen_domain_memory_bytes", **lbl) == 262144 * 1024
    assert value(fams, "xen_domain_memory_max_bytes", **lbl) == 263168 * 1024
    assert value(fams, "xen_domain_memory_target_bytes", **lbl) == 262144 * 1024
    assert value(fams, "xen_domain_net_transmit_bytes_total", **lbl) == 1000
    assert value(fams, "xen_domain_net_receive_bytes_total", **lbl) == 2000
    assert value(fams, "xen_domain_vbd_read_requests_total", **lbl) == 10
    assert value(fams, "xen_domain_vbd_written_bytes_total", **lbl) == 16 * 512
    assert value(fams, "xen_domain_state", state="blocked", **lbl) == 1
    assert value(fams, "xen_domain_state", state="crashed", **lbl) == 0
    assert value(fams, "xen_domain_state", state="running", domain="Domain-0") == 1
    assert value(fams, "xen_domain_info", uuid=DOMAINS[1].uuid, **lbl) == 1
    assert value(fams, "xen_host_cpus") == 4
    assert value(fams, "xen_host_memory_free_bytes") == (3 << 20) * 1024
    assert value(fams, "xen_host_running_domains") == 1
    assert value(fams, "xen_host_info", xen_version="4.17.5") == 1
    assert value(fams, "xenvmi_xen_up") == 1
    assert value(fams, "xenvmi_dom0_load1") == 0.5
    assert value(fams, "xenvmi_xen_daemon_up", daemon="xenconsoled", domid="") == 0
    assert value(fams, "xenvmi_xen_daemon_up", daemon="qemu", domid="1") == 1
    assert value(fams, "xenvmi_exporter_scrapes_total") == 1
    assert value(fams, "xenvmi_exporter_errors_total", kind="xen") == 0
    assert "xenvmi_exporter_scrape_duration_seconds" in fams
    assert not [n for n in fams if n.startswith(("process_", "python_"))]  # no default ones


def test_openmetrics_format_parses():
    fams = scrape(collector(), openmetrics=True)
    assert value(fams, "xen_domain_cpu_seconds_total", domain="xvm-hvm") == 2.5


def test_a_failing_source_is_an_error_metric_not_a_failed_scrape(caplog):
    def broken():
        raise OSError("libxenstat: cannot open")

    def no_store():
        raise GuestDataError("xenstore gone")

    fams = scrape(collector(sample_xen=broken, domains=no_store, sample_host=broken))
    assert value(fams, "xenvmi_xen_up") == 0
    for kind in ("xen", "xenstore", "dom0"):
        assert value(fams, "xenvmi_exporter_errors_total", kind=kind) == 1
    assert "xen_domain_cpu_seconds" not in fams
    reader = E.GuestReader(["xvm-hvm"], budget=2.0, read=lambda n, t: facts())
    fams = scrape(collector(sample_xen=broken, guests=reader))
    assert value(fams, "xenvmi_guest_read_error", domain="xvm-hvm", reason="unavailable") == 1
    import logging

    col = collector(sample_xen=broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING, "xenvmi.exporter"):
        for _ in range(3):
            scrape(col)
    assert len([r for r in caplog.records if r.getMessage().startswith("xen:")]) == 1
    # the domains still come out when only xenstore fails, typed unknown
    fams = scrape(collector(domains=no_store))
    assert value(fams, "xen_domain_vcpus", domain="xvm-hvm", type="unknown") == 2


def test_guest_facts_are_counted_from_the_views_rows():
    f = facts()
    assert f.processes["S"] == 2 and f.processes["D"] == 1 and f.processes["?"] == 1
    assert f.kernel_threads == 1 and f.modules == 1
    assert f.log_records["err"] == 1 and f.log_records["alert"] == 1
    assert f.log_records["unknown"] == 1
    assert f.oom_kills == 1 and f.oops == 2
    assert f.log_next_seq == 5 and f.log_last_timestamp == 4.0


def test_guest_metrics_and_cache():
    calls = []

    def read(name, timeout):
        calls.append(name)
        return facts()

    reader = E.GuestReader(["xvm-hvm"], budget=2.0, interval=3600, read=read)
    col = collector(guests=reader)
    fams = scrape(col)
    d = {"domain": "xvm-hvm"}
    assert value(fams, "xenvmi_guest_read_ok", **d) == 1
    assert not fams["xenvmi_guest_read_error"].samples
    assert value(fams, "xenvmi_guest_processes", state="D", **d) == 1
    assert value(fams, "xenvmi_guest_processes_uninterruptible", **d) == 1
    assert value(fams, "xenvmi_guest_kernel_threads", **d) == 1
    assert value(fams, "xenvmi_guest_modules", **d) == 1
    assert value(fams, "xenvmi_guest_log_records", level="err", **d) == 1
    assert value(fams, "xenvmi_guest_log_records_logged_total", **d) == 5
    assert value(fams, "xenvmi_guest_oom_kills", **d) == 1
    assert value(fams, "xenvmi_guest_kernel_oops", **d) == 2
    assert value(fams, "xenvmi_guest_log_last_timestamp_seconds", **d) == 4.0
    scrape(col)
    assert calls == ["xvm-hvm"]  # the second scrape used the cache


def test_guest_read_errors_say_why():
    def read(name, timeout):
        raise GuestDataError("no VMCOREINFO note")

    reader = E.GuestReader(["xvm-hvm", "gone", "Domain-0"], budget=2.0, read=read)
    samples = [*SAMPLES, dsample(5, "gone", "---c--")]
    fams = scrape(collector(guests=reader, sample_xen=lambda: (NODE, samples)))
    assert value(fams, "xenvmi_guest_read_ok", domain="xvm-hvm") == 0
    assert value(fams, "xenvmi_guest_read_error", domain="xvm-hvm", reason="guest_data") == 1
    assert value(fams, "xenvmi_guest_read_error", domain="gone", reason="not_running") == 1
    reader = E.GuestReader(["nosuch"], budget=2.0, read=read)
    fams = scrape(collector(guests=reader))
    assert value(fams, "xenvmi_guest_read_error", domain="nosuch", reason="not_found") == 1
    assert value(fams, "xenvmi_exporter_errors_total", kind="guest_not_found") == 1


def test_a_slow_guest_is_an_error_metric_not_a_slow_scrape():
    release = threading.Event()

    def slow(name, timeout):
        if name == "xvm-hvm":
            release.wait(30)
        return facts()

    reader = E.GuestReader(["xvm-hvm", "Domain-0"], budget=0.3, interval=0.01, read=slow)
    col = collector(guests=reader)
    t = time.monotonic()
    fams = scrape(col)
    assert time.monotonic() - t < 3
    assert value(fams, "xenvmi_guest_read_error", domain="xvm-hvm", reason="budget") == 1
    assert value(fams, "xenvmi_guest_read_ok", domain="Domain-0") == 1
    assert "xvm-hvm" not in {s.labels["domain"] for s in fams["xenvmi_guest_modules"].samples}
    first = reader.slots["xvm-hvm"].thread
    scrape(col)  # still reading: no second thread for the same guest
    assert reader.slots["xvm-hvm"].thread is first
    release.set()
    first.join(5)
    fams = scrape(col)  # the overrunning read landed for the next scrape
    assert value(fams, "xenvmi_guest_read_ok", domain="xvm-hvm") == 1


def test_a_read_after_no_good_one_may_find_the_kernel():
    """A read with no good one before it gets the long deadline (it may scan for the
    kernel: minutes under emulation); reads after a good one get the interval's."""
    asked, fail = [], [False]

    def read(name, timeout):
        asked.append(timeout)
        if fail[0]:
            raise GuestDataError("no VMCOREINFO note found before the deadline")
        return facts()

    reader = E.GuestReader(["xvm-hvm"], budget=2.0, interval=0.01, read=read)
    assert (reader.read_timeout, reader.first_read_timeout) == (30.0, E.FIRST_READ_TIMEOUT)
    col = collector(guests=reader)
    for fails in (False, False, True, False):
        fail[0] = fails
        time.sleep(0.02)
        scrape(col)
    assert asked == [E.FIRST_READ_TIMEOUT, 30.0, 30.0, E.FIRST_READ_TIMEOUT]


def test_reads_at_once_are_bounded():
    """With one read at a time, a hung guest holds the only slot: the other waits (and is
    a budget error), rather than two drgn walks competing for dom0's CPU."""
    release, running = threading.Event(), []

    def read(name, timeout):
        running.append(name)
        if name == "xvm-hvm":
            release.wait(30)
        return facts()

    reader = E.GuestReader(["xvm-hvm", "Domain-0"], budget=0.3, read=read, parallel=1)
    fams = scrape(collector(guests=reader))
    assert running == ["xvm-hvm"]
    assert value(fams, "xenvmi_guest_read_error", domain="Domain-0", reason="budget") == 1
    release.set()
    reader.slots["Domain-0"].thread.join(5)
    assert running == ["xvm-hvm", "Domain-0"]


def test_synthetic_guest_through_the_views(monkeypatch):
    """read_guest runs the real ps, lsmod and dmesg views on a synthetic kernel."""
    pytest.importorskip("drgn")
    from xenvmi import guests
    from xenvmi.backends.memory import BytesMemory
    from xenvmi.guest.synthetic import SyntheticKernel

    k = SyntheticKernel()
    init = k.add_task(1, b"init")
    k.add_task(2, b"kthreadd")
    k.add_task(9, b"sh", parent=init, state=2)  # TASK_UNINTERRUPTIBLE: D
    k.add_module(b"dummy")
    k.add_module(b"xen_blkfront")
    k.set_log(
        [
            (1_000_000_000, b"xenvmi-lab: guest g is up"),
            (2_000_000_000, b"Out of memory: Killed process 9 (sh)"),
        ]
    )
    kp = k.kernel_program()
    monkeypatch.setattr(guests, "open_memory", lambda d: BytesMemory(bytearray(4096), name=d))
    monkeypatch.setattr(guests.Guest, "kernel_program", lambda self: kp)
    got = E.read_guest("g", 30)
    assert sum(got.processes.values()) == 3 and got.processes["D"] == 1
    assert got.modules == 2 and got.oom_kills == 1 and got.log_next_seq == 2
    assert got.log_records["info"] == 2 and got.complete


def test_hostile_domain_names_are_escaped_and_bounded():
    evil = 'x"} 1\nxen_fake{a="b\\\x1b[31m' + "y" * 500
    samples = [dsample(7, evil)]
    reader = E.GuestReader([evil], budget=2.0, read=lambda n, t: facts())
    col = collector(guests=reader, sample_xen=lambda: (NODE, samples), domains=list)
    text = E.exposition(E.registry(col)).decode()
    assert "xen_fake" not in {f.name for f in text_string_to_metric_families(text)}
    assert "\x1b" not in text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    names = {s.labels["domain"] for s in fams["xen_domain_vcpus"].samples}
    (name,) = names
    assert len(name) <= E.MAX_LABEL and name.startswith('x"} 1\\x0axen_fake{a="b\\\\x1b[31m')
    assert value(fams, "xenvmi_guest_read_ok", domain=name) == 1


@pytest.mark.parametrize(
    "text, want",
    [
        ("127.0.0.1:9731", ("127.0.0.1", 9731)),
        ("127.0.0.2:80", ("127.0.0.2", 80)),
        ("[::1]:9731", ("::1", 9731)),
        ("localhost:9731", ("localhost", 9731)),
    ],
)
def test_loopback_addresses_are_accepted(text, want):
    assert E.parse_listen(text) == want


@pytest.mark.parametrize("text", ["0.0.0.0:9731", "10.0.0.5:9731", "[::]:9731", ":9731"])
def test_a_non_loopback_address_is_refused(text):
    with pytest.raises(UsageError):
        E.parse_listen(text)


def test_allow_remote_and_bad_ports():
    assert E.parse_listen("10.0.0.5:9731", allow_remote=True) == ("10.0.0.5", 9731)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x"):
        with pytest.raises(UsageError):
            E.parse_listen(bad)


def test_the_command_refuses_a_remote_address(capsys):
    code = cli.main(["exporter", "--listen", "0.0.0.0:9731", "--once"])
    err = capsys.readouterr().err
    assert code == 2 and "loopback" in err and err.count("\n") == 1


def test_the_commands_defaults_are_the_exporters():
    assert command.DEFAULT_LISTEN == E.DEFAULT_LISTEN
    assert command.DEFAULT_GUEST_BUDGET == E.DEFAULT_GUEST_BUDGET
    assert command.DEFAULT_GUEST_INTERVAL == E.DEFAULT_GUEST_INTERVAL


def test_once_prints_one_scrape(monkeypatch, capsysbinary):
    monkeypatch.setattr(E, "_xen_sampler", lambda: lambda: (NODE, SAMPLES))
    monkeypatch.setattr(E, "_domains", lambda: DOMAINS)
    monkeypatch.setattr(E, "_host_sampler", lambda: lambda: HOST)
    code = cli.main(["exporter", "--once"])
    out = capsysbinary.readouterr().out.decode()
    assert code == 0
    fams = {f.name: f for f in text_string_to_metric_families(out)}
    assert value(fams, "xen_domain_vcpus", domain="xvm-hvm", type="hvm") == 2
    code = cli.main(["exporter", "--once", "--openmetrics", "--no-dom0"])
    out = capsysbinary.readouterr().out.decode()
    assert out.endswith("# EOF\n") and "xenvmi_dom0_load1" not in out
    assert 'kind="dom0"' not in out and 'kind="xenstore"' in out


def test_without_prometheus_client_the_command_says_what_to_install(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    code = cli.main(["exporter", "--once"])
    err = capsys.readouterr().err
    assert code == 5 and "xenvmi[exporter]" in err and err.count("\n") == 1


def test_a_port_in_use_is_one_line(monkeypatch, capsys):
    def busy(reg, host, port):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(E, "serve", busy)
    monkeypatch.setattr(E, "_xen_sampler", lambda: lambda: (NODE, SAMPLES))
    code = cli.main(["exporter", "--no-dom0", "--listen", "127.0.0.1:9731"])
    err = capsys.readouterr().err
    assert code == 5 and "Address already in use" in err and err.count("\n") == 1


def test_guest_names_option():
    assert command.guest_names(" a, b,,a ") == ["a", "b", "a"]
    with pytest.raises(SystemExit):
        cli.main(["exporter", "--guests", ",", "--once"])
    with pytest.raises(SystemExit):
        cli.main(["exporter", "--guest-budget", "0", "--once"])


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["exporter", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--guests xvm-pvh1" in out


def test_http_server_on_a_random_loopback_port():
    server, thread = E.serve(E.registry(collector()), "127.0.0.1", 0)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            text = r.read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        assert value(fams, "xen_domain_cpu_seconds_total", domain="Domain-0") == 2.5
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            fams = {f.name: f for f in om_parse(r.read().decode())}
        assert value(fams, "xenvmi_exporter_scrapes_total") == 2
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_rules_file_passes_promtool():
    rules = ROOT / "contrib/prometheus/xenvmi-rules.yml"
    out = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_and_dashboard_name_only_exported_metrics():
    """Every metric name the rules and the dashboard use is one the exporter emits."""
    import json
    import re

    reader = E.GuestReader(["xvm-hvm"], budget=2.0, read=lambda n, t: facts())
    text = E.exposition(E.registry(collector(guests=reader))).decode()
    fams = list(text_string_to_metric_families(text))
    emitted = {f.name for f in fams} | {s.name for f in fams for s in f.samples}
    rules = (ROOT / "contrib/prometheus/xenvmi-rules.yml").read_text()
    board = json.loads((ROOT / "contrib/grafana/xenvmi-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    used = set(re.findall(r"\b(?:xen|xenvmi)_[a-z0-9_]+", rules + "\n".join(exprs)))
    assert used and used <= emitted, used - emitted
