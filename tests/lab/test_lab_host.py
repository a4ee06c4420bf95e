"""The lab is a real Xen 4.17 host whose guests run what they say they run."""

from __future__ import annotations

import subprocess
import time

import pytest

from xenvmi.lab import dom0
from xenvmi.lab.groundtruth import KMSG_LINE, kaslr_slide

from .conftest import GUESTS, LAB_GUESTS, expected_release, ground_truth, randomized, xl

NAMED = {"xvm-alpha", "xvm-beta", "xvm-gamma", "xvm-parent", "xvm-child"}


def test_xen_417_with_dom0():
    info = xl("info")
    fields = {k.strip(): v for k, v in (line.split(":", 1) for line in info.splitlines()
                                         if ":" in line)}
    assert fields["xen_major"].strip() == "4" and fields["xen_minor"].strip() == "17"
    assert "hvm" in fields["virt_caps"] and "pv" in fields["virt_caps"]
    assert "Domain-0" in xl("list")


def test_guests_of_each_type(guests):
    types = {name: guests[name].type for name in GUESTS}
    assert types == {name: kind for name, (kind, _) in LAB_GUESTS.items()}
    listed = xl("list")
    for name in GUESTS:
        assert name in listed
        assert guests[name].domid and guests[name].domid > 0


@pytest.mark.parametrize("name", GUESTS)
def test_guest_ground_truth(guests, name):
    report = ground_truth(name)
    comms = {p.comm for p in report.processes}
    assert NAMED <= comms, f"{name} lacks {NAMED - comms}"
    by_comm = {p.comm: p for p in report.processes}
    assert by_comm["xvm-child"].ppid == by_comm["xvm-parent"].pid
    assert [p.comm for p in report.processes if p.pid == 1] == ["init"]
    assert "dummy" in report.modules
    assert report.release == expected_release(name)
    assert KMSG_LINE.format(name=name) in dom0.read_console(name)


def test_kaslr_only_in_hvm(guests):
    """PVH boots past the randomizing stub; the HVM guests' direct boot runs it."""
    for name in GUESTS:
        if LAB_GUESTS[name][0] == "pv":
            continue  # a PV kernel reports no slide line
        slide = kaslr_slide(ground_truth(name))
        if randomized(name):
            assert slide not in (None, 0), f"HVM guest {name} is not randomized"
        else:
            assert slide == 0, f"{name} slid by {slide:#x}"


def test_no_guest_crashed_since_boot():
    """A triple fault or panic in a guest is a lab defect, not noise (README: the lab runs
    one emulated CPU because two corrupted guest vCPU state)."""
    dmesg = subprocess.run(["xl", "dmesg"], capture_output=True, text=True, timeout=60).stdout
    assert "Triple fault" not in dmesg
    for name in GUESTS:
        console = dom0.read_console(name)
        assert "Kernel panic" not in console


def test_integrity_check_with_guests_running():
    from xenvmi.lab import integrity

    result = integrity.check(runs=5, log=lambda m: None)
    assert result.guests_running >= 4
    assert result.ok, result.failures


def test_guests_are_idle_between_reports(guests):
    """An idle lab guest costs next to nothing: its init waits on its console for a report
    request (a report loop on a 10 s timer cost each guest 7-15 % of the one emulated CPU
    on a fast machine of the lab's kind, and 20-27 % on a slow one; waiting, ~1 %).

    A report costs seconds of emulated CPU, so the window holds none: every guest is asked
    for a report at once just before it, which restarts each one's timer (REPORT_EVERY in
    guest-init.sh, 600 s), and no report count may change during the 60 s window. (With a
    120 s timer, a slow machine took 388 s to collect six guests' reports, and the first
    guests' timers fired in the window.)"""
    window = 60.0
    before = {name: dom0.latest_seq(name) for name in GUESTS}
    assert all(dom0.request_report(name) for name in GUESTS)
    for name in GUESTS:
        assert dom0.wait_report(name, before[name]) is not None, f"{name} did not report"
    seqs = {name: dom0.latest_seq(name) for name in GUESTS}
    first = dom0.domain_table()
    time.sleep(window)
    second = dom0.domain_table()
    assert all(second[n][0] == first[n][0] for n in GUESTS), "a guest restarted"
    after = {n: ground_truth(n).seq for n in GUESTS}
    assert after == seqs, f"a guest reported during the window: {seqs} -> {after}"
    shares = {n: (second[n][1] - first[n][1]) / window for n in GUESTS}
    busy = {n: f"{share:.1%}" for n, share in shares.items() if share > 0.05}
    assert not busy, f"guests busy while idle: {busy} (all: {shares})"


def test_report_on_request(guests):
    """dom0 asks a guest for a report through its console's pty and gets a newer one."""
    for name in GUESTS:
        latest = ground_truth(name).seq
        report = dom0.fresh_report(name)
        assert report is not None and report.seq > latest, name
        assert {p.comm for p in report.processes} >= NAMED
