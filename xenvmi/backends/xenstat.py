"""Hypervisor metrics through libxenstat (ctypes): the library ``xentop`` itself reads.

Using the same source as xentop means our numbers agree with it by construction: per-domain
CPU time, pages, vCPUs, state flags from Xen (getdomaininfo), network bytes from dom0's vif
counters and VBD requests from blkback's sysfs statistics. A node is copied into plain
dataclasses and freed at once, so no C pointer outlives a call.

libxenstat blocks on xenstored and on hypercalls without a timeout; each call runs in a
helper thread that is abandoned (and the handle retired) if it overruns ``timeout``.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from dataclasses import dataclass

from xenvmi import safetext
from xenvmi.errors import PermissionDenied, Unavailable

#: Library names to try: Debian's libxenstat4.17, any versioned one, libxen-dev's symlink.
LIBRARY_NAMES = ("libxenstat.so.4.17", "libxenstat.so.4", "libxenstat.so")
#: Flags for xenstat_get_node (xenstat.h).
VCPU, NETWORK, XEN_VERSION, VBD = 0x1, 0x2, 0x4, 0x8
ALL = VCPU | NETWORK | XEN_VERSION | VBD
NO_LIMIT = 2**64 - 1
#: The getters xentop uses for its state letters, in its order ("dsbcpr").
_STATE_GETTERS = ("dying", "shutdown", "blocked", "crashed", "paused", "running")

_P, _U, _ULL = ctypes.c_void_p, ctypes.c_uint, ctypes.c_ulonglong
_SIGNATURES = {
    "xenstat_init": (_P, []),
    "xenstat_uninit": (None, [_P]),
    "xenstat_get_node": (_P, [_P, _U]),
    "xenstat_free_node": (None, [_P]),
    "xenstat_node_domain_by_index": (_P, [_P, _U]),
    "xenstat_node_xen_version": (ctypes.c_char_p, [_P]),
    "xenstat_node_tot_mem": (_ULL, [_P]),
    "xenstat_node_free_mem": (_ULL, [_P]),
    "xenstat_node_num_domains": (_U, [_P]),
    "xenstat_node_num_cpus": (_U, [_P]),
    "xenstat_node_cpu_hz": (_ULL, [_P]),
    "xenstat_domain_id": (_U, [_P]),
    "xenstat_domain_name": (ctypes.c_char_p, [_P]),
    "xenstat_domain_cpu_ns": (_ULL, [_P]),
    "xenstat_domain_num_vcpus": (_U, [_P]),
    "xenstat_domain_vcpu": (_P, [_P, _U]),
    "xenstat_domain_cur_mem": (_ULL, [_P]),
    "xenstat_domain_max_mem": (_ULL, [_P]),
    "xenstat_domain_ssid": (_U, [_P]),
    "xenstat_domain_num_networks": (_U, [_P]),
    "xenstat_domain_network": (_P, [_P, _U]),
    "xenstat_domain_num_vbds": (_U, [_P]),
    "xenstat_domain_vbd": (_P, [_P, _U]),
    "xenstat_vcpu_online": (_U, [_P]),
    "xenstat_vcpu_ns": (_ULL, [_P]),
    "xenstat_network_rbytes": (_ULL, [_P]),
    "xenstat_network_tbytes": (_ULL, [_P]),
    "xenstat_vbd_oo_reqs": (_ULL, [_P]),
    "xenstat_vbd_rd_reqs": (_ULL, [_P]),
    "xenstat_vbd_wr_reqs": (_ULL, [_P]),
    "xenstat_vbd_rd_sects": (_ULL, [_P]),
    "xenstat_vbd_wr_sects": (_ULL, [_P]),
    **{f"xenstat_domain_{s}": (_U, [_P]) for s in _STATE_GETTERS},
}
#: Present in 4.17 but not in every older library: used when there.
_OPTIONAL = {"xenstat_vbd_error": (ctypes.c_bool, [_P])}


@dataclass(frozen=True)
class DomainCounters:
    """One domain's raw counters from one xenstat node (bytes and nanoseconds)."""

    domid: int
    name: str
    state: str  # xentop letters, e.g. '--b---'
    cpu_ns: int
    vcpus: int
    vcpus_online: int | None  # None unless the node had XENSTAT_VCPU
    memory_bytes: int
    memory_max_bytes: int | None  # None: no limit
    ssid: int
    nets: int
    net_tx_bytes: int
    net_rx_bytes: int
    vbds: int
    vbd: tuple[int, int, int, int, int] | None  # oo, rd, wr, rsect, wsect; None: all unreadable


