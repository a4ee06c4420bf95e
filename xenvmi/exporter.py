"""A Prometheus exporter: Xen's counters under the names operators already graph, plus
what no other Xen exporter sees, read from guest memory with no agent in the guest.

Why a custom Collector: every scrape builds its metric families from one fresh sample
(xentop's facts through ``xenvmi.api``), so a domain that went away leaves no stale series
behind, and nothing is kept in global registries. Guest facts are slow to read (a view of
guest memory can take seconds under emulation), so they are read in worker threads,
cached for ``guest_interval`` seconds, and a scrape waits for them at most
``guest_budget`` seconds: a slow or hung guest shows as ``xenvmi_guest_read_error``,
never as a slow scrape.

Nothing here writes to Xen: domains come from ``api.list_domains``, counters from a
``DomainSampler`` (libxenstat), guests from ``guests.open_guest`` and the views' own
``collect``. Only counts leave a guest: no guest-controlled text becomes a label value
(process states and log levels are mapped onto fixed sets), and the domain names, which
the toolstack writes, are escaped and bounded (``label``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from xenvmi import safetext
from xenvmi.errors import (
    GuestDataError,
    NotFoundError,
    PermissionDenied,
    Unavailable,
    UsageError,
    XenvmiError,
)
from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample

log = logging.getLogger("xenvmi.exporter")

DEFAULT_LISTEN = "127.0.0.1:9731"
DEFAULT_GUEST_BUDGET = 5.0
DEFAULT_GUEST_INTERVAL = 60.0
#: The deadline of a read that follows no good one (the first after the exporter or the
#: guest started, or after a failure): it may have to find the kernel, a scan of guest
#: memory that took 232 s in the loaded emulated lab. Cut at the interval, it started
#: over at every read and never ended; once found, the kernel is cached for the boot.
FIRST_READ_TIMEOUT = 600.0
#: Longest label value we emit: a domain name is at most 64 bytes in libxl, but
#: xenstore would take more; a bounded label keeps one odd domain from bloating a TSDB.
MAX_LABEL = 128
#: A sector in xentop's VBD_RSECT/VBD_WSECT (blkback counts 512-byte sectors).
SECTOR = 512
#: ps letters a guest's process state may take; anything else is counted as "?".
PROCESS_STATES = ("R", "S", "D", "T", "t", "X", "Z", "P", "I", "?")
#: printk levels 0-7 by name, as dmesg -x prints them.
LOG_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
#: The kernel's OOM killer's report ("Out of memory: Killed process 123 (x)" since 5.x,
#: "Kill process" before; "Memory cgroup out of memory: ..." inside a cgroup).
OOM_RE = re.compile(r"out of memory: kill(?:ed)? process", re.IGNORECASE)
#: A kernel oops, BUG, panic or warning splat's first line.
OOPS_RE = re.compile(
    r"^(?:Oops:|BUG:|kernel BUG at|Kernel panic|general protection fault|"
    r"Unable to handle kernel|WARNING: CPU:)"
)
#: Why a guest could not be read: the reason label's fixed set.
REASONS = (
    "budget",
    "not_found",
    "permission",
    "unavailable",
    "guest_data",
    "not_running",
    "error",
    "internal",
)


def label(text: str) -> str:
    """A label value from text we do not control: escaped (prometheus_client escapes
    quotes, backslashes and newlines for the exposition; this also turns every other
    control character into a visible escape) and bounded."""
    text = safetext.escape(text)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 3] + "..."


# ----------------------------------------------------------------------------- listen


def parse_listen(text: str, allow_remote: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port). Every address the host
    resolves to must be loopback unless ``allow_remote``: the exporter shows what runs
    inside guests, which is not for everyone on the network by default."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--listen: expected HOST:PORT like {DEFAULT_LISTEN}, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise UsageError("--listen: name the address (an empty host means every interface)")
    if not allow_remote:
        try:
            addrs = {ipaddress.ip_address(host)}
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError as e:
                raise UsageError(f"--listen: cannot resolve {host!r}: {e}") from None
            addrs = {ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos}
        if not addrs or not all(a.is_loopback for a in addrs):
            raise UsageError(
                f"--listen: {host} is not a loopback address: guest facts would be served "
                "to the network (add --allow-remote if that is meant)"
            )
    return host, int(port_text)


# ----------------------------------------------------------------------------- guests


@dataclass(frozen=True)
class GuestFacts:
    """What one read of a guest's memory gives: counts only, no guest text."""

    processes: dict[str, int]  # by ps state letter (PROCESS_STATES)
    kernel_threads: int
    modules: int
    log_records: dict[str, int]  # by level name, in the ring buffer now
    log_next_seq: int  # records logged since boot (the next sequence number)
    log_last_timestamp: float | None  # seconds after boot of the newest record
    oom_kills: int  # OOM killer reports in the ring buffer
    oops: int  # oops/BUG/panic/WARNING first lines in the ring buffer
    complete: bool
    seconds: float


