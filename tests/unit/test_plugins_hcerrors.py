"""plugins/hcerrors.py: failing hypercalls grouped into hot-spots (fake tracer, no bcc)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from xenvmi import plugins
from xenvmi.backends import hypercall_probe as tracer_mod
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.plugins import loader, requirements

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def ev(comm="xl", name="domctl", subop="getdomaininfo", ret=-3, domid=7) -> HypercallEvent:
    return HypercallEvent(
        ts_ns=0,
        pid=812,
        tid=812,
        comm=comm,
        kind="hypercall",
        ioctl=0x305000,
        op=36,
        name=name,
        subop=None,
        subop_name=subop,
        domid=domid,
        version=0x15,
        args=(0,) * 5,
        ret=ret,
        error=None,
        latency_ns=1000,
    )


EVENTS = [
    ev(),
    ev(domid=9),
    ev(),
    ev(comm="qemu-system-i38", name="mmapbatch_v2", subop=None, ret=-14, domid=None),
    ev(ret=0),
]  # a success (the kernel filter would drop it; ignored anyway)


class FakeTracer:
    made: list = []

    def __init__(self, filters, *, stream, stats, **kw):
        self.filters, self.stream, self.lost = filters, stream, 2
        self.closed = False
        FakeTracer.made.append(self)

    def start(self):
        return self

    def poll(self, callback=None, *, duration=None, **kw):
        self.duration = duration
        for e in EVENTS:
            callback(e)
        return "duration"

    def close(self):
        self.closed = True


def shipped(name: str):
    entry = loader._load_file((ROOT / "plugins" / f"{name}.py").resolve())
    assert entry.cls is not None, entry.info.error
    return sys.modules[entry.cls.__module__]


def test_hot_spots():
    spots = shipped("hcerrors").HotSpots()
    for e in EVENTS:
        spots.add(e)
    rows = spots.rows()
    assert [(r.comm, r.call, r.subop, r.count, r.domains) for r in rows] == [
        ("xl", "domctl", "getdomaininfo", 3, "7,9"),
        ("qemu-system-i38", "mmapbatch_v2", None, 1, ""),
    ]
    assert rows[0].error == "-ESRCH (No such process)"
    assert rows[1].error.startswith("-EFAULT")


def test_hot_spots_are_bounded(monkeypatch):
    mod = shipped("hcerrors")
    monkeypatch.setattr(mod, "MAX_HOTSPOTS", 2)
    spots = mod.HotSpots()
    for i in range(5):
        spots.add(ev(comm=f"p{i}"))
    assert len(spots.rows()) == 2 and spots.dropped == 3


def test_run_with_fake_tracer(monkeypatch):
    for name in requirements.CHECKS:
        monkeypatch.setitem(requirements.CHECKS, name, lambda: None)
    monkeypatch.setattr(tracer_mod, "HypercallTracer", FakeTracer)
    monkeypatch.delenv(loader.ENV_PATH, raising=False)
    res = plugins.run("hcerrors", None, options={"seconds": "1"})
    assert res.error is None and [r.count for r in res.rows] == [3, 1]
    t = FakeTracer.made[-1]
    assert t.filters.errors_only and t.stream and t.closed and t.duration == 1
    assert res.warnings == ["2 failing calls lost (perf buffer full)"] and not res.complete
