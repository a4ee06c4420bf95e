"""The public Python API: what the CLI, the TUI and plugins call. Run it as root in dom0.

Every function returns model dataclasses (``xenvmi.model``) and raises only the
``xenvmi.errors`` family (``Unavailable`` says what to install or start). Each call opens
and closes its own connections; for repeated sampling keep a ``DomainSampler`` /
``HostSampler``, for several xenstore operations keep an ``open_xenstore()``::

    from xenvmi import api
    for d in api.list_domains():
        print(d.domid, d.name, d.type, d.state, d.memory_kib)
    api.domain("xvm-pv").devices
    api.sample_domains(interval=1.0)          # xentop's row per domain, with CPU %
    api.xs_read("/local/domain/0/name")       # 'Domain-0'
    for event in api.watch("@introduceDomain", timeout=30):
        print(event.path)

This module stays a thin facade: collection lives in ``xenvmi.domains``, Xen access in
``xenvmi.backends``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from xenvmi.backends.xenstore import XenStore, check_path
from xenvmi.domains import DomainSampler, HostSampler, collect_domains, find_domain, own_guest_type
from xenvmi.errors import Unavailable
from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample, WatchEvent, XsTree

__all__ = [
    "list_domains",
    "domain",
    "sample_domains",
    "sample_node",
    "host_sample",
    "open_xenstore",
    "xs_read",
    "xs_list",
    "xs_walk",
    "xs_write",
    "watch",
    "DomainSampler",
    "HostSampler",
]

#: Seconds any single xenstore request may take.
XENSTORE_TIMEOUT = 5.0


# ----------------------------------------------------------------------------- domains


def _node_counters(flags: int):
    """Xen's view for the merge, or None where libxenstat is unusable (list still works)."""
    from xenvmi.backends.xenstat import XenStat

    try:
        with XenStat() as xs:
            return xs.node(flags)
    except Unavailable:
        return None


def list_domains(hypervisor: bool = True) -> list[Domain]:
    """Every domain, by domid. ``hypervisor=False`` skips libxenstat (state, current
    memory and dom0's vCPUs are then None)."""
    from xenvmi.backends.xenstat import VCPU

    stats = _node_counters(VCPU) if hypervisor else None
    with open_xenstore() as store:
        return collect_domains(store, stats, own_guest_type())


def domain(name_or_id: str | int) -> Domain:
    """One domain by domid or name; NotFoundError names the fix."""
    return find_domain(list_domains(), name_or_id)


def sample_domains(interval: float | None = None) -> list[DomainSample]:
    """One xentop-like sample per domain. With ``interval`` two samples are taken that many
    seconds apart, so ``cpu_percent`` is set; without, it is None."""
    sampler = DomainSampler()
    try:
        if interval:
            sampler.sample()
            time.sleep(interval)
        return sampler.sample()[1]
    finally:
        sampler.close()


def sample_node() -> NodeSample:
    """The physical host as Xen sees it: CPUs, total and free memory, version."""
    sampler = DomainSampler()
    try:
        return sampler.sample()[0]
    finally:
        sampler.close()


def host_sample(interval: float = 0.2) -> HostSample:
    """Dom0's CPU and memory and the Xen daemons (CPU % measured over ``interval``)."""
    return HostSampler(interval).sample()


# ----------------------------------------------------------------------------- xenstore


def open_xenstore(writable: bool = False, timeout: float = XENSTORE_TIMEOUT) -> XenStore:
    """A connected XenStore; use it in a ``with`` block. Read-only unless asked."""
    return XenStore(timeout=timeout, writable=writable).open()


def xs_read(path: str) -> str:
    check_path(path)  # a malformed path is a usage error even where xenstore is absent
    with open_xenstore() as store:
        return store.read(path)


def xs_list(path: str) -> list[str]:
    check_path(path)
    with open_xenstore() as store:
        return store.list(path)


def xs_walk(path: str, max_depth: int = 16, max_nodes: int = 10000) -> XsTree:
    """A bounded recursive listing; ``XsTree.truncated`` says if a bound was hit."""
    check_path(path)
    with open_xenstore() as store:
        return store.walk(path, max_depth=max_depth, max_nodes=max_nodes)


def xs_write(path: str, value: str) -> None:
    """Write one value (the only writing call in this API)."""
    check_path(path)
    with open_xenstore(writable=True) as store:
        store.write(path, value)


def watch(
    paths: str | Sequence[str], timeout: float | None = None, count: int | None = None
) -> Iterator[WatchEvent]:
    """Yield watch events until ``timeout`` seconds pass or ``count`` events arrived.

    Paths may be @introduceDomain / @releaseDomain. The first event of each path fires at
    once (xenstored's rule). Leaving the loop early removes the watch and disconnects."""
    for path in [paths] if isinstance(paths, str) else paths:
        check_path(path, watch=True)
    with open_xenstore() as store, store.watch(paths, timeout, count) as events:
        yield from events
