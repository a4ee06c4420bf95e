"""The built-in plugins (ps, lsmod, dmesg, hypercalls) through the plugin API, on a
synthetic guest kernel and a fake tracer: the same views the `xenvmi ps` etc. commands use."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("drgn")

from xenvmi import cli, guests, plugins
from xenvmi.backends import hypercall_probe as tracer_mod
from xenvmi.backends.memory import BytesMemory
from xenvmi.guest.synthetic import TASK, SyntheticKernel
from xenvmi.plugins import requirements
from xenvmi.trace.hypercall_stats import stats_from_maps
from xenvmi.views.hypercalls import HypercallSummary, summary_rows

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def everything_present(monkeypatch):
    for name in requirements.CHECKS:
        monkeypatch.setitem(requirements.CHECKS, name, lambda: None)


@pytest.fixture
def guest(monkeypatch):
    k = SyntheticKernel()
    init = k.add_task(1, b"init")
    k.add_task(2, b"kthreadd")
    k.add_task(9, b"sh", parent=init, state=0)
    k.add_module(b"dummy")
    k.set_log([(1_000_000, b"first"), (2_000_000, b"xenvmi-lab: guest g is up")])
    kp = k.kernel_program()
    opened = []

    class Memory(BytesMemory):
        closed = False

        def close(self):
            self.closed = True
            super().close()

    def fake_open(domain):
        mem = Memory(bytearray(4096), name=str(domain))
        opened.append(mem)
        return mem

    monkeypatch.setattr(guests, "open_memory", fake_open)
    monkeypatch.setattr(guests.Guest, "kernel_program", lambda self: kp)
    k.opened = opened
    return k


def test_ps_lsmod_dmesg(guest):
    ps = plugins.run("ps", "g")
    assert ps.error is None and ps.complete
    assert [(p.pid, p.comm) for p in ps.rows] == [(1, "init"), (2, "kthreadd"), (9, "sh")]
    assert ps.columns == ("pid", "ppid", "state", "uid", "start", "command")
    assert [m.name for m in plugins.run("lsmod", "g").rows] == ["dummy"]
    log = plugins.run("dmesg", "g", options={"tail": "1"})
    assert [r.text for r in log.rows] == ["xenvmi-lab: guest g is up"]
    assert len(guest.opened) == 3 and all(m.closed for m in guest.opened)


def test_ps_partial_guest_list_warns(guest):
    guest.put(guest.init_task + TASK["tasks"], "Q", 0x4141414141414141)
    res = plugins.run("ps", "g")
    assert res.error is None and res.rows == [] and not res.complete
    assert any("not a kernel address" in w for w in res.warnings)


def test_builtins_need_a_domain():
    res = plugins.run("ps", None)
    assert res.exit_code == 2 and "needs a DOMAIN" in res.error


def test_ps_cli_json(guest, capsys):
    code = cli.main(["run", "ps", "g", "--json"])
    got = json.loads(capsys.readouterr().out)
    assert code == 0 and [p["pid"] for p in got["rows"]] == [1, 2, 9]
    assert got["rows"][0]["comm"] == "init" and got["complete"]


def test_dmesg_tail(guest):
    assert len(plugins.run("dmesg", "g", options={"tail": "0"}).rows) == 0
    assert len(plugins.run("dmesg", "g").rows) == 2
    res = plugins.run("dmesg", "g", options={"tail": "-1"})
    assert res.exit_code == 2 and "tail='-1' is not a valid number >= 0" in res.error


def test_pause_option_is_checked(guest):
    res = plugins.run("ps", "g", options={"pause": "maybe"})
    assert res.exit_code == 2 and "pause='maybe' is not a valid yes/no" in res.error


COUNTS = [
    ((0, 36, 5, 0), (10, 20_000, 5_000)),
    ((0, 36, 5, -3), (2, 4_000, 3_000)),
    ((0, 27, 0xFFFFFFFF, -38), (1, 900, 900)),
]


def test_summary_rows():
    rows = summary_rows(stats_from_maps(COUNTS, []))
    assert rows[0] == HypercallSummary("domctl", "getdomaininfo", 12, 2, 2.0, 5.0)
    assert (rows[1].call, rows[1].errors) == ("xsm_op", 1)


class FakeTracer:
    """HypercallTracer's surface: start, poll(duration), read_stats, close."""

    made: list[FakeTracer] = []

    def __init__(self, filters, *, stream, stats, **kw):
        self.filters, self.stream, self.stats = filters, stream, stats
        self.polled = None
        self.closed = False
        FakeTracer.made.append(self)

    def start(self):
        return self

    def poll(self, callback=None, *, duration=None, **kw):
        self.polled = duration
        return "duration"

    def read_stats(self):
        return stats_from_maps(COUNTS, [])

    def close(self):
        self.closed = True


def test_hypercalls_plugin_with_fake_tracer(monkeypatch):
    monkeypatch.setattr(tracer_mod, "HypercallTracer", FakeTracer)
    FakeTracer.made.clear()
    res = plugins.run("hypercalls", None, options={"seconds": "0.5"})
    assert res.error is None and res.complete
    assert [r.call for r in res.rows] == ["domctl", "xsm_op"]
    t = FakeTracer.made[0]
    assert t.polled == 0.5 and t.closed and t.stats and not t.stream


def test_hypercalls_tracing_is_cut_to_the_timeout(monkeypatch):
    monkeypatch.setattr(tracer_mod, "HypercallTracer", FakeTracer)
    FakeTracer.made.clear()
    res = plugins.run("hypercalls", None, options={"seconds": "60"}, timeout=2)
    assert FakeTracer.made[0].polled <= 2
    assert any("not 60s" in w for w in res.warnings)


def test_hypercalls_preflight_error_is_one_line(monkeypatch):
    from xenvmi.errors import Unavailable

    def refuse(facts):
        raise Unavailable("trace: kernel headers for Linux 6.1 are missing")

    monkeypatch.setattr(tracer_mod, "preflight", refuse)
    monkeypatch.setattr(tracer_mod, "gather_facts", lambda: None)
    res = plugins.run("hypercalls", None, options={"seconds": "0.1"})
    assert res.exit_code == 5
    assert res.error == "Unavailable: trace: kernel headers for Linux 6.1 are missing"
