"""How fast `xenvmi dump` copies a guest's memory, next to `xl dump-core` on the same guest.

Run in dom0: ``python benchmarks/dump_speed.py xvm-pvh1 [--runs 3] [--dir /var/tmp]``.
Both tools write a file of the running guest (neither pauses it), taking turns, each file
removed after its run; the speed is the guest's RAM (MB, 10^6 bytes) over the median time.
``bench`` (run.py) keeps its last xenvmi vmcore for the ps-on-dump rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from common import PY, run


def measure(domain: str, directory: str, runs: int, keep: str | None = None) -> dict[str, float]:
    """Median seconds of `xl dump-core` and `xenvmi dump` (taking turns); the last xenvmi
    file is left at ``keep`` when given."""
    times: dict[str, list[float]] = {"xl dump-core": [], "xenvmi dump": []}
    for i in range(runs):
        xl_file = os.path.join(directory, "bench-xl.core")
        ours = keep if keep and i == runs - 1 else os.path.join(directory, "bench-ours.vmcore")
        order = [
            ("xl dump-core", ["xl", "dump-core", domain, xl_file], xl_file),
            ("xenvmi dump", [*PY, "dump", domain, ours, "-q", "--force"], ours),
        ]
        for who, argv, path in order if i % 2 == 0 else order[::-1]:
            try:
                times[who].append(run(argv, who)[0])
            finally:
                if path != keep and os.path.exists(path):
                    os.unlink(path)
    return {who: statistics.median(t) for who, t in times.items()}


def bench(opts) -> list:
    """run.py's row: dump speed in MB/s against xl dump-core's."""
    from common import guest, progress, require_dom0, require_tool
    from table import Goal, Row

    require_dom0()
    require_tool("xl")
    name, mib = guest(opts)
    progress(f"dump_speed: {name} ({mib} MiB), xl dump-core and xenvmi dump")
    keep = os.path.join(opts.workdir, "bench.vmcore")
    secs = measure(name, opts.workdir, opts.n(1, 3), keep)
    mb = mib * 1.048576
    return [
        Row(
            "dump_speed",
            "xenvmi dump (guest running)",
            f"{name}, {mib} MiB",
            mb / secs["xenvmi dump"],
            mb / secs["xl dump-core"],
            unit="MB/s",
            peer_name="xl dump-core",
            goal=Goal.at_least(1.0, ">= xl dump-core"),
            higher_better=True,
            notes=[f"seconds: xenvmi {secs['xenvmi dump']:.2f}, xl {secs['xl dump-core']:.2f}"],
        )
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("domain")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp", help="where the dumps are written")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="xenvmi-bench-") as tmp:
        secs = measure(args.domain, tmp, args.runs)
    for who, s in secs.items():
        print(f"{who:<14} {s:8.2f} s (median of {args.runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
