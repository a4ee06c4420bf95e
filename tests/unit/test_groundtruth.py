"""The lab guests' console reports parse exactly, and garbage never counts as a report."""

from xenvmi.lab.groundtruth import (
    GuestProcess,
    kaslr_slide,
    last_boot,
    latest_begun_seq,
    latest_report,
    parse_reports,
)

LOG = """\
[    0.000000] Linux version 6.1.0-50-amd64
XENVMI-INIT-DONE xvm-pvh1
XENVMI-REPORT-BEGIN xvm-pvh1 1 3.52
XENVMI-RELEASE 6.1.0-50-amd64
XENVMI-MODULES dummy
XENVMI-KTEXT ffffffffb5e00000
XENVMI-PS 1 0 (init)
XENVMI-PS 2 0 (kthreadd)
XENVMI-PS 71 1 (xvm-alpha)
XENVMI-PS 13 2 (rcu_tasks_trace_kthread)
XENVMI-REPORT-END xvm-pvh1 1
XENVMI-REPORT-BEGIN xvm-pvh1 2 13.60
XENVMI-PS 1 0 (init)
"""


def test_complete_reports_only():
    reports = parse_reports(LOG)
    assert len(reports) == 1
    r = reports[0]
    assert (r.name, r.seq, r.uptime, r.release) == ("xvm-pvh1", 1, 3.52, "6.1.0-50-amd64")
    assert r.modules == ["dummy"]
    assert kaslr_slide(r) == 0x34E00000
    assert r.processes == [
        GuestProcess(1, 0, "init"),
        GuestProcess(2, 0, "kthreadd"),
        GuestProcess(71, 1, "xvm-alpha"),
        GuestProcess(13, 2, "rcu_tasks_trace_kthread"),
    ]  # full kthread name


def test_mismatched_end_is_dropped():
    text = LOG.replace("XENVMI-REPORT-END xvm-pvh1 1", "XENVMI-REPORT-END xvm-pvh1 7")
    assert parse_reports(text) == []


def test_garbage_lines_and_crlf():
    text = "\x00\x00garbage\r\nXENVMI-REPORT-BEGIN a b c\r\n" + LOG.replace("\n", "\r\n")
    assert latest_report(text).processes[-2].comm == "xvm-alpha"
    assert parse_reports("XENVMI-PS 1 0 (init)\nXENVMI-REPORT-END x 1\n") == []


def test_last_boot_drops_previous_boots():
    old = LOG.replace("xvm-alpha", "old-proc")
    text = old + "XENVMI-REPORT-END xvm-pvh1 2\n" + LOG
    assert [p.comm for p in latest_report(last_boot(text)).processes][-2] == "xvm-alpha"
    assert len(parse_reports(last_boot(text))) == 1


def test_a_report_under_way_counts_as_begun():
    """Report 2 has begun but not ended: a request now is answered by report 3, not 2."""
    assert parse_reports(LOG)[-1].seq == 1
    assert latest_begun_seq(LOG) == 2
    assert latest_begun_seq("XENVMI-REPORT-BEGIN x y\nnoise\n") == -1
    assert latest_begun_seq("") == -1


def test_arm64_report_slides_from_stext():
    """arm64's kallsyms has no _text: the slide comes from _stext (an empty KTEXT line)."""
    text = LOG.replace("6.1.0-50-amd64", "6.1.0-50-arm64").replace(
        "XENVMI-KTEXT ffffffffb5e00000", "XENVMI-KTEXT \nXENVMI-KSTEXT ffff800008010000"
    )
    r = latest_report(text)
    assert (r.ktext, r.kstext, kaslr_slide(r)) == (None, 0xFFFF800008010000, 0)
    slid = latest_report(text.replace("ffff800008010000", "ffffcc760aa10000"))
    assert kaslr_slide(slid) == 0xFFFFCC760AA10000 - 0xFFFF800008010000
