"""Turn raw privcmd events from hypercalls.bpf.c into named, printable HypercallEvents.

Pure functions (no bcc, no Xen): the tracer hands each perf event over as a dict of the C
struct's fields, and everything a user reads (hypercall and command names, error names,
one text line, one JSON object) is decided here, so it is unit-tested without a kernel.
All names come from xenvmi.abi (plus hypercall_subops for the tables abi lacks), from
the tables of the Xen release the caller names (the tracer: the running one).
"""

from __future__ import annotations

import errno as os_errno
import os
import platform
from collections.abc import Mapping
from typing import Any

from xenvmi import safetext
from xenvmi.abi import errno as xerrno
from xenvmi.abi import hypercalls as hc
from xenvmi.abi import releases
from xenvmi.model.hypercall import MAX_ERRNO, HypercallEvent
from xenvmi.trace import hypercall_subops

#: IOCTL_PRIVCMD_HYPERCALL: _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall)).
IOCTL_PRIVCMD_HYPERCALL = 0x00305000
#: _IOC(_IOC_NONE, 'P', 0xFF, 0), in Xen's copy of privcmd.h only: libxenforeignmemory and
#: libxendevicemodel issue it to probe the driver (it always fails with -ENOTTY).
IOCTL_PRIVCMD_UNIMPLEMENTED = 0x000050FF
#: The ioctl number (low byte of the request) -> what the privcmd ioctl does
#: (include/uapi/xen/privcmd.h; irqfd/ioeventfd exist from Linux 6.7/6.8 on).
KIND_NAMES = {
    0: "hypercall",
    2: "mmap",
    3: "mmapbatch",
    4: "mmapbatch_v2",
    5: "dm_op",
    6: "restrict",
    7: "mmap_resource",
    8: "irqfd",
    9: "ioeventfd",
}
KIND_BY_NAME = {v: k for k, v in KIND_NAMES.items()}
KIND_HYPERCALL = 0
KIND_DM_OP = 5
KIND_OTHER = 255
#: hypercalls.bpf.c: "not known" for op, subop and domid.
NO_VALUE = 0xFFFFFFFF
F_SUBOP, F_DOMID, F_VERSION, F_FAULT = 1, 2, 4, 8
#: public/xen.h reserved domain ids.
SPECIAL_DOMIDS = {
    0x7FF0: "self",
    0x7FF1: "io",
    0x7FF2: "xen",
    0x7FF3: "cow",
    0x7FF4: "invalid",
    0x7FFF: "idle",
}
#: Hypercalls whose argument carries an interface version Xen insists on (else -EACCES).
_VERSIONED = {35: "sysctl", 36: "domctl"}


def expected_version(op: int | None, release: str | None = None) -> int | None:
    """The interface_version ``release`` (DEFAULT for None) wants in hypercall ``op``."""
    name = _VERSIONED.get(op if op is not None else -1)
    return releases.get(release).interface_versions[name] if name else None


def host_arch() -> str:
    """The guest kind dom0 is, for hypercall names (mca on x86, arch_0 on Arm)."""
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64-pv"


def _signed(value: int, bits: int = 64) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return safetext.decode(bytes(value).split(b"\0", 1)[0])
    return str(value)


def kind_name(kind: int) -> str:
    return KIND_NAMES.get(kind, "ioctl")


def op_name(kind: int, op: int | None, ioctl: int | None = None, arch: str | None = None) -> str:
    """What the event is called: the hypercall's name, else the privcmd request's."""
    if kind == KIND_HYPERCALL or (kind == KIND_DM_OP and op is not None):
        if op is None:
            return "hypercall"
        h = hc.BY_NUMBER.get(op)
        return h.display_name(arch or host_arch()) if h else f"hypercall_{op}"
    if kind in KIND_NAMES:
        return KIND_NAMES[kind]
    if ioctl == IOCTL_PRIVCMD_UNIMPLEMENTED:
        return "unimplemented"
    return "ioctl" if ioctl is None else f"ioctl_{ioctl:#x}"


def error_name(ret: int) -> str | None:
    """ "ESRCH" for -3; None for a success; "errno_N" for a number neither Xen nor Linux names."""
    if not -MAX_ERRNO <= ret < 0:
        return None
    entry = xerrno.BY_VALUE.get(-ret)
    if entry is not None:
        return entry.name
    return os_errno.errorcode.get(-ret, f"errno_{-ret}")


