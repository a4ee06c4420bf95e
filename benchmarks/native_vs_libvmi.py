"""Guest memory reads in dom0: the native backend (Xen's own libraries) next to LibVMI.

Run in dom0: ``python benchmarks/native_vs_libvmi.py xvm-pvh2 [--pages 512] [--mib 16]
[--runs 5] [--pause]``. Both backends open the same guest in the same process and take
turns within each run (so the lab's noise hits both alike); the table shows medians.

* pages in order, cold: ``--pages`` consecutive pages from 1 MiB up, one read each, as a
  view's page cache fills them, both backends' kept mappings dropped first: LibVMI's
  ``vmi_read_pa`` through the C call ``LibvmiMemory`` makes, against
  ``NativeMemory._read_page`` (a block's first page maps that frame, its second the
  block of 8 frames, kept: the other neighbours cost no mapping call);
* pages apart, cold: as many pages, each in its own 64 KiB (so no two share a native
  block): the cost of an isolated page, where the block is pure overhead;
* pages re-read, warm: the in-order pages again, right after, with the mappings kept
  (LibVMI keeps one per page; the native backend one per block), as a TUI refresh
  re-reads a guest;
* 1 MiB reads: ``--mib`` MiB in 1 MiB calls, as a scan or a dump reads: LibVMI's
  ``read_pa`` (the libvmi package, page by page inside), against
  ``NativeMemory._read_pages`` (256 frames a mapping call).

The ratio is LibVMI's time over the native one's (above 1: native is faster). Without
``--pause`` the guest keeps running, so a page it writes between the two reads may
differ: the script counts such pages rather than failing (with ``--pause``, it fails).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PAGE = 4096
MiB = 1 << 20


def measure(domain: str, pages: int, mib: int, runs: int, pause: bool):
    """(tests, times, differing, kind): per test (what, reads, bytes, ...), the seconds of
    each run by (what, backend), and the pages that differed between the backends."""
    from xenvmi.backends.libvmi import LibvmiMemory
    from xenvmi.backends.native import NativeMemory

    native, lv = NativeMemory(domain), LibvmiMemory(domain)
    if native.kind == "pv":
        raise RuntimeError(f"{domain} is a PV guest: neither backend reads its memory")
    raw = lv._vmi  # the libvmi package's own handle
    start = MiB
    count = pages
    pages = [start + i * PAGE for i in range(count)]
    # one page in each 64 KiB from 1 MiB up, within RAM: no two in one native block
    spread = min(16, max(1, (native.memsize - 2 * MiB) // PAGE // count))
    scattered = [start + (i * spread + 3) * PAGE for i in range(count)]
    chunks = [start + i * MiB for i in range(mib)]

    def cold():  # both backends forget their kept mappings
        lv.drop_mappings()
        native.drop_mappings()

    def lv_read(addrs, flush=True):
        def read():
            if flush:
                cold()
            return [lv._read_page(a) for a in addrs]

        return read

    def native_read(addrs, flush=True):
        def read():
            if flush:
                cold()
            return [native._read_page(a) for a in addrs]

        return read

    def lv_batch():
        cold()
        return [raw.read_pa(a, MiB, padding=True)[0] for a in chunks]

    def native_batch():
        cold()
        return [native._read_pages(a, MiB)[0] for a in chunks]

    n = len(pages)
    tests = [
        ("pages in order, cold", n, n * PAGE, lv_read(pages), native_read(pages)),
        ("pages re-read, warm", n, n * PAGE, lv_read(pages, False), native_read(pages, False)),
        ("pages apart, cold", n, n * PAGE, lv_read(scattered), native_read(scattered)),
        ("1 MiB reads", mib, mib * MiB, lv_batch, native_batch),
    ]
    times = {(what, who): [] for what, *_ in tests for who in ("LibVMI", "native")}
    differing = dict.fromkeys([t[0] for t in tests], 0)
    if pause:
        native._pause()
    try:
        for run in range(runs):
            for what, _, _, lv_fn, native_fn in tests:
                order = [("LibVMI", lv_fn), ("native", native_fn)]
                results = {}
                for who, read in order if run % 2 == 0 else order[::-1]:
                    t = time.monotonic()
                    results[who] = read()
                    times[(what, who)].append(time.monotonic() - t)
                a, b = (b"".join(p or bytes(PAGE) for p in results[w]) for w in results)
                diff = sum(a[i : i + PAGE] != b[i : i + PAGE] for i in range(0, len(a), PAGE))
                differing[what] = max(differing[what], diff)
                if diff and pause:
                    raise RuntimeError(f"{what}: {diff} pages differ with the guest paused")
    finally:
        if pause:
            native._resume()
        native.close()
        lv.close()

    return tests, times, differing, native.kind


def bench(opts) -> list:
    """run.py's rows: the native backend's read times against LibVMI's."""
    from common import guest, progress, require_dom0, require_module
    from table import Row

    require_dom0()
    require_module("libvmi", "the peer is LibVMI")
    name, _ = guest(opts)
    pages, mib = opts.n(128, 512), opts.n(4, 16)
    progress(f"native_vs_libvmi: {name}, {pages} pages, {mib} MiB")
    tests, times, differing, _ = measure(name, pages, mib, opts.n(3, 5), True)
    return [
        Row(
            "native_vs_libvmi",
            f"native backend: {what} (paused)",
            f"{name}, {n} reads",
            statistics.median(times[(what, "native")]),
            statistics.median(times[(what, "LibVMI")]),
            peer_name="LibVMI",
        )
        for what, n, *_ in tests
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("domain")
    ap.add_argument("--pages", type=int, default=512)
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pause", action="store_true", help="pause the guest meanwhile")
    args = ap.parse_args()
    tests, times, differing, kind = measure(
        args.domain, args.pages, args.mib, args.runs, args.pause
    )
    start = MiB
    state = "paused" if args.pause else "running"
    print(
        f"{args.domain} ({kind}, guest {state}): {args.pages} single pages and "
        f"{args.mib} x 1 MiB from {start:#x}, median of {args.runs} interleaved runs"
    )
    print(
        f"{'reads':<22} {'backend':<8} {'seconds':>8} {'per read':>10} {'MB/s':>7} "
        f"{'ratio':>6}  differing pages"
    )
    for what, n, size, *_ in tests:
        base = statistics.median(times[(what, "LibVMI")])
        for who in ("LibVMI", "native"):
            med = statistics.median(times[(what, who)])
            ratio = base / med if med else float("inf")
            print(
                f"{what:<22} {who:<8} {med:8.3f} {med / n * 1000:8.2f}ms "
                f"{size / med / 1e6:7.1f} {ratio:5.2f}x  "
                f"{differing[what] if who == 'native' else ''}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
