"""Each benchmark script's bench(): the rows it makes of its measurements (faked here:
the measurements need a Xen dom0), so a run in the lab does not fail on a slip."""

from __future__ import annotations

import importlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
from common import Options  # noqa: E402


@pytest.fixture
def dom0(monkeypatch):
    """The checks pass, the guest is xvm-pvh1 (256 MiB)."""
    monkeypatch.setattr(common, "require_dom0", lambda: None)
    monkeypatch.setattr(common, "require_tool", lambda name: name)
    monkeypatch.setattr(common, "require_module", lambda name, why="": None)
    monkeypatch.setattr(common, "guest", lambda opts, kinds=("pvh", "hvm"): ("xvm-pvh1", 256))


def by_what(rows):
    return {r.what: r for r in rows}


def test_domains_refresh(dom0, monkeypatch):
    mod = importlib.import_module("domains_refresh")
    monkeypatch.setattr(mod, "domain_count", lambda: 5)
    ms = {
        "xl list": 650.0,
        "xentop -b -i 1": 700.0,
        "xenvmi list": 1700.0,
        "xenvmi top --batch -i 1": 1500.0,
        "DomainSampler.sample() in process": 50.0,
        "collect_domains() in process": 80.0,
    }
    monkeypatch.setattr(mod, "measure", lambda runs, per_refresh_rows=True: dict(ms))
    rows = by_what(mod.bench(Options(quick=True)))
    lst = rows["xenvmi list"]
    assert (lst.ours, lst.peer, lst.size) == (1.7, 0.65, "5 domains")
    assert lst.met is False and lst.goal.text == "<= 1.5x peer"
    assert "xenvmi top --batch, per refresh" not in rows  # --quick leaves it out
    assert rows["collect_domains() in process"].peer is None


def test_guest_ps_live(dom0, monkeypatch):
    mod = importlib.import_module("guest_ps")
    live = [
        ("cold", 30.0, 56),
        ("warm", 1.8, 56),
        ("view", 0.05, 56),
        ("same-fields loop", 0.04, 56),
        ("pid and comm loop", 0.01, 56),
    ]
    monkeypatch.setattr(mod, "live_rows", lambda *a, **k: live)
    monkeypatch.setattr(mod, "python_pass", lambda runs: 0.9)
    rows = mod.bench_live(Options(quick=True))
    warm, cold, view, floor = rows
    assert warm.ours == 1.8 and warm.peer == 0.9 and warm.met is True  # <= 2 * 0.9 + 0.05
    assert warm.size == "xvm-pvh1, 56 tasks" and cold.ours == 30.0 and cold.goal is None
    assert view.ratio == pytest.approx(1.25) and view.met is True
    assert floor.peer == 0.04


def test_guest_ps_dump(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "require_module", lambda name, why="": None)
    mod = importlib.import_module("guest_ps")
    dumped = [("c", 2.0, 55), ("w", 0.2, 55), ("vc", 40.0, 55), ("vw", 3.4, 55)]
    monkeypatch.setattr(mod, "dump_rows", lambda dump, isf, runs, cold: dumped)
    opts = Options(dump=str(tmp_path / "hvm.vmcore"), isf="hvm.json.xz")
    warm, cold = mod.bench_dump(opts)
    assert (warm.ours, warm.peer, warm.met) == (0.2, 3.4, True)
    assert (cold.ours, cold.peer, cold.met) == (2.0, 40.0, True)
    assert warm.size == "hvm.vmcore, 55 tasks"


def test_guest_ps_dump_without_a_dump_is_skipped(monkeypatch, tmp_path):
    from table import Skip

    monkeypatch.setattr(common, "require_module", lambda name, why="": None)
    mod = importlib.import_module("guest_ps")
    with pytest.raises(Skip, match="no dump"):
        mod.bench_dump(Options(workdir=str(tmp_path)))


def test_dump_speed(dom0, monkeypatch, tmp_path):
    mod = importlib.import_module("dump_speed")
    seen = {}

    def measure(domain, directory, runs, keep=None):
        seen.update(domain=domain, runs=runs, keep=keep)
        return {"xl dump-core": 10.0, "xenvmi dump": 8.0}

    monkeypatch.setattr(mod, "measure", measure)
    (row,) = mod.bench(Options(quick=True, workdir=str(tmp_path)))
    assert seen == {"domain": "xvm-pvh1", "runs": 1, "keep": str(tmp_path / "bench.vmcore")}
    assert row.unit == "MB/s" and row.ours == pytest.approx(256 * 1.048576 / 8)
    assert row.ratio == pytest.approx(1.25) and row.met is True


