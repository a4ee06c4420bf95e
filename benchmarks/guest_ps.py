"""Benchmark `xenvmi ps` on a live lab guest against a plain task-list loop, and on a dump
against volatility3's ``linux.pslist``.

Run in dom0: ``python benchmarks/guest_ps.py xvm-pvh1 [--runs 5] [--dump FILE --isf ISF]``
(the domain may be left out with ``--dump``). Rows:

* ``xenvmi ps`` cold: the per-boot cache removed first, so it scans for VMCOREINFO,
  decodes kallsyms and reads BTF (what the first command after a guest boots pays);
* ``xenvmi ps`` warm: the same command again, discovery/symbols/BTF from the cache;
* ``xenvmi ps`` in-process view only: the task walk of an open Guest (no process start,
  no discovery), i.e. what a TUI refresh costs. It and the two loops below run
  interleaved, ``--view-runs`` times, with the guest paused (so all three read the same
  tasks, and the guest's own work does not land on one of them);
* plain loop, same fields: ``init_task.tasks`` walked with raw LibVMI ``read_pa`` calls
  (offsets from the same BTF, direct-map translation) reading what the view reads: pid,
  ppid (the parent's tgid), state, euid, start time, comm and the command line (a 4-level
  walk of the task's page tables): the fair peer of the view;
* plain loop, pid and comm only: the floor.

With ``--dump FILE --isf ISF`` (``xenvmi dump``, ``xenvmi isf``), in the same run:

* ``xenvmi ps FILE``, cold (xenvmi's cache removed) and warm;
* volatility3 ``linux.pslist -f FILE`` with only that ISF in its symbol path, cold (a
  new volatility3 cache: it indexes and validates the ISF) and warm.

Both tools run with Python's bytecode cache on (PYTHONDONTWRITEBYTECODE dropped), as after
``pip install``: volatility3's wheel ships compiled, and the first xenvmi run compiles an
editable checkout. Times are medians of ``--runs`` (cold: one run unless ``--cold-runs``),
in one table: the ratio column compares live rows with the plain loop, dump rows with warm
``xenvmi ps`` on the dump (so volatility3's row says how many times slower it is).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's xenvmi

#: volatility3's `vol` command, run by the interpreter that runs this benchmark.
VOL = "import sys; sys.argv[0] = 'vol'; from volatility3.cli import main; main()"


#: The tools' environment: bytecode caching on for both (see the module docstring).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(argv: list[str], what: str) -> tuple[float, str]:
    t = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=3600, env=ENV)
    if res.returncode:
        raise RuntimeError(f"{what} failed: {res.stderr.strip()[-2000:]}")
    return time.monotonic() - t, res.stdout


def _cmd(args: list[str]) -> float:
    return _xenvmi(args)[0]


def _xenvmi(args: list[str]) -> tuple[float, str]:
    return _run([sys.executable, "-m", "xenvmi", *args], f"xenvmi {' '.join(args)}")


def _clear_cache() -> None:
    from xenvmi.guest.discover import cache_dir

    shutil.rmtree(cache_dir() / "discovery", ignore_errors=True)


def _kernel_pa(kp):
    """Kernel virtual -> guest-physical for the loops: kernel image or direct map."""
    pob = kp.prog.read_u64(kp.prog.symbol("page_offset_base").address)
    info = kp.discovery.info
    return lambda va: info.kernel_image_pa(va) if va >= 0xFFFF_FFFF_8000_0000 else va - pob


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
    pa = _kernel_pa(kp)

    t = time.monotonic()
    head = init + off_tasks
    node, n = struct.unpack("<Q", vmi.read_pa(pa(head), 8)[0])[0], 0
    while node != head and n < 100_000:
        task = node - off_tasks
        raw, _ = vmi.read_pa(pa(task + off_pid), off_comm + 16 - off_pid)
        _pid = struct.unpack_from("<i", raw)[0]
        _comm = raw[off_comm - off_pid :].split(b"\0", 1)[0]
        node = struct.unpack("<Q", vmi.read_pa(pa(node), 8)[0])[0]
        n += 1
    return time.monotonic() - t, n


def _vol_pslist(dump: str, symbols: Path, cache: Path) -> tuple[float, list[int]]:
    cache.mkdir(exist_ok=True)  # volatility3 does not create its --cache-path
    secs, out = _run(
        [
            sys.executable,
            "-c",
            VOL,
            "-q",
            "-r",
            "json",
            "--offline",
            "--cache-path",
            str(cache),
            "-s",
            str(symbols),
            "-f",
            dump,
            "linux.pslist",
        ],
        "volatility3 linux.pslist",
    )
    return secs, sorted(row["PID"] for row in json.loads(out))


def dump_rows(dump: str, isf: str, runs: int, cold_runs: int) -> list[tuple[str, float, int]]:
    """`xenvmi ps FILE` and volatility3 linux.pslist on the same dump, cold and warm."""

    def xps() -> tuple[float, list[int]]:
        secs, out = _xenvmi(["ps", dump, "--json", "-q"])
        return secs, sorted(p["pid"] for p in json.loads(out)["rows"])

    cold = []
    for _ in range(cold_runs):
        _clear_cache()
        cold.append(xps()[0])
    warm = [xps() for _ in range(runs)]
    with tempfile.TemporaryDirectory(prefix="xenvmi-bench-vol3-") as tmp:
        symbols = Path(tmp) / "symbols"
        (symbols / "linux").mkdir(parents=True)  # this ISF alone in volatility3's path
        os.symlink(Path(isf).resolve(), symbols / "linux" / Path(isf).name)
        vcold = [_vol_pslist(dump, symbols, Path(tmp) / f"cache{i}")[0] for i in range(cold_runs)]
        _vol_pslist(dump, symbols, Path(tmp) / "cache")  # fills the cache warm runs use
        vwarm = [_vol_pslist(dump, symbols, Path(tmp) / "cache") for _ in range(runs)]
    ours, theirs = warm[0][1], vwarm[0][1]
    if ours != theirs:
        print(
            f"note: the pid lists differ: xenvmi only {sorted(set(ours) - set(theirs))}, "
            f"volatility3 only {sorted(set(theirs) - set(ours))}",
            file=sys.stderr,
        )
    name = Path(dump).name
    return [
        (f"xenvmi ps {name}, cold (no cache)", statistics.median(cold), len(ours)),
        (f"xenvmi ps {name}, warm", statistics.median(s for s, _ in warm), len(ours)),
        (f"vol linux.pslist {name}, cold (new vol3 cache)", statistics.median(vcold), len(theirs)),
        (f"vol linux.pslist {name}, warm", statistics.median(s for s, _ in vwarm), len(theirs)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("domain", nargs="?", help="a live guest (optional with --dump)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cold-runs", type=int, default=1)
    ap.add_argument(
        "--view-runs",
        type=int,
        default=21,
        help="in-process view/loop pairs, run with the guest paused",
    )
    ap.add_argument("--dump", metavar="FILE", help="a dump of a guest (xenvmi dump)")
    ap.add_argument("--isf", metavar="ISF", help="its ISF (xenvmi isf), for volatility3")
    args = ap.parse_args()
    if bool(args.dump) != bool(args.isf):
        ap.error("--dump and --isf go together")
    if not args.domain and not args.dump:
        ap.error("give a domain, or --dump FILE --isf ISF, or both")
    print(f"medians of {args.runs} runs (cold: {args.cold_runs})")
    print(f"{'what':<50} {'seconds':>9} {'tasks':>6} {'ratio':>8}")
    if args.domain:
        live = live_rows(args.domain, args.runs, args.cold_runs, args.view_runs)
        _rows(f"live {args.domain} (ratio: x the same-fields plain loop)", live, live[-2][1])
        print(f"view / same-fields plain loop: {live[2][1] / live[-2][1]:.1f}x (goal: <= 1.5x)")
    if args.dump:
        dumped = dump_rows(args.dump, args.isf, args.runs, args.cold_runs)
        _rows(f"dump {args.dump} (ratio: x warm xenvmi ps on it)", dumped, dumped[1][1])
        print(
            f"volatility3 / xenvmi on the same dump: warm {dumped[3][1] / dumped[1][1]:.1f}x,"
            f" cold {dumped[2][1] / dumped[0][1]:.1f}x (goal: >= 10x)"
        )
    return 0


def _rows(title: str, rows: list[tuple[str, float, int]], base: float) -> None:
    print(title)
    for name, secs, n in rows:
        print(f"  {name:<48} {secs:9.3f} {n:6d} {secs / base:8.1f}")


def plain_loop_same_fields(g) -> tuple[float, int, list[tuple]]:
    """The view's fields with raw read_pa and struct.unpack, no drgn, no validation beyond
    a count bound: what the view's work costs without its engine. Kernel threads get the
    names the view (and ps) gives them: a workqueue worker's comm plus its workqueue, a
    long kthread name from struct kthread; it returns its rows for a cross-check."""
    kp = g.kernel_program()
    prog, vmi = kp.prog, g.memory._vmi
    task_t, cred_t = prog.type("struct task_struct"), prog.type("struct cred")
    mm_t = prog.type("struct mm_struct")
    off = {
        m: task_t.member(m).offset
        for m in (
            "tasks",
            "pid",
            "tgid",
            "comm",
            "real_parent",
            "cred",
            "mm",
            "exit_state",
            "__state",
            "start_boottime",
            "flags",
            "worker_private",
        )
    }
    kthread_t, worker_t = prog.type("struct kthread"), prog.type("struct worker")
    full_name, kdata = kthread_t.member("full_name").offset, kthread_t.member("data").offset
    wdesc, wcur, wpool = (worker_t.member(m).offset for m in ("desc", "current_work", "pool"))
    euid = cred_t.member("euid").offset
    arg_start, arg_end = mm_t.member("arg_start").offset, mm_t.member("arg_end").offset
    pgd_off = mm_t.member("pgd").offset
    init = prog.symbol("init_task").address
    pa = _kernel_pa(kp)

    def u64(va: int) -> int:
        return struct.unpack("<Q", vmi.read_pa(pa(va), 8)[0])[0]

    def user_read(pgd_pa: int, va: int, size: int) -> bytes:
        out = b""
        while size > 0:
            table = pgd_pa
            for shift in (39, 30, 21, 12):
                entry = struct.unpack("<Q", vmi.read_pa(table + ((va >> shift) & 511) * 8, 8)[0])[0]
                if not entry & 1:
                    return out
                table = entry & 0x000F_FFFF_FFFF_F000
                if shift in (30, 21) and entry & 0x80:  # a huge page
                    table = (entry & 0x000F_FFFF_FFFF_F000 & ~((1 << shift) - 1)) | (
                        va & ((1 << shift) - 1) & ~0xFFF
                    )
                    break
            n = min(size, 4096 - (va & 0xFFF))
            out += vmi.read_pa(table + (va & 0xFFF), n)[0]
            va, size = va + n, size - n
        return out

    t = time.monotonic()
    head = init + off["tasks"]
    node, rows = u64(head), []
    while node != head and len(rows) < 100_000:
        task = node - off["tasks"]
        raw, _ = vmi.read_pa(pa(task), task_t.size)

        def f(name: str, fmt: str, raw: bytes = raw) -> int:
            return struct.unpack_from(fmt, raw, off[name])[0]

        parent, cred, mm = f("real_parent", "<Q"), f("cred", "<Q"), f("mm", "<Q")
        ppid = struct.unpack("<i", vmi.read_pa(pa(parent + off["tgid"]), 4)[0])[0]
        uid = struct.unpack("<I", vmi.read_pa(pa(cred + euid), 4)[0])[0]
        cmdline = None
        if mm:
            mraw, _ = vmi.read_pa(pa(mm), mm_t.size)
            a, e = (struct.unpack_from("<Q", mraw, o)[0] for o in (arg_start, arg_end))
            pgd = struct.unpack_from("<Q", mraw, pgd_off)[0]
            if 0 < a < e <= a + 4096:
                cmdline = user_read(pa(pgd), a, e - a).rstrip(b"\0").replace(b"\0", b" ")
        comm = raw[off["comm"] : off["comm"] + 16].split(b"\0")[0]
        if not mm and (f("flags", "<I") & 0x20 or len(comm) >= 15):  # ps names kthreads
            kthread = f("worker_private", "<Q")
            if f("flags", "<I") & 0x20:  # a workqueue worker: comm-desc of its worker
                worker = u64(kthread + kdata)
                w, _ = vmi.read_pa(pa(worker), wdesc + 24)
                desc = w[wdesc:].split(b"\0")[0]
                if desc and struct.unpack_from("<Q", w, wpool)[0]:
                    busy = struct.unpack_from("<Q", w, wcur)[0]
                    comm = comm + (b"+" if busy else b"-") + desc
            else:  # a long kthread name: struct kthread's full_name
                comm = vmi.read_pa(pa(u64(kthread + full_name)), 64)[0].split(b"\0")[0]
        rows.append(
            (
                f("pid", "<i"),
                ppid,
                f("__state", "<I"),
                f("exit_state", "<i"),
                uid,
                f("start_boottime", "<Q"),
                comm,
                cmdline,
            )
        )
        node = struct.unpack_from("<Q", raw, off["tasks"])[0]
    return time.monotonic() - t, len(rows), rows


def live_rows(
    domain: str, runs: int, cold_runs: int, view_runs: int = 21
) -> list[tuple[str, float, int]]:
    from xenvmi import guests

    cold = []
    for _ in range(cold_runs):
        _clear_cache()
        cold.append(_cmd(["ps", domain, "--json", "-q"]))
    warm = [_cmd(["ps", domain, "--json", "-q"]) for _ in range(runs)]
    with guests.open_guest(domain) as g:
        g.kernel_program()
        g.processes()  # the first view builds the struct layouts
        views, same, loops = [], [], []
        with g.memory.paused():  # the guest stands still: each tool sees the same tasks
            for _ in range(view_runs):  # interleaved, so load on the host hits both alike
                views.append(g.processes())
                same.append(plain_loop_same_fields(g))
                loops.append(plain_loop(g))
        count = len(views[0].rows)
        ours = {(p.pid, p.comm) for p in views[-1].rows}
        theirs = {(r[0], r[6].decode(errors="replace")) for r in same[-1][2]}
        if ours != theirs:
            print(
                f"note: view and loop differ: view only {sorted(ours - theirs)}, "
                f"loop only {sorted(theirs - ours)}",
                file=sys.stderr,
            )
        ratios = [v.seconds / s[0] for v, s in zip(views, same)]
        best = min(v.seconds for v in views) / min(s[0] for s in same)
        print(
            f"view / same-fields loop over {view_runs} interleaved pairs: pairwise median "
            f"{statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}x),"
            f" best of each {best:.2f}x",
            file=sys.stderr,
        )
        views = [v.seconds for v in views]
    return [
        ("xenvmi ps, cold (scan + kallsyms + BTF)", statistics.median(cold), count),
        ("xenvmi ps, warm (per-boot cache)", statistics.median(warm), count),
        ("Guest.processes() view only (open guest)", statistics.median(views), count),
        (
            "plain loop, same fields (raw read_pa)",
            statistics.median(t for t, *_ in same),
            same[0][1],
        ),
        ("plain loop, pid and comm only", statistics.median(t for t, _ in loops), loops[0][1]),
    ]


def python_pass(runs: int) -> float:
    """Median seconds of ``python -c pass``: the interpreter's own start-up, the floor."""
    _run([sys.executable, "-c", "pass"], "python -c pass")
    return statistics.median(_run([sys.executable, "-c", "pass"], "python")[0] for _ in range(runs))


