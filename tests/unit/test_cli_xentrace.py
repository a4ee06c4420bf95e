"""``xenvmi xentrace decode|summary|record`` on synthetic files, through argparse.

Until the lead adds "xentrace" to xenvmi.cli.COMMAND_MODULES, ``run`` registers the
command on the real parser by patching that tuple for the test only.

JSON shapes: ``decode --json`` prints one object a line, the fields of TraceRecord::

    {"offset": 12, "cpu": 0, "tsc": 100, "event": 2101261, "class_name": "TRC_PV",
     "name": "TRC_PV_HYPERCALL_V2", "extra": [1048605, 1],
     "fields": {"op": 29, "hypercall": "sched_op", "args": [1, null, null, null, null, null]},
     "domid": 1, "vcpu": 0}

``summary --json`` prints TraceSummary: windows, records, cpus, first_tsc, last_tsc,
lost_records, events_by_class, hypercalls [{domain, domid, source, number, name, count}],
unattributed, errors.
"""

from __future__ import annotations

import json
import os
import stat
import struct

import pytest
from test_xentrace import hypercall_v2, t_rec, two_domain_trace, window

from xenvmi import cli, xen_release
from xenvmi.backends import xentrace_recorder as rec
from xenvmi.commands import xentrace as cmd


@pytest.fixture
def run(monkeypatch, capsys):
    monkeypatch.setattr(xen_release, "_running", lambda: None)  # off Xen: the default tables
    if "xentrace" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ("xentrace",))

    def _run(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(two_domain_trace())
    return str(path)


def test_decode_text_and_limit(run, trace_file):
    code, out, err = run("xentrace", "decode", trace_file, "--limit", "8")
    lines = out.splitlines()
    assert code == 0 and err == "" and len(lines) == 8
    assert "TRC_TRACE_CPU_CHANGE" in lines[0]
    assert "d1v0" in lines[6] and "TRC_PV_HYPERCALL_V2" in lines[6] and "sched_op" in lines[6]


def test_decode_json_lines(run, trace_file):
    code, out, _ = run("xentrace", "decode", trace_file, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 23
    calls = [(r["domid"], r["fields"]["hypercall"]) for r in rows if "hypercall" in r["fields"]]
    assert calls.count((2, "event_channel_op")) == 2 and (3, "hvm_op") in calls
    assert set(rows[0]) == {
        "offset",
        "cpu",
        "tsc",
        "event",
        "class_name",
        "name",
        "extra",
        "fields",
        "domid",
        "vcpu",
    }


def test_summary_text_and_json(run, trace_file):
    code, out, _ = run("xentrace", "summary", trace_file)
    assert code == 0 and "event_channel_op" in out and "d2" in out and "records 20" in out
    code, out, _ = run("xentrace", "summary", trace_file, "--json")
    data = json.loads(out)
    assert code == 0 and data["windows"] == 3 and data["cpus"] == [0, 1]
    assert {
        "domain": "d1",
        "domid": 1,
        "source": "pv",
        "number": 29,
        "name": "sched_op",
        "count": 3,
    } in data["hypercalls"]


def test_corrupt_file_is_one_line_error_or_warning(run, tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(window(0, hypercall_v2(29, tsc=1)) + b"\x55" * 40)
    code, out, err = run("xentrace", "summary", str(path))
    assert code == 7 and out == "" and err.startswith("xenvmi: error: ")
    assert "byte offset 28" in err and len(err.splitlines()) == 1
    code, out, err = run("xentrace", "decode", str(path))
    assert code == 7 and len(out.splitlines()) == 2  # records before the damage were printed
    code, out, err = run("xentrace", "summary", str(path), "--keep-going", "--json")
    assert code == 0 and "warning" in err and json.loads(out)["records"] == 1


def test_missing_file(run, tmp_path):
    code, _, err = run("xentrace", "decode", str(tmp_path / "nope.bin"))
    assert code == 3 and "no such file" in err


def test_mask_parsing():
    assert cmd.parse_mask("sched,pv,hvm") == 0x002AF000
    assert cmd.parse_mask("0x0020f000") == 0x0020F000
    assert cmd.parse_mask("all") == 0x0FFFF000
    for bad in ("bogus", "0", ""):
        with pytest.raises(cmd.UsageError):
            cmd.parse_mask(bad)


def test_record_builds_the_xentrace_command_line():
    assert rec.record_command("/x/xentrace", "t.bin", 0x002AF000, 5) == [
        "/x/xentrace",
        "-D",
        "-e",
        "0x002af000",
        "-T",
        "5",
        "t.bin",
    ]
    assert rec.record_command("xentrace", "t", 1, 2, 64)[-3:] == ["-S", "64", "t"]


def test_record_without_root_or_binary(run, monkeypatch, tmp_path):
    monkeypatch.setattr(rec.shutil, "which", lambda name: None)
    monkeypatch.setattr(rec.glob, "glob", lambda pattern: [])
    code, _, err = run("xentrace", "record", str(tmp_path / "t.bin"))
    assert code == 5 and "not installed" in err
    monkeypatch.setattr(rec.os, "geteuid", lambda: 1000)
    code, _, err = run("xentrace", "record", str(tmp_path / "t.bin"), "--xentrace", "/bin/true")
    assert code == 4 and "root" in err


def test_record_runs_a_fake_xentrace(run, monkeypatch, tmp_path):
    fake = tmp_path / "xentrace"
    payload = tmp_path / "payload.bin"
    payload.write_bytes(two_domain_trace())
    fake.write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/args\nfor last; do :; done\ncp {payload} "$last"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(rec.os, "geteuid", lambda: 0)
    out_file = tmp_path / "t.bin"
    code, out, err = run(
        "xentrace",
        "record",
        str(out_file),
        "--seconds",
        "1",
        "--mask",
        "pv,sched",
        "--xentrace",
        str(fake),
    )
    assert code == 0, err
    assert (tmp_path / "args").read_text().split() == [
        "-D",
        "-e",
        "0x0022f000",
        "-T",
        "1",
        str(out_file),
    ]
    assert os.path.getsize(out_file) == len(two_domain_trace()) and "summary" in out

    fake.write_text('#!/bin/sh\necho "ERROR: Couldn\'t enable trace buffers" >&2\nexit 1\n')
    code, _, err = run("xentrace", "record", str(out_file), "--xentrace", str(fake))
    assert code == 1 and "trace buffers" in err


def test_record_timeout_is_a_clear_error(run, monkeypatch, tmp_path):
    fake = tmp_path / "xentrace"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(rec.os, "geteuid", lambda: 0)
    code, _, err = run(
        "xentrace",
        "record",
        str(tmp_path / "t.bin"),
        "--seconds",
        "1",
        "--grace",
        "0",
        "--xentrace",
        str(fake),
    )
    assert code == 1 and "did not stop" in err


def test_windows_struct_sanity():
    # the header the CLI's files start with, as xentrace.c writes it
    assert struct.unpack_from("<I", two_domain_trace())[0] == 0x2001F003


def test_an_empty_trace_says_so_and_a_full_one_does_not(run, tmp_path, trace_file):
    empty = tmp_path / "empty.trc"
    empty.write_bytes(b"")
    for what in ("decode", "summary"):
        code, _, err = run("xentrace", what, str(empty))
        assert code == 0 and "holds no trace records" in err
        code, out, err = run("xentrace", what, trace_file)
        assert code == 0 and out and "holds no trace records" not in err


def test_decode_names_events_as_the_release_given(run, tmp_path, monkeypatch):
    path = tmp_path / "svm.bin"
    path.write_bytes(window(0, t_rec(0x00081003, (0x7B,), tsc=5), t_rec(0x00081002, (1,), tsc=6)))
    code, out, err = run("xentrace", "decode", str(path))
    assert (code, err) == (0, "")
    assert "TRC_HVM_0x0081003" in out and "TRC_HVM_VMEXIT " in out
    code, out, err = run("xentrace", "decode", str(path), "--xen", "4.20")
    assert (code, err) == (0, "")
    assert "TRC_HVM_SVM_EXIT " in out and "TRC_HVM_VMX_EXIT " in out
    monkeypatch.setattr(xen_release, "_running", lambda: "4.20")
    code, out, _ = run("xentrace", "decode", str(path), "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()][1:] == [
        "TRC_HVM_SVM_EXIT",
        "TRC_HVM_VMX_EXIT",
    ]
    code, out, err = run("xentrace", "decode", str(path), "--xen", "four")
    assert code == 2 and out == "" and err.count("\n") == 1
