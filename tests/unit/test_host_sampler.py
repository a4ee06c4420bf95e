"""HostSampler finds Xen's daemons once and re-checks them cheaply: a real process named
like a daemon (a copy of sleep), on this machine's real /proc."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytest.importorskip("psutil")

from xenvmi.domains import HostSampler

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake_daemon(tmp_path):
    exe = tmp_path / "xenconsoled"
    shutil.copy(shutil.which("sleep"), exe)
    proc = subprocess.Popen([str(exe), "600"])
    yield proc
    proc.kill()
    proc.wait()


def _console(sample):
    return [d for d in sample.daemons if d.name == "xenconsoled"]


def test_daemons_scanned_once_then_rechecked(fake_daemon):
    s = HostSampler(interval=0.01)
    first = _console(s.sample())
    assert [(d.pid, d.alive) for d in first] == [(fake_daemon.pid, True)]
    assert first[0].cmdline.endswith("xenconsoled 600")
    _console(s.sample())
    assert s.scans == 1  # the second sample re-checked the known process only
    fake_daemon.kill()
    fake_daemon.wait()
    gone = _console(s.sample())
    assert s.scans == 2  # a known daemon exited: scanned again at once
    assert [(d.pid, d.alive) for d in gone] == [(None, False)]


def test_rescan_interval(fake_daemon):
    s = HostSampler(interval=0.01, rescan=0)
    for _ in range(3):
        assert _console(s.sample())[0].pid == fake_daemon.pid
    assert s.scans == 3


def test_one_liveness_check_per_daemon_per_sample(fake_daemon, monkeypatch):
    """is_running builds a second Process and re-reads its stat: once per daemon a sample
    (the pid-reuse check), not again for the row."""
    import psutil

    s = HostSampler(interval=0.01)
    s.sample()
    daemons = len(s._known or {})
    calls = []
    real = psutil.Process.is_running
    monkeypatch.setattr(psutil.Process, "is_running", lambda p: calls.append(p.pid) or real(p))
    for _ in range(3):
        assert [d.alive for d in _console(s.sample())] == [True]
    assert s.scans == 1 and len(calls) == 3 * daemons, calls
