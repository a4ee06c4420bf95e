"""The xentrace decoder against synthetic files built by a test-only writer.

The writer follows the same sources as the decoder (tools/xentrace/xentrace.c for the
window framing, common/trace.c for t_rec and the hypercall/lost-record payloads,
common/sched/core.c for the scheduler records), and each release's event-id table is
checked against its trace.h in tests/unit/data/xen-headers/.
"""

from __future__ import annotations

import dataclasses
import io
import random
import re
import struct
from pathlib import Path

import pytest

from xenvmi.abi import releases
from xenvmi.errors import UsageError, XenvmiError
from xenvmi.trace import trc_events as T
from xenvmi.trace.xentrace import (
    TraceDecoder,
    TraceFormatError,
    TraceRecord,
    decode,
    summarize,
    summarize_file,
)

HEADERS = Path(__file__).parent / "data" / "xen-headers"
TRACE_H = HEADERS / "4.17" / "trace.h"
XEN_H = HEADERS / "4.17" / "xen.h"


# -- test-only writer ---------------------------------------------------------------------


def t_rec(event: int, extra=(), tsc: int | None = None) -> bytes:
    """One struct t_rec: header, optional TSC (lo, hi), extra words (little endian)."""
    header = event | (len(extra) << 28) | ((1 << 31) if tsc is not None else 0)
    out = struct.pack("<I", header)
    if tsc is not None:
        out += struct.pack("<II", tsc & 0xFFFFFFFF, tsc >> 32)
    return out + struct.pack(f"<{len(extra)}I", *extra)


def window(cpu: int, *records: bytes) -> bytes:
    body = b"".join(records)
    return struct.pack("<III", T.CPU_CHANGE_HEADER, cpu, len(body)) + body


def hypercall_v2(
    op: int, args: dict[int, int] | None = None, event=T.TRC_PV_HYPERCALL_V2, tsc: int = 0
) -> bytes:
    """Like common/trace.c __trace_hypercall; args {index: value}, > 32 bits -> 64-bit."""
    w0, words = op, []
    for i, value in sorted((args or {}).items()):
        if value >> 32:
            w0 |= 2 << (20 + 2 * i)
            words += [value & 0xFFFFFFFF, value >> 32]
        else:
            w0 |= 1 << (20 + 2 * i)
            words.append(value)
    return t_rec(event, [w0] + words, tsc)


def switch(prev: tuple[int, int], nxt: tuple[int, int], tsc: int) -> bytes:
    """sched_switch_units: INFPREV, INFNEXT, SWITCH, then the two runstate changes."""
    return (
        t_rec(T.TRC_SCHED_SWITCH_INFPREV, (*prev, 1000), tsc)
        + t_rec(T.TRC_SCHED_SWITCH_INFNEXT, (*nxt, 0, 0xFFFFFFFF), tsc)
        + t_rec(T.TRC_SCHED_SWITCH, (*prev, *nxt), tsc)
        + runstate(prev, 0, 1, tsc)
        + runstate(nxt, 1, 0, tsc)
    )


def runstate(who: tuple[int, int], old: int, new: int, tsc: int) -> bytes:
    event = T.TRC_SCHED_RUNSTATE_CHANGE | (old << 8) | (new << 4)
    return t_rec(event, [(who[0] << 16) | who[1]], tsc)


def two_domain_trace() -> bytes:
    """cpu0: d1v0 makes 3 sched_op + 1 multicall (2 sub-calls), then d2v1 makes 2
    event_channel_op; cpu1: an HVM guest d3v0 does a vmmcall after a runstate change."""
    idle = (T.DOMID_IDLE, 0)
    cpu0 = window(
        0,
        switch(idle, (1, 0), 100),
        hypercall_v2(29, {0: 1}, tsc=110),
        hypercall_v2(29, {0: 1}, tsc=120),
        hypercall_v2(13, {1: 2}, tsc=130),
        hypercall_v2(24, {0: 3, 1: 0}, event=T.TRC_PV_HYPERCALL_SUBCALL, tsc=131),
        hypercall_v2(1, {1: 5}, event=T.TRC_PV_HYPERCALL_SUBCALL, tsc=132),
        hypercall_v2(29, {0: 1}, tsc=140),
    )
    cpu1 = window(1, runstate((3, 0), 1, 0, 150), t_rec(T.TRC_HVM_VMMCALL, [34]))
    cpu0b = window(
        0, switch((1, 0), (2, 1), 200), hypercall_v2(32, tsc=210), hypercall_v2(32, tsc=220)
    )
    return cpu0 + cpu1 + cpu0b


# -- decoding -------------------------------------------------------------------------------