@dataclass(frozen=True)
class NodeCounters:
    """One xenstat_get_node, copied: ``mono`` is time.monotonic() just before the call."""

    time: float
    mono: float
    xen_version: str
    cpus: int
    cpu_hz: int
    memory_total_bytes: int
    memory_free_bytes: int
    domains: tuple[DomainCounters, ...]


def find_library() -> str:
    """The path or soname of libxenstat, or Unavailable saying which package to install.

    The known sonames come first: ``ctypes.util.find_library`` runs ``ldconfig -p`` (a
    process start, tenths of a second in an emulated dom0) on every `xenvmi list`."""
    for name in LIBRARY_NAMES:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    from ctypes.util import find_library as ldconfig_lookup
    from glob import glob

    found = ldconfig_lookup("xenstat")
    candidates = [found] if found else []
    for pattern in ("/usr/lib/*/libxenstat.so*", "/usr/lib*/libxenstat.so*"):
        candidates += sorted(glob(pattern))
    for name in candidates:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    raise Unavailable(
        "libxenstat not found: apt-get install libxenstat4.17 (Debian/Ubuntu; "
        "or your distribution's Xen tools package)"
    )


def _load(name: str):
    lib = ctypes.CDLL(name)
    for fname, (restype, argtypes) in {**_SIGNATURES, **_OPTIONAL}.items():
        func = getattr(lib, fname, None)
        if func is None:
            if fname in _OPTIONAL:
                continue
            raise Unavailable(f"{name} lacks {fname}: install libxenstat from Xen 4.x")
        func.restype, func.argtypes = restype, argtypes
    return lib


def _run_bounded(func, timeout: float, what: str):
    """Call ``func()`` in a helper thread; Unavailable if it overruns ``timeout``."""
    box: dict = {}

    def target():
        try:
            box["value"] = func()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"xenstat-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(what)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _scratch_file():
    """An anonymous file for libxenstat's stderr: a memfd (tempfile's import is not free
    on the one-shot path), a temporary file where memfd_create is missing."""
    try:
        return os.fdopen(os.memfd_create("xenvmi-xenstat-err"), "w+b")
    except (AttributeError, OSError):
        import tempfile

        return tempfile.TemporaryFile()