def facts_from_views(processes, modules, records, complete: bool, seconds: float) -> GuestFacts:
    """Count the views' rows (a pure function: unit tests feed it rows)."""
    states = dict.fromkeys(PROCESS_STATES, 0)
    kthreads = 0
    for p in processes:
        states[p.state if p.state in states else "?"] += 1
        kthreads += bool(p.kernel_thread)
    levels = dict.fromkeys(LOG_LEVELS, 0)
    levels["unknown"] = 0
    oom = oops = 0
    for r in records:
        lvl = r.level if isinstance(r.level, int) and 0 <= r.level < 8 else None
        levels[LOG_LEVELS[lvl] if lvl is not None else "unknown"] += 1
        oom += bool(OOM_RE.search(r.text))
        oops += bool(OOPS_RE.match(r.text))
    return GuestFacts(
        processes=states,
        kernel_threads=kthreads,
        modules=len(modules),
        log_records=levels,
        log_next_seq=max((r.seq + 1 for r in records), default=0),
        log_last_timestamp=max((r.timestamp for r in records), default=None),
        oom_kills=oom,
        oops=oops,
        complete=complete,
        seconds=seconds,
    )


def read_guest(name: str, timeout: float) -> GuestFacts:
    """Open ``name`` and read its processes, modules and kernel log through the views'
    own ``collect`` (the rows ``xenvmi ps``/``lsmod``/``dmesg`` print), all within
    ``timeout`` seconds. Runs in a worker thread, which opens and closes the guest
    itself (a Guest belongs to the thread that opened it)."""
    from xenvmi.guests import open_guest
    from xenvmi.views.dmesg import Dmesg
    from xenvmi.views.lsmod import Lsmod
    from xenvmi.views.ps import Ps

    start = time.monotonic()

    def left() -> float:
        return max(0.1, timeout - (time.monotonic() - start))

    with open_guest(name, discovery_timeout=timeout) as guest:
        ps = Ps.collect(guest, left())
        mods = Lsmod.collect(guest, left())
        dmesg = Dmesg.collect(guest, left())
    complete = ps.complete and mods.complete and dmesg.complete
    return facts_from_views(ps.rows, mods.rows, dmesg.rows, complete, time.monotonic() - start)


def reason_of(exc: BaseException) -> str:
    """The reason label for a failed read (REASONS)."""
    if isinstance(exc, NotFoundError):
        return "not_found"
    if isinstance(exc, PermissionDenied | PermissionError):
        return "permission"
    if isinstance(exc, Unavailable):
        return "unavailable"
    if isinstance(exc, GuestDataError):
        return "guest_data"
    if isinstance(exc, XenvmiError):
        return "error"
    return "internal"


@dataclass
class _Slot:
    """One opted-in guest: its last good facts, the last attempt's outcome, and the
    read in flight (at most one per guest, so a hung guest costs one thread)."""

    facts: GuestFacts | None = None
    facts_at: float = 0.0  # time.time() of the last good read
    attempted: float = float("-inf")  # time.monotonic() the last read started
    error: str | None = None  # reason of the last attempt, None if it succeeded
    message: str = ""
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)