def test_record_layout_with_and_without_tsc():
    data = window(2, t_rec(0x0008F0AB, (1, 2, 3), tsc=(7 << 32) | 9), t_rec(0x00082012, (36,)))
    recs = list(decode(data))
    assert [r.name for r in recs] == [
        "TRC_TRACE_CPU_CHANGE",
        "TRC_HVM_0x008f0ab",
        "TRC_HVM_VMMCALL",
    ]
    head, first, second = recs
    assert (head.offset, head.cpu, head.fields) == (0, 2, {"cpu": 2, "window_size": 32})
    assert (first.offset, first.cpu, first.tsc, first.extra) == (12, 2, (7 << 32) | 9, (1, 2, 3))
    assert first.class_name == "TRC_HVM"
    assert (second.offset, second.tsc, second.extra) == (36, None, (36,))
    assert second.fields == {"op": 36, "hypercall": "domctl"}


def test_records_are_ordinary_frozen_dataclasses():
    rec = list(decode(two_domain_trace()))[3]
    assert rec == TraceRecord(
        **{f.name: getattr(rec, f.name) for f in dataclasses.fields(TraceRecord)}
    )
    assert repr(rec).startswith("TraceRecord(offset=")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.cpu = 5


def test_two_domains_attributed_through_scheduler_switches():
    recs = [r for r in decode(two_domain_trace()) if r.name.startswith("TRC_PV_HYPERCALL")]
    got = [(r.cpu, r.domid, r.vcpu, r.fields["hypercall"]) for r in recs]
    assert got == [
        (0, 1, 0, "sched_op"),
        (0, 1, 0, "sched_op"),
        (0, 1, 0, "multicall"),
        (0, 1, 0, "vcpu_op"),
        (0, 1, 0, "mmu_update"),
        (0, 1, 0, "sched_op"),
        (0, 2, 1, "event_channel_op"),
        (0, 2, 1, "event_channel_op"),
    ]
    vmm = [r for r in decode(two_domain_trace()) if r.event == T.TRC_HVM_VMMCALL]
    assert [(r.cpu, r.domid, r.vcpu, r.fields["hypercall"]) for r in vmm] == [(1, 3, 0, "hvm_op")]


def test_scheduler_records_decoded_and_attributed_to_the_vcpu_before_them():
    recs = list(decode(two_domain_trace()))
    sw = [r for r in recs if r.event == T.TRC_SCHED_SWITCH]
    assert sw[1].fields == {"prev_domid": 1, "prev_vcpu": 0, "next_domid": 2, "next_vcpu": 1}
    assert (sw[1].domid, sw[1].vcpu) == (1, 0)
    infnext = [r for r in recs if r.event == T.TRC_SCHED_SWITCH_INFNEXT][0]
    assert infnext.fields == {"domid": 1, "vcpu": 0, "runnable_ns": 0, "slice_ns": -1}
    rs = [r for r in recs if r.name == "TRC_SCHED_RUNSTATE_CHANGE"]
    assert rs[0].fields == {
        "domid": T.DOMID_IDLE,
        "vcpu": 0,
        "old_state": "running",
        "new_state": "runnable",
    }
    assert rs[1].fields["new_state"] == "running"


def test_hypercall_v2_arguments():
    rec = list(decode(window(0, hypercall_v2(20, {0: 7, 2: 0x1_0000_0002}))))[1]
    assert rec.fields == {
        "op": 20,
        "hypercall": "grant_table_op",
        "args": [7, None, 0x1_0000_0002, None, None, None],
    }
    reserved = t_rec(T.TRC_PV_HYPERCALL_V2, [24 | (3 << 22), 1, 2], 5)
    assert list(decode(window(0, reserved)))[1].fields["reserved_arg_code"] == 1
    # fewer words than the present-bits promise (hostile): missing args stay None
    short = t_rec(T.TRC_PV_HYPERCALL_V2, [24 | (1 << 20) | (2 << 22)], 5)
    assert list(decode(window(0, short)))[1].fields["args"] == [None] * 6


def test_lost_records_and_wrap_record():
    lost = t_rec(T.TRC_LOST_RECORDS, (12, (4 << 16) | 5, 0x1234, 1), tsc=500)
    wrap = t_rec(T.TRC_TRACE_WRAP_BUFFER, (0,) * 6)
    after = hypercall_v2(17, tsc=510)
    recs = list(decode(window(3, wrap, lost, after)))
    assert recs[1].name == "TRC_TRACE_WRAP_BUFFER"
    assert recs[2].fields == {"lost": 12, "domid": 5, "vcpu": 4, "first_tsc": (1 << 32) | 0x1234}
    assert (recs[2].domid, recs[2].vcpu) == (5, 4)
    assert (recs[3].domid, recs[3].vcpu) == (5, 4)
    assert summarize(recs).lost_records == 12