class XenStat:
    """A libxenstat handle. ``node(flags)`` returns a fresh :class:`NodeCounters`."""

    def __init__(self, timeout: float = 10.0, library: str | None = None, lib=None):
        self.timeout = timeout
        self._lib = lib if lib is not None else _load(library or find_library())
        self._handle: int | None = None  # xenstat_handle*, once open
        self._lock = threading.Lock()

    def __enter__(self) -> XenStat:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> XenStat:
        if self._handle:
            return self
        if not os.path.exists("/proc/xen/privcmd") and not os.path.exists("/dev/xen/privcmd"):
            raise Unavailable("not a Xen dom0 (no privcmd device): run xenvmi in dom0")
        if os.geteuid() != 0:
            raise PermissionDenied("hypervisor metrics need root in dom0: run with sudo")
        handle, said = self._init_quietly()
        if not handle:
            raise Unavailable(
                f"xenstat_init failed{': ' + said if said else ''}: is this dom0 "
                f"with xenstored running? (/etc/init.d/xen status)"
            )
        self._handle = handle
        return self

    def _init_quietly(self) -> tuple[int | None, str]:
        """xenstat_init perror()s its failures; catch that text for our one-line error."""
        with _scratch_file() as err:
            saved = os.dup(2)
            try:
                os.dup2(err.fileno(), 2)
                handle = _run_bounded(self._lib.xenstat_init, self.timeout, "init")
            except TimeoutError:
                handle = None
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            err.seek(0)
            said = err.read(300).decode(errors="replace").strip().replace("\n", "; ")
        return handle, said

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle:
            try:
                _run_bounded(lambda: self._lib.xenstat_uninit(handle), self.timeout, "uninit")
            except TimeoutError:
                pass

    def node(self, flags: int = ALL) -> NodeCounters:
        """Collect one node (all domains). Raises Unavailable on failure or timeout."""
        if not self._handle:
            self.open()
        with self._lock:
            mono, wall = time.monotonic(), time.time()
            try:
                return _run_bounded(
                    lambda: self._collect(flags, mono, wall), self.timeout, "get_node"
                )
            except TimeoutError:
                self._handle = None  # the stuck thread still uses it: never free it
                raise Unavailable(
                    f"libxenstat did not answer in {self.timeout:.0f}s: is "
                    f"xenstored alive? (/etc/init.d/xen status)"
                ) from None
            except KeyboardInterrupt:
                self._handle = None  # same: the helper thread may be mid-call
                raise

    def _collect(self, flags: int, mono: float, wall: float) -> NodeCounters:
        lib, handle = self._lib, self._handle
        node = lib.xenstat_get_node(handle, flags)
        if not node:
            raise Unavailable(
                "xenstat_get_node failed (a domain in transition, or no "
                "privilege): retry as root in dom0"
            )
        try:
            count = lib.xenstat_node_num_domains(node)
            domains = tuple(
                self._domain(lib.xenstat_node_domain_by_index(node, i), flags) for i in range(count)
            )
            version = lib.xenstat_node_xen_version(node) if flags & XEN_VERSION else None
            return NodeCounters(
                time=wall,
                mono=mono,
                xen_version=(version or b"").decode("ascii", "replace")[:64],
                cpus=lib.xenstat_node_num_cpus(node),
                cpu_hz=lib.xenstat_node_cpu_hz(node),
                memory_total_bytes=lib.xenstat_node_tot_mem(node),
                memory_free_bytes=lib.xenstat_node_free_mem(node),
                domains=domains,
            )
        finally:
            lib.xenstat_free_node(node)

    def _domain(self, dom, flags: int) -> DomainCounters:
        lib = self._lib
        state = "".join(
            letter if getattr(lib, f"xenstat_domain_{name}")(dom) else "-"
            for name, letter in zip(_STATE_GETTERS, "dsbcpr")
        )
        vcpus = lib.xenstat_domain_num_vcpus(dom)
        online = None
        if flags & VCPU:
            online = sum(
                1
                for i in range(vcpus)
                if (v := lib.xenstat_domain_vcpu(dom, i)) and lib.xenstat_vcpu_online(v)
            )
        nets = lib.xenstat_domain_num_networks(dom) if flags & NETWORK else 0
        tx = rx = 0
        for i in range(nets):
            net = lib.xenstat_domain_network(dom, i)
            if net:
                tx += lib.xenstat_network_tbytes(net)
                rx += lib.xenstat_network_rbytes(net)
        vbds = lib.xenstat_domain_num_vbds(dom) if flags & VBD else 0
        max_mem = lib.xenstat_domain_max_mem(dom)
        name = lib.xenstat_domain_name(dom) or b""
        return DomainCounters(
            domid=lib.xenstat_domain_id(dom),
            name=safetext.decode(name[:256]),
            state=state,
            cpu_ns=lib.xenstat_domain_cpu_ns(dom),
            vcpus=vcpus,
            vcpus_online=online,
            memory_bytes=lib.xenstat_domain_cur_mem(dom),
            memory_max_bytes=None if max_mem == NO_LIMIT else max_mem,
            ssid=lib.xenstat_domain_ssid(dom),
            nets=nets,
            net_tx_bytes=tx,
            net_rx_bytes=rx,
            vbds=vbds,
            vbd=self._vbd_totals(dom, vbds),
        )

    def _vbd_totals(self, dom, vbds: int):
        """Sums like xentop's tot_vbd_reqs: skip VBDs in error; None if all were."""
        lib, error = self._lib, getattr(self._lib, "xenstat_vbd_error", None)
        totals, shown = [0] * 5, vbds == 0
        for i in range(vbds):
            vbd = lib.xenstat_domain_vbd(dom, i)
            if not vbd or (error is not None and error(vbd)):
                continue
            shown = True
            for j, getter in enumerate(
                (
                    lib.xenstat_vbd_oo_reqs,
                    lib.xenstat_vbd_rd_reqs,
                    lib.xenstat_vbd_wr_reqs,
                    lib.xenstat_vbd_rd_sects,
                    lib.xenstat_vbd_wr_sects,
                )
            ):
                totals[j] += getter(vbd)
        return tuple(totals) if shown else None
