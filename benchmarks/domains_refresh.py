"""Refresh cost of `xenvmi top --batch` / `xenvmi list` next to `xentop -b` and `xl list`.

    xenvmi lab exec -- python benchmarks/domains_refresh.py [--domains 20] [--runs 5]

Run as root in dom0. Measures twice: with the domains that exist now, then with --domains
more tiny paused PVH domains (bench-<pid>-N, 32 MB, 1 vCPU, a 4 KiB stub kernel, never
unpaused), which are destroyed afterwards whatever happens. Rows:

- one-shot commands (process start included): `xl list`, `xentop -b -i 1`,
  `xenvmi list`, `xenvmi top --batch -i 1`;
- per refresh, as a long-running top pays it: (time of 21 iterations - time of 1) / 20
  with no delay, for `xentop -b -d 0` and `xenvmi top --batch -d 0`;
- in process: one `DomainSampler.sample()` (libxenstat) and one `collect_domains` over
  xenstore (what `list` adds to it).

Prints medians in milliseconds and the ratio to the xentop (or xl) row of the same kind.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PY = [sys.executable, "-m", "xenvmi"]


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr.decode()[-300:]}")
    return took


def median_ms(func, runs: int) -> float:
    func()  # warm the page cache and imports
    return statistics.median(func() for _ in range(runs)) * 1000


def per_refresh(argv_for, runs: int, extra: int = 20) -> float:
    """(1 + extra iterations - 1 iteration) / extra: the cost of one more refresh, with
    enough iterations that process start-up noise (seconds under TCG) averages out."""
    one = median_ms(lambda: timed(argv_for(1)), runs)
    many = median_ms(lambda: timed(argv_for(1 + extra)), runs)
    return max(0.0, (many - one) / extra)


def in_process(runs: int) -> tuple[float, float]:
    from xenvmi.backends.xenstore import XenStore
    from xenvmi.domains import DomainSampler, collect_domains

    sampler = DomainSampler()
    try:
        sample = median_ms(lambda: _clock(sampler.sample), runs)
    finally:
        sampler.close()
    with XenStore() as store:
        collect = median_ms(lambda: _clock(lambda: collect_domains(store)), runs)
    return sample, collect


def _clock(func) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def measure(runs: int, per_refresh_rows: bool = True) -> dict[str, float]:
    """Medians in ms, by row name (see the module's docstring)."""
    rows = {
        "xl list": median_ms(lambda: timed(["xl", "list"]), runs),
        "xentop -b -i 1": median_ms(lambda: timed(["xentop", "-b", "-i", "1"]), runs),
        "xenvmi list": median_ms(lambda: timed(PY + ["list"]), runs),
        "xenvmi top --batch -i 1": median_ms(lambda: timed(PY + ["top", "-b", "-i", "1"]), runs),
    }
    if per_refresh_rows:
        rows["xentop -b, per refresh"] = per_refresh(
            lambda n: ["xentop", "-b", "-d", "0", "-i", str(n)], runs
        )
        rows["xenvmi top --batch, per refresh"] = per_refresh(
            lambda n: PY + ["top", "-b", "-d", "0", "-i", str(n)], runs
        )
    rows["DomainSampler.sample() in process"], rows["collect_domains() in process"] = in_process(
        runs * 4
    )
    return rows


def bench(opts) -> list:
    """The rows of run.py's table: this host's domains as they are (no extra domains)."""
    from common import progress, require_dom0, require_tool
    from table import Goal, Row

    require_dom0()
    for tool in ("xl", "xentop"):
        require_tool(tool)
    n = domain_count()
    progress(f"domains_refresh: {n} domains")
    rows = measure(opts.n(2, 5), per_refresh_rows=not opts.quick)
    size = f"{n} domains"

    def row(what, peer, goal=None):
        return Row(
            "domains_refresh",
            what,
            size,
            rows[what] / 1000,
            rows[peer] / 1000,
            peer_name=peer,
            goal=goal,
        )

    out = [
        row("xenvmi list", "xl list", Goal.at_most(1.5)),
        row("xenvmi top --batch -i 1", "xentop -b -i 1"),
        row("DomainSampler.sample() in process", "xentop -b -i 1"),
        Row(
            "domains_refresh",
            "collect_domains() in process",
            size,
            rows["collect_domains() in process"] / 1000,
        ),
    ]
    if "xenvmi top --batch, per refresh" in rows:
        out.insert(2, row("xenvmi top --batch, per refresh", "xentop -b, per refresh"))
    return out


PEERS = {
    "xenvmi list": "xl list",
    "xenvmi top --batch -i 1": "xentop -b -i 1",
    "xenvmi top --batch, per refresh": "xentop -b, per refresh",
    "DomainSampler.sample() in process": "xentop -b, per refresh",
}


def stub_kernel() -> bytes:
    """A 4 KiB PVH "kernel": one page of hlt, and the one ELF note (XEN_ELFNOTE_PHYS32_ENTRY)
    Xen's loader needs for PVH. Lets a paused test domain be built with no real kernel
    (Debian's decompresses to 58 MB: too big for 32 MB, and seconds of work per domain)."""
    entry = 0x100000
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", entry)
    ehdr = (
        b"\x7fELF"
        + bytes([2, 1, 1, 0])
        + bytes(8)  # ELF64, little endian, x86-64
        + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, entry, 64, 0, 0, 64, 56, 2, 64, 0, 0)
    )
    load = struct.pack("<IIQQQQQQ", 1, 5, 0x1000, entry, entry, 16, 16, 0x1000)
    notes = struct.pack("<IIQQQQQQ", 4, 4, 176, 0, 0, len(note), len(note), 4)
    return (ehdr + load + notes + note).ljust(0x1000, b"\0") + b"\xf4\xeb\xfd".ljust(16, b"\x90")


