"""Filters (BPF #defines and the same rule in Python), per-call counts and log2 histograms."""

from __future__ import annotations

import json

import pytest
from test_trace_hypercalls import raw

from xenvmi import render
from xenvmi.errors import NotFoundError, UsageError
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.trace import hypercall_decode as D
from xenvmi.trace.hypercall_filters import Filters, c_string, parse_op, truncate_comm
from xenvmi.trace.hypercall_stats import (
    Stats,
    format_log2_hist,
    log2_slot,
    slot_range,
    stats_from_maps,
)
from xenvmi.trace.hypercalls import program_text


def ev(**kw) -> HypercallEvent:
    return D.decode_event(raw(**kw), arch="x86_64-pv")


# ----------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "text,want",
    [
        ("domctl", (None, 36, None)),
        ("36", (None, 36, None)),
        ("0x24", (None, 36, None)),
        ("domctl:getdomaininfo", (None, 36, 5)),
        ("domctl:XEN_DOMCTL_getdomaininfo", (None, 36, 5)),
        ("memory_op:6", (None, 12, 6)),
        ("sched_op:block", (None, 29, 1)),
        ("dm_op", (None, 41, None)),
        ("dm_op:nr_vcpus", (None, 41, 20)),
        ("mmapbatch_v2", (4, None, None)),
        ("restrict", (6, None, None)),
        ("mca", (None, 48, None)),
    ],
)
def test_parse_op(text, want):
    assert parse_op(text) == want


@pytest.mark.parametrize(
    "text,exc",
    [
        ("nosuch", NotFoundError),
        ("domctl:nosuch", NotFoundError),
        ("xen_version:1", UsageError),
        ("", UsageError),
        ("mmapbatch_v2:1", UsageError),
        ("a b", UsageError),
    ],
)
def test_parse_op_errors(text, exc):
    with pytest.raises(exc):
        parse_op(text)


def test_defines_are_the_bpf_switches():
    f = Filters(pid=812, comm="xl", op=36, subop=5, errors_only=True)
    assert f.defines() == [
        "#define FILTER_PID 812",
        '#define FILTER_COMM "\\170\\154"',
        "#define FILTER_OP 36",
        "#define FILTER_SUBOP 5",
        "#define FILTER_ERRORS",
    ]
    assert Filters().defines() == []
    assert Filters(kind=4).defines() == ["#define FILTER_KIND 4"]


def test_comm_is_escaped_and_truncated_like_the_kernel():
    assert c_string('a"b\\') == '"\\141\\042\\142\\134"'
    assert truncate_comm("qemu-system-i386") == "qemu-system-i38"
    assert Filters(comm="qemu-system-i386").comm == "qemu-system-i38"
    assert truncate_comm("ééééééééé") == "ééééééé"  # never half a character


@pytest.mark.parametrize("kw", [dict(pid=0), dict(comm=""), dict(comm="a\0b"), dict(subop=5)])
def test_bad_filters(kw):
    with pytest.raises(UsageError):
        Filters(**kw)


def test_matches_is_the_bpf_rule():
    e = ev()  # xl[812] domctl getdomaininfo -> -ESRCH
    assert Filters().matches(e)
    assert Filters(pid=812, comm="xl", op=36, subop=5, errors_only=True, kind=0).matches(e)
    assert not Filters(pid=1).matches(e)
    assert not Filters(comm="x").matches(e)
    assert not Filters(op=35).matches(e)
    assert not Filters(op=36, subop=6).matches(e)
    assert not Filters(kind=4).matches(e)
    assert not Filters(errors_only=True).matches(ev(ret=0))
    assert not Filters(errors_only=True).matches(ev(ret=-5000))


def test_describe():
    assert Filters().describe() == "privcmd calls"
    f = Filters(pid=812, comm="xl", op=36, subop=5, errors_only=True)
    assert f.describe() == "failed domctl getdomaininfo calls of pid 812 and comm 'xl'"
    assert Filters(kind=4).describe() == "privcmd mmapbatch_v2 calls"


def test_program_text_puts_switches_before_the_source():
    text = program_text(Filters(pid=5), stream=False, stats=True)
    head = text.split("#include")[0]
    assert "#define STATS" in head and "#define FILTER_PID 5" in head
    assert "#define STREAM" not in head
    assert "int trace_entry(struct pt_regs *ctx)" in text
    assert "#define STREAM" in program_text(Filters()).split("#include")[0]


# --------------------------------------------------------------------------- histogram


def bpf_log2(v: int) -> int:
    """bcc's helpers.h bpf_log2 (32-bit), transliterated."""
    r = (v > 0xFFFF) << 4
    v >>= r
    shift = (v > 0xFF) << 3
    v >>= shift
    r |= shift
    shift = (v > 0xF) << 2
    v >>= shift
    r |= shift
    shift = (v > 0x3) << 1
    v >>= shift
    r |= shift
    return r | (v >> 1)


def bpf_log2l(v: int) -> int:
    hi = v >> 32
    return bpf_log2(hi) + 32 + 1 if hi else bpf_log2(v) + 1


