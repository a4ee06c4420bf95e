"""The guest commands' CLI: rendering, JSON shape, warnings, one-line errors, exit codes."""

from __future__ import annotations

import json

import jsonschema
import pytest

from xenvmi.plugins.schema import result_schema

pytest.importorskip("drgn")

from xenvmi import cli, guests
from xenvmi.backends.memory import BytesMemory
from xenvmi.errors import NotFoundError, Unavailable
from xenvmi.guest.synthetic import TASK, SyntheticKernel
from xenvmi.plugins import requirements


def as_dom0(monkeypatch):
    """Every requirement met: the tests' fake guests stand for dom0's real ones."""
    monkeypatch.setattr(requirements, "unmet", lambda requires, dump_file=False: [])


REGS = {
    "rip": 0xFFFFFFFF81000000,
    "rsp": 0xFFFFC90000003E90,
    "rflags": 0x246,
    "cr0": 0x80050033,
    "cr3": 0x34D2000,
    "cr4": 0x10EF0,
    "msr_efer": 0xD01,
    "cs_arbytes": 0xA9B,
    "msr_lstar": 0xFFFFFFFF81C00080,
    "rax": 1,
}


@pytest.fixture
def synthetic(monkeypatch):
    k = SyntheticKernel()
    init = k.add_task(1, b"init")
    k.add_task(2, b"kthreadd")
    k.add_task(9, b"sh", parent=init, uid=0, state=0)
    k.add_module(b"dummy")
    k.set_log([(1_500_000_000, b"xenvmi-lab: guest g is up")])
    kp = k.kernel_program()

    def fake_open(domain):
        mem = BytesMemory(bytearray(4096), name="g", registers={0: REGS, 1: REGS})
        return mem

    monkeypatch.setattr(guests, "open_memory", fake_open)
    monkeypatch.setattr(guests.Guest, "kernel_program", lambda self: kp)
    as_dom0(monkeypatch)
    return k


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ps_table_and_json(synthetic, capsys):
    code, out, err = run(capsys, "ps", "g")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["PID", "PPID", "S", "UID", "START", "COMMAND"]
    assert lines[3].split()[0] == "9" and lines[3].endswith("[sh]")
    code, out, _ = run(capsys, "ps", "g", "--json")
    got = json.loads(out)
    assert got["domain"] == "g" and got["complete"] and got["warnings"] == []
    assert got["plugin"] == "ps" and got["error"] is None
    assert [p["pid"] for p in got["rows"]] == [1, 2, 9]
    assert set(got["rows"][0]) >= {
        "pid",
        "ppid",
        "comm",
        "state",
        "uid",
        "start_time",
        "cmdline",
        "kernel_thread",
    }
    assert got["processes"] == got["rows"]  # the 0.1 key, kept for one release


def loader_views() -> dict:
    from xenvmi.plugins.loader import builtin_views

    return {cls.name: cls for cls in builtin_views()}


def test_view_command_and_run_give_one_shape(synthetic, capsys):
    for view in ("ps", "lsmod", "dmesg", "regs"):
        _, out, _ = run(capsys, view, "g", "--json")
        mine = json.loads(out)
        _, out, _ = run(capsys, "run", view, "g", "--json")
        theirs = json.loads(out)
        legacy_key = {"ps": "processes", "lsmod": "modules", "dmesg": "records", "regs": "vcpus"}[
            view
        ]
        jsonschema.validate(mine, result_schema(loader_views()[view], legacy_key))
        jsonschema.validate(theirs, result_schema(loader_views()[view]))
        for got in (mine, theirs):
            got.pop("seconds")
        assert mine["error"] is None, mine["error"]
        legacy = mine.pop(
            {"ps": "processes", "lsmod": "modules", "dmesg": "records", "regs": "vcpus"}[view]
        )
        assert mine == theirs and mine["rows"], view
        assert legacy == mine["rows"]


def test_ps_partial_result_warns(synthetic, capsys):
    synthetic.put(synthetic.init_task + TASK["tasks"] + 0, "Q", 0x4141414141414141)
    code, out, err = run(capsys, "ps", "g", "--json")
    got = json.loads(out)
    assert code == 0 and not got["complete"] and got["warnings"]
    assert "xenvmi: warning:" in err and "incomplete" in err


def test_lsmod_dmesg(synthetic, capsys):
    code, out, _ = run(capsys, "lsmod", "g")
    assert code == 0 and "dummy" in out
    code, out, _ = run(capsys, "dmesg", "g")
    assert out.strip() == "[    1.500000] xenvmi-lab: guest g is up"
    code, out, _ = run(capsys, "dmesg", "g", "--tail", "0")
    assert out.strip() == ""


def test_regs(synthetic, capsys):
    code, out, _ = run(capsys, "regs", "g")
    assert code == 0
    # LibVMI gives no SS attributes or CS selector: the CPL stays unknown, not guessed.
    assert out.splitlines()[0] == "g vCPU 0: 64-bit mode, CPL ?, paging 4-level"
    assert "LMA" in out and "PG" in out
    code, out, _ = run(capsys, "regs", "g", "--vcpu", "all", "--json")
    got = json.loads(out)
    assert [v["vcpu"] for v in got["rows"]] == [0, 1]
    assert got["rows"][0]["decoded"]["cr3"] == 0x34D2000
    with pytest.raises(SystemExit) as stop:
        cli.main(["regs", "g", "--vcpu", "x"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--vcpu" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "exc, code",
    [
        (NotFoundError("no domain named 'x' (see `xl list`)"), 3),
        (Unavailable("x is a PV guest: ..."), 5),
    ],
)
def test_errors_are_one_line(monkeypatch, capsys, exc, code):
    def fail(domain):
        raise exc

    monkeypatch.setattr(guests, "open_memory", fail)
    as_dom0(monkeypatch)
    got, out, err = run(capsys, "ps", "x")
    assert got == code and out == ""
    assert err.count("\n") == 1 and err.startswith("xenvmi: error: ")


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["ps", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "xenvmi ps xvm-pvh1" in out