def test_read_throughput(dom0, monkeypatch):
    mod = importlib.import_module("read_throughput")
    secs = [
        ("raw LibVMI read_pa", 2.0),
        ("xenvmi, LibVMI path", 2.5),
        ("xenvmi, batch mapping", 1.0),
    ]
    monkeypatch.setattr(mod, "measure", lambda domain, mib, runs: secs)
    batch, path = mod.bench(Options(quick=True))
    assert batch.ratio == pytest.approx(2.0) and path.ratio == pytest.approx(0.8)
    assert batch.ours == pytest.approx(8 * (1 << 20) / 1e6) and batch.size == "xvm-pvh1, 8 MiB"


def test_native_vs_libvmi(dom0, monkeypatch):
    mod = importlib.import_module("native_vs_libvmi")
    tests = [("pages in order, cold", 128, 128 * 4096, None, None)]
    times = {
        ("pages in order, cold", "LibVMI"): [0.3, 0.2],
        ("pages in order, cold", "native"): [0.1],
    }
    monkeypatch.setattr(mod, "measure", lambda *a: (tests, times, {}, "pvh"))
    (row,) = mod.bench(Options(quick=True))
    assert (row.ours, row.peer, row.size) == (0.1, 0.25, "xvm-pvh1, 128 reads")


def test_trace_overhead(dom0, monkeypatch):
    mod = importlib.import_module("trace_overhead")
    base = {"xen_version": 100e-6}
    results = {
        "probe only": {"xen_version": (0, 102e-6)},
        "summary": {"xen_version": (0, 110e-6)},
        "stream": {"xen_version": (0, 104e-6)},
    }
    lost = {"probe only": 0, "summary": 0, "stream": 7}
    monkeypatch.setattr(mod, "overhead", lambda workloads, repeats: (results, lost, base))
    rows = {r.what: r for r in mod.bench(Options(quick=True))}
    assert rows["CPU per call, tracer probe only"].met is True
    assert rows["CPU per call, tracer summary"].met is False  # 10 % over
    stream = rows["CPU per call, tracer stream"]
    assert stream.met is False and stream.met_text() == "NO (7 events lost)"


def test_tui_refresh_in_dom0(dom0, monkeypatch):
    mod = importlib.import_module("tui_refresh")
    from xenvmi import api

    async def idle(n, seconds, refresh, live=False):
        assert live and n == 5
        return 3.0

    async def refresh(n, runs, sort):
        return 10.0, 60.0

    monkeypatch.setattr(api, "list_domains", lambda: [object()] * 5)
    monkeypatch.setattr(mod, "idle_cpu", idle)
    monkeypatch.setattr(mod, "xentop_idle_cpu", lambda seconds, refresh: 1.0)
    monkeypatch.setattr(mod, "refresh_ms", refresh)
    idle_row, by_id, by_cpu = mod.bench(Options(quick=True))
    assert idle_row.ratio == 3.0 and idle_row.met is False and idle_row.unit == "%"
    assert by_id.ours == pytest.approx(0.06) and by_cpu.goal is None


