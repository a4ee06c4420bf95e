"""xentop's arithmetic (CPU %, memory %, VBD totals) and the libxenstat copy, on fakes."""

from __future__ import annotations

import os

import pytest

from xenvmi.backends import xenstat
from xenvmi.backends.xenstat import NO_LIMIT, DomainCounters, NodeCounters, XenStat
from xenvmi.domains import cpu_percent, daemon_kind, make_samples, node_sample
from xenvmi.errors import Unavailable


def counters(
    domid: int,
    name: str,
    cpu_ns: int = 0,
    state: str = "--b---",
    mem: int = 256 << 20,
    maxmem: int | None = 257 << 20,
) -> DomainCounters:
    return DomainCounters(
        domid=domid,
        name=name,
        state=state,
        cpu_ns=cpu_ns,
        vcpus=1,
        vcpus_online=1,
        memory_bytes=mem,
        memory_max_bytes=maxmem,
        ssid=0,
        nets=0,
        net_tx_bytes=0,
        net_rx_bytes=0,
        vbds=0,
        vbd=(0, 0, 0, 0, 0),
    )


def node(*domains: DomainCounters, mono: float = 100.0) -> NodeCounters:
    return NodeCounters(
        time=1e9 + mono,
        mono=mono,
        xen_version="4.17.5",
        cpus=2,
        cpu_hz=2_000_000_000,
        memory_total_bytes=4 << 30,
        memory_free_bytes=1 << 30,
        domains=tuple(domains),
    )


def test_cpu_percent_is_xentops_formula():
    # xentop: ((ns_now - ns_before) / 10.0) / us_elapsed
    ns, us = 1_500_000_000, 3_000_000
    assert cpu_percent(0, ns, us / 1e6) == pytest.approx((ns / 10.0) / us)
    assert cpu_percent(0, 2_000_000_000, 1.0) == pytest.approx(200.0)  # two busy vCPUs
    assert cpu_percent(5, 5, 1.0) == 0.0
    assert cpu_percent(10, 5, 1.0) is None  # a new domain reused the domid
    assert cpu_percent(0, 10, 0.0) is None


def test_samples_from_two_nodes():
    before = node(
        counters(0, "Domain-0", cpu_ns=10 * 10**9, state="-----r"),
        counters(3, "gone", cpu_ns=5),
        counters(4, "old", cpu_ns=9 * 10**9),
        mono=100.0,
    )
    after = node(
        counters(4, "new", cpu_ns=10**9),  # same domid, new domain
        counters(0, "Domain-0", cpu_ns=13 * 10**9, state="-----r", mem=1 << 30, maxmem=None),
        counters(5, "fresh"),
        mono=102.0,
    )
    first = make_samples(before)
    assert all(s.cpu_percent is None for s in first)
    s0, s4, s5 = make_samples(after, before)
    assert (s0.domid, s4.domid, s5.domid) == (0, 4, 5)
    assert s0.cpu_percent == pytest.approx(150.0)
    assert s4.cpu_percent is None and s5.cpu_percent is None
    assert s0.cpu_seconds == 13.0 and s0.memory_kib == 1 << 20
    assert s0.memory_percent == pytest.approx(25.0)
    assert s0.memory_max_kib is None and s0.memory_max_percent is None
    assert s4.memory_max_kib == 257 * 1024
    assert s0.flags == {"running"}


def test_vbd_unreadable_is_none_like_xentops_dash():
    c = counters(1, "a")
    c = type(c)(**{**c.__dict__, "vbds": 2, "vbd": None})
    (s,) = make_samples(node(c))
    assert s.vbds == 2 and s.vbd_rd is None and s.vbd_wsect is None


def test_node_sample_units():
    n = node_sample(node(counters(0, "Domain-0")))
    assert (n.cpus, n.cpu_mhz, n.memory_total_kib, n.memory_free_kib, n.domains) == (
        2,
        2000,
        4 << 20,
        1 << 20,
        1,
    )


def test_daemon_kind():
    assert daemon_kind("oxenstored", ["/usr/lib/xen-4.17/bin/oxenstored"]) == ("xenstored", None)
    assert daemon_kind("xenconsoled", []) == ("xenconsoled", None)
    argv = ["/usr/libexec/xen-qemu-system-i386", "-xen-domid", "8", "-no-shutdown"]
    assert daemon_kind("xen-qemu-system", argv) == ("qemu", 8)
    assert daemon_kind("qemu-system-x86", ["qemu-system-x86_64", "-m", "1"]) is None
    assert daemon_kind("bash", ["bash"]) is None


