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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("domain")
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import libvmi

    from xenvmi.backends.libvmi import LibvmiMemory

    start = MiB
    subprocess.run(["xl", "pause", args.domain], check=True, timeout=60)
    try:
        raw = libvmi.Libvmi(args.domain, init_flags=libvmi.INIT_DOMAINNAME, partial=True)
        plain = LibvmiMemory(args.domain)
        plain._foreign = False  # the LibVMI path only
        batch = LibvmiMemory(args.domain)
        paths = [
            ("raw LibVMI read_pa", lambda a: raw.read_pa(a, MiB, padding=True)[0]),
            ("xenvmi, LibVMI path", lambda a: plain._read_pages(a, MiB)[0]),
            ("xenvmi, batch mapping", lambda a: batch._read_pages(a, MiB)[0]),
        ]
        rows, reference = [], None
        for name, read in paths:
            times = []
            for _ in range(args.runs):
                for vmi in (raw, plain._vmi, batch._vmi):
                    vmi.pagecache_flush()  # LibVMI keeps mapped pages: each run starts cold
                seconds, data = _timed(read, start, args.mib)
                times.append(seconds)
                if reference is None:
                    reference = data
                elif data != reference:
                    raise SystemExit(f"{name} read different bytes than raw LibVMI")
            rows.append((name, statistics.median(times)))
        assert batch._foreign, "the batch mapping was not used"
        plain.close()
        batch.close()
        raw.destroy()
    finally:
        subprocess.run(["xl", "unpause", args.domain], timeout=60)
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