def test_xentrace_decode_against_a_xenalyze(monkeypatch, tmp_path):
    """The peer's path, with a stand-in xenalyze that reads the file and exits 0."""
    mod = importlib.import_module("xentrace_decode")
    real = mod.generate
    monkeypatch.setattr(mod, "generate", lambda mb: real(0.3))
    fake = tmp_path / "xenalyze"
    fake.write_text('#!/bin/sh\ncat "$2" > /dev/null\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(mod, "find_xenalyze", lambda: str(fake))
    rows = mod.bench(Options(quick=True, workdir=str(tmp_path)))
    assert [r.status for r in rows] == ["", ""] and all(r.peer and r.ours for r in rows)
    assert sorted(os.listdir(tmp_path)) == ["xenalyze"]  # the generated file is removed
    monkeypatch.setattr(mod, "find_xenalyze", lambda: None)
    rows = mod.bench(Options(quick=True, workdir=str(tmp_path)))
    assert rows[0].status == "skipped: xenalyze not installed" and rows[0].ours


def test_exporter_scrape(dom0, monkeypatch):
    mod = importlib.import_module("exporter_scrape")
    times = {
        mod.PEER: [0.4, 0.5, 0.6],
        "exporter --no-dom0": [3.0, 3.4, 9.0],
        "exporter": [4.2, 4.0, 4.4],
        "exporter --guests xvm-pvh1": [10.0, 9.0, 11.0],
    }
    asked = {}
    monkeypatch.setattr(mod, "sampler_names", lambda: ["a"] * 7)

    def measure(runs, guests):
        asked.update(runs=runs, guests=guests)
        return {k: list(v) for k, v in times.items()}, ""

    monkeypatch.setattr(mod, "measure", measure)
    rows = by_what(mod.bench(Options(quick=True)))
    assert asked == {"runs": 5, "guests": ["xvm-pvh1"]}
    assert set(rows) == {
        "scrape: exporter --no-dom0",
        "scrape: exporter",
        "scrape: exporter --guests xvm-pvh1",
    }
    row = rows["scrape: exporter"]
    assert (row.ours, row.peer) == (4.2, 0.5) and row.ratio == pytest.approx(8.4)
    assert row.size == "7 domains, median of 5" and row.goal is None


def test_guest_ps_per_kernel(dom0, monkeypatch):
    mod = importlib.import_module("guest_ps")
    guests = [("xvm-deb11", "hvm"), ("xvm-pvh1", "pvh"), ("xvm-deb13", "pvh")]
    monkeypatch.setattr(mod, "kernel_guests", lambda: guests)
    measured = [
        ("xvm-deb11", "5.10.0-46-amd64", 120.0, 5.0, 12),
        ("xvm-pvh1", "6.1.0-44-amd64", 90.0, 4.0, 14),
    ]
    monkeypatch.setattr(mod, "kernel_rows", lambda g, runs: measured if g == guests else [])
    monkeypatch.setattr(mod, "python_pass", lambda runs: 1.0)
    rows = mod.bench_kernels(Options(quick=True))
    assert [(r.what, r.size) for r in rows] == [
        ("xenvmi ps, cold, per kernel", "xvm-deb11, Linux 5.10.0-46-amd64, 12 tasks"),
        ("xenvmi ps, warm, per kernel", "xvm-deb11, Linux 5.10.0-46-amd64, 12 tasks"),
        ("xenvmi ps, cold, per kernel", "xvm-pvh1, Linux 6.1.0-44-amd64, 14 tasks"),
        ("xenvmi ps, warm, per kernel", "xvm-pvh1, Linux 6.1.0-44-amd64, 14 tasks"),
    ]
    assert [r.ours for r in rows] == [120.0, 5.0, 90.0, 4.0]
    assert {r.peer for r in rows} == {1.0}


def test_guest_ps_per_kernel_named_guest_missing_is_skipped(dom0, monkeypatch):
    mod = importlib.import_module("guest_ps")
    monkeypatch.setattr(mod, "kernel_guests", lambda: [("xvm-pvh1", "pvh")])
    with pytest.raises(common.Skip, match="no running PVH or HVM guest"):
        mod.bench_kernels(Options(guest="other"))


def test_kernel_rows_times_each_kind_of_kernel_once(monkeypatch):
    mod = importlib.import_module("guest_ps")
    releases = {"a": "6.1", "b": "6.1", "c": "6.1", "d": "5.10"}
    calls = []

    def xenvmi(args):
        calls.append(tuple(args[:2]))
        if args[0] == "kernel":
            return 0.5, json.dumps({"rows": [{"release": releases[args[1]]}]})
        return 2.0, '{"rows": [{}, {}, {}]}'

    monkeypatch.setattr(mod, "_xenvmi", xenvmi)
    monkeypatch.setattr(mod, "_cmd", lambda args: 60.0)
    monkeypatch.setattr(mod, "_clear_cache", lambda: None)
    got = mod.kernel_rows([("a", "pvh"), ("b", "pvh"), ("c", "hvm"), ("d", "hvm")], runs=2)
    assert got == [
        ("a", "6.1", 60.0, 2.0, 3),
        ("c", "6.1", 60.0, 2.0, 3),
        ("d", "5.10", 60.0, 2.0, 3),
    ]
    assert calls.count(("ps", "b")) == 0  # b's kernel is a's: no warm runs