def test_large_window_records_straddle_unpack_chunks():
    # 6-word records across a 42000-word window: the decoder's 16384-word chunks split some
    body = [hypercall_v2(29, {0: k, 1: k + 1}, tsc=k) for k in range(7000)]
    recs = list(decode(window(1, *body) + window(1, hypercall_v2(17, tsc=9))))
    assert len(recs) == 7003
    calls = recs[1:7001]
    assert [r.offset for r in calls] == [12 + 24 * k for k in range(7000)]
    assert all(r.tsc == k and r.fields["args"][:2] == [k, k + 1] for k, r in enumerate(calls))
    assert recs[-1].fields["hypercall"] == "xen_version"


def test_attribution_follows_each_cpu_across_windows():
    recs = list(decode(two_domain_trace()))
    cpu1 = [r for r in recs if r.cpu == 1]
    # cpu1 never saw a switch before its runstate record: unknown until then
    assert (cpu1[1].domid, cpu1[2].domid) == (None, 3)


def test_summary_counts_per_domain():
    summary = summarize(decode(two_domain_trace()))
    rows = [(h.domain, h.source, h.name, h.count) for h in summary.hypercalls]
    assert rows == [
        ("d1", "pv", "sched_op", 3),
        ("d1", "multicall", "mmu_update", 1),
        ("d1", "multicall", "vcpu_op", 1),
        ("d1", "pv", "multicall", 1),
        ("d2", "pv", "event_channel_op", 2),
        ("d3", "hvm", "hvm_op", 1),
    ]
    assert (summary.windows, summary.cpus, summary.first_tsc, summary.last_tsc) == (
        3,
        (0, 1),
        100,
        220,
    )
    assert summary.unattributed == 0 and summary.errors == ()
    assert summary.events_by_class == {"TRC_HVM": 1, "TRC_PV": 8, "TRC_SCHED": 11}
    assert summarize_file(two_domain_trace()) == summary


def test_summary_names_unattributed_and_idle():
    data = window(
        0, hypercall_v2(29, tsc=1), runstate((T.DOMID_IDLE, 0), 1, 0, 2), hypercall_v2(29, tsc=3)
    )
    summary = summarize_file(data)
    assert [(h.domain, h.count) for h in summary.hypercalls] == [("idle", 1), ("?", 1)]
    assert summary.unattributed == 1


def test_short_reads_from_a_pipe_give_the_same_records():
    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.data, self.pos = data, 0

        def readable(self):
            return True

        def read(self, n=-1):
            chunk = self.data[self.pos : self.pos + min(n, 7)]
            self.pos += len(chunk)
            return chunk

    data = two_domain_trace()
    assert list(TraceDecoder(Trickle(data))) == list(decode(data))


def test_decode_accepts_a_path(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(two_domain_trace())
    assert list(decode(path)) == list(decode(two_domain_trace()))
    assert list(decode(str(path))) == list(decode(path.read_bytes()))


# -- hostile input --------------------------------------------------------------------------


def _decode_all(data: bytes, strict: bool = True):
    out = []
    try:
        for rec in TraceDecoder(io.BytesIO(data), strict=strict):
            out.append(rec)
    except TraceFormatError as exc:
        return out, exc
    return out, None


@pytest.mark.timeout(120)
def test_truncation_at_every_offset_keeps_the_prefix():
    data = two_domain_trace()
    full = list(decode(data))
    boundaries = {0}
    pos = 0
    while pos < len(data):
        pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        boundaries.add(pos)
    for cut in range(len(data)):
        recs, err = _decode_all(data[:cut])
        assert recs == full[: len(recs)], cut
        if cut in boundaries:
            assert err is None, cut
        else:
            assert isinstance(err, TraceFormatError) and isinstance(err, XenvmiError), cut
            assert err.offset <= cut and err.records == len(recs) - sum(
                r.event == T.TRC_TRACE_CPU_CHANGE for r in recs
            )
        lenient = TraceDecoder(io.BytesIO(data[:cut]), strict=False)
        assert list(lenient) == recs and len(lenient.errors) == (cut not in boundaries)


@pytest.mark.timeout(120)
def test_garbage_never_raises_anything_else():
    rng = random.Random(4217)
    samples = [
        b"\0" * 4096,
        b"\xff" * 4096,
        bytes(range(256)) * 8,
        struct.pack("<III", T.CPU_CHANGE_HEADER, 0, 0) * 1000,  # empty windows
        struct.pack("<III", T.CPU_CHANGE_HEADER, 0, 0x7FFF_FFFC),  # impossible size
        struct.pack("<III", T.CPU_CHANGE_HEADER, 0, 0x0FFF_0000) + b"\1" * 99,
        struct.pack("<III", T.CPU_CHANGE_HEADER, 1 << 20, 4) + b"\0" * 4,
        struct.pack("<III", T.CPU_CHANGE_HEADER, 0, 6) + b"\0" * 6,
    ]
    samples += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 600))) for _ in range(200)]
    good = two_domain_trace()
    for _ in range(200):  # flip bytes of a valid file
        buf = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            buf[rng.randrange(len(buf))] = rng.getrandbits(8)
        samples.append(bytes(buf))
    for data in samples:
        _decode_all(data)
        lenient = TraceDecoder(io.BytesIO(data), strict=False)
        list(lenient)
        summarize_file(data)
        assert lenient.error_count >= len(lenient.errors)


