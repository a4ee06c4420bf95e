"""Parsing xenstore trees into Domain objects, and merging Xen's counters, with a fake store.

The trees mirror what xl wrote in the lab's dom0 (Xen 4.17): dom0 has no vm/memory/cpu
nodes, an HVM guest keeps its video RAM out of memory/target, and a guest owns its
``device/`` directory, so its ``backend`` pointers are untrusted.
"""

from __future__ import annotations

import pytest

from xenvmi.backends.xenstat import DomainCounters, NodeCounters
from xenvmi.domains import collect_domains, find_domain, state_word
from xenvmi.errors import NotFoundError
from xenvmi.model.host import xenbus_state_name

UUID = "d8449218-3fb0-46da-9ece-674f4e7f5a92"


class FakeStore:
    """A flat {path: value} tree with Store.fetch semantics; counts round trips."""

    def __init__(self, tree: dict[str, str]):
        self.tree = tree
        self.round_trips = 0

    def fetch(self, reads=(), lists=()):
        self.round_trips += 1
        values = {p: self.tree.get(p) for p in reads}
        dirs = {}
        for p in lists:
            prefix = p + "/"
            kids = {k[len(prefix) :].split("/")[0] for k in self.tree if k.startswith(prefix)}
            dirs[p] = sorted(kids) if kids or p in self.tree else None
        return values, dirs


def lab_tree() -> dict[str, str]:
    t = {
        "/local/domain/0/name": "Domain-0",
        "/local/domain/0/domid": "0",
        "/local/domain/1/name": "xvm-hvm",
        "/local/domain/1/vm": f"/vm/{UUID}",
        "/local/domain/1/memory/static-max": "262144",
        "/local/domain/1/memory/target": "253952",
        "/local/domain/1/memory/videoram": "8192",
        "/local/domain/1/cpu/0/availability": "online",
        "/local/domain/1/cpu/1/availability": "offline",
        "/local/domain/1/console/backend": "/local/domain/0/backend/console/1/0",
        "/local/domain/0/backend/console/1/0/state": "1",
        "/local/domain/1/device/vkbd/0/backend": "/local/domain/0/backend/vkbd/1/0",
        "/local/domain/1/device/vkbd/0/state": "4",
        "/local/domain/0/backend/vkbd/1/0/state": "4",
        "/local/domain/1/device/vbd/51712/backend": "/local/domain/0/backend/qdisk/1/51712",
        "/local/domain/1/device/vbd/51712/state": "3",
        "/local/domain/0/backend/qdisk/1/51712/state": "2",
        "/local/domain/1/device/suspend/event-channel": "",
        "/libxl/1/type": "hvm",
        "/local/domain/2/name": "xvm-pv",
        "/local/domain/2/vm": "/vm/2222",
        "/local/domain/2/memory/static-max": "262144",
        "/local/domain/2/memory/target": "262144",
        "/local/domain/2/cpu/0/availability": "online",
        "/libxl/2/type": "pv",
    }
    return t


