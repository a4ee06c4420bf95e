"""Throughput of the xentrace decoder on a generated file (default 50 MB).

    python benchmarks/xentrace_decode.py [--mb 50] [--keep FILE]

The file mimics a `xentrace -e sched,pv,hvm` capture: 128 KiB windows over 4 CPUs, two
thirds PV hypercall records (with TSC, 1-2 argument words), HVM vmmcall records (no TSC),
and a scheduler switch burst every ~40 records. MB/s counts file bytes (10^6) per second of
wall time and of process CPU time (CPU time is steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from xenvmi.trace import trc_events as T
from xenvmi.trace.xentrace import TraceDecoder, summarize_file

WINDOW = 128 * 1024


def _rec(event: int, extra=(), tsc: int | None = None) -> bytes:
    header = event | (len(extra) << 28) | ((1 << 31) if tsc is not None else 0)
    out = struct.pack("<I", header)
    if tsc is not None:
        out += struct.pack("<Q", tsc)
    return out + struct.pack(f"<{len(extra)}I", *extra)


def _window_body(rng: random.Random, cpu: int, tsc: int) -> tuple[bytes, int]:
    parts, size, cur = [], 0, (1, 0)
    while size < WINDOW - 128:
        r = rng.random()
        if r < 0.025:
            nxt = (rng.randint(1, 4), rng.randint(0, 1))
            recs = [
                _rec(T.TRC_SCHED_SWITCH, (*cur, *nxt), tsc),
                _rec(T.TRC_SCHED_RUNSTATE_CHANGE | (1 << 4), (cur[0] << 16 | cur[1],), tsc),
                _rec(T.TRC_SCHED_RUNSTATE_CHANGE | (1 << 8), (nxt[0] << 16 | nxt[1],), tsc),
            ]
            cur = nxt
        elif r < 0.7:
            op = rng.choice((29, 24, 20, 13, 26, 1, 32, 17))
            nargs = rng.randint(1, 2)
            w0 = op | sum(1 << (20 + 2 * i) for i in range(nargs))
            recs = [_rec(T.TRC_PV_HYPERCALL_V2, [w0] + [rng.getrandbits(32)] * nargs, tsc)]
        else:
            recs = [_rec(T.TRC_HVM_VMMCALL, (rng.choice((34, 33, 32, 29)),))]
        for b in recs:
            parts.append(b)
            size += len(b)
        tsc += 97
    return b"".join(parts), tsc


def generate(megabytes: float, seed: int = 17) -> bytes:
    """Distinct windows for 4 CPUs, repeated until the file reaches ``megabytes``."""
    rng = random.Random(seed)
    tsc, templates = 1 << 40, []
    for i in range(16):
        body, tsc = _window_body(rng, i % 4, tsc)
        templates.append(struct.pack("<III", T.CPU_CHANGE_HEADER, i % 4, len(body)) + body)
    out, size, i = [], 0, 0
    while size < megabytes * 1e6:
        out.append(templates[i % len(templates)])
        size += len(out[-1])
        i += 1
    return b"".join(out)


def _measure(name: str, func, data: bytes, results: list) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    count = func(data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    results.append(
        (name, count, len(data) / 1e6 / wall, len(data) / 1e6 / cpu, cpu / max(count, 1) * 1e9)
    )


def find_xenalyze() -> str | None:
    """xenalyze's path: on PATH, or where Debian's xen-utils keeps it."""
    import glob
    import shutil

    return shutil.which("xenalyze") or next(
        iter(sorted(glob.glob("/usr/lib/xen-*/bin/xenalyze"))), None
    )


def bench(opts) -> list:
    """run.py's rows: the decoder's summary and full-record paths on a generated file, in
    seconds, against ``xenalyze --summary`` on the same file where xenalyze is installed."""
    import statistics
    import subprocess

    from common import progress
    from table import Row

    mb = opts.n(5, 50)
    progress(f"xentrace_decode: a {mb} MB generated file")
    data = generate(mb)
    path = os.path.join(opts.workdir, "bench-xentrace.bin")
    with open(path, "wb") as f:
        f.write(data)
    try:
        runs = opts.n(1, 3)
        summary = statistics.median(
            _seconds(lambda: summarize_file(path, strict=True)) for _ in range(runs)
        )
        records = statistics.median(_seconds(lambda: _count(path)) for _ in range(runs))
        xenalyze, peer, why = find_xenalyze(), None, ""
        if xenalyze is None:
            why = "skipped: xenalyze not installed"
        else:
            argv = [xenalyze, "--summary", path]
            res = subprocess.run(argv, capture_output=True, timeout=3600)
            if res.returncode:
                tail = res.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                why = f"skipped: xenalyze failed: {tail[0][:200]}"
            else:
                peer = statistics.median(
                    _seconds(lambda: subprocess.run(argv, capture_output=True, check=True))
                    for _ in range(runs)
                )
    finally:
        os.unlink(path)
    size = f"{len(data) / 1e6:.0f} MB generated"
    return [
        Row(
            "xentrace_decode",
            "decode, summary path",
            size,
            summary,
            peer,
            peer_name="xenalyze --summary",
            status=why,
        ),
        Row(
            "xentrace_decode",
            "decode, every record",
            size,
            records,
            peer,
            peer_name="xenalyze --summary",
            status=why,
        ),
    ]


def _seconds(func) -> float:
    t = time.perf_counter()
    func()
    return time.perf_counter() - t


def _count(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in TraceDecoder(f))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50.0, help="file size in MB (50)")
    ap.add_argument("--keep", help="also write the generated file here")
    args = ap.parse_args(argv)
    data = generate(args.mb)
    if args.keep:
        with open(args.keep, "wb") as f:
            f.write(data)

    def records(d):  # full TraceRecord objects, with fields and attribution
        return sum(1 for _ in TraceDecoder(io.BytesIO(d)))

    def batches(d):  # the same walk without building TraceRecords
        return sum(len(b) for b in TraceDecoder(io.BytesIO(d)).batches())

    def summary(d):
        s = summarize_file(io.BytesIO(d), strict=True)
        return s.records + s.windows

    results: list = []
    for name, func in (
        ("batches (raw tuples)", batches),
        ("summary", summary),
        ("decode (TraceRecord)", records),
    ):
        _measure(name, func, data, results)
    loop = time.process_time()
    for _ in range(2_000_000):
        pass
    loop = (time.process_time() - loop) / 2_000_000 * 1e9
    print(
        f"{len(data) / 1e6:.1f} MB, python {sys.version.split()[0]}, "
        f"empty-loop {loop:.0f} ns/iteration (machine speed reference)"
    )
    print(f"{'path':<22} {'records':>10} {'MB/s wall':>10} {'MB/s cpu':>9} {'ns/record':>10}")
    for name, count, wall, cpu, per in results:
        print(f"{name:<22} {count:>10} {wall:>10.1f} {cpu:>9.1f} {per:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