def domain_count() -> int:
    out = subprocess.run(["xl", "list"], capture_output=True, text=True, check=True).stdout
    return len(out.splitlines()) - 1


def create(names: list[str], tmp: str) -> None:
    kernel = os.path.join(tmp, "stub.elf")
    with open(kernel, "wb") as f:
        f.write(stub_kernel())
    for name in names:
        cfg = os.path.join(tmp, f"{name}.cfg")
        with open(cfg, "w") as f:
            f.write(
                f'name = "{name}"\ntype = "pvh"\nkernel = "{kernel}"\nmemory = 32\n'
                f'vcpus = 1\non_crash = "destroy"\n'
            )
        res = subprocess.run(
            ["xl", "create", "-p", cfg], capture_output=True, text=True, timeout=300
        )
        if res.returncode != 0:
            raise SystemExit(f"xl create {name} failed: {res.stderr.strip()[-300:]}")
        print(f"created {name}", file=sys.stderr, flush=True)


def destroy(names: list[str]) -> None:
    for name in names:
        subprocess.run(["xl", "destroy", name], capture_output=True, timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=20, help="extra paused domains (20)")
    parser.add_argument("--runs", type=int, default=5, help="runs per median (5)")
    args = parser.parse_args()
    caps = "/proc/xen/capabilities"
    if not os.path.exists(caps) or "control_d" not in open(caps).read() or os.geteuid():
        raise SystemExit(
            "run as root in a Xen dom0: xenvmi lab exec -- python benchmarks/domains_refresh.py"
        )
    results = [(domain_count(), measure(args.runs))]
    names = [f"bench-{os.getpid()}-{i}" for i in range(args.domains)]
    try:
        if names:
            with tempfile.TemporaryDirectory() as tmp:
                create(names, tmp)
                results.append((domain_count(), measure(args.runs)))
    finally:
        destroy(names)
    print_table(results)
    return 0


def print_table(results: list[tuple[int, dict[str, float]]]) -> None:
    head = f"{'what':36}" + "".join(f"{f'{n} domains':>14}{'ratio':>8}" for n, _ in results)
    print(head)
    print("-" * len(head))
    for row in results[0][1]:
        line = f"{row:36}"
        for _, rows in results:
            peer = PEERS.get(row)
            ratio = f"{rows[row] / rows[peer]:.2f}x" if peer and rows[peer] else ""
            line += f"{rows[row]:12.1f}ms{ratio:>8}"
        print(line)
    print("\nmedians; ratio = this row / its peer (xl list, xentop -b -i 1, or xentop per refresh)")


if __name__ == "__main__":
    sys.exit(main())