def describe_ret(ret: int) -> str:
    """-3 -> "-ESRCH (No such process)"; Linux-only errors (privcmd's own, e.g. -ENOTTY)
    by Linux's name; big successes in hex."""
    if -MAX_ERRNO <= ret < 0:
        if -ret in xerrno.BY_VALUE:
            return xerrno.describe(ret)
        name = os_errno.errorcode.get(-ret)
        return f"-{name} ({os.strerror(-ret)})" if name else f"{ret} (unknown errno)"
    return hex(ret) if ret > 0xFFFF else str(ret)


def decode_event(
    raw: Mapping[str, Any], arch: str | None = None, release: str | None = None
) -> HypercallEvent:
    """A HypercallEvent from the fields of struct event_t (hypercalls.bpf.c), named with
    the tables of Xen ``release`` (a known one; DEFAULT for None)."""
    flags = int(raw.get("flags", 0))
    kind = int(raw["kind"])
    op: int | None = int(raw["op"])
    op = None if op == NO_VALUE else op
    subop = int(raw["subop"]) if flags & F_SUBOP else None
    ret = _signed(int(raw["ret"]))
    sub_name = None
    if subop is not None and op is not None:
        sub_name = hypercall_subops.subop_name(op, subop, release)
    return HypercallEvent(
        ts_ns=int(raw.get("ts_ns", 0)),
        pid=int(raw["pid"]),
        tid=int(raw.get("tid", raw["pid"])),
        comm=_text(raw.get("comm", b"")),
        kind=kind_name(kind),
        ioctl=int(raw["cmd"]),
        op=op,
        name=op_name(kind, op, int(raw["cmd"]), arch),
        subop=subop,
        subop_name=sub_name,
        domid=int(raw["domid"]) & 0xFFFF if flags & F_DOMID else None,
        version=int(raw["version"]) if flags & F_VERSION else None,
        args=tuple(int(a) for a in raw.get("args", (0,) * 5)),
        ret=ret,
        error=error_name(ret),
        latency_ns=int(raw["latency_ns"]),
        partial=bool(flags & F_FAULT),
        expected_version=expected_version(op, release),
    )


def domid_text(domid: int) -> str:
    return SPECIAL_DOMIDS.get(domid, str(domid))


def format_ns(ns: int) -> str:
    """850ns, 12us, 3.4ms, 1.20s: one unit, short."""
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns // 1000}us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.2f}s"


def _trimmed_hex(args: tuple[int, ...]) -> list[str]:
    """Arguments up to the last non-zero one (callers zero the unused ones)."""
    last = max((i for i, a in enumerate(args) if a), default=-1)
    return [hex(a) for a in args[: last + 1]]


def _details(ev: HypercallEvent) -> list[str]:
    out: list[str] = []
    if ev.kind in ("mmap", "mmapbatch", "mmapbatch_v2"):
        out = [f"domid={domid_text(ev.args[1])}", f"num={ev.args[0]}"]
        if ev.kind != "mmap":
            out.append(f"addr={ev.args[2]:#x}")
        return out
    if ev.kind == "mmap_resource":
        return [
            f"domid={domid_text(ev.args[0])}",
            f"type={ev.args[1]}",
            f"id={ev.args[2]}",
            f"idx={ev.args[3]}",
            f"num={ev.args[4]}",
        ]
    if ev.domid is not None:
        out.append(f"domid={domid_text(ev.domid)}")
    if ev.kind == "hypercall" and ev.subop is None and ev.domid is None:
        out += _trimmed_hex(ev.args)  # no command table: show the raw arguments
    expected = ev.expected_version
    if expected is None:  # an event recorded before the field existed
        expected = expected_version(ev.op)
    if ev.version is not None and expected is not None and ev.version != expected:
        out.append(f"version={ev.version:#x}, want {expected:#x}")
    return out


def format_event(ev: HypercallEvent) -> str:
    """`xl[812] domctl getdomaininfo(domid=7) -> -ESRCH (No such process) 12us`."""
    what = ev.name if ev.kind == "hypercall" else f"privcmd {ev.name}"
    if ev.subop_name:
        what += f" {ev.subop_name}"
    line = (
        f"{ev.comm}[{ev.pid}] {what}({', '.join(_details(ev))}) -> "
        f"{describe_ret(ev.ret)} {format_ns(ev.latency_ns)}"
    )
    if ev.partial:
        line += " [arguments unreadable]"
    return line


def event_json(ev: HypercallEvent) -> dict[str, Any]:
    """The JSON object of one event: its fields, plus ``failed`` and the ``text`` line."""
    out: dict[str, Any] = {f: getattr(ev, f) for f in HypercallEvent.__dataclass_fields__}
    out["args"] = list(ev.args)
    out["failed"] = ev.failed
    out["text"] = format_event(ev)
    return out
