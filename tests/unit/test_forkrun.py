"""The lab tests' forked CLI runner gives what a new `python -m xenvmi` process gives."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.lab import forkrun
from tests.lab.forkrun import run_forked


def fresh(*argv):
    return subprocess.run(
        [sys.executable, "-m", "xenvmi", *argv], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["errno", "-13", "--json"],
        ["hypercall", "36"],
        ["errno", "nonsense"],
        ["frobnicate"],
        ["ps", "--help"],
    ],
)
def test_same_output_and_exit_code_as_a_new_process(argv):
    """Forked from a clean process (this one may have other tests' threads, and then
    run_forked would not fork)."""
    code = (
        "import json, sys; from tests.lab import forkrun; forkrun.preload(); "
        "assert forkrun.fork_safe(); r = forkrun.run_forked(json.loads(sys.argv[1]), 120); "
        "print(json.dumps([r.returncode, r.stdout, r.stderr]))"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", code, json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert res.returncode == 0, res.stderr
    want = fresh(*argv)
    assert json.loads(res.stdout) == [want.returncode, want.stdout, want.stderr]


def test_a_hung_command_is_killed_at_its_timeout(monkeypatch):
    import xenvmi.cli

    monkeypatch.setattr(forkrun, "fork_safe", lambda: True)  # other tests leave threads
    monkeypatch.setattr(xenvmi.cli, "main", lambda argv: time.sleep(60))
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_forked(["list"], timeout=1.0)
    assert time.monotonic() - t0 < 30


def test_an_uncaught_exception_is_a_traceback_and_exit_1(monkeypatch):
    import xenvmi.cli

    monkeypatch.setattr(forkrun, "fork_safe", lambda: True)

    def boom(argv):
        raise RuntimeError("boom")

    monkeypatch.setattr(xenvmi.cli, "main", boom)
    got = run_forked(["list"], timeout=60)
    assert got.returncode == 1 and "RuntimeError: boom" in got.stderr


def test_with_other_threads_alive_it_runs_a_new_process(monkeypatch):
    import xenvmi.cli

    monkeypatch.setattr(xenvmi.cli, "main", lambda argv: 99)  # a forked child would say 99
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=True)
    worker.start()
    try:
        got = run_forked(["errno", "-13"], timeout=120)
    finally:
        stop.set()
        worker.join()
    assert got.returncode == 0 and "EACCES" in got.stdout
