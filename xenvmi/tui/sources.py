"""The TUI's data layer: one small interface, a live and a recorded implementation.

Screens never touch Xen. A worker thread asks its DataSource for a per-thread handle
(a sampler, a guest, a xenstore reader, a hypercall feed), calls it with timeouts, closes
it in the same thread, and posts what it got as messages. Handles are not shared between
threads: LibVMI and the xenstore connection are not thread-safe. Every method may raise
the ``xenvmi.errors`` family; its message is what the UI shows as the reason and fix.

``LiveSource`` (live.py) calls xenvmi.api / xenvmi.guests / the hypercall tracer;
``RecordedSource`` (recorded.py) replays JSON fixtures, for tests, snapshots,
``--replay DIR`` and the synthetic benchmark; ``FleetSource`` (fleet.py) puts a
``RemoteSource`` (remote_source.py) per ``--host`` side by side. Nothing here imports
Textual.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Protocol

from xenvmi.model.guest import GuestView, LogRecord, Module, Process, VcpuRegisters
from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample, XsTree
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.plugins import PluginInfo, PluginResult

#: Returns True when the worker using a handle should give up (the app is quitting).
ShouldStop = Callable[[], bool]

#: Seconds a guest view may take in the TUI (the CLI allows more; an operator waits less).
GUEST_VIEW_TIMEOUT = 30.0
#: Bounds on what the XenStore views load at once.
XS_MAX_NODES = 2000
XS_MAX_CHILDREN = 500


class Stopped(Exception):
    """Raised inside a worker's blocking call when the app asked it to stop."""


class Sampler(Protocol):
    """Domain list, xentop samples, dom0 host facts, and domain arrival/departure."""

    def domains(self) -> list[Domain]: ...
    def sample(self) -> tuple[NodeSample | None, list[DomainSample]]: ...
    def host(self) -> HostSample: ...
    def wait_change(self, timeout: float) -> bool:
        """Block up to ``timeout`` s; True if a domain was introduced or released."""

    def close(self) -> None: ...


class GuestHandle(Protocol):
    """One open guest; opened, used and closed by one thread. Live, each method is its
    view's ``collect`` (``xenvmi/views/``), the rows ``xenvmi ps`` etc. print."""

    def processes(self) -> GuestView[Process]: ...
    def modules(self) -> GuestView[Module]: ...
    def kernel_log(self) -> GuestView[LogRecord]: ...
    def registers(self) -> GuestView[VcpuRegisters]: ...
    def close(self) -> None: ...


class XsReader(Protocol):
    """A read-only xenstore connection for one thread."""

    def list(self, path: str) -> list[str]: ...
    def read(self, path: str) -> str | None: ...
    def walk(self, path: str, max_nodes: int = XS_MAX_NODES) -> XsTree: ...
    def wait(self, path: str, timeout: float) -> builtins.list[str]:
        """Block up to ``timeout`` s; the paths under ``path`` that changed (may be [])."""

    def close(self) -> None: ...


class HypercallFeed(Protocol):
    """Dom0's privcmd calls as they happen."""

    def poll(self, timeout: float) -> list[HypercallEvent]: ...
    def close(self) -> None: ...


class DataSource(Protocol):
    """Where the TUI's data comes from. Handles are created inside the worker thread."""

    #: Shown in the header: "live" or "replay: DIR".
    label: str

    def sampler(self, should_stop: ShouldStop) -> Sampler: ...
    def guest(self, domain: str | int, should_stop: ShouldStop) -> GuestHandle: ...
    def xenstore(self, should_stop: ShouldStop) -> XsReader: ...
    def hypercalls(self, should_stop: ShouldStop) -> HypercallFeed: ...
    def plugins(self) -> list[PluginInfo]: ...
    def run_plugin(self, name: str, domain: str | int | None) -> PluginResult: ...


def children_of(paths: Sequence[str], parent: str) -> list[str]:
    """Direct child names of ``parent`` among absolute ``paths`` (for flat recordings)."""
    prefix = parent.rstrip("/") + "/"
    seen: dict[str, None] = {}
    for p in paths:
        if p.startswith(prefix) and len(p) > len(prefix):
            seen.setdefault(p[len(prefix) :].split("/", 1)[0], None)
    return list(seen)