def counters(
    domid: int,
    name: str,
    cpu_ns: int = 0,
    state: str = "--b---",
    mem: int = 256 << 20,
    maxmem: int | None = 257 << 20,
    vcpus: int = 1,
    online: int | None = 1,
) -> DomainCounters:
    return DomainCounters(
        domid=domid,
        name=name,
        state=state,
        cpu_ns=cpu_ns,
        vcpus=vcpus,
        vcpus_online=online,
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


def test_lab_tree_without_hypervisor():
    store = FakeStore(lab_tree())
    doms = collect_domains(store, None, dom0_type="pv")
    assert store.round_trips == 5
    assert [d.domid for d in doms] == [0, 1, 2]
    dom0, hvm, pv = doms
    assert (dom0.name, dom0.type, dom0.uuid, dom0.state) == ("Domain-0", "pv", None, None)
    assert dom0.memory_target_kib is None and dom0.vcpus is None and dom0.devices == ()
    assert (hvm.name, hvm.type, hvm.uuid) == ("xvm-hvm", "hvm", UUID)
    assert hvm.memory_target_kib == 262144  # 253952 + 8192 video RAM, as xl list -l says
    assert hvm.memory_max_kib == 262144
    assert (hvm.vcpus, hvm.vcpus_online) == (2, 1)
    kinds = [(d.kind, d.devid, d.state, d.backend_state) for d in hvm.devices]
    assert kinds == [
        ("console", "0", None, "initialising"),
        ("vbd", "51712", "initialised", "initwait"),
        ("vkbd", "0", "connected", "connected"),
    ]  # no device/suspend
    assert hvm.devices[1].backend == "/local/domain/0/backend/qdisk/1/51712"
    assert (pv.type, pv.memory_target_kib, pv.vcpus) == ("pv", 262144, 1)


def test_merge_with_hypervisor_counters():
    stats = node(
        counters(0, "Domain-0", state="-----r", mem=1536 << 20, maxmem=None, vcpus=2, online=2),
        counters(1, "xvm-hvm", state="------"),
        counters(2, "xvm-pv", state="--b-p-"),
    )
    dom0, hvm, pv = collect_domains(FakeStore(lab_tree()), stats, dom0_type="pv")
    assert (dom0.state, dom0.vcpus, dom0.vcpus_online) == ("running", 2, 2)
    assert dom0.memory_kib == dom0.memory_target_kib == 1536 * 1024
    assert dom0.memory_max_kib is None  # no limit
    assert hvm.state == "runnable" and pv.state == "paused"
    assert hvm.memory_kib == 256 * 1024 and hvm.memory_max_kib == 262144  # xenstore wins
    assert (hvm.vcpus, hvm.vcpus_online) == (1, 1)  # Xen wins: xenstore listed 2 cpus


def test_hostile_guest_tree_is_bounded_and_checked():
    tree = lab_tree()
    tree["/local/domain/1/device/vif/0/backend"] = "/local/domain/0/name"
    tree["/local/domain/1/device/vif/0/state"] = "99"
    tree["/local/domain/1/device/vif/1/backend"] = "/local/domain/0/backend/vif/2/1"
    tree["/local/domain/1/device/vif/1/state"] = "x"
    for i in range(200):
        tree[f"/local/domain/1/device/zz{i:03d}/0/state"] = "1"
        tree[f"/local/domain/1/device/vkbd/{i + 1}/state"] = "1"
        tree[f"/local/domain/1/cpu/{i + 2}/availability"] = "online"
    tree["/libxl/1/type"] = "hvm\x1b"
    store = FakeStore(tree)
    hvm = collect_domains(store, None)[1]
    vifs = [d for d in hvm.devices if d.kind == "vif"]
    assert [v.backend for v in vifs] == [None, None]  # not a backend path / not for domain 1
    assert [v.state for v in vifs] == ["invalid(99)", "invalid(x)"]
    assert len({d.kind for d in hvm.devices}) <= 32
    assert len([d for d in hvm.devices if d.kind == "vkbd"]) == 64
    assert hvm.type == "unknown"
    assert hvm.vcpus == 202


def test_find_domain():
    doms = collect_domains(FakeStore(lab_tree()), None)
    assert find_domain(doms, "xvm-pv").domid == 2
    assert find_domain(doms, "1").name == "xvm-hvm"
    assert find_domain(doms, 0).name == "Domain-0"
    with pytest.raises(NotFoundError, match="xenvmi list"):
        find_domain(doms, "nope")


def test_empty_or_broken_store():
    assert collect_domains(FakeStore({}), None) == []
    tree = {"/local/domain/junk/name": "x", "/local/domain/5/name": "five"}
    assert [d.name for d in collect_domains(FakeStore(tree), None)] == ["five"]


def test_state_words_and_xenbus_names():
    assert state_word("-----r") == "running"
    assert state_word("--b---") == "blocked"
    assert state_word("--b-p-") == "paused"
    assert state_word("d-----") == "dying"
    assert state_word("-s-c--") == "crashed"
    assert state_word("------") == "runnable"
    assert xenbus_state_name("4") == "connected"
    assert xenbus_state_name("6") == "closed"
    assert xenbus_state_name(None) is None
    assert xenbus_state_name("9") == "invalid(9)"


def test_one_rule_picks_a_domain_by_id_then_name():
    from xenvmi.errors import NotFoundError
    from xenvmi.model.host import pick_domain

    listed = [(0, "Domain-0"), (3, "web"), (7, "3"), (9, None)]
    assert pick_domain(listed, "3") == (3, "web")  # an id first, as xl does
    assert pick_domain(listed, 7) == (7, "3")
    assert pick_domain(listed, " web ") == (3, "web")
    assert pick_domain(listed, "9") == (9, "")
    for wanted in ("8", "Web", "", "web2"):
        with pytest.raises(NotFoundError, match="no domain"):
            pick_domain(listed, wanted)
