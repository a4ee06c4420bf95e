"""The lab tests' forked CLI runner gives what a new `python -m xenvmi` process gives."""

import subprocess
import sys
import threading
import time

import pytest

from tests.lab.forkrun import preload, run_forked


def fresh(*argv):
    return subprocess.run([sys.executable, "-m", "xenvmi", *argv], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("argv", [["errno", "-13", "--json"], ["hypercall", "36"],
                                  ["errno", "nonsense"], ["frobnicate"], ["ps", "--help"]])
def test_same_output_and_exit_code_as_a_new_process(argv):
    preload()
    got, want = run_forked(argv, timeout=120), fresh(*argv)
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout,
                                                       want.stderr)


def test_a_hung_command_is_killed_at_its_timeout(monkeypatch):
    import xenvmi.cli
    monkeypatch.setattr(xenvmi.cli, "main", lambda argv: time.sleep(60))
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_forked(["list"], timeout=1.0)
    assert time.monotonic() - t0 < 30


def test_an_uncaught_exception_is_a_traceback_and_exit_1(monkeypatch):
    import xenvmi.cli

    def boom(argv):
        raise RuntimeError("boom")
    monkeypatch.setattr(xenvmi.cli, "main", boom)
    got = run_forked(["list"], timeout=60)
    assert got.returncode == 1 and "RuntimeError: boom" in got.stderr


def test_with_other_threads_alive_it_runs_a_new_process():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=True)
    worker.start()
    try:
        got = run_forked(["errno", "-13"], timeout=120)
    finally:
        stop.set()
        worker.join()
    assert got.returncode == 0 and "EACCES" in got.stdout
