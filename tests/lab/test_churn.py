"""Domain churn soak: domains created, run, paused, renamed and destroyed in a loop while
what an operator leaves running keeps running on the same host.

The churned domains are stub kernels that sleep (no real kernel: seconds per domain instead
of a minute). Save and restore need the guest's cooperation (it must acknowledge the
suspend request through xenstore, which a stub cannot: `xl save` cancels it), so the loop
does not save; renaming a domain under the viewers is the case of a name moving instead.

Running meanwhile, each checked at the end:
- `xenvmi top --batch --json` (a subprocess, one sample a second): every churned domain
  appears in its stream while it lives, none is left in its last sample, and its open
  files do not grow;
- the TUI (in this process, on the live source, as `xenvmi tui` runs it): its table
  follows every domain in and out, and ends with exactly `xl list`'s domains;
- a guest view kept open on a lab guest, read once per cycle: it keeps answering;
- the hypercall tracer, filtered to xl's domctls: every createdomain and destroydomain the
  loop caused is in its stream.
This process's open files and its mappings of Xen's devices (guest memory, hypercall
buffers) after the last cycle are those after the first (psutil), its resident memory has
not grown by more than a bound (Python's own heap adds anonymous mappings as it grows: 946
to 968 over five cycles, with RSS flat, so those are not counted), and once the TUI and
the view are closed its open files are those it had before they opened.

Bounded by count and time: XENVMI_CHURN_CYCLES cycles (default 4), stopping early after
XENVMI_CHURN_MINUTES (default 30) once three cycles are done; every wait is on progress,
with a last-resort cap.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from .conftest import ARM, GUESTS
from .test_domains import TopStream, arm64_stub_kernel, wait_for, x86_stub_kernel
from .test_trace_hypercalls import Tracer

CYCLES = int(os.environ.get("XENVMI_CHURN_CYCLES", "4"))
MINUTES = float(os.environ.get("XENVMI_CHURN_MINUTES", "30"))
MIN_CYCLES = 3
#: The last resort of one wait: seen, a domain reaches top's stream in a few seconds.
WAIT_CAP = 600.0
#: Resident memory this process may gain over the loop (Python's allocator keeps what it
#: once used; a leak of a mapping per cycle shows in the mapping count, not here).
RSS_SLACK = 48 << 20
VIEW_GUEST = GUESTS[0]
DOMCTL_CREATEDOMAIN, DOMCTL_DESTROYDOMAIN = 1, 2
#: x86: sti; hlt; jmp back to the hlt: a vCPU that sleeps for good once unpaused (no
#: interrupt source is set up), instead of powering its domain off as hlt with interrupts
#: off does. (The arm64 stub branches to itself.)
IDLE_FOREVER = b"\xfb\xf4\xeb\xfd"
pytestmark = pytest.mark.timeout(int(MINUTES * 60 + 4 * WAIT_CAP))


def xl(*args: str, timeout: float = 600) -> str:
    res = subprocess.run(["xl", *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"xl {' '.join(args)}: {res.stderr}"
    return res.stdout


def xl_names() -> set[str]:
    return {line.split()[0] for line in xl("list").splitlines()[1:]}


def xen_mappings(me: psutil.Process) -> int:
    """Mappings of Xen's devices: foreign guest frames (privcmd), hypercall buffers."""
    return sum(m.path.startswith("/dev/xen/") for m in me.memory_maps(grouped=False))


def xen_mapping_kinds() -> Counter:
    """(device, size) -> count of this process's mappings of Xen's devices: what a grown
    count consists of, for the failure message."""
    kinds: Counter = Counter()
    for m in psutil.Process().memory_maps(grouped=False):
        if m.path.startswith("/dev/xen/"):
            start, end = (int(a, 16) for a in m.addr.split("-"))
            kinds[(m.path, end - start)] += 1
    return kinds


def resources(guest=None) -> tuple[int, int, int]:
    """(open files, Xen device mappings, RSS) of this process, at a quiet moment: the least
    of a few readings, as a TUI worker may hold a connection for an instant. An open
    view's backend keeps guest frames mapped as a bounded cache whose size follows what
    it last read (the native backend's 100 to 107 over four cycles on the arm64 lab,
    LibVMI's page cache 150 to 329): dropped first, so only what is never given back
    counts."""
    if guest is not None:
        guest.memory.drop_mappings()
    me = psutil.Process()
    readings = []
    for _ in range(5):
        readings.append((me.num_fds(), xen_mappings(me), me.memory_info().rss))
        time.sleep(0.4)
    return tuple(min(r[i] for r in readings) for i in range(3))  # type: ignore[return-value]