def bench_live(opts) -> list:
    """run.py's rows: warm and cold `xenvmi ps GUEST`, the view against the plain loop."""
    from common import guest, progress, require_dom0, require_module
    from table import Goal, Row

    require_dom0()
    require_module("libvmi", "the plain loop (the view's peer) reads with LibVMI")
    name, _ = guest(opts)
    progress(f"guest_ps: live {name}")
    runs = opts.n(1, 3)
    live = live_rows(name, runs, 1, opts.n(5, 21))
    (_, cold, count), (_, warm, _), (_, view, _), (_, loop, _), (_, floor, _) = live
    base = python_pass(opts.n(3, 5))
    size = f"{name}, {count} tasks"
    return [
        Row(
            "guest_ps",
            "xenvmi ps, warm (process start to exit)",
            size,
            warm,
            base,
            peer_name="python -c pass",
            goal=Goal.at_most(2, view, "<= 2x python -c pass + the view"),
        ),
        Row(
            "guest_ps",
            "xenvmi ps, cold (scan, kallsyms, BTF)",
            size,
            cold,
            base,
            peer_name="python -c pass",
        ),
        Row(
            "guest_ps",
            "ps view in process (open guest)",
            size,
            view,
            loop,
            peer_name="plain loop, same fields",
            goal=Goal.at_most(1.5),
        ),
        Row(
            "guest_ps",
            "plain loop, pid and comm only",
            size,
            floor,
            loop,
            peer_name="plain loop, same fields",
        ),
    ]


