"""``xenvmi trace hypercalls`` through argparse with a fake tracer, and the preflight errors.

The fake replaces HypercallTracer (which needs bcc, root and a dom0): it replays decoded
events into the command's callback, honouring count and should_stop like the real poll loop.
"""

from __future__ import annotations

import json

import pytest
from test_trace_hypercalls import raw

from xenvmi import cli
from xenvmi.backends import hypercall_probe as P
from xenvmi.errors import PermissionDenied, Unavailable
from xenvmi.trace import hypercall_decode as D
from xenvmi.trace import hypercalls as H
from xenvmi.trace.hypercall_stats import stats_from_maps

REAL_TRACER = P.HypercallTracer
EVENTS = [
    raw(),
    raw(op=27, flags=0, ret=-38, latency_ns=900, args=[0, 1, 0, 0, 0]),
    raw(op=17, flags=0, ret=0x40011, args=[0] * 5, comm=b"python3", pid=99),
]


class FakeTracer:
    instances: list[FakeTracer] = []

    def __init__(self, filters=None, *, stream=True, stats=False, page_cnt=64, **kw):
        self.filters, self.stream, self.stats = filters, stream, stats
        self.page_cnt = page_cnt
        self.lost = 0
        self.closed = False
        FakeTracer.instances.append(self)

    def start(self):
        return self

    def poll(
        self, callback=None, *, duration=None, count=None, should_stop=lambda: False, timeout_ms=100
    ):
        self.polled = dict(duration=duration, count=count)
        seen = 0
        for r in EVENTS:
            e = D.decode_event(r, arch="x86_64-pv")
            if not self.filters.matches(e):
                continue
            if count is not None and seen >= count:
                return "count"
            seen += 1
            if self.stream and callback:
                callback(e)
        return "duration"

    def read_stats(self):
        assert self.stats
        return stats_from_maps(
            [((0, 36, 5, -3), (4, 4000, 2000))], [((0, 36, 2), 4)], arch="x86_64-pv"
        )

    def close(self):
        self.closed = True


