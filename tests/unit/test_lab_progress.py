"""The lab waits on progress, not on a clock one machine meets (xenvmi/lab/progress.py)."""

from xenvmi.lab import dom0
from xenvmi.lab.progress import wait_progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_slow_boot_that_keeps_advancing_is_waited_for():
    """A boot that takes 20x the stall limit still succeeds while it advances."""
    clock = FakeClock()
    out = wait_progress(
        lambda: clock.now >= 2000,
        lambda: int(clock.now // 60),
        stall=100,
        poll=3,
        clock=clock,
        sleep=clock.sleep,
    )
    assert out.done and out.elapsed >= 2000 and out.reason == ""


def test_boot_that_stops_advancing_fails_after_the_stall_limit():
    clock = FakeClock()
    out = wait_progress(
        lambda: False,
        lambda: min(clock.now, 50.0) // 10,
        stall=100,
        poll=3,
        clock=clock,
        sleep=clock.sleep,
    )
    assert not out.done and out.reason == "stalled"
    assert 150 <= out.elapsed < 160 and out.idle >= 100


def test_abort_ends_the_wait_at_once_with_its_reason():
    clock = FakeClock()
    out = wait_progress(
        lambda: False,
        lambda: clock.now,
        stall=100,
        clock=clock,
        sleep=clock.sleep,
        abort=lambda: "gone" if clock.now > 9 else None,
    )
    assert out.reason == "aborted: gone" and out.elapsed < 15


def test_cap_ends_a_boot_that_advances_forever():
    clock = FakeClock()
    out = wait_progress(
        lambda: False, lambda: clock.now, stall=100, cap=500, poll=3, clock=clock, sleep=clock.sleep
    )
    assert out.reason == "cap" and 500 <= out.elapsed < 510


def test_notes_come_at_their_interval():
    clock = FakeClock()
    notes = []
    wait_progress(
        lambda: clock.now >= 100,
        lambda: clock.now,
        stall=50,
        poll=1,
        clock=clock,
        sleep=clock.sleep,
        note=lambda e, i: notes.append(e),
        note_every=30,
    )
    assert [round(n) for n in notes] == [30, 60, 90]


def test_xl_list_gives_domids_and_cpu_time():
    text = (
        "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
        "Domain-0                                     0  1536     1     r-----     812.4\n"
        "xvm-pvh1                                     7   256     1     -b----      33.0\n"
        "(null)                                       9     0     1     --p--d       0.0\n"
    )
    table = dom0.parse_xl_list(text)
    assert table["Domain-0"] == (0, 812.4)
    assert table["xvm-pvh1"] == (7, 33.0)
    assert table["(null)"] == (9, 0.0)


def test_broken_boot_signs():
    from xenvmi.lab.dom0 import broken_sign

    assert broken_sign("[ 1.0] ok\n[ 118.0] watchdog: BUG: soft lockup - CPU#0 stuck") in (
        "soft lockup",
        "BUG:",
    )
    assert broken_sign("[ 1.0] Linux version 6.12\nXENVMI-REPORT-BEGIN x 1") is None


def test_newest_guest_starter_stops_the_one_before(tmp_path, monkeypatch):
    """`lab up` interrupted on the host leaves its starter in dom0; the next one must not
    race it (two starters made xl create fail four times in a row)."""
    import subprocess
    import sys
    import time

    from xenvmi.lab import dom0

    lock = tmp_path / "start.pid"
    monkeypatch.setattr(dom0, "START_LOCK", lock)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time, xenvmi.lab.dom0 as d; from pathlib import Path;"
            f"d.START_LOCK = Path({str(lock)!r}); d._take_start_lock(print); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(100):
            if lock.exists() and lock.read_text().strip() == str(child.pid):
                break
            time.sleep(0.1)
        said = []
        dom0._take_start_lock(said.append)
        assert child.wait(timeout=10) != 0  # stopped
        assert said == [f"stopping the earlier guest starter (pid {child.pid})"]
        assert lock.read_text().strip() == str(__import__("os").getpid())
    finally:
        child.kill()
        for fd in dom0._start_lock_fds:
            __import__("os").close(fd)
        dom0._start_lock_fds.clear()


def test_console_lines_reach_the_terminal_without_escapes():
    from xenvmi.lab.progress import printable

    line = "\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mgetty.target\x1b[0m\x07\x1b]0;x"
    assert printable(line) == "  OK  ] Reached target getty.target0;x"
