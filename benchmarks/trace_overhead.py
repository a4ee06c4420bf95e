"""What tracing hypercalls costs, and how fast real xentrace files decode (run in dom0, root).

    python benchmarks/trace_overhead.py [--calls 20000] [--xl-runs 5] [--trace-file F]
    python benchmarks/trace_overhead.py --decode-only --trace-file F   (any machine)

Workloads, each timed in the same run without the tracer and under each tracer mode
(`xenvmi trace hypercalls` as a subprocess, the way a user runs it, output to /dev/null):
  xen_version  a tight loop of harmless XENVER_version hypercalls through /dev/xen/privcmd
  xl list      repeated `xl list` (fork/exec + ~30 hypercalls each)
Tracer modes: "probe only" (--pid 1: probes fire, nothing matches), "summary" (kernel maps,
no events), "stream" (--json, every call sent to user space and formatted).
Then the xentrace decoder's throughput (MB/s of file) on a file recorded here with
`xenvmi xentrace record` (or --trace-file): full records, and the summary fast path.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from xenvmi.backends.privcmd import Privcmd
from xenvmi.trace.xentrace import TraceDecoder, summarize_file

MODES = {"probe only": ["--pid", "1"], "summary": ["--summary"], "stream": ["--json"]}


def xen_version_loop(calls: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call of ``calls`` XENVER_version hypercalls. CPU time
    (user + sys, the hypercall counts as sys) is steadier when other work shares dom0."""
    with Privcmd() as p:
        p.xen_version()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            p.xen_version()
        return ((time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def xl_loop(runs: int) -> tuple[float, float]:
    """(wall, CPU of the xl processes) seconds per `xl list`."""
    t0, c0 = time.perf_counter(), _children_cpu()
    for _ in range(runs):
        subprocess.run(["xl", "list"], stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t0) / runs, (_children_cpu() - c0) / runs


class TracerProcess:
    def __init__(self, args: list[str]) -> None:
        self.err = tempfile.NamedTemporaryFile("w+", suffix=".err")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xenvmi", "trace", "hypercalls", *args],
            stdout=subprocess.DEVNULL,
            stderr=self.err,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while "Tracing" not in self._stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"tracer failed to start: {self._stderr()}")
            time.sleep(0.2)
        time.sleep(0.5)

    def _stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        return self._stderr()


def lost_events(stderr: str) -> int:
    for line in stderr.splitlines():
        if "events lost" in line:
            return int(line.split("warning:")[1].split()[0])
    return 0


def measure(workloads, repeats: int) -> dict[str, tuple[float, float]]:
    """Per workload: the median (wall, cpu) over ``repeats`` samples."""
    out = {}
    for name, fn in workloads:
        samples = [fn() for _ in range(repeats)]
        out[name] = (
            statistics.median(w for w, _ in samples),
            statistics.median(c for _, c in samples),
        )
    return out


def decoder_throughput(path: str, min_seconds: float = 2.0):
    """[(path, MB/s wall, MB/s CPU, records)] decoding the file repeatedly."""
    size = os.path.getsize(path)
    out = []
    for name, fn in (("records", _decode_all), ("summary", _summarize)):
        passes, t0, c0, count = 0, time.perf_counter(), time.process_time(), 0
        while passes == 0 or time.perf_counter() - t0 < min_seconds:
            count = fn(path)
            passes += 1
        mb = size * passes / 1e6
        out.append((name, mb / (time.perf_counter() - t0), mb / (time.process_time() - c0), count))
    return out


def _decode_all(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in TraceDecoder(f))


def _summarize(path: str) -> int:
    return summarize_file(path, strict=True).records


def record(path: str, seconds: int) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xenvmi",
            "xentrace",
            "record",
            path,
            "--seconds",
            str(seconds),
            "--mask",
            "all",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def overhead(workloads, repeats: int):
    """(results, lost, base): per tracer mode (and "none" before and after) the median
    (wall, cpu) per call of each workload; events lost per mode; per workload the CPU
    baseline, the mean of the runs without a tracer before and after."""
    results = {"none": measure(workloads, repeats)}
    lost = {}
    for mode, extra in MODES.items():
        tracer = TracerProcess(extra)
        try:
            results[mode] = measure(workloads, repeats)
        finally:
            lost[mode] = lost_events(tracer.stop())
    results["none (again)"] = measure(workloads, repeats)
    base = {w: (results["none"][w][1] + results["none (again)"][w][1]) / 2 for w, _ in workloads}
    return results, lost, base


def bench(opts) -> list:
    """run.py's rows: CPU per hypercall under each tracer mode against none (goal: < 5 %
    over, no events lost)."""
    from common import progress, require_dom0, require_module
    from table import Goal, Row

    require_dom0()
    require_module("bcc", "the hypercall tracer runs on bcc")
    calls = opts.n(5000, 20000)
    workloads = [("xen_version", lambda: xen_version_loop(calls))]
    if not opts.quick:
        workloads.append(("xl list", lambda: xl_loop(5)))
    progress(f"trace_overhead: {calls} calls a sample, 3 tracer modes")
    results, lost, base = overhead(workloads, opts.n(2, 3))
    rows = []
    for mode in MODES:
        for w, _ in workloads:
            rows.append(
                Row(
                    "trace_overhead",
                    f"CPU per call, tracer {mode}",
                    f"{w} loop" + (f", {calls} calls" if w == "xen_version" else ", 5 runs"),
                    results[mode][w][1],
                    base[w],
                    peer_name="no tracer",
                    goal=Goal.at_most(1.05, text="< 5 % over, none lost"),
                    blocker=f"{lost[mode]} events lost" if lost[mode] else "",
                )
            )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000, help="xen_version calls a sample")
    ap.add_argument("--xl-runs", type=int, default=5, help="`xl list` runs a sample (0: skip)")
    ap.add_argument("--repeats", type=int, default=3, help="samples per cell (median)")
    ap.add_argument(
        "--trace-file", help="a xentrace file to decode (recorded here first if missing)"
    )
    ap.add_argument("--record-seconds", type=int, default=3)
    ap.add_argument(
        "--decode-only",
        action="store_true",
        help="only the decoder throughput on --trace-file (no Xen needed)",
    )
    args = ap.parse_args()
    if args.decode_only:
        if not args.trace_file:
            ap.error("--decode-only needs --trace-file")
        return report_decoder(args.trace_file)

    workloads = [("xen_version", lambda: xen_version_loop(args.calls))]
    if args.xl_runs:
        workloads.append(("xl list", lambda: xl_loop(args.xl_runs)))
    results, lost, base = overhead(workloads, args.repeats)
    head = f"{'tracer':<13}"
    for w, _ in workloads:
        head += f" {w + ' wall us':>18} {'cpu us':>9} {'cpu +%':>7}"
    print(head + f" {'lost':>7}")
    for mode, cells in results.items():
        row = f"{mode:<13}"
        for w, _ in workloads:
            wall, cpu = cells[w]
            row += f" {wall * 1e6:>18.1f} {cpu * 1e6:>9.1f} {(cpu / base[w] - 1) * 100:>6.0f}%"
        print(row + f" {lost.get(mode, ''):>7}")

    path = args.trace_file
    tmp = None
    if path is None:
        tmp = tempfile.TemporaryDirectory()
        path = os.path.join(tmp.name, "bench.bin")
    if not os.path.exists(path):
        record(path, args.record_seconds)
    print()
    report_decoder(path)
    if tmp:
        tmp.cleanup()
    return 0


def report_decoder(path: str) -> int:
    print(f"xentrace decoder on {path} ({os.path.getsize(path) / 1e6:.2f} MB, real capture)")
    print(f"{'path':<10} {'MB/s wall':>10} {'MB/s cpu':>10} {'records':>10}")
    for name, wall, cpu, count in decoder_throughput(path):
        print(f"{name:<10} {wall:>10.2f} {cpu:>10.2f} {count:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
