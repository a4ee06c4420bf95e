"""Guest memory read throughput in dom0: raw LibVMI next to xenvmi's read paths.

Run in dom0: ``python benchmarks/read_throughput.py xvm-pvh2 [--mib 32] [--runs 3]``.
The guest is paused for the run (and resumed), so every path reads the same bytes; the
script checks they do. Rows, each reading the same --mib MiB from 1 MiB up in 1 MiB calls:

* raw LibVMI ``read_pa``: the libvmi package alone, as any LibVMI tool reads;
* xenvmi, LibVMI path: ``LibvmiMemory`` with the batch mapping turned off;
* xenvmi, batch mapping: ``LibvmiMemory`` as shipped (libxenforeignmemory, 256 frames per
  mapping call).

The last column is MB/s; the ratio is to raw LibVMI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

MiB = 1 << 20


def _timed(read, start: int, mib: int) -> tuple[float, bytes]:
    out = bytearray()
    t = time.monotonic()
    for addr in range(start, start + mib * MiB, MiB):
        out += read(addr)
    return time.monotonic() - t, bytes(out)


def measure(domain: str, mib: int, runs: int) -> list[tuple[str, float]]:
    """(path, median seconds) reading ``mib`` MiB with each path, the guest paused."""
    import libvmi

    from xenvmi.backends.libvmi import LibvmiMemory

    start = MiB
    subprocess.run(["xl", "pause", domain], check=True, timeout=60)
    try:
        raw = libvmi.Libvmi(domain, init_flags=libvmi.INIT_DOMAINNAME, partial=True)
        plain = LibvmiMemory(domain)
        plain._foreign = False  # the LibVMI path only
        batch = LibvmiMemory(domain)
        paths = [
            ("raw LibVMI read_pa", lambda a: raw.read_pa(a, MiB, padding=True)[0]),
            ("xenvmi, LibVMI path", lambda a: plain._read_pages(a, MiB)[0]),
            ("xenvmi, batch mapping", lambda a: batch._read_pages(a, MiB)[0]),
        ]
        rows, reference = [], None
        for name, read in paths:
            times = []
            for _ in range(runs):
                for vmi in (raw, plain._vmi, batch._vmi):
                    vmi.pagecache_flush()  # LibVMI keeps mapped pages: each run starts cold
                seconds, data = _timed(read, start, mib)
                times.append(seconds)
                if reference is None:
                    reference = data
                elif data != reference:
                    raise RuntimeError(f"{name} read different bytes than raw LibVMI")
            rows.append((name, statistics.median(times)))
        if not batch._foreign:
            raise RuntimeError("the batch mapping was not used")
        plain.close()
        batch.close()
        raw.destroy()
    finally:
        subprocess.run(["xl", "unpause", domain], timeout=60)
    return rows


def bench(opts) -> list:
    """run.py's rows: xenvmi's read paths in MB/s against raw LibVMI's."""
    from common import guest, progress, require_dom0, require_module
    from table import Row

    require_dom0()
    require_module("libvmi", "the peer is raw LibVMI")
    name, _ = guest(opts)
    mib = opts.n(8, 32)
    progress(f"read_throughput: {name}, {mib} MiB")
    rows = dict(measure(name, mib, opts.n(1, 3)))
    mb = mib * MiB / 1e6
    base = mb / rows["raw LibVMI read_pa"]
    return [
        Row(
            "read_throughput",
            f"{what} (guest paused)",
            f"{name}, {mib} MiB",
            mb / rows[what],
            base,
            unit="MB/s",
            peer_name="raw LibVMI read_pa",
            higher_better=True,
        )
        for what in ("xenvmi, batch mapping", "xenvmi, LibVMI path")
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("domain")
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    start = MiB
    rows = measure(args.domain, args.mib, args.runs)
    print(
        f"{args.domain}: {args.mib} MiB from {start:#x} in 1 MiB reads, median of {args.runs}"
        " runs, guest paused; all paths read identical bytes"
    )
    print(f"{'path':<28} {'seconds':>8} {'MB/s':>7} {'ratio':>6}")
    base = rows[0][1]
    for name, seconds in rows:
        print(
            f"{name:<28} {seconds:8.2f} {args.mib * MiB / 1e6 / seconds:7.1f} {base / seconds:6.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
