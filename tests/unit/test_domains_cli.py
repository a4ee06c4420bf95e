"""`xenvmi list`, `top` and `xs`: rendering, documented JSON shapes, one-line errors."""

from __future__ import annotations

import json

import pytest

from xenvmi import api, cli
from xenvmi.backends.xenstat import DomainCounters, NodeCounters
from xenvmi.domains import make_samples, node_sample
from xenvmi.model.host import Device, Domain, NodeSample, WatchEvent, XsNode, XsTree

DOMAINS = [
    Domain(
        domid=0,
        name="Domain-0",
        uuid=None,
        type="pv",
        state="running",
        memory_target_kib=1572864,
        memory_max_kib=1572864,
        vcpus=2,
        vcpus_online=2,
        memory_kib=1572864,
    ),
    Domain(
        domid=3,
        name="xvm-pv",
        uuid="5f0c",
        type="pv",
        state="blocked",
        memory_target_kib=262144,
        memory_max_kib=262144,
        vcpus=1,
        vcpus_online=1,
        memory_kib=262144,
        devices=(
            Device("console", "0", 0, "/local/domain/0/backend/console/3/0", None, "connected"),
            Device(
                "vbd", "51712", 0, "/local/domain/0/backend/vbd/3/51712", "connected", "connected"
            ),
            Device("vbd", "51728", 0, None, "closed", None),
        ),
    ),
]

LIST_KEYS = {
    "domid",
    "name",
    "uuid",
    "type",
    "state",
    "memory_target_kib",
    "memory_max_kib",
    "vcpus",
    "vcpus_online",
    "memory_kib",
    "devices",
}
SAMPLE_KEYS = {
    "time",
    "domid",
    "name",
    "state",
    "cpu_ns",
    "cpu_seconds",
    "cpu_percent",
    "memory_kib",
    "memory_percent",
    "memory_max_kib",
    "memory_max_percent",
    "vcpus",
    "vcpus_online",
    "nets",
    "net_tx_bytes",
    "net_rx_bytes",
    "vbds",
    "vbd_oo",
    "vbd_rd",
    "vbd_wr",
    "vbd_rsect",
    "vbd_wsect",
    "ssid",
}


