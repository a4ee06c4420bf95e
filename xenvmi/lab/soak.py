"""Long-lived lab check, run in dom0: is a lab that has run for hours still trustworthy?

Repeats what the lab tests do to guests for ``--minutes``: pause each guest for a while and
resume it (as dumps and ``--pause`` views do), ask each for a report on its console, and run
the integrity self-test; then counts what would make a lab result untrustworthy: Xen's
triple faults and domain crashes, guest panics, oopses, soft lockups and RCU stalls, guests
that restarted or stopped answering, integrity mismatches. Standard library only.

    python3 -m xenvmi.lab.soak --minutes 120 --pause-seconds 30 [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from xenvmi.lab import dom0, integrity

#: What a guest console or Xen's log must never show in a sound lab.
GUEST_SIGNS = {
    "panic": "Kernel panic",
    "oops": "Oops:",
    "bug": "BUG:",
    "soft_lockup": "soft lockup",
    "rcu_stall": "rcu_sched self-detected stall",
}
XEN_SIGNS = {"triple_fault": "Triple fault", "domain_crash": "domain_crash"}


@dataclass
class SoakResult:
    minutes: float = 0.0
    rounds: int = 0
    pauses: int = 0
    reports: int = 0
    missed_reports: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    integrity_runs: int = 0
    integrity_failures: int = 0
    signs: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.rounds > 0
            and not self.missed_reports
            and not self.restarted
            and not self.integrity_failures
            and not any(self.signs.values())
        )


def count_signs(names: list[str]) -> dict[str, int]:
    """Occurrences of each bad sign in the guests' consoles and Xen's log."""
    counts = {key: 0 for key in (*GUEST_SIGNS, *XEN_SIGNS)}
    for name in names:
        text = dom0.read_console(name)
        for key, needle in GUEST_SIGNS.items():
            counts[key] += text.count(needle)
    xen = subprocess.run(["xl", "dmesg"], capture_output=True, text=True, timeout=300).stdout
    for key, needle in XEN_SIGNS.items():
        counts[key] += xen.count(needle)
    return counts


def soak(minutes: float, pause_seconds: float, integrity_runs: int, log=print) -> SoakResult:
    names = [n for n in dom0.guest_configs()]
    first = dom0.domain_table() or {}
    baseline = count_signs(names)
    res = SoakResult()
    t0 = time.monotonic()
    while time.monotonic() - t0 < minutes * 60:
        res.rounds += 1
        for name in names:
            if name not in first:
                continue
            subprocess.run(["xl", "pause", name], check=True, timeout=300)
            time.sleep(pause_seconds)
            subprocess.run(["xl", "unpause", name], check=True, timeout=300)
            res.pauses += 1
            report = dom0.fresh_report(name)
            if report is None:
                res.missed_reports.append(f"round {res.rounds}: {name}")
            else:
                res.reports += 1
        check = integrity.check(runs=integrity_runs, log=lambda m: None)
        res.integrity_runs += check.runs
        res.integrity_failures += check.mismatches + check.hangs + check.errors
        now = dom0.domain_table() or {}
        res.restarted = sorted(n for n in first if now.get(n, (None,))[0] != first[n][0])
        log(
            f"[{(time.monotonic() - t0) / 60:5.1f} min] round {res.rounds}: "
            f"{res.pauses} pauses, {res.reports} reports, integrity "
            f"{res.integrity_runs - res.integrity_failures}/{res.integrity_runs}, "
            f"restarted {res.restarted or 'none'}"
        )
        if res.restarted:
            break
    now_signs = count_signs(names)
    res.signs = {k: now_signs[k] - baseline[k] for k in now_signs}
    res.minutes = round((time.monotonic() - t0) / 60, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xenvmi.lab.soak")
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--pause-seconds", type=float, default=30.0)
    parser.add_argument("--integrity-runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    res = soak(args.minutes, args.pause_seconds, args.integrity_runs, log)
    if args.json:
        print(json.dumps({**asdict(res), "ok": res.ok}, indent=2))
    else:
        print(
            f"soak {res.minutes} min, {res.rounds} rounds: {'OK' if res.ok else 'FAILED'}; "
            f"signs since start {res.signs}; missed reports {res.missed_reports}"
        )
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