class GuestReader:
    """Reads opted-in guests in the background for the collector, within a budget."""

    def __init__(
        self,
        names: Iterable[str],
        budget: float = DEFAULT_GUEST_BUDGET,
        interval: float = DEFAULT_GUEST_INTERVAL,
        read: Callable[[str, float], GuestFacts] = read_guest,
        read_timeout: float | None = None,
        parallel: int = 2,
        first_read_timeout: float = FIRST_READ_TIMEOUT,
    ) -> None:
        self.names = list(dict.fromkeys(names))
        self.budget, self.interval, self.read = budget, interval, read
        #: a read's own deadline: long enough for a first kernel discovery, and past
        #: the budget, so a read that overruns one scrape lands in the cache for the next
        self.read_timeout = read_timeout or max(interval, budget, 30.0)
        self.first_read_timeout = max(first_read_timeout, self.read_timeout)
        self.slots = {n: _Slot() for n in self.names}
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()  # a worker's outcome against the scrape's "budget"
        #: reads at once: each one walks a guest's kernel with drgn, CPU-bound in dom0,
        #: and dom0 is often given one or two CPUs
        self._slots_free = threading.BoundedSemaphore(max(1, parallel))

    def _start(self, name: str, slot: _Slot) -> None:
        slot.done = threading.Event()
        slot.attempted = time.monotonic()
        warm = slot.facts is not None and slot.error is None
        timeout = self.read_timeout if warm else self.first_read_timeout

        def work(done: threading.Event = slot.done) -> None:
            try:
                with self._slots_free:
                    facts = self.read(name, timeout)
            except Exception as e:  # any failure is the guest's metric, not the scrape's
                with self._lock:
                    slot.error, slot.message = reason_of(e), str(e)[:200]
                    done.set()
                if slot.error == "internal":
                    log.warning("reading %s failed unexpectedly", label(name), exc_info=True)
            else:
                with self._lock:
                    slot.facts, slot.facts_at = facts, time.time()
                    slot.error, slot.message = None, ""
                    done.set()

        slot.thread = threading.Thread(target=work, name=f"xenvmi-guest-{name}", daemon=True)
        slot.thread.start()

    def refresh(self, running: set[str] | None, known: set[str] | None = None) -> dict[str, _Slot]:
        """Start the reads that are due, wait for them until the budget is spent, and
        return every slot. A guest not running now (shut down, crashed, dying) is not
        read: ``not_running``, or ``not_found`` when no domain has that name;
        ``running=None`` (Xen's counters unreadable, so nothing is known to run) makes
        every guest ``unavailable``."""
        now = time.monotonic()
        waiting = []
        for name, slot in self.slots.items():
            busy = slot.thread is not None and not slot.done.is_set()
            if running is None or name not in running:
                absent = known is not None and name not in known
                if running is None:
                    slot.error = "unavailable"
                else:
                    slot.error = "not_found" if absent else "not_running"
                slot.message, slot.facts = "no such running domain", None
                slot.attempted = float("-inf")  # read as soon as it runs again
                continue
            if not busy and now - slot.attempted >= self.interval:
                self._start(name, slot)
                busy = True
            if busy:
                waiting.append(slot)
        deadline = now + self.budget
        for slot in waiting:
            slot.done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for slot in waiting:
                if not slot.done.is_set():
                    slot.error, slot.message = "budget", f"not read within {self.budget:g}s"
        for slot in self.slots.values():
            if slot.error:
                self.errors[slot.error] = self.errors.get(slot.error, 0) + 1
        return self.slots


# ----------------------------------------------------------------------------- collector


def _xen_sampler() -> Callable[[], tuple[NodeSample, list[DomainSample]]]:
    """A sample function over one libxenstat handle, reopened after a failure (xenstat
    handles do not survive a xenstored restart)."""
    from xenvmi.api import DomainSampler

    holder: list[DomainSampler] = []

    def sample() -> tuple[NodeSample, list[DomainSample]]:
        if not holder:
            holder.append(DomainSampler())
        try:
            return holder[0].sample()
        except Exception:
            stale = holder.pop()
            try:
                stale.close()
            except Exception as e:  # the sample's own error is the one to report
                log.debug("closing a failed xenstat handle: %s", e)
            raise

    return sample


def _domains() -> list[Domain]:
    from xenvmi.api import list_domains

    return list_domains(hypervisor=False)  # the counters come from the sampler


def _host_sampler() -> Callable[[], HostSample]:
    from xenvmi.api import HostSampler

    sampler = HostSampler(interval=0.1)
    return sampler.sample