@pytest.mark.parametrize(
    "v",
    [0, 1, 2, 3, 4, 7, 8, 1000, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 40) + 5, (1 << 64) - 1],
)
def test_log2_slot_is_bpf_log2l(v):
    assert log2_slot(v) == bpf_log2l(v)


def test_slot_ranges_cover_every_value_once():
    assert slot_range(1) == (0, 1) and slot_range(2) == (2, 3) and slot_range(10) == (512, 1023)
    for v in range(5000):
        low, high = slot_range(log2_slot(v))
        assert low <= v <= high


def test_histogram_layout_is_bccs():
    text = format_log2_hist({1: 2, 2: 8, 4: 1})
    assert text.splitlines() == [
        "     usecs               : count     distribution",
        "         0 -> 1          : 2        |**********                              |",
        "         2 -> 3          : 8        |****************************************|",
        "         4 -> 7          : 0        |                                        |",
        "         8 -> 15         : 1        |*****                                   |",
    ]
    assert format_log2_hist({}) == "" and format_log2_hist({3: 0}) == ""


def test_wide_histogram_past_slot_32():
    lines = format_log2_hist({33: 1}).splitlines()
    assert lines[0].startswith("               usecs") and len(lines) == 34
    assert lines[-1].endswith("|********************|")


# ------------------------------------------------------------------------------ stats


def sample_events():
    return [
        ev(),
        ev(latency_ns=40_000),
        ev(ret=0, latency_ns=3_000),
        ev(op=27, flags=0, ret=-38, latency_ns=900),
        ev(op=27, flags=0, ret=-38, latency_ns=1_100),
    ]


def test_counts_and_errors_from_events():
    stats = Stats()
    for e in sample_events():
        stats.add(e)
    rows = {(r.name, r.subop): (r.calls, r.errors) for r in stats.op_rows()}
    assert rows == {("domctl", "getdomaininfo"): (3, 2), ("xsm_op", None): (2, 2)}
    errs = [(e.name, e.subop, e.error, e.count) for e in stats.error_rows()]
    assert errs == [("domctl", "getdomaininfo", "ESRCH", 2), ("xsm_op", None, "ENOSYS", 2)]
    assert stats.calls == 5
    assert stats.hist["domctl"] == {log2_slot(12): 1, log2_slot(40): 1, log2_slot(3): 1}
    assert stats.hist["xsm_op"] == {1: 2}


def test_kernel_maps_give_the_same_stats_as_events():
    from_events = Stats()
    for e in sample_events():
        from_events.add(e)
    counts = [
        ((0, 36, 5, -3), (2, 52_345, 40_000)),
        ((0, 36, 5, 0), (1, 3_000, 3_000)),
        ((0, 27, 0xFFFFFFFF, -38), (2, 2_000, 1_100)),
    ]
    hist = [
        ((0, 36, log2_slot(12)), 1),
        ((0, 36, log2_slot(40)), 1),
        ((0, 36, log2_slot(3)), 1),
        ((0, 27, 1), 2),
    ]
    from_maps = stats_from_maps(counts, hist, arch="x86_64-pv")
    assert from_maps.to_json(hist=True) == from_events.to_json(hist=True)


def test_maps_name_other_requests():
    stats = stats_from_maps(
        [
            ((4, 0xFFFFFFFF, 0xFFFFFFFF, 0), (3, 30, 10)),
            ((255, 0xFFFFFFFF, 0xFFFFFFFF, -25), (1, 1, 1)),
        ],
        [],
    )
    assert {r.name for r in stats.op_rows()} == {"mmapbatch_v2", "ioctl"}


def test_summary_json_and_text():
    stats = Stats()
    for e in sample_events():
        stats.add(e)
    obj = json.loads(render.json_line(stats.to_json(hist=True)))
    assert obj["calls"] == 5 and obj["lost"] == 0
    assert obj["ops"][0] == {
        "name": "domctl",
        "subop": "getdomaininfo",
        "calls": 3,
        "errors": 2,
        "avg_us": 18.448,
        "max_us": 40.0,
    }
    assert obj["errors"][1]["error"] == "ENOSYS"
    assert obj["latency_usecs_log2"]["xsm_op"] == [{"low": 0, "high": 1, "count": 2}]
    text = stats.render_summary()
    assert text.splitlines()[0].split() == ["CALL", "COUNT", "ERRORS", "AVG_US", "MAX_US"]
    assert "domctl getdomaininfo" in text and "-ENOSYS (Function not implemented)" in text
    hist = stats.render_hist()
    assert hist.startswith("call = domctl\n     usecs") and "call = xsm_op" in hist
    assert Stats().render_summary() == "no privcmd calls traced"
    assert Stats().render_hist() == "no latencies recorded"


def test_a_dom0_process_name_cannot_drive_the_terminal():
    ev = D.decode_event(raw(comm=b"\x1b]0;owned\x07\x1b[2J"))
    assert ev.comm == "\\x1b]0;owned\\x07\\x1b[2J" and "\x1b" not in D.format_event(ev)