def test_empty_windows_are_bounded():
    data = struct.pack("<III", T.CPU_CHANGE_HEADER, 0, 0) * 10000
    recs = list(decode(data))
    assert len(recs) == 10000 and all(r.event == T.TRC_TRACE_CPU_CHANGE for r in recs)


def test_record_running_past_its_window():
    bad = window(0, hypercall_v2(29, tsc=1))[:-4]  # last extra word cut, size still says so
    bad = struct.pack("<III", T.CPU_CHANGE_HEADER, 0, len(bad) - 12) + bad[12:]
    data = bad + window(1, hypercall_v2(17, tsc=2))
    recs, err = _decode_all(data)
    assert err is not None and err.offset == 12 and "past the end of its window" in str(err)
    lenient = TraceDecoder(io.BytesIO(data), strict=False)
    names = [r.name for r in lenient]
    assert names.count("TRC_PV_HYPERCALL_V2") == 1 and len(lenient.errors) == 1


def test_resync_after_garbage_between_windows():
    data = window(0, hypercall_v2(29, tsc=1)) + b"\x55" * 40 + window(1, hypercall_v2(17, tsc=2))
    recs, err = _decode_all(data)
    assert err is not None and err.offset == 12 + 16
    assert "expected a cpu_change window header" in str(err)
    lenient = TraceDecoder(io.BytesIO(data), strict=False)
    got = [(r.cpu, r.fields.get("hypercall")) for r in lenient if r.fields.get("hypercall")]
    assert got == [(0, "sched_op"), (1, "xen_version")]
    assert lenient.errors[0].offset == 28
    summary = summarize_file(data)
    assert len(summary.errors) == 1 and summary.records == 2


def test_error_is_a_xenvmi_error_with_offset_and_count():
    err = TraceFormatError("bad", 40, 3)
    assert isinstance(err, XenvmiError) and (err.offset, err.records) == (40, 3)
    assert "40" in str(err) and err.exit_code == 7


# -- tables against the installed Xen headers ------------------------------------------


def _header(path: Path) -> str:
    assert path.exists(), f"{path} is missing from the fixtures"
    return path.read_text()


def trace_h_constants(release: str = "4.17") -> dict[str, int]:
    """Every object-like TRC_* #define of ``release``'s trace.h, evaluated."""
    defs = {
        m.group(1): m.group(2)
        for m in re.finditer(
            r"^#define\s+(TRC_\w+)\s+([^/\n]+?)\s*(?:/\*.*)?$",
            _header(HEADERS / release / "trace.h"),
            re.M,
        )
    }
    values: dict[str, int] = {}

    def value(name: str) -> int:
        if name not in values:
            expr = re.sub(r"\bTRC_\w+\b", lambda m: str(value(m.group(0))), defs[name])
            values[name] = eval(re.sub(r"(\d)UL\b", r"\1", expr), {})
        return values[name]

    for name, expr in defs.items():
        if re.fullmatch(r"[\w\s()+|<>x-]+", expr) and "##" not in expr:
            try:
                value(name)
            except (KeyError, SyntaxError, NameError):
                pass  # function-like helpers such as TRC_SCHED_CLASS_EVT
    return values


