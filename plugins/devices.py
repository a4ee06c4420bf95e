"""devices: paravirtual device health of every domain, from xenstore.

Why: a guest whose disk or network "hangs at boot" usually has a frontend and backend
that never reached 'connected' (driver missing in the guest, backend daemon dead), and a
destroyed domain sometimes leaves its backends behind. This lists every device (console,
vbd, vif, vkbd ...) with both xenbus states and flags the unhealthy ones, plus orphaned
backend directories whose frontend domain is gone. Everything read is bounded: the
frontend directories belong to guests.

The primary console is special: xenconsoled (or QEMU for HVM) serves it without the
xenbus handshake, so its backend state stays 'initialising'. It counts as healthy when
the guest's console ring is published (console/ring-ref and console/port).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xenvmi.plugins import Context, Plugin

MAX_KINDS, MAX_FRONTENDS, MAX_DEVICES = 32, 4096, 64
BAD_BACKEND = (None, "closing", "closed")
_KIND = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class DeviceHealth:
    domid: int
    domain: str
    kind: str
    devid: str
    backend_domid: int | None
    frontend: str | None  # frontend xenbus state (None: the console has none)
    backend: str | None  # backend xenbus state
    ok: bool
    problem: str  # '' when ok


def device_problem(
    kind: str, frontend: str | None, backend: str | None, has_backend: bool, console_ring: bool
) -> str:
    """Why a device is unhealthy ('' if it is not), from its two xenbus states."""
    if not has_backend:
        return "no valid backend path in xenstore"
    if backend in BAD_BACKEND:
        return f"backend is {backend or 'missing'}"
    if kind == "console" and frontend is None:
        return "" if console_ring else "console ring not published (console/ring-ref, port)"
    if frontend == backend == "connected":
        return ""
    if frontend in (None, "unknown", "initialising") and backend in ("initwait", "initialising"):
        return f"guest never connected (frontend {frontend or 'missing'}: driver not loaded?)"
    return f"not connected (frontend {frontend or 'missing'}, backend {backend})"


def _ints(names: list[str] | None, limit: int) -> list[int]:
    return sorted(int(n) for n in (names or []) if n.isdigit() and len(n) <= 5)[:limit]


def orphans(store, domids: list[int], names: dict[int, str]) -> list[DeviceHealth]:
    """Backend directories (in any domain) whose frontend domain no longer exists."""
    tops = {d: f"/local/domain/{d}/backend" for d in domids}
    kinds = store.fetch(lists=tops.values())[1]
    kind_dirs = [
        (d, k)
        for d in domids
        for k in sorted(kinds.get(tops[d]) or [])[:MAX_KINDS]
        if _KIND.match(k)
    ]
    fronts = store.fetch(lists=[f"{tops[d]}/{k}" for d, k in kind_dirs])[1]
    gone = [
        (d, k, f)
        for d, k in kind_dirs
        for f in _ints(fronts.get(f"{tops[d]}/{k}"), MAX_FRONTENDS)
        if f not in names
    ]
    devs = store.fetch(lists=[f"{tops[d]}/{k}/{f}" for d, k, f in gone])[1]
    paths = [
        (d, k, f, v) for d, k, f in gone for v in _ints(devs.get(f"{tops[d]}/{k}/{f}"), MAX_DEVICES)
    ]
    states = store.fetch([f"{tops[d]}/{k}/{f}/{v}/state" for d, k, f, v in paths])[0]
    from xenvmi.model.host import xenbus_state_name

    return [
        DeviceHealth(
            f,
            "(gone)",
            k,
            str(v),
            d,
            None,
            xenbus_state_name(states.get(f"{tops[d]}/{k}/{f}/{v}/state")),
            False,
            f"orphaned backend in domain {d}: domain {f} no longer exists",
        )
        for d, k, f, v in paths
    ]


def health_rows(domains, store) -> list[DeviceHealth]:
    """One row per device of every domain, then the orphaned backends."""
    consoles = [
        f"/local/domain/{d.domid}/console/{key}" for d in domains for key in ("ring-ref", "port")
    ]
    ring = store.fetch(consoles)[0]
    rows = []
    for d in domains:
        published = all(
            ring.get(f"/local/domain/{d.domid}/console/{k}") for k in ("ring-ref", "port")
        )
        for dev in d.devices:
            why = device_problem(
                dev.kind, dev.state, dev.backend_state, dev.backend is not None, published
            )
            rows.append(
                DeviceHealth(
                    d.domid,
                    d.name,
                    dev.kind,
                    dev.devid,
                    dev.backend_domid,
                    dev.state,
                    dev.backend_state,
                    not why,
                    why,
                )
            )
    names = {d.domid: d.name for d in domains}
    return rows + orphans(store, sorted(names), names)


def _yes(text: str) -> bool:
    return text.lower() in ("1", "yes", "true", "on")


class Backends(Plugin):
    name = "devices"
    version = "1.0"
    description = "Device health of every domain: frontend and backend xenbus states."
    requires = ("xenstore",)
    row = DeviceHealth
    options = {"problems": "yes: only the devices that are not healthy"}

    def run(self, ctx: Context):
        from xenvmi import api
        from xenvmi.domains import find_domain

        domains = api.list_domains(hypervisor=False)
        with api.open_xenstore() as store:
            rows = health_rows(domains, store)
        if ctx.domain is not None:
            wanted = find_domain(domains, ctx.domain).domid
            rows = [r for r in rows if r.domid == wanted]
        if _yes(ctx.options.get("problems", "no")):
            rows = [r for r in rows if not r.ok]
        return rows
