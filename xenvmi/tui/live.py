"""LiveSource: the TUI's DataSource on a real dom0 (xenvmi.api, xenvmi.guests, the tracer).

Every handle is created, used and closed by the one worker thread that asked for it, and
every blocking call is bounded: xenstore requests by api.XENSTORE_TIMEOUT, watches by the
timeout the worker passes (short slices, so a quitting app is not kept waiting), guest
views by GUEST_VIEW_TIMEOUT, guest discovery by a progress callback that raises Stopped.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from xenvmi import api, plugins
from xenvmi.model.guest import GuestView, LogRecord, Module, Process, VcpuRegisters
from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample, XsTree
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.plugins import PluginInfo, PluginResult
from xenvmi.tui.sources import GUEST_VIEW_TIMEOUT, XS_MAX_NODES, ShouldStop, Stopped
from xenvmi.views.dmesg import Dmesg
from xenvmi.views.lsmod import Lsmod
from xenvmi.views.ps import Ps
from xenvmi.views.regs import Regs

if TYPE_CHECKING:
    from xenvmi.backends.xenstore import Watch, XenStore
    from xenvmi.guests import Guest

DOMAIN_EVENTS = ("@introduceDomain", "@releaseDomain")
#: Seconds a plugin may run from the TUI.
PLUGIN_TIMEOUT = 120.0


class LiveSource:
    label = "live"

    def sampler(self, should_stop: ShouldStop) -> LiveSampler:
        return LiveSampler()

    def guest(self, domain: str | int, should_stop: ShouldStop) -> LiveGuest:
        from xenvmi import guests

        def progress(_msg: str) -> None:
            if should_stop():
                raise Stopped()

        return LiveGuest(guests.open_guest(domain, progress=progress, discovery_timeout=300))

    def xenstore(self, should_stop: ShouldStop) -> LiveXs:
        return LiveXs(api.open_xenstore())

    def hypercalls(self, should_stop: ShouldStop) -> LiveFeed:
        return LiveFeed(should_stop)

    def plugins(self) -> list[PluginInfo]:
        return plugins.discover()

    def run_plugin(self, name: str, domain: str | int | None) -> PluginResult:
        return plugins.run(name, domain, timeout=PLUGIN_TIMEOUT)


class LiveSampler:
    """Samplers are opened on first use, so a missing capability is retried next refresh.

    The domain watch is set once and kept: the loop polls it in short slices, and setting
    a watch per slice (a connection, WATCH, xenstored's initial event, UNWATCH) cost most
    of a one-CPU dom0's time at --refresh 1."""

    def __init__(self) -> None:
        self._domains: api.DomainSampler | None = None
        self._host: api.HostSampler | None = None
        self._store: XenStore | None = None
        self._watch: Watch | None = None

    def domains(self) -> list[Domain]:
        return api.list_domains()

    def sample(self) -> tuple[NodeSample | None, list[DomainSample]]:
        if self._domains is None:
            self._domains = api.DomainSampler()
        return self._domains.sample()

    def host(self) -> HostSample:
        if self._host is None:
            self._host = api.HostSampler(interval=0.1)
        return self._host.sample()

    def wait_change(self, timeout: float) -> bool:
        try:
            if self._watch is None:
                self._store = api.open_xenstore()
                self._watch = self._store.watch(list(DOMAIN_EVENTS), skip_initial=True)
            return self._watch.next(timeout) is not None
        except BaseException:
            self._close_watch()  # set up again on the next call (or never, if this raises)
            raise

    def _close_watch(self) -> None:
        watch, store, self._watch, self._store = self._watch, self._store, None, None
        try:
            if watch is not None:
                watch.stop()
        finally:
            if store is not None:
                store.close()

    def close(self) -> None:
        try:
            self._close_watch()
        finally:
            if self._domains is not None:
                self._domains.close()
                self._domains = None


class LiveGuest:
    def __init__(self, guest: Guest) -> None:
        self.g = guest

    def processes(self) -> GuestView[Process]:
        return Ps.collect(self.g, GUEST_VIEW_TIMEOUT)

    def modules(self) -> GuestView[Module]:
        return Lsmod.collect(self.g, GUEST_VIEW_TIMEOUT)

    def kernel_log(self) -> GuestView[LogRecord]:
        return Dmesg.collect(self.g, GUEST_VIEW_TIMEOUT)

    def registers(self) -> GuestView[VcpuRegisters]:
        return Regs.collect(self.g, None)

    def close(self) -> None:
        self.g.close()


class LiveXs:
    def __init__(self, store: XenStore) -> None:
        self.store = store
        self._watch: Watch | None = None
        self._watch_path = ""

    def list(self, path: str) -> list[str]:
        return self.store.list(path)

    def read(self, path: str) -> str | None:
        return self.store.read(path)

    def walk(self, path: str, max_nodes: int = XS_MAX_NODES) -> XsTree:
        return self.store.walk(path, max_nodes=max_nodes)

    def wait(self, path: str, timeout: float) -> builtins.list[str]:
        """Paths under ``path`` that changed within ``timeout`` s; the watch on ``path``
        stays set between calls (see LiveSampler)."""
        if self._watch is None or self._watch_path != path:
            self._stop_watch()
            self._watch = self.store.watch(path, skip_initial=True)
            self._watch_path = path
        changed: list[str] = []
        ev = self._watch.next(timeout)
        while ev is not None:
            changed.append(ev.path)
            ev = self._watch.next(0)  # and whatever else already arrived
        return changed

    def _stop_watch(self) -> None:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            watch.stop()

    def close(self) -> None:
        try:
            self._stop_watch()
        finally:
            self.store.close()


class LiveFeed:
    """The bcc tracer, started in the worker's thread (compiling takes seconds)."""

    def __init__(self, should_stop: ShouldStop) -> None:
        from xenvmi.backends.hypercall_probe import HypercallTracer

        self.should_stop = should_stop
        self.tracer = HypercallTracer().start()

    def poll(self, timeout: float) -> list[HypercallEvent]:
        got: list[HypercallEvent] = []
        why = self.tracer.poll(got.append, duration=timeout, should_stop=self.should_stop)
        if why == "stopped":
            raise Stopped()
        return got

    def close(self) -> None:
        self.tracer.close()