class XenvmiCollector:
    """The custom collector: one scrape, one sample of every source.

    Each source is a function, so tests give fakes and the exporter never holds more
    than one xenstat handle. A failing source is an error metric (``errors_total`` by
    kind) and the other sources' series still come out."""

    def __init__(
        self,
        sample_xen: Callable[[], tuple[NodeSample, list[DomainSample]]] | None = None,
        domains: Callable[[], list[Domain]] | None = None,
        sample_host: Callable[[], HostSample] | None = None,
        guests: GuestReader | None = None,
    ) -> None:
        self.sample_xen = sample_xen or _xen_sampler()
        self.domains = domains or _domains
        self.sample_host = sample_host
        self.guests = guests
        self.errors: dict[str, int] = {}
        self._logged: dict[str, str] = {}  # the last message logged, by kind
        self.scrapes = 0
        self.last_duration = 0.0
        self._lock = threading.Lock()  # the HTTP server answers scrapes in threads

    def _error(self, kind: str, exc: BaseException) -> None:
        """Count a failed source; log it when its message changes (a host without Xen
        would otherwise log the same two lines every scrape, forever)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if self._logged.get(kind) != str(exc):
            self._logged[kind] = str(exc)
            log.warning("%s: %s", kind, exc, exc_info=not isinstance(exc, XenvmiError))

    def describe(self) -> list[Metric]:
        """Nothing to pre-register: the registry then does not call ``collect`` at
        registration time (which would sample Xen before the server is up)."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            start = time.monotonic()
            families = list(self._collect())
            self.scrapes += 1
            self.last_duration = time.monotonic() - start
        yield from families
        yield from self._health()

    def _collect(self) -> Iterator[Metric]:
        node: NodeSample | None = None
        samples: list[DomainSample] = []
        try:
            node, samples = self.sample_xen()
        except Exception as e:  # reported as xenvmi_xen_up 0 and an error by kind
            self._error("xen", e)
        up = GaugeMetricFamily(
            "xenvmi_xen_up", "1 if Xen's counters (libxenstat) were read this scrape"
        )
        up.add_metric([], 1 if node is not None else 0)
        yield up
        info: dict[int, Domain] = {}
        try:
            info = {d.domid: d for d in self.domains()}
        except Exception as e:  # domains still come out, typed 'unknown'
            self._error("xenstore", e)
        if node is not None:
            yield from host_families(node, samples)
            yield from domain_families(samples, info)
        if self.sample_host is not None:
            try:
                yield from dom0_families(self.sample_host())
            except Exception as e:  # dom0's own facts are optional
                self._error("dom0", e)
        if self.guests is not None:
            running = {s.name for s in samples if not ({"dying", "shutdown", "crashed"} & s.flags)}
            known = {s.name for s in samples}
            slots = self.guests.refresh(running if node is not None else None, known)
            yield from guest_families(slots)

    def _health(self) -> Iterator[Metric]:
        dur = GaugeMetricFamily(
            "xenvmi_exporter_scrape_duration_seconds", "how long the last scrape took"
        )
        dur.add_metric([], self.last_duration)
        yield dur
        scrapes = CounterMetricFamily("xenvmi_exporter_scrapes", "scrapes answered")
        scrapes.add_metric([], self.scrapes)
        yield scrapes
        errs = CounterMetricFamily(
            "xenvmi_exporter_errors",
            "sources that failed, by kind (xen, xenstore, dom0, and guest_<reason>)",
            labels=["kind"],
        )
        kinds = dict(self.errors)
        if self.guests is not None:
            kinds.update({f"guest_{k}": v for k, v in self.guests.errors.items()})
        for kind in ("xen", "xenstore") + (("dom0",) if self.sample_host else ()):
            kinds.setdefault(kind, 0)  # present from the first scrape: rate() needs a start
        for kind, n in sorted(kinds.items()):
            errs.add_metric([kind], n)
        yield errs


DOMAIN_LABELS = ["domain", "domid", "type"]


def _gauge(name: str, doc: str, labels: list[str] | None = None, unit: str = ""):
    return GaugeMetricFamily(name, doc, labels=labels, unit=unit)


def host_families(node: NodeSample, samples: list[DomainSample]) -> Iterator[Metric]:
    """Host facts: xentop's summary lines, and xen_exporter's running counts."""
    info = _gauge("xen_host_info", "Xen's version (the value is 1)", ["xen_version"])
    info.add_metric([label(node.xen_version)], 1)
    yield info
    for name, doc, value in (
        ("xen_host_cpus", "physical CPUs", node.cpus),
        ("xen_host_cpu_mhz", "physical CPU clock, MHz", node.cpu_mhz),
        ("xen_host_memory_total_bytes", "host memory Xen manages", node.memory_total_kib * 1024),
        ("xen_host_memory_free_bytes", "host memory free in Xen", node.memory_free_kib * 1024),
        ("xen_host_domains", "domains", len(samples)),
        (
            "xen_host_running_domains",
            "domains running on a CPU at the sample",
            sum("running" in s.flags for s in samples),
        ),
        (
            "xen_host_vcpus",
            "vCPUs of every domain (online where Xen says)",
            sum(s.vcpus_online if s.vcpus_online is not None else s.vcpus for s in samples),
        ),
    ):
        g = _gauge(name, doc)
        g.add_metric([], value)
        yield g


