"""What the TUI's domains table costs with 1, 50 and 1000 domains (synthetic, headless).

    python3 benchmarks/tui_refresh.py [--runs 20] [--idle-seconds 9] [--refresh 3]

No Xen needed: the app runs on RecordedSource(synthetic.many(N)) under Textual's headless
driver at 120x40. Columns:

- by-ID handle ms: median time for the UI thread to handle one refresh (a SamplesUpdated
  message with new counters for every domain), rows keeping their order so only changed
  cells are rewritten; +paint ms: the same plus the repaint that follows (this includes
  Textual's frame pacing: about 40 ms even for one row);
- by-CPU: the same sorted by CPU %, where the order changes and the rows are rebuilt;
- idle CPU %: CPU time of the whole app process (UI thread and workers) over wall time,
  sampling every --refresh seconds (3, xentop's default delay) with nobody at the keys.

In a Xen dom0 (``xenvmi lab exec -- python3 benchmarks/tui_refresh.py``) a last line
gives the peer: xentop's own CPU % over the same idle window, ``xentop -b -d REFRESH``
sampling the real host (its batch mode: same data path, no curses repaint); ``--live``
adds the app's idle CPU on the real domains, through the live source `xenvmi tui` uses
(the synthetic source imitates a xenstore watch by polling every 50 ms, which costs more
than the real watch on an emulated CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from xenvmi import render
from xenvmi.tui import messages as m
from xenvmi.tui import synthetic
from xenvmi.tui.app import XenvmiApp
from xenvmi.tui.recorded import RecordedSource


async def _loaded(pilot, app, n: int) -> None:
    deadline = time.monotonic() + 60
    while app.screen.query_one("#domains").row_count < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the table never showed {n} rows")
        await pilot.pause(0.05)


async def refresh_ms(n: int, runs: int, sort: str | None) -> tuple[float, float]:
    """Median ms per refresh: (handling the message, handling + the repaint that follows;
    the latter includes Textual's frame pacing, about 40 ms headless even for 1 row)."""
    rec = synthetic.many(n, frames=4)
    app = XenvmiApp(RecordedSource(rec, loop=True), refresh=3600)
    times, handled = [], []
    async with app.run_test(size=(120, 40)) as pilot:
        await _loaded(pilot, app, n)
        screen = app.screen
        if sort:
            screen.action_sort(sort)
        domains = list(screen.domains.values())
        for i in range(runs + 2):
            msg = m.SamplesUpdated(
                rec.node, rec.frames[(i + 1) % len(rec.frames)], domains if i == 0 else None, 0.0
            )
            t0 = time.perf_counter()
            screen.on_samples_updated(msg)
            t1 = time.perf_counter()
            await pilot.pause()  # let the table repaint
            if i >= 2:  # the first two warm caches
                handled.append(t1 - t0)
                times.append(time.perf_counter() - t0)
    return statistics.median(handled) * 1000, statistics.median(times) * 1000


async def idle_cpu(n: int, seconds: float, refresh: float, live: bool = False) -> float:
    """Percent of one CPU the app process uses while only the periodic refresh runs: on
    ``n`` synthetic domains, or (``live``) on this Xen host's own domains, sampled through
    xenstat with a kept xenstore watch, as `xenvmi tui` runs in dom0 (``n``: how many
    rows to wait for)."""
    if live:
        from xenvmi.tui.live import LiveSource

        source = LiveSource()
    else:
        source = RecordedSource(synthetic.many(n, frames=4), loop=True)
    app = XenvmiApp(source, refresh=refresh)
    async with app.run_test(size=(120, 40)) as pilot:
        await _loaded(pilot, app, n)
        await pilot.pause(1.0)
        c0, w0 = time.process_time(), time.monotonic()
        await pilot.pause(seconds)
        used, wall = time.process_time() - c0, time.monotonic() - w0
    return used / wall * 100


def xentop_idle_cpu(seconds: float, refresh: float) -> float | None:
    """CPU % of ``xentop -b`` over ``seconds`` on this host, or None where it cannot run."""
    import resource
    import shutil
    import subprocess

    if not shutil.which("xentop") or not os.path.exists("/proc/xen/capabilities"):
        return None
    iterations = max(2, int(seconds / refresh) + 1)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    res = subprocess.run(
        ["xentop", "-b", "-d", str(refresh), "-i", str(iterations)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        return None
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return 100.0 * cpu / wall


def bench(opts) -> list:
    """run.py's rows: the TUI's idle CPU against xentop's over the same window (in dom0,
    on this host's domains through the live source; elsewhere on synthetic domains, with
    no peer), and the cost of one refresh of 50 synthetic domains."""
    from common import progress, require_dom0
    from table import Goal, Row, Skip

    seconds, refresh = opts.n(9, 30), 3.0
    size = f"{seconds}s idle, refresh {refresh:g}s"
    try:
        require_dom0()
        from xenvmi import api

        n = len(api.list_domains())
        progress(f"tui_refresh: idle CPU on {n} live domains, then xentop's")
        ours = asyncio.run(idle_cpu(n, seconds, refresh, live=True))
        peer = xentop_idle_cpu(seconds, refresh)
        status = "" if peer is not None else "skipped: xentop -b failed"
        what, size = "TUI idle CPU (live source)", f"{n} domains, {size}"
    except Skip as why:
        progress("tui_refresh: idle CPU on 5 synthetic domains")
        ours, peer, status = asyncio.run(idle_cpu(5, seconds, refresh)), None, f"skipped: {why}"
        what, size = "TUI idle CPU (synthetic source)", f"5 domains, {size}"
    rows = [
        Row(
            "tui_refresh",
            what,
            size,
            ours,
            peer,
            unit="%",
            peer_name="xentop -b",
            goal=Goal.at_most(2),
            status=status,
        )
    ]
    runs = opts.n(5, 20)
    progress(f"tui_refresh: {runs} refreshes of 50 synthetic domains")
    for sort, label in ((None, "by ID"), ("cpu", "by CPU, rows reordered")):
        handle, paint = asyncio.run(refresh_ms(50, runs, sort))
        rows.append(
            Row(
                "tui_refresh", f"one refresh, {label}: handle + paint", "50 synthetic", paint / 1000
            )
        )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20, help="refreshes timed per size")
    p.add_argument("--idle-seconds", type=float, default=9.0)
    p.add_argument("--refresh", type=float, default=3.0, help="seconds between samples")
    p.add_argument("--sizes", default="1,50,1000")
    p.add_argument(
        "--live", action="store_true", help="in dom0: also the idle CPU on this host's real domains"
    )
    args = p.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        by_id = asyncio.run(refresh_ms(n, args.runs, None))
        by_cpu = asyncio.run(refresh_ms(n, args.runs, "cpu"))
        rows.append(
            {
                "domains": n,
                "id_handle": round(by_id[0], 1),
                "id_paint": round(by_id[1], 1),
                "cpu_handle": round(by_cpu[0], 1),
                "cpu_paint": round(by_cpu[1], 1),
                "idle_cpu_pct": round(asyncio.run(idle_cpu(n, args.idle_seconds, args.refresh)), 2),
            }
        )
        print(f"  {n} domains done", file=sys.stderr, flush=True)
    print(
        f"xenvmi tui, headless 120x40, refresh every {args.refresh:g}s, "
        f"median of {args.runs} refreshes, {os.cpu_count()} CPUs"
    )
    print(
        render.table(
            rows,
            ["domains", "id_handle", "id_paint", "cpu_handle", "cpu_paint", "idle_cpu_pct"],
            [
                "domains",
                "by-ID handle ms",
                "+paint ms",
                "by-CPU handle ms",
                "+paint ms",
                "idle CPU %",
            ],
        )
    )
    if args.live:
        from xenvmi import api

        n = len(api.list_domains())
        live = asyncio.run(idle_cpu(n, args.idle_seconds, args.refresh, live=True))
        print(f"xenvmi tui on this Xen host's {n} domains (live source), idle CPU {live:.2f} %")
    peer = xentop_idle_cpu(args.idle_seconds, args.refresh)
    if peer is not None:
        print(f"peer: xentop -b -d {args.refresh:g} on this Xen host, idle CPU {peer:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