def kernel_guests() -> list[tuple[str, str]]:
    """(name, type) of every running PVH/HVM guest, by domid (kernel_rows times each kind
    of kernel once: only the guest's memory says which kernel it runs)."""
    from common import LIVE_STATES

    from xenvmi import api

    return [
        (d.name, d.type)
        for d in sorted(api.list_domains(), key=lambda d: d.domid)
        if d.domid != 0 and d.type in ("pvh", "hvm") and d.state in LIVE_STATES
    ]


def kernel_rows(
    guests: list[tuple[str, str]], runs: int
) -> list[tuple[str, str, float, float, int]]:
    """(name, release, cold s, warm s, tasks) per kind of kernel (release and guest type),
    from its first guest. Cold: the discovery cache cleared, so the run scans, decodes
    kallsyms and reads BTF as the first command after a guest's boot does."""
    out, kinds = [], set()
    for name, gtype in guests:
        _clear_cache()
        cold = _cmd(["ps", name, "--json", "-q"])
        release = json.loads(_xenvmi(["kernel", name, "--json", "-q"])[1])["rows"][0]["release"]
        if (release, gtype) in kinds:
            continue
        kinds.add((release, gtype))
        warm = [_xenvmi(["ps", name, "--json", "-q"]) for _ in range(runs)]
        tasks = len(json.loads(warm[-1][1])["rows"])
        out.append((name, release, cold, statistics.median(t for t, _ in warm), tasks))
    return out


