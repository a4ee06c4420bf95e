"""Frozen dataclasses: what the collectors return and every renderer (CLI, TUI, plugins) reads.

A row's JSON shape is its fields (``render.to_jsonable``), so renaming a field here changes
the documented JSON of ``xenvmi list``/``top``/``xs``: add fields, do not rename them.
Sizes are KiB and times are seconds unless a field name says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: enum xenbus_state (xen/include/public/io/xenbus.h), lower case.
XENBUS_STATES = (
    "unknown",
    "initialising",
    "initwait",
    "initialised",
    "connected",
    "closing",
    "closed",
    "reconfiguring",
    "reconfigured",
)


def xenbus_state_name(value: str | None) -> str | None:
    """'4' -> 'connected'; None stays None; anything else -> 'invalid(<value>)'."""
    if value is None:
        return None
    if value.strip().isdigit() and int(value) < len(XENBUS_STATES):
        return XENBUS_STATES[int(value)]
    return f"invalid({value[:16]})"


# ----------------------------------------------------------------------------- xenstore


@dataclass(frozen=True)
class XsNode:
    """One xenstore node: its path, value (None if unreadable) and number of children."""

    path: str
    value: str | None
    children: int = 0
    depth: int = 0


@dataclass(frozen=True)
class XsTree:
    """A bounded walk: ``truncated`` says why it stopped early ('' if it did not)."""

    top: str
    nodes: tuple[XsNode, ...]
    truncated: str = ""


@dataclass(frozen=True)
class WatchEvent:
    """A xenstore watch firing: the path that changed (or @introduceDomain/@releaseDomain)."""

    path: str
    token: str
    time: float


# ----------------------------------------------------------------------------- domains


@dataclass(frozen=True)
class Device:
    """A paravirtual device as its frontend (the guest) and backend see it in xenstore."""

    kind: str  # vbd, vif, console, vkbd, qdisk, 9pfs ...
    devid: str
    backend_domid: int | None
    backend: str | None  # the backend's xenstore directory
    state: str | None  # frontend xenbus state name ('connected', ...)
    backend_state: str | None  # backend xenbus state name


@dataclass(frozen=True)
class Domain:
    """Who a domain is: identity and configuration from xenstore, run state from Xen."""

    domid: int
    name: str
    uuid: str | None
    type: str  # pv, pvh, hvm, or 'unknown'
    state: str | None  # running, blocked, paused, shutdown, crashed, dying
    memory_target_kib: int | None  # balloon target (xenstore memory/target)
    memory_max_kib: int | None  # static maximum (xenstore memory/static-max, else Xen's)
    vcpus: int | None  # vCPUs the domain has (max_vcpu_id + 1)
    vcpus_online: int | None
    memory_kib: int | None = None  # pages the domain holds now (Xen's tot_pages), if known
    devices: tuple[Device, ...] = ()


#: xentop's state letters, in its order: dying, shutdown, blocked, crashed, paused, running.
STATE_LETTERS = "dsbcpr"


@dataclass(frozen=True)
class DomainSample:
    """One domain at one instant, the facts ``xentop -b`` prints (same units as xentop's
    columns where it has them: MEM(k) is ``memory_kib``, NETTX(k) is ``net_tx_bytes``/1024)."""

    time: float  # wall clock (time.time()) when sampled
    domid: int
    name: str
    state: str  # xentop's six letters, e.g. '--b---'
    cpu_ns: int
    cpu_seconds: float
    cpu_percent: float | None  # of one physical CPU since the previous sample; None at first
    memory_kib: int
    memory_percent: float
    memory_max_kib: int | None  # None: no limit
    memory_max_percent: float | None
    vcpus: int
    vcpus_online: int | None
    nets: int
    net_tx_bytes: int
    net_rx_bytes: int
    vbds: int
    vbd_oo: int | None  # None when every VBD's statistics were unreadable ('-')
    vbd_rd: int | None
    vbd_wr: int | None
    vbd_rsect: int | None
    vbd_wsect: int | None
    ssid: int

    @property
    def flags(self) -> frozenset[str]:
        names = ("dying", "shutdown", "blocked", "crashed", "paused", "running")
        return frozenset(n for n, c in zip(names, self.state) if c != "-")


@dataclass(frozen=True)
class NodeSample:
    """The physical host as Xen reports it (xentop's summary lines)."""

    time: float
    xen_version: str
    cpus: int
    cpu_mhz: int
    memory_total_kib: int
    memory_free_kib: int
    domains: int


@dataclass(frozen=True)
class Daemon:
    """A Xen helper process in dom0 (xenstored, xenconsoled, a QEMU device model)."""

    name: str
    pid: int | None
    alive: bool
    cpu_percent: float | None = None
    rss_kib: int | None = None
    domid: int | None = None  # for QEMU: the domain it serves (-xen-domid)
    cmdline: str = ""


@dataclass(frozen=True)
class HostSample:
    """Dom0 as Linux sees it (psutil): its own CPUs and memory, and the Xen daemons."""

    time: float
    hostname: str
    kernel: str
    cpus: int
    cpu_percent: float | None
    load_1m: float
    memory_total_kib: int
    memory_available_kib: int
    memory_used_kib: int
    daemons: tuple[Daemon, ...] = field(default_factory=tuple)


def pick_domain(candidates: Iterable[tuple[int, str | None]], wanted: str | int) -> tuple[int, str]:
    """The (domid, name) a user means by ``wanted``: a domain id when it is all digits
    and such a domain exists, else the domain with exactly that name. The one rule every
    command, the TUI and the VMI backend resolve a domain by (``xl`` resolves the same way).
    """
    from xenvmi.errors import NotFoundError

    pairs = [(int(domid), name) for domid, name in candidates]
    text = str(wanted).strip()
    if text.isdigit():
        for domid, name in pairs:
            if domid == int(text):
                return domid, name or ""
    for domid, name in pairs:
        if name is not None and name == text:
            return domid, name
    raise NotFoundError(f"no domain {text!r} (`xenvmi list` shows the domains)")
