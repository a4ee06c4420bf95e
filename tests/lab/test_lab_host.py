"""The lab is a real Xen host, of its Debian release's Xen, whose guests run what they say
they run."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from xenvmi.lab import dom0, releases
from xenvmi.lab.groundtruth import (
    KMSG_LINE,
    kaslr_slide,
    last_boot,
    latest_begun_seq,
    parse_reports,
)
from xenvmi.lab.paths import DATA as LAB_DATA

from .conftest import ARM, GUESTS, LAB_GUESTS, expected_release, ground_truth, randomized, xl

NAMED = {"xvm-alpha", "xvm-beta", "xvm-gamma", "xvm-parent", "xvm-child"}


def dom0_release() -> releases.Release:
    """The lab release dom0 was built from, by the Debian codename it reports."""
    for line in open("/etc/os-release").read().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return releases.get(value.strip().strip('"'))
    raise AssertionError("/etc/os-release names no VERSION_CODENAME")


def test_xen_of_the_release_with_dom0():
    """Xen 4.17 on Debian 12, 4.20 on Debian 13 (xenvmi.lab.releases)."""
    info = xl("info")
    fields = {
        k.strip(): v for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)
    }
    want = dom0_release().xen
    assert f"{fields['xen_major'].strip()}.{fields['xen_minor'].strip()}" == want
    # Arm has one guest type (HVM to Xen, PVH to xl); x86 both PV and HVM
    assert "hvm" in fields["virt_caps"] and (ARM or "pv" in fields["virt_caps"])
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
    assert result.guests_running >= min(4, len(GUESTS))
    assert result.ok, result.failures


def _report_marks(name: str) -> tuple[int, int]:
    """(latest report begun, latest report complete): equal when none is under way."""
    text = last_boot(dom0.read_console(name))
    done = parse_reports(text)
    return latest_begun_seq(text), done[-1].seq if done else -1


IDLE_SHARE_MAX = 0.25
#: guest-init.sh's period between unrequested reports, in seconds
REPORT_EVERY = int(
    re.search(r"^REPORT_EVERY=(\d+)$", (LAB_DATA / "guest-init.sh").read_text(), re.M)[1]
)


def test_guests_are_idle_between_reports(guests):
    """An idle lab guest costs next to nothing: its init waits on its console for a report
    request instead of looping.

    A report costs seconds of emulated CPU, so each guest is measured over a window in
    which it wrote no report: none under way when the window opens, none begun in it.
    Reports come every 600 s (REPORT_EVERY in guest-init.sh) or when asked, so windows
    enough to span one such period (31 of 20 s) hold a free one for every guest whose
    reports take less than 9 minutes; a guest that reports in each of them reports far too
    often: that fails, and it is what catches a report loop (one on a 10 s timer cost each
    guest 7-27 % of the CPU). Three windows were not enough: on a loaded machine three
    guests' reports, requested by the tests just before, overlapped all three. Short
    windows waste less of a report's tail: with 60 s ones this test took 4 minutes in CI.
    (xl's CPU seconds have 0.1 s steps: 0.5 % of a 20 s window.)
    (Asking all six guests for a report first, to restart their timers, cost a slow
    machine 7 minutes.)

    The CPU share left for a waiting guest is timer ticks and kernel housekeeping, whose
    cost follows the emulation's speed: measured 0.7 % (PV) to 5.3 % (the 6.12 PVH guest)
    on one machine, so up to about 16 % on a machine 3x slower. A guest that spins takes
    most of the CPU dom0 leaves idle (over 50 %): IDLE_SHARE_MAX sits between the two."""
    window = 20.0
    tries = int(REPORT_EVERY // window) + 1
    shares: dict[str, float] = {}
    pending = set(GUESTS)
    for _ in range(tries):
        marks = {n: _report_marks(n) for n in pending}
        first = dom0.domain_table()
        time.sleep(window)
        second = dom0.domain_table()
        for n in sorted(pending):
            assert second[n][0] == first[n][0], f"{n} restarted"
            begun, done = marks[n]
            if begun == done and _report_marks(n) == (begun, done):
                shares[n] = (second[n][1] - first[n][1]) / window
                pending.discard(n)
        if not pending:
            break
    assert not pending, f"reported in each of {tries} windows of {window:.0f} s: {pending}"
    busy = {n: f"{share:.1%}" for n, share in shares.items() if share > IDLE_SHARE_MAX}
    assert not busy, f"guests busy while idle: {busy} (all: {shares})"


def test_report_on_request(guests):
    """dom0 asks a guest for a report through its console's pty and gets a newer one."""
    for name in GUESTS:
        latest = ground_truth(name).seq
        report = dom0.fresh_report(name)
        assert report is not None and report.seq > latest, name
        assert {p.comm for p in report.processes} >= NAMED
