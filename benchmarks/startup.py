"""What a one-shot command costs before it does anything: interpreter start-up and imports.

    python3 benchmarks/startup.py [--runs 11]

Median wall time of ``python -m xenvmi --help``, of ``xenvmi list --help`` and of commands
that fail fast (``xenvmi ps /nonexistent``), next to ``python -c pass`` (the interpreter
alone) run the same way. No Xen needed. Bytecode caching is on (as after ``pip install``):
PYTHONDONTWRITEBYTECODE is dropped from the commands' environment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "xenvmi --help": ["-m", "xenvmi", "--help"],
    "xenvmi list --help": ["-m", "xenvmi", "list", "--help"],
    "xenvmi ps /nonexistent (fails fast)": ["-m", "xenvmi", "ps", "/nonexistent"],
    "xenvmi errno -13": ["-m", "xenvmi", "errno", "-13"],
}
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def median_seconds(args: list[str], runs: int) -> float:
    """Median of ``runs`` runs of ``python ARGS`` after one unmeasured (cache-filling) run;
    any exit status is accepted (the fail-fast commands exit non-zero by design)."""
    argv = [sys.executable, *args]
    subprocess.run(argv, capture_output=True, env=ENV, timeout=600)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=ENV, timeout=600)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(runs: int) -> dict[str, float]:
    out = {"python -c pass": median_seconds(["-c", "pass"], runs)}
    for what, args in COMMANDS.items():
        out[what] = median_seconds(args, runs)
    return out


def bench(opts) -> list:
    """run.py's rows: each command against ``python -c pass``."""
    from common import progress
    from table import Row

    runs = opts.n(5, 11)
    progress(f"startup: medians of {runs} runs")
    secs = measure(runs)
    base = secs.pop("python -c pass")
    return [
        Row("startup", what, f"median of {runs}", s, base, peer_name="python -c pass")
        for what, s in secs.items()
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    secs = measure(args.runs)
    base = secs["python -c pass"]
    for what, s in secs.items():
        print(f"{what:<40} {s * 1000:8.1f} ms {s / base:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
