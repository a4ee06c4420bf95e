"""Benchmark `xenvmi ps` on a live lab guest against a plain task-list loop.

Run in dom0: ``python benchmarks/guest_ps.py xvm-pvh1 [--runs 5]``. Rows:

* ``xenvmi ps`` cold: the per-boot cache removed first, so it scans for VMCOREINFO,
  decodes kallsyms and reads BTF (what the first command after a guest boots pays);
* ``xenvmi ps`` warm: the same command again, discovery/symbols/BTF from the cache;
* ``xenvmi ps`` in-process view only: the task walk of an open Guest (no process start,
  no discovery), i.e. what a TUI refresh costs;
* plain loop: ``init_task.tasks`` walked with raw LibVMI ``read_pa`` calls (offsets
  from the same BTF, direct-map translation), pid and comm only: the floor.

Times are medians of ``--runs`` (cold: one run unless ``--cold-runs``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import struct
import subprocess
import sys
import time


def _cmd(args: list[str]) -> float:
    t = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "xenvmi", *args], capture_output=True,
                         text=True, timeout=1800)
    if res.returncode:
        raise SystemExit(f"xenvmi {' '.join(args)} failed: {res.stderr.strip()}")
    return time.monotonic() - t


def _clear_cache() -> None:
    from xenvmi.guest.discover import cache_dir
    shutil.rmtree(cache_dir() / "discovery", ignore_errors=True)


def plain_loop(g) -> tuple[float, int]:
    """Walk init_task.tasks with raw read_pa: the least any tool can do per refresh."""
    kp = g.kernel_program()
    prog, mem = kp.prog, g.memory
    vmi = mem._vmi
    task_t = prog.type("struct task_struct")
    off_tasks = task_t.member("tasks").offset
    off_pid = task_t.member("pid").offset
    off_comm = task_t.member("comm").offset
    init = prog.symbol("init_task").address
    pob = prog.read_u64(prog.symbol("page_offset_base").address)
    info = kp.discovery.info

    def pa(va: int) -> int:
        return info.kernel_image_pa(va) if va >= 0xFFFF_FFFF_8000_0000 else va - pob

    t = time.monotonic()
    head = init + off_tasks
    node, n = struct.unpack("<Q", vmi.read_pa(pa(head), 8)[0])[0], 0
    while node != head and n < 100_000:
        task = node - off_tasks
        raw, _ = vmi.read_pa(pa(task + off_pid), off_comm + 16 - off_pid)
        _pid = struct.unpack_from("<i", raw)[0]
        _comm = raw[off_comm - off_pid:].split(b"\0", 1)[0]
        node = struct.unpack("<Q", vmi.read_pa(pa(node), 8)[0])[0]
        n += 1
    return time.monotonic() - t, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("domain")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cold-runs", type=int, default=1)
    args = ap.parse_args()
    from xenvmi import vmi

    cold = []
    for _ in range(args.cold_runs):
        _clear_cache()
        cold.append(_cmd(["ps", args.domain, "--json", "-q"]))
    warm = [_cmd(["ps", args.domain, "--json", "-q"]) for _ in range(args.runs)]
    with vmi.open_guest(args.domain) as g:
        g.kernel_program()
        views, count = [], 0
        for _ in range(args.runs):
            v = g.processes()
            views.append(v.seconds)
            count = len(v.rows)
        loops = [plain_loop(g) for _ in range(args.runs)]
    rows = [
        ("xenvmi ps, cold (scan + kallsyms + BTF)", statistics.median(cold), count),
        ("xenvmi ps, warm (per-boot cache)", statistics.median(warm), count),
        ("Guest.processes() view only (open guest)", statistics.median(views), count),
        ("plain loop: raw read_pa over init_task.tasks",
         statistics.median(t for t, _ in loops), loops[0][1]),
    ]
    floor = rows[-1][1]
    print(f"{args.domain}: medians of {args.runs} runs (cold: {args.cold_runs})")
    print(f"{'what':<48} {'seconds':>9} {'tasks':>6} {'x plain':>8}")
    for name, secs, n in rows:
        print(f"{name:<48} {secs:9.3f} {n:6d} {secs / floor:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