class Churn:
    """The loop, run in a thread beside the TUI's event loop."""

    def __init__(self, tmp: Path, top: TopStream, tui_names) -> None:
        self.tmp = tmp
        self.top = top
        self.tui_names = tui_names  # () -> set of names in the TUI's table, thread-safe
        self.kernel = tmp / "stub.elf"
        self.kernel.write_bytes(arm64_stub_kernel() if ARM else x86_stub_kernel(IDLE_FOREVER))
        self.cycles = 0
        self.view_rows: list[int] = []
        self.first: tuple[int, int, int] | None = None
        self.first_kinds: Counter = Counter()
        self.last_kinds: Counter = Counter()
        self.last: tuple[int, int, int] | None = None
        self.top_files_first = 0
        self.error: BaseException | None = None

    def domain(self, i: int) -> str:
        name = f"test-churn-{i}"
        cfg = self.tmp / f"{name}.cfg"
        cfg.write_text(
            f'name = "{name}"\ntype = "pvh"\nkernel = "{self.kernel}"\n'
            'memory = 32\nvcpus = 1\non_crash = "destroy"\n'
        )
        xl("create", "-p", str(cfg))
        return name

    def cycle(self, i: int, guest) -> None:
        name = self.domain(i)
        try:
            wait_for(lambda: self.top.seen(name), f"{name} in top's stream")
            wait_for(lambda: name in self.tui_names(), f"{name} in the TUI's table")
            xl("unpause", name)
            xl("pause", name)
            renamed = f"{name}-renamed"
            xl("rename", name, renamed)
            name = renamed
            wait_for(
                lambda: renamed in self.tui_names() and f"test-churn-{i}" not in self.tui_names(),
                f"the TUI's row of test-churn-{i} renamed",
            )
            wait_for(lambda: self.top.seen(renamed), f"{renamed} in top's stream")
            view = guest.processes(timeout=600)
            self.view_rows.append(len(view.rows))
        finally:
            subprocess.run(["xl", "destroy", name], capture_output=True, timeout=600)
        wait_for(lambda: name not in self.tui_names(), f"{name} leaving the TUI's table")

    def run(self) -> None:
        from xenvmi.guests import open_guest

        try:
            with open_guest(VIEW_GUEST) as guest:
                guest.processes(timeout=1500)  # a cold discovery, before the clock starts
                start = time.monotonic()
                for i in range(CYCLES):
                    if i >= MIN_CYCLES and time.monotonic() - start > MINUTES * 60:
                        break
                    self.cycle(i, guest)
                    self.cycles += 1
                    if i == 0:
                        self.first = resources(guest)
                        self.first_kinds = xen_mapping_kinds()
                        self.top_files_first = self.top.open_files()
                self.last = resources(guest)  # the TUI and the view still open
                self.last_kinds = xen_mapping_kinds()
        except BaseException as e:  # reported by the test, in its own thread
            self.error = e


def test_churn_soak(guests, tmp_path):
    from xenvmi.tui.app import XenvmiApp
    from xenvmi.tui.live import LiveSource

    tracer = Tracer(tmp_path, "--json", "--comm", "xl", "--op", "domctl", "-d", "7200")
    top = TopStream(tmp_path)
    app = XenvmiApp(LiveSource(), refresh=1.0)
    table_names: set[str] = set()
    lock = threading.Lock()

    def tui_names() -> set[str]:
        with lock:
            return set(table_names)

    churn = Churn(tmp_path, top, tui_names)
    files_before = resources()[0]

    async def body() -> None:
        async with app.run_test(size=(160, 50)) as pilot:
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(None, churn.run)
            while not work.done():
                tables = app.screen.query("#domains")  # empty until the screen mounts it
                names = set(tables.first().visible_names) if tables else set()
                with lock:
                    table_names.clear()
                    table_names.update(names)
                await pilot.pause(0.2)
            await work
            final = set(app.screen.query_one("#domains").visible_names)
            assert final == xl_names(), "the TUI's table is not xl list's domains"

    try:
        asyncio.run(body())
        if churn.error is not None:
            raise churn.error
        files_after = resources()[0]
        time.sleep(3)  # two more top samples after the last destroy
        top.check()
        top_files_last = top.open_files()
        final_top = top.samples()[-1][1]
    finally:
        top.stop()
        code = tracer.stop()
        leftovers = {n for n in xl_names() if n.startswith("test-churn-")}
        for name in leftovers:
            subprocess.run(["xl", "destroy", name], capture_output=True, timeout=600)

    assert churn.cycles >= MIN_CYCLES and not leftovers
    assert not {n for n in final_top if n.startswith("test-churn-")}, final_top
    assert top_files_last == churn.top_files_first, "top's open files grew over the churn"
    assert churn.first is not None and churn.last is not None
    fds0, maps0, rss0 = churn.first
    fds1, maps1, rss1 = churn.last
    assert files_after <= files_before, f"open files {files_before} -> {files_after} at exit"
    assert fds1 <= fds0, f"open files {fds0} -> {fds1} over {churn.cycles} cycles"
    assert maps1 <= maps0, (
        f"Xen mappings {maps0} -> {maps1} over {churn.cycles} cycles; (device, bytes) "
        f"added {dict(churn.last_kinds - churn.first_kinds)}, "
        f"gone {dict(churn.first_kinds - churn.last_kinds)}"
    )
    assert rss1 - rss0 < RSS_SLACK, f"RSS grew {(rss1 - rss0) >> 20} MiB"
    assert churn.view_rows and min(churn.view_rows) > 0, churn.view_rows
    assert code == 0, tracer.stderr
    ops = [e for e in tracer.events() if e.get("name") == "domctl" and e.get("comm") == "xl"]
    creates = [e for e in ops if e.get("subop") == DOMCTL_CREATEDOMAIN]
    destroys = [e for e in ops if e.get("subop") == DOMCTL_DESTROYDOMAIN and e.get("ret") == 0]
    expected = churn.cycles
    assert len(creates) == expected, (len(creates), expected)
    assert len(destroys) == expected, (len(destroys), expected)
    print(
        f"churn: {churn.cycles} cycles, "
        f"{len(creates)} creates and {len(destroys)} destroys traced; "
        f"files {fds0}->{fds1}, Xen mappings {maps0}->{maps1}, RSS {rss0 >> 20}->{rss1 >> 20} MiB; "
        f"files before and after the TUI: {files_before}, {files_after}"
    )
