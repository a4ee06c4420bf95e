"""One traced privcmd call of dom0 (``xenvmi trace hypercalls``, the TUI's Hypercalls tab).

Decoded from the probe's raw events by ``xenvmi.trace.hypercall_decode``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Linux's MAX_ERRNO: a return in [-4095, -1] is an error.
MAX_ERRNO = 4095


@dataclass(frozen=True)
class HypercallEvent:
    """One privcmd ioctl: who, which hypercall (or other privcmd request), result, time."""

    ts_ns: int  #: CLOCK_MONOTONIC at entry (bpf_ktime_get_ns)
    pid: int
    tid: int
    comm: str
    kind: str  #: "hypercall", "mmapbatch_v2", "dm_op", ... or "ioctl"
    ioctl: int  #: the ioctl request number
    op: int | None  #: hypercall number (dm_op ioctls: 41)
    name: str  #: "domctl", "xsm_op", "mmapbatch_v2", "ioctl_0x1234"
    subop: int | None  #: the command of a multiplexing hypercall
    subop_name: str | None  #: "getdomaininfo"
    domid: int | None  #: the target domain, when the argument names one
    version: int | None  #: domctl/sysctl interface_version sent
    args: tuple[int, ...]  #: the five hypercall arguments (leading fields for others)
    ret: int  #: what privcmd_ioctl returned (a negative errno on error)
    error: str | None  #: "ESRCH" when ret is an error
    latency_ns: int
    partial: bool = False  #: some user memory could not be read: fields may be missing
    #: the domctl/sysctl interface_version the traced Xen release wants (None: other calls)
    expected_version: int | None = None

    @property
    def failed(self) -> bool:
        return -MAX_ERRNO <= self.ret < 0
