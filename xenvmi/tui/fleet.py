"""FleetSource: several hosts' RemoteSources as one DataSource (``xenvmi tui --host``).

The screens key domains by an int (rows, histories, the domain screen). Two hosts both
have a domain 1, so a fleet's key is ``host index * HOST_STRIDE + domid`` (domids are
below 0x7ff0): the Host and ID columns split it back (format.host_index, local_domid),
and this source sends a guest's or a xenstore path's requests to the host the key names,
with the host's own domid. A host that is not delivering samples keeps its last rows
(if stale) and gets one row of its own, domid PLACEHOLDER, whose name says what is wrong
(connecting, down, stale); the reason is the host panel's line.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
import time

from xenvmi.errors import NotFoundError, Unavailable
from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample, XsTree
from xenvmi.plugins import PluginInfo, PluginResult
from xenvmi.tui.format import HOST_STRIDE, PLACEHOLDER, host_index, local_domid
from xenvmi.tui.remote_source import NO_TRACE, HostState, HostWatcher, RemoteFeed, RemoteSource
from xenvmi.tui.sources import XS_MAX_NODES, ShouldStop

_DOMAIN_PATH = re.compile(r"/local/domain/(\d+)(/.*)?")


def key(index: int, domid: int) -> int:
    return index * HOST_STRIDE + domid


def placeholder(index: int, state: HostState) -> DomainSample:
    """The row that stands for a host without fresh samples (time 0: no sample)."""
    return DomainSample(
        time=0.0,
        domid=key(index, PLACEHOLDER),
        name=f"({state.status})",
        state=state.status,
        cpu_ns=0,
        cpu_seconds=0.0,
        cpu_percent=None,
        memory_kib=0,
        memory_percent=0.0,
        memory_max_kib=None,
        memory_max_percent=None,
        vcpus=0,
        vcpus_online=None,
        nets=0,
        net_tx_bytes=0,
        net_rx_bytes=0,
        vbds=0,
        vbd_oo=None,
        vbd_rd=None,
        vbd_wr=None,
        vbd_rsect=None,
        vbd_wsect=None,
        ssid=0,
    )


class FleetSource:
    def __init__(self, sources: list[RemoteSource]) -> None:
        if not sources:
            raise Unavailable("no hosts given")
        self.sources = sources
        self.hosts = [s.remote.host for s in sources]
        self.label = "hosts " + ", ".join(self.hosts)
        self._sampler: FleetSampler | None = None

    def _split(self, domain: str | int) -> tuple[RemoteSource, int]:
        try:
            k = int(domain)
        except ValueError:
            raise NotFoundError(f"no domain {domain!r}: pick it in the table") from None
        i, domid = host_index(k), local_domid(k)
        if not 0 <= i < len(self.sources):
            raise NotFoundError(f"no domain {domain!r}")
        if domid == PLACEHOLDER:
            raise Unavailable(self.host_reason(i) or f"{self.hosts[i]}: no domains yet")
        return self.sources[i], domid

    def host_reason(self, index: int) -> str:
        """Why host ``index`` has no domains (its watcher's last error, which names the
        host), if known."""
        if self._sampler is None:
            return ""
        return self._sampler.watchers[index].snapshot().reason

    def sampler(self, should_stop: ShouldStop) -> FleetSampler:
        self._sampler = FleetSampler([src.watcher() for src in self.sources], self.hosts)
        return self._sampler

    def guest(self, domain: str | int, should_stop: ShouldStop):
        src, domid = self._split(domain)
        return src.guest(domid, should_stop)

    def xenstore(self, should_stop: ShouldStop) -> FleetXs:
        return FleetXs(self, should_stop)

    def hypercalls(self, should_stop: ShouldStop) -> RemoteFeed:
        raise Unavailable(NO_TRACE)

    def plugins(self) -> list[PluginInfo]:
        return self.sources[0].plugins()

    def run_plugin(self, name: str, domain: str | int | None) -> PluginResult:
        return self.sources[0].run_plugin(name, domain)


class FleetSampler:
    """Merges what each host's watcher has; never blocks on a host."""

    def __init__(self, watchers: list[HostWatcher], hosts: list[str]) -> None:
        self.watchers, self.hosts = watchers, hosts
        self._last_frames = [0] * len(watchers)
        self._lists: list[int] = []

    def _states(self) -> list[HostState]:
        return [w.snapshot() for w in self.watchers]

    def domains(self) -> list[Domain]:
        """Every host's identities as far as they have arrived (a host lists its domains
        beside its sample stream; identities_changed says when more came)."""
        states = self._states()
        self._lists = [st.lists for st in states]
        return [
            dataclasses.replace(d, domid=key(i, d.domid))
            for i, st in enumerate(states)
            for d in st.domains
        ]

    def identities_changed(self) -> bool:
        """A host's domain list arrived since ``domains`` was last called."""
        return [w.snapshot().lists for w in self.watchers] != self._lists

    def sample(self) -> tuple[NodeSample | None, list[DomainSample]]:
        rows: list[DomainSample] = []
        for i, st in enumerate(self._states()):
            if st.status != "ok":
                rows.append(placeholder(i, st))
            if st.status in ("ok", "stale"):
                rows += [dataclasses.replace(s, domid=key(i, s.domid)) for s in st.samples]
        return None, rows

    def host(self) -> HostSample:
        """Every host's dom0 added up, or why some host has none."""
        states = self._states()
        bad = [
            f"{h} {st.status}: {(st.reason or st.list_error).replace(h + ': ', '')}"
            for h, st in zip(self.hosts, states)
            if st.reason or st.list_error
        ]
        if bad:
            raise Unavailable(" · ".join(bad))
        hosts = [st.host for st in states if st.host is not None]
        if not hosts:
            raise Unavailable("waiting for the hosts' first samples")
        cpus = sum(h.cpus for h in hosts)
        busy = [h.cpu_percent * h.cpus for h in hosts if h.cpu_percent is not None]
        return HostSample(
            time=max(h.time for h in hosts),
            hostname=hosts[0].hostname if len(hosts) == 1 else f"{len(hosts)} hosts",
            kernel=hosts[0].kernel,
            cpus=cpus,
            cpu_percent=sum(busy) / cpus if busy and cpus else None,
            load_1m=max(h.load_1m for h in hosts),
            memory_total_kib=sum(h.memory_total_kib for h in hosts),
            memory_available_kib=sum(h.memory_available_kib for h in hosts),
            memory_used_kib=sum(h.memory_used_kib for h in hosts),
            daemons=tuple(d for h in hosts for d in h.daemons),
        )

    def wait_change(self, timeout: float) -> bool:
        """True when some host sent a frame since the last call (or changed state)."""
        deadline = time.monotonic() + timeout
        while True:
            frames = [w.snapshot().frames for w in self.watchers]
            if frames != self._last_frames or any(w.changed.is_set() for w in self.watchers):
                self._last_frames = frames
                for w in self.watchers:
                    w.changed.clear()
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.watchers[0].changed.wait(min(left, 0.05))

    def close(self) -> None:
        for w in self.watchers:
            w.stop_soon()
        for w in self.watchers:
            w.close()


class FleetXs:
    """Xenstore under ``/local/domain/KEY`` of the host KEY names (a domain's tab)."""

    def __init__(self, fleet: FleetSource, should_stop: ShouldStop) -> None:
        self.fleet, self.should_stop = fleet, should_stop

    def _route(self, path: str):
        m = _DOMAIN_PATH.fullmatch(path)
        if m is None:
            raise Unavailable(
                "with --host the XenStore browser is per domain: open a domain, tab XenStore"
            )
        src, domid = self.fleet._split(m.group(1))
        return src.xenstore(self.should_stop), f"/local/domain/{domid}{m.group(2) or ''}"

    def list(self, path: str) -> builtins.list[str]:
        xs, p = self._route(path)
        return xs.list(p)

    def read(self, path: str) -> str | None:
        xs, p = self._route(path)
        return xs.read(p)

    def walk(self, path: str, max_nodes: int = XS_MAX_NODES) -> XsTree:
        xs, p = self._route(path)
        return xs.walk(p, max_nodes)

    def wait(self, path: str, timeout: float) -> builtins.list[str]:
        xs, p = self._route(path)
        return xs.wait(p, timeout)

    def close(self) -> None:
        pass
