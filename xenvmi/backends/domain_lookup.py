"""Finding a live guest from dom0: the checks and xenstore reads every live backend
(LibVMI's, the native one) makes before it opens a domain, kept in one place so both
name a domain by the same rule (:func:`xenvmi.model.host.pick_domain`) and fail with the
same one-line errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from xenvmi.errors import NotFoundError, PermissionDenied, Unavailable, XenvmiError
from xenvmi.model.host import pick_domain


def xenstore_read(path: str) -> str | None:
    """One XenStore value via the xenstore-read tool (None if absent or unreachable)."""
    try:
        res = subprocess.run(["xenstore-read", path], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def check_dom0() -> None:
    caps = Path("/proc/xen/capabilities")
    try:
        is_dom0 = "control_d" in caps.read_text()
    except OSError:
        is_dom0 = False
    if not is_dom0:
        raise Unavailable(
            "not running in a Xen dom0 (/proc/xen/capabilities lacks "
            "control_d): guest memory can only be read from dom0"
        )
    if os.geteuid() != 0:
        raise PermissionDenied("reading guest memory needs root in dom0 (try sudo)")


class _Store:
    """The xenstore reads that open a domain, over one in-process connection: the
    xenstore-read and xl tools cost about 0.4 s each in the lab's emulated dom0. Without
    xenstored's socket (or pyxs) the tools are used as before."""

    def __init__(self) -> None:
        self._xs = None
        self._tried = False

    def _conn(self):
        if not self._tried:
            self._tried = True
            try:
                from xenvmi.backends.xenstore import XenStore

                self._xs = XenStore(timeout=20).open()
            except (XenvmiError, ImportError):
                self._xs = None
        return self._xs

    def read(self, path: str) -> str | None:
        xs = self._conn()
        if xs is None:
            return xenstore_read(path)
        try:
            return xs.read(path)
        except XenvmiError:
            return None

    def domains(self) -> list[tuple[int, str | None]]:
        """Every (domid, name) xenstore lists, in one batched read."""
        xs = self._conn()
        if xs is None:
            return _listed_domains()
        _, lists = xs.fetch(lists=["/local/domain"])
        ids = [d for d in lists.get("/local/domain") or [] if d.isdigit()]
        names, _ = xs.fetch(reads=[f"/local/domain/{d}/name" for d in ids])
        return [(int(d), names.get(f"/local/domain/{d}/name")) for d in ids]

    def close(self) -> None:
        xs, self._xs = self._xs, None
        if xs is not None:
            xs.close()


def resolve_domain(domain: str | int, store: _Store | None = None) -> tuple[str, int]:
    """(name, domid) for a domain name or id, by the one rule
    (:func:`xenvmi.model.host.pick_domain`) over what xenstore lists; NotFoundError if no
    domain matches, or if it is dom0 (VMI reads guests, not the domain it runs in)."""
    store = store or _Store()
    listed = store.domains()
    if not listed:
        raise NotFoundError(
            f"no domain {str(domain)!r}: xenstore lists no domains "
            "(is xenstored running? see `xl list`)"
        )
    domid, name = pick_domain(listed, domain)
    if domid == 0:
        raise NotFoundError("domain 0 is dom0 itself: give a guest's name or id")
    return name, domid


def _listed_domains() -> list[tuple[int, str | None]]:
    """(domid, name) of every domain through the xenstore tools (no pyxs or socket)."""
    try:
        res = subprocess.run(
            ["xenstore-list", "/local/domain"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    ids = [d for d in res.stdout.split() if d.isdigit()] if res.returncode == 0 else []
    return [(int(d), xenstore_read(f"/local/domain/{d}/name")) for d in ids]


def paused_now(domid: int) -> bool:
    """Whether Xen has the domain paused right now (libxenstat, as xentop's 'p' flag)."""
    from xenvmi.backends.xenstat import XenStat

    try:
        with XenStat() as stat:
            node = stat.node(0)
    except XenvmiError:
        return False  # no libxenstat: pause as before
    return any(d.domid == domid and "p" in d.state for d in node.domains)