#: The six state flags of xentop, each a series of xen_domain_state.
STATE_FLAGS = ("running", "blocked", "paused", "shutdown", "crashed", "dying")


def domain_families(samples: list[DomainSample], info: dict[int, Domain]) -> Iterator[Metric]:
    """Per-domain counters, labelled domain, domid, type (xen_exporter's and
    prometheus-xentop's names: docs/exporter.md)."""
    fams: dict[str, Metric] = {}

    def add(kind, name, doc, lbl, value, extra=()):
        if value is None:
            return
        if name not in fams:
            cls = CounterMetricFamily if kind == "c" else GaugeMetricFamily
            fams[name] = cls(name, doc, labels=DOMAIN_LABELS + [e[0] for e in extra])
        fams[name].add_metric(lbl + [e[1] for e in extra], value)

    for s in samples:
        d = info.get(s.domid)
        lbl = [label(s.name), str(s.domid), d.type if d else "unknown"]
        uuid = label(d.uuid) if d and d.uuid else ""
        add("g", "xen_domain_info", "a domain (value 1), with its uuid", lbl, 1, [("uuid", uuid)])
        for flag in STATE_FLAGS:
            add(
                "g",
                "xen_domain_state",
                "1 for each of xentop's state flags the domain has",
                lbl,
                int(flag in s.flags),
                [("state", flag)],
            )
        add("c", "xen_domain_cpu_seconds", "CPU time the domain used", lbl, s.cpu_seconds)
        add("g", "xen_domain_vcpus", "vCPUs the domain has", lbl, s.vcpus)
        add("g", "xen_domain_online_vcpus", "vCPUs online", lbl, s.vcpus_online)
        add("g", "xen_domain_memory_bytes", "memory the domain holds", lbl, s.memory_kib * 1024)
        mx = s.memory_max_kib
        add(
            "g",
            "xen_domain_memory_max_bytes",
            "memory the domain may hold (absent: no limit)",
            lbl,
            None if mx is None else mx * 1024,
        )
        target = d.memory_target_kib if d else None
        add(
            "g",
            "xen_domain_memory_target_bytes",
            "the balloon target in xenstore",
            lbl,
            None if target is None else target * 1024,
        )
        add("g", "xen_domain_nics", "virtual network interfaces", lbl, s.nets)
        add("c", "xen_domain_net_transmit_bytes", "bytes sent, all vifs", lbl, s.net_tx_bytes)
        add("c", "xen_domain_net_receive_bytes", "bytes received, all vifs", lbl, s.net_rx_bytes)
        add("g", "xen_domain_vbds", "virtual block devices", lbl, s.vbds)
        add("c", "xen_domain_vbd_read_requests", "VBD read requests, all vbds", lbl, s.vbd_rd)
        add("c", "xen_domain_vbd_write_requests", "VBD write requests, all vbds", lbl, s.vbd_wr)
        add(
            "c",
            "xen_domain_vbd_read_bytes",
            "bytes read from VBDs (sectors x 512)",
            lbl,
            None if s.vbd_rsect is None else s.vbd_rsect * SECTOR,
        )
        add(
            "c",
            "xen_domain_vbd_written_bytes",
            "bytes written to VBDs (sectors x 512)",
            lbl,
            None if s.vbd_wsect is None else s.vbd_wsect * SECTOR,
        )
        add(
            "c",
            "xen_domain_vbd_out_of_requests",
            "times the backend ran out of requests",
            lbl,
            s.vbd_oo,
        )
    yield from fams.values()


def dom0_families(h: HostSample) -> Iterator[Metric]:
    """Dom0's own load and memory, and whether Xen's daemons run (what xentop cannot
    see and an operator checks first when domains misbehave)."""
    for name, doc, value in (
        ("xenvmi_dom0_cpu_percent", "dom0's CPU use, % of its CPUs", h.cpu_percent),
        ("xenvmi_dom0_load1", "dom0's 1-minute load average", h.load_1m),
        ("xenvmi_dom0_memory_total_bytes", "dom0's memory", h.memory_total_kib * 1024),
        (
            "xenvmi_dom0_memory_available_bytes",
            "dom0's available memory",
            h.memory_available_kib * 1024,
        ),
    ):
        if value is not None:
            g = _gauge(name, doc)
            g.add_metric([], value)
            yield g
    up = _gauge("xenvmi_xen_daemon_up", "1 if the Xen daemon runs", ["daemon", "domid"])
    for d in h.daemons:
        up.add_metric([d.name, "" if d.domid is None else str(d.domid)], int(d.alive))
    yield up


