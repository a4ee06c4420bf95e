"""plugins/devices.py: device health from a fake xenstore shaped like the lab's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from xenvmi import api, plugins
from xenvmi.plugins import loader, requirements

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def shipped(name: str):
    """The module of a shipped plugin, loaded the way discovery loads it."""
    entry = loader._load_file((ROOT / "plugins" / f"{name}.py").resolve())
    assert entry.cls is not None, entry.info.error
    return sys.modules[entry.cls.__module__]


class FakeStore:
    """xenstore as a dict of path -> value; directories are implied by deeper paths."""

    def __init__(self, tree: dict[str, str]) -> None:
        self.tree = tree
        self.round_trips = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def fetch(self, reads=(), lists=()):
        self.round_trips += 1
        values = {p: self.tree.get(p) for p in reads}
        dirs = {}
        for p in lists:
            prefix = p + "/"
            kids = {k[len(prefix) :].split("/")[0] for k in self.tree if k.startswith(prefix)}
            dirs[p] = sorted(kids) or None
        return values, dirs


def lab_tree() -> dict[str, str]:
    be = "/local/domain/0/backend"
    return {
        "/local/domain/0/name": "Domain-0",
        # xvm-pvh1: a PV console only (xenconsoled: backend stays 'initialising')
        "/local/domain/3/name": "xvm-pvh1",
        "/libxl/3/type": "pvh",
        "/local/domain/3/console/backend": f"{be}/console/3/0",
        "/local/domain/3/console/ring-ref": "1044476",
        "/local/domain/3/console/port": "2",
        f"{be}/console/3/0/state": "1",
        # xvm-hvm: console, a connected disk, a keyboard the guest never connected
        "/local/domain/4/name": "xvm-hvm",
        "/libxl/4/type": "hvm",
        "/local/domain/4/console/backend": f"{be}/console/4/0",
        "/local/domain/4/console/ring-ref": "254",
        "/local/domain/4/console/port": "3",
        f"{be}/console/4/0/state": "1",
        "/local/domain/4/device/vbd/51712/backend": f"{be}/qdisk/4/51712",
        "/local/domain/4/device/vbd/51712/state": "4",
        f"{be}/qdisk/4/51712/state": "4",
        "/local/domain/4/device/vkbd/0/backend": f"{be}/vkbd/4/0",
        "/local/domain/4/device/vkbd/0/state": "1",
        f"{be}/vkbd/4/0/state": "2",
        # xvm-broken: no console ring, a vif whose backend closed, a hostile backend path
        "/local/domain/5/name": "xvm-broken",
        "/libxl/5/type": "pv",
        "/local/domain/5/console/backend": f"{be}/console/5/0",
        f"{be}/console/5/0/state": "1",
        "/local/domain/5/device/vif/0/backend": f"{be}/vif/5/0",
        "/local/domain/5/device/vif/0/state": "4",
        f"{be}/vif/5/0/state": "6",
        "/local/domain/5/device/vbd/768/backend": "/local/domain/0/../../etc",
        "/local/domain/5/device/vbd/768/state": "4",
        # leftovers of a destroyed domain 9, and junk names that are skipped
        f"{be}/vif/9/0/state": "4",
        f"{be}/vif/9/1/state": "5",
        f"{be}/vif/junk/0/state": "4",
    }


@pytest.fixture
def store(monkeypatch):
    s = FakeStore(lab_tree())
    monkeypatch.setattr(api, "open_xenstore", lambda *a, **kw: s)
    monkeypatch.setitem(requirements.CHECKS, "xenstore", lambda: None)
    monkeypatch.delenv(loader.ENV_PATH, raising=False)
    return s


def table(rows):
    return {(r.domain, r.kind, r.devid): (r.ok, r.problem) for r in rows}


def test_health_of_every_device(store):
    res = plugins.run("devices", None)
    assert res.error is None and res.complete, res.error
    got = table(res.rows)
    assert got[("xvm-pvh1", "console", "0")] == (True, "")
    assert got[("xvm-hvm", "console", "0")] == (True, "")
    assert got[("xvm-hvm", "vbd", "51712")] == (True, "")
    assert got[("xvm-hvm", "vkbd", "0")] == (
        False,
        "guest never connected (frontend initialising: driver not loaded?)",
    )
    assert got[("xvm-broken", "console", "0")] == (
        False,
        "console ring not published (console/ring-ref, port)",
    )
    assert got[("xvm-broken", "vif", "0")] == (False, "backend is closed")
    assert got[("xvm-broken", "vbd", "768")] == (False, "no valid backend path in xenstore")
    assert got[("(gone)", "vif", "0")] == (
        False,
        "orphaned backend in domain 0: domain 9 no longer exists",
    )
    assert ("(gone)", "vif", "1") in got and len(got) == 9
    hvm_disk = next(r for r in res.rows if r.kind == "vbd" and r.domid == 4)
    assert (hvm_disk.frontend, hvm_disk.backend, hvm_disk.backend_domid) == (
        "connected",
        "connected",
        0,
    )


def test_one_domain_and_problems_only(store):
    res = plugins.run("devices", "xvm-hvm", options={"problems": "yes"})
    assert [(r.kind, r.ok) for r in res.rows] == [("vkbd", False)]
    res = plugins.run("devices", "4")
    assert {r.kind for r in res.rows} == {"console", "vbd", "vkbd"}
    res = plugins.run("devices", "nope")
    assert res.exit_code == 3 and res.error.startswith("NotFoundError: no domain 'nope'")


@pytest.mark.parametrize(
    "kind, front, back, has, ring, ok",
    [
        ("vif", "connected", "connected", True, False, True),
        ("vif", "initialised", "connected", True, False, False),
        ("console", None, "initialising", True, True, True),
        ("console", None, "closing", True, True, False),
        ("console", "connected", "connected", True, False, True),  # a secondary console
        ("vbd", "connected", None, True, False, False),
        ("vbd", "connected", "connected", False, False, False),
    ],
)
def test_device_problem(kind, front, back, has, ring, ok):
    why = shipped("devices").device_problem(kind, front, back, has, ring)
    assert (why == "") is ok and (ok or why)
