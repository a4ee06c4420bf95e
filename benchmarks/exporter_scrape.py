"""Cost of one scrape of `xenvmi exporter`, next to prometheus-xentop's approach.

    xenvmi lab exec -- python benchmarks/exporter_scrape.py [--runs 30] [--guests xvm-pvh1,xvm-hvm]

Run as root in dom0. prometheus-xentop answers a scrape with one libxenstat sample (the
counters xentop shows); its row here is that sample taken in this process
(``DomainSampler.sample()``, as benchmarks/domains_refresh.py does), with no HTTP and no
formatting, so it is a floor. The exporter rows are what Prometheus pays: an HTTP GET of
/metrics from an exporter already running in its own process (libxenstat, a xenstore read
of every domain, and, without --no-dom0, dom0's load and Xen's daemons through psutil):

- ``exporter --no-dom0``: the same facts as prometheus-xentop, plus xenstore's type/uuid;
- ``exporter``: the default;
- ``exporter --guests ...``: the default plus the guests' facts, read from their memory
  in the background every ``--guest-interval`` (default 60 s) and served from that cache;
  a scrape that finds a read due waits for it at most ``--guest-budget`` (5 s).

The rows take turns, one scrape each per round, so a change in the lab's load lands on
all of them; medians in milliseconds, and each row's ratio to the libxenstat sample.
The guests' background read time (``xenvmi_guest_read_seconds``) is printed after.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PY = [sys.executable, "-m", "xenvmi"]
#: how long an exporter may take to answer its first scrape, or a guest to be read first
#: (imports and a first kernel discovery take up to a minute on the emulated lab)
START_CAP = 600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exporter:
    """`xenvmi exporter` in its own process on a free loopback port."""

    def __init__(self, label: str, args: list[str]) -> None:
        self.label, self.port = label, free_port()
        self.proc = subprocess.Popen(
            PY + ["exporter", "--listen", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def scrape(self) -> bytes:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.read()

    def wait_ready(self, guests: list[str]) -> None:
        """Until it answers and every named guest has been read once (a first read
        pays the kernel's discovery: not the steady-state cost measured here)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < START_CAP:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise SystemExit(f"{self.label} exited {self.proc.returncode}: {err[-300:]}")
            try:
                text = self.scrape().decode()
            except OSError:
                time.sleep(1)
                continue
            ok = [f'xenvmi_guest_read_ok{{domain="{g}"}} 1.0' for g in guests]
            if all(line in text for line in ok):
                return
            time.sleep(2)
        raise SystemExit(f"{self.label}: not ready after {START_CAP:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def clock(func) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def read_seconds(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("xenvmi_guest_read_seconds{"):
            name = line.split('domain="', 1)[1].split('"', 1)[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


PEER = "libxenstat sample (prometheus-xentop)"


def measure(runs: int, guests: list[str]) -> tuple[dict[str, list[float]], str]:
    """Seconds per scrape by row (the rows taking turns), and the last --guests scrape."""
    from xenvmi.api import DomainSampler

    label = ",".join(guests)
    exporters = [
        Exporter("exporter --no-dom0", ["--no-dom0"]),
        Exporter("exporter", []),
        Exporter(f"exporter --guests {label}", ["--guests", label]),
    ]
    sampler = DomainSampler()
    times: dict[str, list[float]] = {PEER: []}
    times |= {e.label: [] for e in exporters}
    try:
        for e in exporters:
            e.wait_ready(guests if "--guests" in e.proc.args else [])
        sampler.sample()  # the first opens the handle
        for i in range(runs):
            times[PEER].append(clock(sampler.sample))
            for e in exporters:
                times[e.label].append(clock(e.scrape))
            print(f"round {i + 1}/{runs}", file=sys.stderr, flush=True)
        last = exporters[-1].scrape().decode()
    finally:
        sampler.close()
        for e in exporters:
            e.stop()
    return times, last


def bench(opts) -> list:
    """run.py's rows: each exporter configuration's scrape against one libxenstat sample."""
    from common import progress, require_dom0
    from table import Row

    require_dom0()
    runs = opts.n(5, 30)
    guests = [opts.guest] if opts.guest else ["xvm-pvh1"]
    progress(f"exporter: {runs} scrapes per configuration")
    times, _ = measure(runs, guests)
    base = statistics.median(times.pop(PEER))
    size = f"{len(sampler_names())} domains, median of {runs}"
    return [
        Row("exporter", f"scrape: {label}", size, statistics.median(ts), base, peer_name=PEER)
        for label, ts in times.items()
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="scrapes per row (default 30)")
    ap.add_argument("--guests", default="xvm-pvh1,xvm-hvm", help="for the --guests row")
    args = ap.parse_args()
    times, last = measure(args.runs, [g for g in args.guests.split(",") if g])
    base = statistics.median(times[PEER])
    print(f"{args.runs} scrapes per row, medians (domains: {len(sampler_names())})")
    print("| what | median ms | max ms | ratio |")
    print("|---|---|---|---|")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"| {label} | {med * 1000:.1f} | {max(ts) * 1000:.1f} | {med / base:.1f}x |")
    reads = read_seconds(last)
    for name, secs in reads.items():
        print(f"background read of {name}: {secs:.2f} s (once per guest interval)")
    if not reads:
        print("background reads: none shown by the last scrape (a read was in flight)")
    return 0


def sampler_names() -> list[str]:
    out = subprocess.run(["xl", "list"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[1:]


if __name__ == "__main__":
    sys.exit(main())
