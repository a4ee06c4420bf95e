"""Every benchmark with its peer in one run, and one table: what, size, ours, peer, ratio,
goal, met?

    python3 benchmarks/run.py [--quick] [--only NAME[,NAME]] [--json] [--guest NAME]
                              [--dump FILE --isf ISF]
    xenvmi lab exec -- python3 benchmarks/run.py          (in the lab's dom0, as root)

Each benchmark is a script of this directory whose ``bench(options)`` returns rows
(benchmarks/table.py); run alone, each script still prints its own, fuller table. Goals are
issue 22's: the TUI idle at most 2x xentop's CPU, a one-shot ``xenvmi list`` at most 1.5x
``xl list``, a warm ``xenvmi ps`` at most 2x ``python -c pass`` plus the view's own time, a
dump at least as fast as ``xl dump-core``, the tracer under 5 % with no events lost (and
the scripts' own: the ps view within 1.5x the plain loop, ps on a dump 10x volatility3).
A benchmark that cannot run here (no Xen, no LibVMI, no xentop...) is a row saying why;
one that fails is a row with its error (and the exit status is 1); progress goes to
stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # this checkout's xenvmi

from common import Options  # noqa: E402
from table import Row, Skip, failed, skipped, summary_text, text_table, to_json  # noqa: E402

#: name -> (script module, its function returning rows), in the table's order. The dump
#: comes before ps_dump, which reads the vmcore it leaves.
BENCHMARKS = {
    "startup": ("startup", "bench"),
    "domains": ("domains_refresh", "bench"),
    "tui": ("tui_refresh", "bench"),
    "ps_live": ("guest_ps", "bench_live"),
    "ps_kernels": ("guest_ps", "bench_kernels"),
    "dump": ("dump_speed", "bench"),
    "ps_dump": ("guest_ps", "bench_dump"),
    "read": ("read_throughput", "bench"),
    "native": ("native_vs_libvmi", "bench"),
    "trace": ("trace_overhead", "bench"),
    "xentrace": ("xentrace_decode", "bench"),
    "exporter": ("exporter_scrape", "bench"),
}


def run_one(name: str, opts: Options) -> list[Row]:
    """One benchmark's rows; Skip and errors become a row, so the run goes on."""
    module, func = BENCHMARKS[name]
    t = time.monotonic()
    try:
        rows = getattr(importlib.import_module(module), func)(opts)
    except Skip as why:
        rows = [skipped(module, "all rows", str(why))]
    except ImportError as exc:
        rows = [skipped(module, "all rows", f"cannot import {exc.name or exc}")]
    except (Exception, SystemExit) as exc:  # a failed benchmark is a row, not the end
        print(traceback.format_exc(), file=sys.stderr)
        rows = [failed(module, "all rows", f"{type(exc).__name__}: {exc}".splitlines()[0][:200])]
    print(f"{name}: {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
    return rows


def select(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"run.py: unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})"
        )
    return names


def meta(opts: Options, took: float) -> dict:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "quick": opts.quick,
        "seconds": round(took, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and smaller sizes")
    ap.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"only these benchmarks: {', '.join(BENCHMARKS)}"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--guest", help="the live guest (default: the first running PVH/HVM one)")
    ap.add_argument("--dump", metavar="FILE", help="a vmcore for ps_dump (default: dump's)")
    ap.add_argument("--isf", metavar="ISF", help="its ISF for volatility3 (default: made)")
    ap.add_argument(
        "--workdir", default="/var/tmp", help="where dumps and files go (a temporary directory)"
    )
    args = ap.parse_args(argv)
    names = select(args.only)
    if not os.path.isdir(args.workdir):
        args.workdir = tempfile.gettempdir()
    work = tempfile.mkdtemp(prefix="xenvmi-bench-", dir=args.workdir)
    opts = Options(args.quick, args.guest, args.dump, args.isf, work)
    t = time.monotonic()
    rows: list[Row] = []
    try:
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows += run_one(name, opts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = meta(opts, time.monotonic() - t)
    if args.json:
        print(to_json(rows, info))
    else:
        print(
            f"{info['date']} {info['host']} ({info['machine']}, {info['cpus']} CPUs, "
            f"Linux {info['kernel']}, Python {info['python']}){' --quick' if opts.quick else ''}"
        )
        print(text_table(rows))
        print(summary_text(rows) + f"; {info['seconds']} s")
    return 1 if any(r.status.startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