@pytest.mark.parametrize("release", sorted(T.EVENT_NAMES_BY_RELEASE))
def test_event_names_match_trace_h(release):
    consts = trace_h_constants(release)
    names = T.event_names(release)
    assert len(consts) > 150, "parsed too few TRC_ constants from trace.h"
    for value, name in names.items():
        assert consts.get(name) == value, f"{name}: table 0x{value:08x}, trace.h {consts.get(name)}"
    for value, name in {**T.CLASS_NAMES, **T.SUBCLASS_NAMES}.items():
        assert consts[name] == value, name
    events = {
        n
        for n, v in consts.items()
        if v > 0xFFFF
        and v & 0xFFF
        and n not in ("TRC_ALL", "TRC_PV_HYPERCALL_V2_ARG_MASK", "TRC_HD_CYCLE_FLAG")
    }
    assert events == set(names.values()), (
        f"trace.h events missing from the table: {sorted(events - set(names.values()))}"
    )
    ours = {attr for attr in dir(T) if attr.startswith("TRC_")}
    assert ours - set(consts) == {"TRC_HD_EVENT_MASK"}  # trace.h has it as TRC_HD_TO_EVENT()
    for attr in ours & set(consts):
        assert getattr(T, attr) == consts[attr], attr
    text = _header(HEADERS / release / "trace.h")
    assert re.search(r"#define TRACE_EXTRA_SHIFT 28\b", text)
    assert re.search(r"#define TRACE_EXTRA_MAX\s+7\b", text)
    assert "#define TRC_HD_EXTRA(x)    (((x)>>TRACE_EXTRA_SHIFT)&TRACE_EXTRA_MAX)" in text
    assert "#define TRC_HD_TO_EVENT(x) ((x)&0x0fffffff)" in text
    assert T.TRC_HD_EVENT_MASK == 0x0FFFFFFF
    assert T.CPU_CHANGE_HEADER == 0x2001F003  # the value xentrace.c writes (no TSC, 2 words)


def test_event_names_per_release_differ_only_in_the_hvm_exit_split():
    assert set(T.EVENT_NAMES_BY_RELEASE) == set(releases.KNOWN)
    old, new = T.event_names("4.17"), T.event_names("4.20")
    assert {k: v for k, v in new.items() if old.get(k) != v} == {
        0x00081002: "TRC_HVM_VMX_EXIT",
        0x00081102: "TRC_HVM_VMX_EXIT64",
        0x00081003: "TRC_HVM_SVM_EXIT",
        0x00081103: "TRC_HVM_SVM_EXIT64",
    }
    assert set(old) - set(new) == set()
    assert T.event_name(0x00081002) == T.event_name(0x00081002, "4.17") == "TRC_HVM_VMEXIT"
    assert T.event_name(0x00081002 | T.TRC_HVM_NESTEDFLAG, "4.20") == "TRC_HVM_VMX_EXIT|NESTED"
    assert T.event_name(0x00081003, "4.17") == "TRC_HVM_0x0081003"
    assert T.event_name(0x00081003, "4.18") == "TRC_HVM_0x0081003"  # the split came in 4.19
    assert T.event_name(0x00081003, "4.19") == "TRC_HVM_SVM_EXIT"
    with pytest.raises(UsageError):
        T.event_name(0x00081002, "4.21")


def test_decoder_names_events_by_the_release_asked_for():
    data = window(0, t_rec(0x00081003, (0x7B,), tsc=10))
    assert [r.name for r in decode(data)][-1] == "TRC_HVM_0x0081003"
    assert [r.name for r in decode(data, release="4.20")][-1] == "TRC_HVM_SVM_EXIT"
    with pytest.raises(UsageError):
        TraceDecoder(io.BytesIO(data), release="9.9")


def test_hypercall_fallback_table_matches_xen_h():
    defs = dict(
        (m.group(1), int(m.group(2)))
        for m in re.finditer(r"^#define __HYPERVISOR_(\w+)\s+(\d+)\b", _header(XEN_H), re.M)
    )
    for number, name in T.HYPERCALL_NAMES.items():
        if number < 48 or number > 49:  # 48/49 are x86's names for arch_0/arch_1
            assert defs[name] == number, name
    assert set(range(56)) - set(T.HYPERCALL_NAMES) == set(range(43, 48)) | {11}


@pytest.mark.parametrize(
    "event,name",
    [
        (0x00021001 | (2 << 8) | (1 << 4), "TRC_SCHED_RUNSTATE_CHANGE"),
        (0x00082012 | 0x400, "TRC_HVM_VMMCALL|NESTED"),
        (0x00201003 | 0x100, "TRC_PV_TRAP64"),
        (0x0040F006 | 0x200, "TRC_SHADOW_FIXUP"),
        (0x00022000 | (1 << 9) | 5, "TRC_SCHED_CLASS_EVT(CSCHED2,5)"),
        (0x0300F001, "TRC_CLASS_0x300_0x300f001"),
    ],
)
def test_event_name_variants(event, name):
    assert T.event_name(event) == name