def run(capsys, *argv):
    """Exit code, stdout, stderr of one CLI run (argparse's own errors exit via SystemExit)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def counters(cpu_ns: int) -> DomainCounters:
    return DomainCounters(
        domid=0,
        name="Domain-0",
        state="-----r",
        cpu_ns=cpu_ns,
        vcpus=2,
        vcpus_online=2,
        memory_bytes=256 << 20,
        memory_max_bytes=None,
        ssid=0,
        nets=0,
        net_tx_bytes=0,
        net_rx_bytes=0,
        vbds=0,
        vbd=(0, 0, 0, 0, 0),
    )


def node(dom: DomainCounters, mono: float) -> NodeCounters:
    return NodeCounters(
        time=1e9 + mono,
        mono=mono,
        xen_version="4.17.5",
        cpus=2,
        cpu_hz=2_000_000_000,
        memory_total_bytes=4 << 30,
        memory_free_bytes=1 << 30,
        domains=(dom,),
    )


def test_list_text_and_json(monkeypatch, capsys):
    monkeypatch.setattr(api, "list_domains", lambda: DOMAINS)
    code, out, _ = run(capsys, "list")
    assert code == 0
    head, dom0, pv = out.splitlines()
    assert head.split() == [
        "ID",
        "NAME",
        "TYPE",
        "STATE",
        "MEM(M)",
        "TARGET(M)",
        "MAX(M)",
        "VCPUS",
        "DEVICES",
    ]
    assert dom0.split() == ["0", "Domain-0", "pv", "running", "1536", "1536", "1536", "2", "-"]
    assert pv.split()[-1] == "console,vbd:2"
    code, out, _ = run(capsys, "list", "--json")
    rows = json.loads(out)
    assert [set(r) for r in rows] == [LIST_KEYS, LIST_KEYS]
    assert rows[1]["devices"][1] == {
        "kind": "vbd",
        "devid": "51712",
        "backend_domid": 0,
        "backend": "/local/domain/0/backend/vbd/3/51712",
        "state": "connected",
        "backend_state": "connected",
    }
    code, out, _ = run(capsys, "list", "xvm-pv", "--json")
    assert json.loads(out)["domid"] == 3
    code, out, err = run(capsys, "list", "nope")
    assert code == 3 and err.count("\n") == 1 and "no domain 'nope'" in err


class FakeSampler:
    """Two nodes one second apart; Domain-0 used half a CPU in between."""

    def __init__(self):
        self.n = 0
        self.nodes = [node(counters(10**10), 10.0), node(counters(10**10 + 5 * 10**8), 11.0)]
        self.closed = False

    def sample(self):
        cur = self.nodes[min(self.n, 1)]
        prev = self.nodes[self.n - 1] if self.n else None
        self.n += 1
        return node_sample(cur), make_samples(cur, prev)

    def close(self):
        self.closed = True


def test_top_batch_text_and_json_lines(monkeypatch, capsys):
    sampler = FakeSampler()
    monkeypatch.setattr(api, "DomainSampler", lambda: sampler)
    code, out, _ = run(capsys, "top", "--batch", "--iterations", "2", "--delay", "0")
    assert code == 0 and sampler.closed
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].split()[:5] == ["NAME", "ID", "STATE", "CPU(SEC)", "CPU(%)"]
    assert lines[1].split()[:9] == [
        "Domain-0",
        "0",
        "-----r",
        "10",
        "0.0",
        "262144",
        "6.2",
        "no",
        "limit",
    ]
    assert lines[3].split()[4] == "50.0"
    monkeypatch.setattr(api, "DomainSampler", FakeSampler)
    code, out, _ = run(capsys, "top", "-b", "-i", "2", "-d", "0", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    assert set(records[0]) == {"iteration", "time", "node", "domains"}
    assert set(records[0]["node"]) == {f for f in NodeSample.__dataclass_fields__}
    assert set(records[0]["domains"][0]) == SAMPLE_KEYS
    assert records[0]["domains"][0]["cpu_percent"] is None
    assert records[1]["domains"][0]["cpu_percent"] == pytest.approx(50.0)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["top", "-i", "0"], "whole number >= 1"),
        (["top", "--delay", "soon"], "expected seconds"),
        (["top", "--delay", "-1"], "expected"),
        (["xs", "ls", "/a b"], "invalid xenstore path"),
        (["xs", "read", "relative//path"], "invalid xenstore path"),
        (["xs", "watch", "@bogus"], "invalid xenstore path"),
        (["xs", "watch", "/x", "--count", "x"], "whole number"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_no_xen_here_is_one_line(monkeypatch, capsys, tmp_path):
    import xenvmi.backends.xenstore as xs

    monkeypatch.setattr(xs, "SOCKET_PATHS", (str(tmp_path / "no-socket"),))
    monkeypatch.setattr(xs, "XENBUS_PATHS", (str(tmp_path / "no-xenbus"),))
    for argv in (
        ["list"],
        ["xs", "read", "/local/domain/0/name"],
        ["xs", "ls", "/"],
        ["xs", "watch", "@releaseDomain", "--timeout", "1"],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 5, argv
        assert err.startswith("xenvmi: error: no xenstore here") and err.count("\n") == 1


def test_xs_ls_read_watch_render(monkeypatch, capsys):
    tree = XsTree(
        "/local/domain/3",
        (
            XsNode("/local/domain/3", "", 2, 0),
            XsNode("/local/domain/3/name", "xvm-pv", 0, 1),
            XsNode("/local/domain/3/memory", "", 1, 1),
            XsNode("/local/domain/3/memory/target", "262144", 0, 2),
        ),
        "",
    )
    monkeypatch.setattr(api, "xs_walk", lambda path, max_depth, max_nodes: tree)
    code, out, _ = run(capsys, "xs", "ls", "-r", "/local/domain/3")
    assert out.splitlines() == [
        '/local/domain/3/name = "xvm-pv"',
        '/local/domain/3/memory = ""',
        '/local/domain/3/memory/target = "262144"',
    ]
    code, out, _ = run(capsys, "xs", "ls", "/local/domain/3", "--json")
    doc = json.loads(out)
    assert set(doc) == {"top", "nodes", "truncated"} and doc["truncated"] == ""
    assert doc["nodes"][0] == {
        "path": "/local/domain/3/name",
        "value": "xvm-pv",
        "children": 0,
        "depth": 1,
    }
    monkeypatch.setattr(api, "xs_read", lambda path: "Domain-0")
    assert run(capsys, "xs", "read", "/local/domain/0/name")[1] == "Domain-0\n"
    assert json.loads(run(capsys, "xs", "read", "/x", "--json")[1]) == {
        "path": "/x",
        "value": "Domain-0",
    }
    events = [WatchEvent("@introduceDomain", "t", 1.0), WatchEvent("@releaseDomain", "t", 2.0)]
    monkeypatch.setattr(api, "watch", lambda paths, timeout, count: iter(events))
    code, out, _ = run(capsys, "xs", "watch", "@introduceDomain", "--json")
    assert [json.loads(line)["path"] for line in out.splitlines()] == [
        "@introduceDomain",
        "@releaseDomain",
    ]

    def interrupted(paths, timeout, count):
        yield events[0]
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "watch", interrupted)
    code, out, err = run(capsys, "xs", "watch", "/local/domain")
    assert code == 0 and out.endswith("@introduceDomain\n") and err == ""
