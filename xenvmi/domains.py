"""Collect domains, domain samples and host samples into model dataclasses.

Identity and configuration come from xenstore (written by the toolstack, plus the device
nodes the guest shares), run state and counters from the hypervisor via libxenstat. The
xenstore part reads every domain in five pipelined round trips, whatever their number.
The arithmetic (CPU %, merging, parsing) is plain functions over plain data: unit tests
drive it with a fake store and fake counters.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from xenvmi.backends.xenstat import DomainCounters, NodeCounters, XenStat
from xenvmi.errors import Unavailable
from xenvmi.model.host import (
    Daemon,
    Device,
    Domain,
    DomainSample,
    HostSample,
    NodeSample,
    pick_domain,
    xenbus_state_name,
)

if TYPE_CHECKING:
    import psutil

#: Bounds on what a guest-controlled directory may make us read.
MAX_DOMAINS, MAX_DEVICE_KINDS, MAX_DEVICES_PER_KIND, MAX_VCPUS = 4096, 32, 64, 512
_BACKEND_RE = re.compile(r"^/local/domain/\d{1,5}/backend/[A-Za-z0-9_-]+/\d{1,5}/[A-Za-z0-9_-]+$")
#: State word for Domain.state: the first flag set, in this order, wins.
_STATE_ORDER = (
    ("d", "dying"),
    ("c", "crashed"),
    ("s", "shutdown"),
    ("p", "paused"),
    ("r", "running"),
    ("b", "blocked"),
)


class Store(Protocol):
    """What collection needs from xenstore (``XenStore``, or a fake in tests): values and
    children of many paths in one round trip, None for absent ones."""

    def fetch(
        self, reads: Iterable[str] = (), lists: Iterable[str] = ()
    ) -> tuple[Mapping[str, str | None], Mapping[str, list[str] | None]]: ...


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def state_word(letters: str) -> str:
    """xentop letters ('--b---') -> one word; no flag at all means runnable, waiting."""
    for letter, word in _STATE_ORDER:
        if letter in letters:
            return word
    return "runnable"


def own_guest_type() -> str | None:
    """This kernel's guest type ('pv', 'pvh', 'hvm'): dom0 has no /libxl/0/type. Linux on
    Arm calls itself HVM; xl calls every Arm domain, dom0 included, PVH (there is one
    type there), and so does xenvmi."""
    try:
        with open("/sys/hypervisor/guest_type") as f:
            kind = f.read(16).strip().lower() or None
    except OSError:
        return None
    return "pvh" if kind == "hvm" and platform.machine() in ("aarch64", "arm64") else kind


# ----------------------------------------------------------------------------- domains


def collect_domains(
    store: Store, stats: NodeCounters | None = None, dom0_type: str | None = None
) -> list[Domain]:
    """Every domain xenstore knows, merged with Xen's counters when ``stats`` is given
    (then Xen, not xenstore, says how many vCPUs there are and which are online).

    xenstored answers one request at a time, so the number of requests is the cost: about
    ten per domain, in five pipelined round trips (domids; keys; device ids and vCPUs;
    device nodes; backend states)."""
    listed = store.fetch(lists=["/local/domain"])[1].get("/local/domain") or []
    domids = sorted({int(d) for d in listed if d.isdigit()})[:MAX_DOMAINS]
    keys = (
        "name",
        "vm",
        "memory/target",
        "memory/static-max",
        "memory/videoram",
        "console/backend",
    )
    base = {d: f"/local/domain/{d}" for d in domids}
    subdirs = ("device",) if stats else ("device", "cpu")
    first, dirs = store.fetch(
        [f"{base[d]}/{k}" for d in domids for k in keys] + [f"/libxl/{d}/type" for d in domids],
        [f"{base[d]}/{k}" for d in domids for k in subdirs],
    )
    values = dict(first)  # the later round trips' values join it
    kinds = {d: sorted(dirs.get(f"{base[d]}/device") or [])[:MAX_DEVICE_KINDS] for d in domids}
    cpus = {d: _cpu_ids(dirs.get(f"{base[d]}/cpu")) for d in domids}
    more, ids = store.fetch(
        [f"{base[d]}/cpu/{c}/availability" for d in domids for c in cpus[d]],
        [f"{base[d]}/device/{k}" for d in domids for k in kinds[d]],
    )
    values.update(more)
    devs = {
        d: [
            (k, i)
            for k in kinds[d]
            for i in sorted(ids.get(f"{base[d]}/device/{k}") or [])[:MAX_DEVICES_PER_KIND]
        ]
        for d in domids
    }
    values.update(
        store.fetch(
            [
                f"{base[d]}/device/{k}/{i}/{f}"
                for d in domids
                for k, i in devs[d]
                for f in ("backend", "state")
            ]
        )[0]
    )
    backends = [
        _backend(values, f"{base[d]}/device/{k}/{i}", d, i) for d in domids for k, i in devs[d]
    ]
    backends += [_backend(values, f"{base[d]}/console", d, "0") for d in domids]
    values.update(store.fetch([f"{b}/state" for b in backends if b])[0])
    by_id = {c.domid: c for c in stats.domains} if stats else {}
    return [_domain(d, base[d], values, cpus[d], devs[d], by_id.get(d), dom0_type) for d in domids]


def _backend(values: Mapping[str, str | None], front: str, domid: int, devid: str) -> str | None:
    """The frontend's ``backend`` path if it has the shape a toolstack writes (the backend
    kind may differ: a vbd served by qdisk). The frontend directory belongs to the guest,
    so the path is checked before anything is read through it."""
    path = values.get(f"{front}/backend")
    if path and _BACKEND_RE.match(path) and path.endswith(f"/{domid}/{devid}"):
        return path
    return None


def _cpu_ids(names: list[str] | None) -> list[str]:
    return sorted((n for n in names or [] if n.isdigit()), key=int)[:MAX_VCPUS]


def _device(
    kind: str,
    devid: str,
    front: str,
    values: Mapping[str, str | None],
    state_key: str | None,
    domid: int,
) -> Device:
    backend = _backend(values, front, domid, devid)
    return Device(
        kind=kind,
        devid=devid,
        backend_domid=int(backend.split("/")[3]) if backend else None,
        backend=backend,
        state=xenbus_state_name(values.get(state_key)) if state_key else None,
        backend_state=xenbus_state_name(values.get(f"{backend}/state")) if backend else None,
    )


def _domain(
    domid: int,
    base: str,
    values: Mapping[str, str | None],
    cpus: list[str],
    devs: list[tuple[str, str]],
    stat: DomainCounters | None,
    dom0_type: str | None,
) -> Domain:
    """One Domain from the values read under ``base`` (a pure function: tests use it)."""
    vm = values.get(f"{base}/vm")
    uuid = vm.rsplit("/", 1)[-1] if vm and vm.startswith("/vm/") else None
    dtype = values.get(f"/libxl/{domid}/type") or (dom0_type if domid == 0 else None)
    target = _int(values.get(f"{base}/memory/target"))
    if target is not None:  # libxl keeps the video RAM out of the balloon target
        target += _int(values.get(f"{base}/memory/videoram")) or 0
    static_max = _int(values.get(f"{base}/memory/static-max"))
    online = [c for c in cpus if values.get(f"{base}/cpu/{c}/availability") == "online"]
    devices = [
        _device(k, i, f"{base}/device/{k}/{i}", values, f"{base}/device/{k}/{i}/state", domid)
        for k, i in devs
        if values.get(f"{base}/device/{k}/{i}/backend")
        or values.get(f"{base}/device/{k}/{i}/state")
    ]  # not device/suspend/...
    if values.get(f"{base}/console/backend"):
        devices.insert(0, _device("console", "0", f"{base}/console", values, None, domid))
    name = values.get(f"{base}/name") or (stat.name if stat else "") or f"(domain {domid})"
    mem_kib = stat.memory_bytes // 1024 if stat else None
    max_kib = stat.memory_max_bytes // 1024 if stat and stat.memory_max_bytes else None
    return Domain(
        domid=domid,
        name=name,
        uuid=uuid,
        type=dtype if dtype in ("pv", "pvh", "hvm") else "unknown",
        state=state_word(stat.state) if stat else None,
        memory_target_kib=target if target is not None else mem_kib,
        memory_max_kib=static_max if static_max is not None else max_kib,
        vcpus=stat.vcpus if stat else (len(cpus) if cpus else None),
        vcpus_online=stat.vcpus_online if stat else (len(online) if cpus else None),
        memory_kib=mem_kib,
        devices=tuple(devices),
    )


class _Named(Protocol):
    """A Domain or a DomainSample: what :func:`find_domain` picks among."""

    @property
    def domid(self) -> int: ...
    @property
    def name(self) -> str: ...


_D = TypeVar("_D", bound=_Named)


def find_domain(domains: Sequence[_D], name_or_id: str | int) -> _D:
    """The domain (or sample) ``name_or_id`` names, by :func:`~xenvmi.model.host.pick_domain`."""
    domid, _ = pick_domain(((d.domid, d.name) for d in domains), name_or_id)
    return next(d for d in domains if d.domid == domid)


# ----------------------------------------------------------------------------- samples


def cpu_percent(prev_ns: int, cur_ns: int, elapsed_s: float) -> float | None:
    """Percent of one physical CPU, as xentop computes it; None if not computable."""
    if elapsed_s <= 0 or cur_ns < prev_ns:
        return None
    return (cur_ns - prev_ns) / 1e9 / elapsed_s * 100.0


def make_samples(cur: NodeCounters, prev: NodeCounters | None = None) -> list[DomainSample]:
    """DomainSamples from a node, CPU % from ``prev`` (same domid and name), by domid."""
    before = {(c.domid, c.name): c for c in prev.domains} if prev else {}
    total = cur.memory_total_bytes or 1
    out = []
    for c in sorted(cur.domains, key=lambda c: c.domid):
        old = before.get((c.domid, c.name))
        pct = cpu_percent(old.cpu_ns, c.cpu_ns, cur.mono - prev.mono) if old and prev else None
        vbd = c.vbd or (None,) * 5
        out.append(
            DomainSample(
                time=cur.time,
                domid=c.domid,
                name=c.name,
                state=c.state,
                cpu_ns=c.cpu_ns,
                cpu_seconds=c.cpu_ns / 1e9,
                cpu_percent=pct,
                memory_kib=c.memory_bytes // 1024,
                memory_percent=c.memory_bytes / total * 100.0,
                memory_max_kib=None if c.memory_max_bytes is None else c.memory_max_bytes // 1024,
                memory_max_percent=None
                if c.memory_max_bytes is None
                else c.memory_max_bytes / total * 100.0,
                vcpus=c.vcpus,
                vcpus_online=c.vcpus_online,
                nets=c.nets,
                net_tx_bytes=c.net_tx_bytes,
                net_rx_bytes=c.net_rx_bytes,
                vbds=c.vbds,
                vbd_oo=vbd[0],
                vbd_rd=vbd[1],
                vbd_wr=vbd[2],
                vbd_rsect=vbd[3],
                vbd_wsect=vbd[4],
                ssid=c.ssid,
            )
        )
    return out


def node_sample(cur: NodeCounters) -> NodeSample:
    return NodeSample(
        time=cur.time,
        xen_version=cur.xen_version,
        cpus=cur.cpus,
        cpu_mhz=cur.cpu_hz // 1_000_000,
        memory_total_kib=cur.memory_total_bytes // 1024,
        memory_free_kib=cur.memory_free_bytes // 1024,
        domains=len(cur.domains),
    )


class DomainSampler:
    """Successive samples from one libxenstat handle; CPU % from the previous sample."""

    def __init__(self, xenstat: XenStat | None = None) -> None:
        if xenstat is None:
            xenstat = XenStat().open()
        self.xenstat = xenstat
        self.previous: NodeCounters | None = None

    def sample(self) -> tuple[NodeSample, list[DomainSample]]:
        cur = self.xenstat.node()
        samples = make_samples(cur, self.previous)
        self.previous = cur
        return node_sample(cur), samples

    def close(self) -> None:
        self.xenstat.close()


# ----------------------------------------------------------------------------- host

#: Process names of Xen's dom0 daemons -> the name we report.
DAEMON_NAMES = {"xenstored": "xenstored", "oxenstored": "xenstored", "xenconsoled": "xenconsoled"}
REQUIRED_DAEMONS = ("xenstored", "xenconsoled")


def daemon_kind(name: str, cmdline: Sequence[str]) -> tuple[str, int | None] | None:
    """('xenstored', None), ('qemu', domid) or None for an unrelated process."""
    if name in DAEMON_NAMES:
        return DAEMON_NAMES[name], None
    if "qemu" in name and "-xen-domid" in cmdline:
        i = list(cmdline).index("-xen-domid")
        return "qemu", _int(cmdline[i + 1]) if i + 1 < len(cmdline) else None
    return None


#: Finding the daemons means reading every process in /proc: seconds of CPU on the lab's
#: emulated dom0, most of the TUI's idle cost when done every sample. Known daemons are
#: re-checked every sample; the whole scan runs this often, or as soon as one exits.
RESCAN_SECONDS = 30.0


class HostSampler:
    """Dom0's CPU, memory and Xen daemons via psutil; CPU % since the previous sample
    (the first sample measures over ``interval`` seconds)."""

    def __init__(self, interval: float = 0.2, rescan: float = RESCAN_SECONDS):
        try:
            import psutil
        except ImportError:
            raise Unavailable("host metrics need psutil: pip install 'psutil>=5.9'") from None
        self.psutil, self.interval, self.rescan = psutil, interval, rescan
        self._known: dict[int, tuple[str, int | None, psutil.Process, str]] | None = None
        self._scanned = 0.0
        self.scans = 0
        self._primed = False

    def _scan(self) -> dict[int, tuple[str, int | None, psutil.Process, str]]:
        """Every daemon process: by name first, the command line only for candidates."""
        old = self._known or {}
        found: dict[int, tuple[str, int | None, psutil.Process, str]] = {}
        for proc in self.psutil.process_iter(["name"]):
            name = proc.info["name"] or ""
            if name not in DAEMON_NAMES and "qemu" not in name:
                continue
            cmdline = _quiet(proc.cmdline) or []
            kind = daemon_kind(name, cmdline)
            if kind:
                prev = old.get(proc.pid)
                if prev is not None and prev[2] == proc:  # same process: keep its CPU counter
                    proc = prev[2]
                found[proc.pid] = (*kind, proc, " ".join(cmdline)[:200])
        self._known, self._scanned = found, time.monotonic()
        self.scans += 1
        return found

    def _daemons(self) -> list[tuple[str, int | None, psutil.Process, str]]:
        """The daemons, each running as of this call: the known ones if each still is
        (one is_running each: it re-reads the process's start time, the check against a
        reused pid, and is most of a sample's cost in an emulated dom0), else a scan."""
        known = self._known
        if (
            known is None
            or time.monotonic() - self._scanned >= self.rescan
            or not all(_quiet(d[2].is_running) for d in known.values())
        ):
            known = self._scan()
        return list(known.values())

    def sample(self) -> HostSample:
        ps = self.psutil
        found = self._daemons()
        if not self._primed:
            ps.cpu_percent(None)
            for _, _, proc, _ in found:
                _quiet(proc.cpu_percent, None)
            time.sleep(self.interval)
            self._primed = True
        daemons = []
        for name, domid, proc, cmdline in found:
            with proc.oneshot():
                rss = _quiet(lambda p=proc: p.memory_info().rss // 1024)
                daemons.append(
                    Daemon(
                        name=name,
                        pid=proc.pid,
                        alive=True,  # _daemons just checked it
                        cpu_percent=_quiet(proc.cpu_percent, None),
                        rss_kib=rss,
                        domid=domid,
                        cmdline=cmdline,
                    )
                )
        for name in REQUIRED_DAEMONS:
            if not any(d.name == name for d in daemons):
                daemons.append(Daemon(name=name, pid=None, alive=False))
        mem = ps.virtual_memory()
        uname = os.uname()  # platform's import is not free on the CLI's one-shot path
        return HostSample(
            time=time.time(),
            hostname=uname.nodename,
            kernel=uname.release,
            cpus=ps.cpu_count() or 0,
            cpu_percent=ps.cpu_percent(None),
            load_1m=os.getloadavg()[0],
            memory_total_kib=mem.total // 1024,
            memory_available_kib=mem.available // 1024,
            memory_used_kib=(mem.total - mem.available) // 1024,
            daemons=tuple(sorted(daemons, key=lambda d: (d.name, d.domid or 0, d.pid or 0))),
        )


def _quiet(func, *args):
    """psutil calls on a process that may exit under us: None instead of an exception."""
    import psutil

    try:
        return func(*args)
    except psutil.Error:  # NoSuchProcess, AccessDenied, ZombieProcess
        return None