def bench_kernels(opts) -> list:
    """run.py's rows: cold and warm `xenvmi ps` on a guest of each kernel running here
    (issue 17: the kernels tested live), against ``python -c pass``."""
    from common import progress, require_dom0
    from table import Row, Skip

    require_dom0()
    guests = kernel_guests()
    if opts.guest:
        guests = [g for g in guests if g[0] == opts.guest]
    if not guests:
        raise Skip("no running PVH or HVM guest")
    progress(f"guest_ps: cold and warm ps on {', '.join(n for n, _ in guests)}")
    measured = kernel_rows(guests, opts.n(1, 3))
    base = python_pass(opts.n(3, 5))
    rows = []
    for name, release, cold, warm, tasks in measured:
        size = f"{name}, Linux {release}, {tasks} tasks"
        rows.append(
            Row(
                "guest_ps",
                "xenvmi ps, cold, per kernel",
                size,
                cold,
                base,
                peer_name="python -c pass",
            )
        )
        rows.append(
            Row(
                "guest_ps",
                "xenvmi ps, warm, per kernel",
                size,
                warm,
                base,
                peer_name="python -c pass",
            )
        )
    return rows


def bench_dump(opts) -> list:
    """run.py's rows: `xenvmi ps FILE` against volatility3's linux.pslist on one dump
    (--dump/--isf, else the dump the dump benchmark wrote and an ISF made here)."""
    from common import PY, progress, require_module, run
    from table import Goal, Row, Skip

    require_module("volatility3", "the peer of ps on a dump")
    dump, isf = opts.dump, opts.isf
    if not dump:
        dump = os.path.join(opts.workdir, "bench.vmcore")
        if not os.path.exists(dump):
            raise Skip("no dump: give --dump FILE --isf ISF, or run the dump benchmark first")
    if not isf:
        isf = os.path.join(opts.workdir, "bench.json.xz")
        if not os.path.exists(isf):
            progress(f"guest_ps: xenvmi isf {dump}")
            run([*PY, "isf", dump, "-o", isf[: -len(".xz")], "--xz", "-q"], "xenvmi isf")
    progress(f"guest_ps: ps on {dump} against volatility3")
    rows = dump_rows(dump, isf, opts.n(1, 3), 1)
    (_, xcold, n), (_, xwarm, _), (_, vcold, vn), (_, vwarm, _) = rows
    size = f"{Path(dump).name}, {n} tasks"
    return [
        Row(
            "guest_ps",
            "xenvmi ps FILE, warm",
            size,
            xwarm,
            vwarm,
            peer_name="vol linux.pslist, warm",
            goal=Goal.at_most(0.1, text="<= 0.1x (10x faster)"),
        ),
        Row(
            "guest_ps",
            "xenvmi ps FILE, cold",
            size,
            xcold,
            vcold,
            peer_name="vol linux.pslist, cold",
            goal=Goal.at_most(0.1, text="<= 0.1x (10x faster)"),
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
