"""What the benchmarks share: the run's options, checks that raise Skip, timed commands."""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from table import Skip

PY = [sys.executable, "-m", "xenvmi"]
#: A live guest's states (xenvmi.domains.state_word): an idle guest is blocked, and one
#: with no state flag at that instant is runnable.
LIVE_STATES = ("running", "blocked", "runnable")


@dataclass
class Options:
    """What ``run.py`` passes to every benchmark's ``bench(opts)``."""

    quick: bool = False
    guest: str | None = None  # a live HVM/PVH guest; None: the first one found
    dump: str | None = None  # an existing vmcore for the ps-on-dump rows
    isf: str | None = None  # its ISF (volatility3)
    workdir: str = "/tmp"  # where dumps and captures go (removed by run.py)

    def n(self, quick: int, full: int) -> int:
        return quick if self.quick else full


def require_dom0() -> None:
    caps = "/proc/xen/capabilities"
    try:
        with open(caps) as f:
            control = "control_d" in f.read()
    except OSError:
        raise Skip("not a Xen dom0 (no /proc/xen/capabilities)") from None
    if not control:
        raise Skip("not a Xen dom0 (a guest: no control_d)")
    if os.geteuid():
        raise Skip("not root")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Skip(f"{name} not installed")
    return path


def require_module(name: str, why: str = "") -> None:
    if importlib.util.find_spec(name) is None:
        raise Skip(f"python module {name} not importable{': ' + why if why else ''}")


def guest(opts: Options, kinds: tuple[str, ...] = ("pvh", "hvm")) -> tuple[str, int]:
    """(name, memory MiB) of ``opts.guest`` or the first running guest of ``kinds``."""
    from xenvmi import api

    domains = [d for d in api.list_domains() if d.domid != 0]
    if opts.guest:
        found = [d for d in domains if d.name == opts.guest]
        if not found:
            raise Skip(f"no domain named {opts.guest}")
        d = found[0]
        if d.type not in kinds:
            raise Skip(f"{d.name} is {d.type}: this benchmark needs one of {', '.join(kinds)}")
    else:
        usable = [d for d in domains if d.type in kinds and d.state in LIVE_STATES]
        if not usable:
            raise Skip(f"no running {'/'.join(kinds)} guest")
        d = sorted(usable, key=lambda d: (kinds.index(d.type), d.domid))[0]
    return d.name, (d.memory_kib or d.memory_target_kib or 0) // 1024


def run(argv: list[str], what: str = "", timeout: float = 3600) -> tuple[float, str]:
    """Seconds a command took and its stdout; a failure raises RuntimeError with its stderr."""
    t = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - t
    if res.returncode:
        tail = res.stderr.strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        raise RuntimeError(f"{what or ' '.join(argv)} failed: {tail[0][:300]}")
    return took, res.stdout


def median_run(argv: list[str], runs: int, warm: bool = True) -> float:
    """Median seconds of ``runs`` runs of a command, after one unmeasured run if ``warm``."""
    if warm:
        run(argv)
    return statistics.median(run(argv)[0] for _ in range(max(1, runs)))


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)