@pytest.fixture
def run(monkeypatch, capsys):
    if "trace" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ("trace",))
    monkeypatch.setattr(P, "HypercallTracer", FakeTracer)
    FakeTracer.instances.clear()

    def _run(*argv):
        code = cli.main(["trace", "hypercalls", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    _run.capsys = capsys
    return _run


def test_lines_as_they_come(run):
    code, out, err = run("-d", "1")
    assert code == 0
    assert out.splitlines() == [
        "xl[812] domctl getdomaininfo(domid=7) -> -ESRCH (No such process) 12us",
        "xl[812] xsm_op(0x0, 0x1) -> -ENOSYS (Function not implemented) 900ns",
        "python3[99] xen_version() -> 0x40011 12us",
    ]
    assert err.startswith("Tracing privcmd calls for 1s... Hit Ctrl-C to end.")
    assert FakeTracer.instances[0].closed and FakeTracer.instances[0].stream
    assert FakeTracer.instances[0].page_cnt == 64


def test_filters_reach_the_tracer(run):
    code, out, err = run("--errors-only", "--comm", "xl", "--op", "xsm_op", "-n", "5")
    f = FakeTracer.instances[0].filters
    assert (f.errors_only, f.comm, f.op, f.pid) == (True, "xl", 27, None)
    assert out.splitlines() == [
        "xl[812] xsm_op(0x0, 0x1) -> -ENOSYS (Function not implemented) 900ns"
    ]
    assert "failed xsm_op calls of comm 'xl' until 5 calls" in err


def test_json_lines_and_count(run):
    code, out, _ = run("--json", "--count", "2")
    objs = [json.loads(line) for line in out.splitlines()]
    assert len(objs) == 2 and objs[0]["subop_name"] == "getdomaininfo"
    assert objs[1]["error"] == "ENOSYS" and FakeTracer.instances[0].polled["count"] == 2


def test_summary_counts_in_kernel_without_streaming(run):
    code, out, _ = run("--summary", "-d", "2")
    t = FakeTracer.instances[0]
    assert (t.stream, t.stats) == (False, True)
    assert "domctl getdomaininfo" in out and "-ESRCH (No such process)" in out


def test_summary_with_count_streams_and_counts_events(run):
    code, out, _ = run("--summary", "--hist", "-n", "2")
    t = FakeTracer.instances[0]
    assert (t.stream, t.stats) == (True, False)
    assert "xl[812]" not in out  # summarised, not printed
    assert "xsm_op" in out and "call = domctl" in out and "usecs" in out


def test_json_summary_line(run):
    code, out, _ = run("--json", "--hist", "-d", "1")
    obj = json.loads(out.strip().splitlines()[-1])
    assert obj["summary"]["ops"][0]["name"] == "domctl"
    assert "latency_usecs_log2" in obj["summary"]


def test_ebpf_prints_the_program_without_bcc(run):
    code, out, _ = run("--ebpf", "--pid", "7", "--op", "domctl:getdomaininfo")
    assert code == 0 and "#define FILTER_PID 7" in out and "#define FILTER_SUBOP 5" in out
    assert "int trace_return(struct pt_regs *ctx)" in out and not FakeTracer.instances


@pytest.mark.parametrize(
    "argv,code,msg",
    [
        (["--op", "nosuch"], 3, "neither a Xen 4.17 hypercall"),
        (["--op", "xen_version:1"], 2, "no command table"),
        (["--pid", "0"], 2, "must be positive"),
        (["--duration", "-1"], 2, "must be positive"),
        (["--comm", ""], 2, "non-empty"),
        (["--buffer-pages", "48"], 2, "power of two"),
    ],
)
def test_usage_errors_are_one_line(run, argv, code, msg):
    try:
        rc, _, err = run(*argv)
    except SystemExit as exc:  # argparse's own checks exit from parse_args
        rc, err = exc.code, run.capsys.readouterr().err
    assert rc == code and msg in err and len(err.strip().splitlines()) == 1


def test_help_has_examples(run, capsys):
    with pytest.raises(SystemExit):
        cli.main(["trace", "hypercalls", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--errors-only" in out and "-> -ESRCH" in out


# ----------------------------------------------------------------------------- preflight

GOOD = H.HostFacts(
    bcc_error=None,
    capeff=1 << H.CAP_SYS_ADMIN,
    release="6.1.0-50-amd64",
    headers=True,
    probe_found=True,
    privcmd_device=True,
)


def facts(**kw):
    return H.HostFacts(**{**GOOD.__dict__, **kw})


def test_preflight_passes_on_a_good_dom0():
    H.preflight(GOOD)
    H.preflight(facts(capeff=(1 << H.CAP_BPF) | (1 << H.CAP_PERFMON)))


@pytest.mark.parametrize(
    "kw,exc,msg",
    [
        (dict(bcc_error="No module named 'bcc'"), Unavailable, "apt install python3-bpfcc"),
        (dict(capeff=0), PermissionDenied, "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"),
        (dict(capeff=1 << H.CAP_BPF), PermissionDenied, "needs CAP_PERFMON (or"),
        (dict(headers=False), Unavailable, "apt install linux-headers-6.1.0-50-amd64"),
        (dict(probe_found=False), Unavailable, "modprobe xen-privcmd"),
    ],
)
def test_preflight_names_the_fix(kw, exc, msg):
    with pytest.raises(exc) as info:
        H.preflight(facts(**kw))
    assert msg in str(info.value) and "\n" not in str(info.value)


def test_missing_privcmd_outside_xen(monkeypatch):
    monkeypatch.setattr(H.os.path, "isdir", lambda p: False)
    with pytest.raises(Unavailable, match="not a Xen domain"):
        H.preflight(facts(probe_found=False, privcmd_device=False))


def test_no_bcc_is_exit_5_one_line(run, monkeypatch):
    monkeypatch.setattr(P, "HypercallTracer", REAL_TRACER)
    monkeypatch.setattr(P, "gather_facts", lambda: facts(bcc_error="no bcc"))
    code, out, err = run("-d", "1")
    assert code == 5 and err.strip() == (
        "xenvmi: error: trace: bcc is not installed (Debian: "
        "apt install python3-bpfcc bpfcc-tools; a venv "
        "needs --system-site-packages to see it)"
    )


def test_bpf_errors_are_classified(monkeypatch):
    monkeypatch.setattr(H, "_lockdown", lambda: "integrity")
    e = H.bpf_error(
        Exception("Failed to load BPF program b'trace_entry': Operation not permitted"), "load"
    )
    assert isinstance(e, PermissionDenied) and "lockdown is 'integrity'" in str(e)
    e = H.bpf_error(Exception("Failed to compile BPF module <text>"), "compile")
    assert isinstance(e, Unavailable) and "did not compile" in str(e)
    e = H.bpf_error(
        Exception("Failed to attach BPF program b'trace_entry' to kprobe\nmore"), "attach"
    )
    assert isinstance(e, Unavailable) and "\n" not in str(e)


def test_kallsyms_pattern():
    assert H._KALLSYMS_LINE.search("ffffffffc07eaa00 t privcmd_ioctl\t[xen_privcmd]\n")
    assert H._KALLSYMS_LINE.search("ffffffff81000000 T privcmd_ioctl\n")
    assert not H._KALLSYMS_LINE.search("ffffffff81000000 t privcmd_ioctl_hypercall\n")


def test_bpf_source_ships_in_the_package():
    from importlib import resources

    assert resources.files("xenvmi.trace").joinpath("hypercalls.bpf.c").is_file()
    assert H.bpf_source().lstrip().startswith("/*")
