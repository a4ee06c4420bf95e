"""The long-lived lab check counts only what appeared during the soak (xenvmi/lab/soak.py)."""

import subprocess

from xenvmi.lab import soak


def test_signs_are_counted_in_consoles_and_xens_log(monkeypatch):
    consoles = {"a": "ok\nBUG: soft lockup - CPU#0 stuck for 26s!\n", "b": "Kernel panic - x\n"}
    monkeypatch.setattr(soak.dom0, "read_console", lambda name: consoles[name])
    monkeypatch.setattr(
        soak.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(
            a, 0, "(XEN) d3v0 Triple fault - invoking HVM shutdown action\n", ""
        ),
    )
    got = soak.count_signs(["a", "b"])
    assert got == {
        "panic": 1,
        "oops": 0,
        "bug": 1,
        "soft_lockup": 1,
        "rcu_stall": 0,
        "triple_fault": 1,
        "domain_crash": 0,
    }


def test_a_soak_is_ok_only_without_any_bad_sign():
    good = soak.SoakResult(rounds=3, signs={"panic": 0, "soft_lockup": 0})
    assert good.ok
    assert not soak.SoakResult(rounds=0).ok
    assert not soak.SoakResult(rounds=3, signs={"soft_lockup": 1}).ok
    assert not soak.SoakResult(rounds=3, missed_reports=["round 2: xvm-pv"]).ok
    assert not soak.SoakResult(rounds=3, integrity_failures=1).ok
    assert not soak.SoakResult(rounds=3, restarted=["xvm-hvm"]).ok