def guest_families(slots: dict[str, _Slot]) -> Iterator[Metric]:
    """The guest facts of opted-in domains, and whether each could be read."""
    ok = _gauge("xenvmi_guest_read_ok", "1 if the guest's memory was read", ["domain"])
    err = _gauge(
        "xenvmi_guest_read_error",
        "1 for the reason the guest's last read failed",
        ["domain", "reason"],
    )
    fams = {
        "procs": _gauge(
            "xenvmi_guest_processes", "processes by ps state letter", ["domain", "state"]
        ),
        "dstate": _gauge(
            "xenvmi_guest_processes_uninterruptible", "processes in D state", ["domain"]
        ),
        "kthreads": _gauge("xenvmi_guest_kernel_threads", "kernel threads", ["domain"]),
        "modules": _gauge("xenvmi_guest_modules", "loaded kernel modules", ["domain"]),
        "log": _gauge(
            "xenvmi_guest_log_records",
            "kernel log records in the ring buffer, by level",
            ["domain", "level"],
        ),
        "seq": CounterMetricFamily(
            "xenvmi_guest_log_records_logged", "kernel log records since boot", labels=["domain"]
        ),
        "last": _gauge(
            "xenvmi_guest_log_last_timestamp_seconds",
            "seconds after boot of the newest kernel log record (a lower bound on uptime)",
            ["domain"],
        ),
        "oom": _gauge("xenvmi_guest_oom_kills", "OOM killer reports in the kernel log", ["domain"]),
        "oops": _gauge(
            "xenvmi_guest_kernel_oops",
            "oops, BUG, panic and WARNING reports in the kernel log",
            ["domain"],
        ),
        "complete": _gauge(
            "xenvmi_guest_read_complete", "1 if every view read all its rows", ["domain"]
        ),
        "secs": _gauge("xenvmi_guest_read_seconds", "how long the last good read took", ["domain"]),
        "age": _gauge(
            "xenvmi_guest_read_timestamp_seconds", "when the facts were read (unix)", ["domain"]
        ),
    }
    for name, slot in sorted(slots.items()):
        dom = label(name)
        ok.add_metric([dom], 0 if slot.error else 1)
        if slot.error:
            err.add_metric([dom, slot.error], 1)
            continue  # the last attempt failed: no older facts shown as current ones
        f = slot.facts
        if f is None:
            continue
        for state, n in f.processes.items():
            fams["procs"].add_metric([dom, state], n)
        fams["dstate"].add_metric([dom], f.processes.get("D", 0))
        fams["kthreads"].add_metric([dom], f.kernel_threads)
        fams["modules"].add_metric([dom], f.modules)
        for level, n in f.log_records.items():
            fams["log"].add_metric([dom, level], n)
        fams["seq"].add_metric([dom], f.log_next_seq)
        if f.log_last_timestamp is not None:
            fams["last"].add_metric([dom], f.log_last_timestamp)
        fams["oom"].add_metric([dom], f.oom_kills)
        fams["oops"].add_metric([dom], f.oops)
        fams["complete"].add_metric([dom], int(f.complete))
        fams["secs"].add_metric([dom], f.seconds)
        fams["age"].add_metric([dom], slot.facts_at)
    yield ok
    yield err
    yield from fams.values()


# ----------------------------------------------------------------------------- serving


def registry(collector: XenvmiCollector) -> CollectorRegistry:
    """A registry with only our collector: no process or platform collector (they
    describe the exporter's Python process, not Xen: node_exporter covers dom0)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)  # a Collector by protocol: describe() and collect()
    return reg


def exposition(reg: CollectorRegistry, openmetrics: bool = False) -> bytes:
    """One scrape as Prometheus text (or OpenMetrics) exposition."""
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest as om

        return om(reg)
    from prometheus_client import generate_latest

    return generate_latest(reg)


def serve(reg: CollectorRegistry, host: str, port: int):
    """Serve /metrics with prometheus_client's own threaded server (it negotiates
    OpenMetrics from the Accept header). Returns (server, thread)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=reg)