class FakeLib:
    """libxenstat's getters over Python data; pointers are small integers."""

    def __init__(self, domains):
        self.domains = domains  # list of dicts
        self.freed = 0

    def xenstat_get_node(self, handle, flags):
        self.flags = flags
        return 1

    def xenstat_free_node(self, node):
        self.freed += 1

    def xenstat_node_num_domains(self, node):
        return len(self.domains)

    def xenstat_node_domain_by_index(self, node, i):
        return 100 + i

    def __getattr__(self, name):
        if name.startswith("xenstat_node_"):
            values = {
                "xen_version": b"4.17.5",
                "tot_mem": 4 << 30,
                "free_mem": 1 << 30,
                "num_cpus": 2,
                "cpu_hz": 2_000_000_000,
            }
            return lambda node: values[name[len("xenstat_node_") :]]
        if name.startswith("xenstat_domain_"):
            field = name[len("xenstat_domain_") :]
            if field in ("vcpu", "network", "vbd"):
                return lambda dom, i: (dom, field, i)
            return lambda dom: self.domains[dom - 100][field]
        if name.startswith(("xenstat_vcpu_", "xenstat_network_", "xenstat_vbd_")):
            kind, field = name.split("_", 2)[1:]
            return lambda ref: self.domains[ref[0] - 100][f"{kind}s"][ref[2]][field]
        raise AttributeError(name)


def dom(**kw):
    base = {
        "id": 0,
        "name": b"Domain-0",
        "cpu_ns": 7 * 10**9,
        "num_vcpus": 2,
        "cur_mem": 1 << 30,
        "max_mem": NO_LIMIT,
        "ssid": 0,
        "num_networks": 0,
        "num_vbds": 0,
        "dying": 0,
        "shutdown": 0,
        "blocked": 0,
        "crashed": 0,
        "paused": 0,
        "running": 1,
        "vcpus": [{"online": 1}, {"online": 0}],
        "networks": [],
        "vbds": [],
    }
    base.update(kw)
    return base


def test_xenstat_copies_a_node_like_xentop():
    vbd_ok = {
        "error": False,
        "oo_reqs": 1,
        "rd_reqs": 10,
        "wr_reqs": 20,
        "rd_sects": 80,
        "wr_sects": 160,
    }
    vbd_bad = {**vbd_ok, "error": True, "rd_reqs": 999}
    guest = dom(
        id=3,
        name=b"g\xffuest",
        max_mem=300 << 20,
        running=0,
        blocked=1,
        paused=1,
        num_networks=2,
        num_vbds=2,
        vcpus=[{"online": 1}],
        networks=[{"tbytes": 5, "rbytes": 7}, {"tbytes": 10, "rbytes": 1}],
        vbds=[vbd_ok, vbd_bad],
        num_vcpus=1,
    )
    lib = FakeLib([dom(), guest])
    xs = XenStat(lib=lib)
    xs._handle = 42
    n = xs.node()
    assert lib.freed == 1 and lib.flags == xenstat.ALL
    assert (n.xen_version, n.cpus, n.cpu_hz) == ("4.17.5", 2, 2_000_000_000)
    d0, g = n.domains
    assert (d0.state, d0.vcpus, d0.vcpus_online, d0.memory_max_bytes) == ("-----r", 2, 1, None)
    assert g.name == "g\\xffuest" and g.state == "--b-p-"
    assert (g.nets, g.net_tx_bytes, g.net_rx_bytes) == (2, 15, 8)
    assert g.vbd == (1, 10, 20, 80, 160)  # the VBD in error is skipped, like xentop
    all_bad = dom(id=4, num_vbds=1, vbds=[vbd_bad])
    xs._lib = FakeLib([all_bad])
    assert xs.node().domains[0].vbd is None


def test_xenstat_failures_are_unavailable(monkeypatch):
    lib = FakeLib([])
    lib.xenstat_get_node = lambda handle, flags: None
    xs = XenStat(lib=lib)
    xs._handle = 42
    with pytest.raises(Unavailable, match="xenstat_get_node failed"):
        xs.node()
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    monkeypatch.setattr(xenstat, "LIBRARY_NAMES", ("libxenstat-missing.so",))
    monkeypatch.setattr("glob.glob", lambda pattern: [])
    with pytest.raises(Unavailable, match="apt-get install libxenstat4.17"):
        xenstat.find_library()


def test_xenstat_call_that_hangs_times_out():
    import threading

    gate = threading.Event()
    lib = FakeLib([])
    lib.xenstat_get_node = lambda handle, flags: gate.wait(5) and None
    xs = XenStat(lib=lib, timeout=0.2)
    xs._handle = 42
    with pytest.raises(Unavailable, match="did not answer"):
        xs.node()
    assert xs._handle is None  # retired, never freed under the stuck thread
    gate.set()


def test_find_library_tries_the_sonames_before_ldconfig(monkeypatch):
    """`xenvmi list` loads libxenstat by soname: ctypes.util.find_library starts a process
    (ldconfig -p), a noticeable part of a one-shot command in an emulated dom0."""
    tried = []

    def cdll(name, *args, **kwargs):
        tried.append(name)
        if name != "libxenstat.so.4":
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    monkeypatch.setattr(xenstat.ctypes, "CDLL", cdll)
    monkeypatch.setattr("ctypes.util.find_library", lambda name: pytest.fail("ran ldconfig"))
    assert xenstat.find_library() == "libxenstat.so.4"
    assert tried == ["libxenstat.so.4.17", "libxenstat.so.4"]


def test_scratch_file_holds_what_was_written_to_its_descriptor():
    with xenstat._scratch_file() as f:
        os.write(f.fileno(), b"xenstat_init: Permission denied\n")
        f.seek(0)
        assert f.read() == b"xenstat_init: Permission denied\n"
