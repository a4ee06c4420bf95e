"""Synthetic recordings: the lab's five domains, or N domains for the benchmark.

Deterministic (seeded), so snapshot tests are stable. Write one to a directory for
``xenvmi tui --replay DIR``::

    python3 -m xenvmi.tui.synthetic DIR                 # the lab: dom0 + 4 guests
    python3 -m xenvmi.tui.synthetic DIR --domains 1000  # dom0 + 999 paused guests
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from xenvmi.model.guest import LogRecord, Module, Process
from xenvmi.model.host import Daemon, Device, Domain, DomainSample, HostSample, NodeSample
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.trace.hypercall_decode import decode_event
from xenvmi.tui.recorded import GuestRecording, Recording, recorded_plugin, save

T0 = 1_795_581_560.0
HOST_KIB = 4 * 1024 * 1024
LAB = (  # name, type, memory MiB, vCPUs
    ("Domain-0", "pv", 1536, 2),
    ("xvm-hvm", "hvm", 256, 1),
    ("xvm-pvh1", "pvh", 192, 1),
    ("xvm-pvh2", "pvh", 192, 2),
    ("xvm-pv", "pv", 128, 1),
)
LAB_PROCS = ("xvm-alpha", "xvm-beta", "xvm-gamma", "xvm-parent")


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _devices(domid: int, dtype: str) -> tuple[Device, ...]:
    if domid == 0:
        return ()
    back = f"/local/domain/0/backend/{'qdisk' if dtype == 'hvm' else 'vbd'}/{domid}/51712"
    return (
        Device("console", "0", 0, f"/local/domain/0/backend/console/{domid}/0", None, "connected"),
        Device("vbd", "51712", 0, back, "connected", "connected"),
        Device(
            "vif",
            "0",
            0,
            f"/local/domain/0/backend/vif/{domid}/0",
            "initialising" if dtype == "hvm" else "connected",
            "initwait" if dtype == "hvm" else "connected",
        ),
    )


def _sample(
    t: float,
    domid: int,
    name: str,
    mem_mib: int,
    vcpus: int,
    cpu_s: float,
    pct: float | None,
    paused: bool,
    io: int,
) -> DomainSample:
    kib = mem_mib * 1024
    return DomainSample(
        time=t,
        domid=domid,
        name=name,
        state="---p--" if paused else ("-----r" if domid == 0 else "--b---"),
        cpu_ns=int(cpu_s * 1e9),
        cpu_seconds=cpu_s,
        cpu_percent=pct,
        memory_kib=kib,
        memory_percent=kib / HOST_KIB * 100,
        memory_max_kib=kib,
        memory_max_percent=kib / HOST_KIB * 100,
        vcpus=vcpus,
        vcpus_online=vcpus,
        nets=0 if domid == 0 else 1,
        net_tx_bytes=io * 1400,
        net_rx_bytes=io * 2100,
        vbds=0 if domid == 0 else 1,
        vbd_oo=0,
        vbd_rd=io // 3,
        vbd_wr=io // 7,
        vbd_rsect=io * 8,
        vbd_wsect=io * 3,
        ssid=0,
    )


def _frames(
    specs: list[tuple[int, str, int, int]],
    n_frames: int,
    rng: random.Random,
    paused_from: int = 10**9,
) -> list[list[DomainSample]]:
    frames, cpu = [], {d: rng.uniform(5, 300) for d, *_ in specs}
    for f in range(n_frames):
        t = T0 + 2 * f
        row = []
        for domid, name, mem, vcpus in specs:
            pct = round(rng.uniform(0.2, 35.0 if domid == 0 else 12.0), 1)
            cpu[domid] += pct / 100 * 2
            row.append(
                _sample(
                    t,
                    domid,
                    name,
                    mem,
                    vcpus,
                    round(cpu[domid], 1),
                    pct,
                    domid >= paused_from,
                    100 * (f + 1) * (domid + 1),
                )
            )
        frames.append(row)
    return frames


def _guest(name: str, rng: random.Random) -> GuestRecording:
    procs = [
        Process(1, 0, "init", "S", 0, 0.4, "/sbin/init", False, 0xFFFF888003A10000),
        Process(2, 0, "kthreadd", "S", 0, 0.4, None, True, 0xFFFF888003A14000),
    ]
    procs += [
        Process(
            3 + i, 2, f"kworker/0:{i}", "I", 0, 0.5, None, True, 0xFFFF888003A18000 + i * 0x4000
        )
        for i in range(3)
    ]
    pid = 60
    for comm in LAB_PROCS:
        procs.append(
            Process(
                pid,
                1,
                comm,
                "S",
                0,
                4.1,
                f"/bin/{comm} --lab",
                False,
                0xFFFF888004000000 + pid * 0x4000,
            )
        )
        pid += 1
    procs.append(
        Process(
            pid,
            pid - 1,
            "xvm-child",
            "S",
            0,
            4.2,
            "/bin/xvm-child",
            False,
            0xFFFF888004000000 + pid * 0x4000,
        )
    )
    procs.append(Process(pid + 1, 1, "sh", "S", 0, 4.3, "/bin/sh", False, 0xFFFF888004100000))
    mods = [
        Module("dummy", 16384, "live", 0, 0xFFFFFFFFC0000000),
        Module("xen_blkfront", 57344, "live", 2, 0xFFFFFFFFC0010000),
    ]
    log = [
        LogRecord(
            0,
            0.0,
            6,
            0,
            "Linux version 6.1.0-35-amd64 (debian-kernel@lists."
            "debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.137-1",
        ),
        LogRecord(1, 0.0, 6, 0, "Command line: console=hvc0 root=/dev/xvda ro"),
        LogRecord(2, 0.1, 4, 0, "x86/cpu: SGX disabled by BIOS."),
        LogRecord(3, 0.9, 6, 0, "xen_netfront: Initialising Xen virtual ethernet driver"),
        LogRecord(
            4, 1.2, 3, 0, "blkfront: xvda: barrier or flush: disabled; persistent grants: enabled;"
        ),
        LogRecord(5, 4.0, 6, 0, f"xenvmi-lab: guest {name} is up"),
    ]
    slide = rng.randrange(0, 1 << 9) << 21
    raw = {
        "rip": 0xFFFFFFFF81E2C4E2 + slide,
        "rsp": 0xFFFFFFFF82603E58 + slide,
        "rflags": 0x246,
        "cr0": 0x80050033,
        "cr3": 0x3A2C000,
        "cr4": 0x3506F0,
        "msr_efer": 0xD01,
        "cs_sel": 0x10,
        "ss_sel": 0x18,
        "cs_arbytes": 0xA9B,
        "ss_arbytes": 0xC93,
        "msr_lstar": 0xFFFFFFFF82000080 + slide,
        "msr_star": 0x23001000000000,
        "msr_syscall_mask": 0x257FD5,
    }
    errors = {}
    if name == "xvm-pv":
        msg = (
            "xvm-pv is a PV guest: LibVMI cannot read its memory (PV guests have no "
            "guest-physical address space); `xenvmi regs` works"
        )
        errors = {"processes": msg, "modules": msg, "kernel_log": msg}
    return GuestRecording(procs, mods, log, [{"vcpu": 0, "raw": raw}], errors)


def _xenstore(domains: list[Domain]) -> dict[str, str]:
    xs = {"/tool/xenstored": "", "/vm": ""}
    for d in domains:
        base = f"/local/domain/{d.domid}"
        xs.update(
            {
                f"{base}/name": d.name,
                f"{base}/domid": str(d.domid),
                f"{base}/memory/target": str(d.memory_target_kib or 0),
            }
        )
        if d.domid:
            xs.update(
                {
                    f"{base}/vm": f"/vm/{d.uuid}",
                    f"/vm/{d.uuid}/name": d.name,
                    f"/libxl/{d.domid}/type": d.type,
                    f"{base}/memory/static-max": str(d.memory_max_kib or 0),
                    f"{base}/cpu/0/availability": "online",
                    f"{base}/control/shutdown": "",
                }
            )
        for dev in d.devices:
            front = (
                f"{base}/console"
                if dev.kind == "console"
                else f"{base}/device/{dev.kind}/{dev.devid}"
            )
            xs[f"{front}/backend"] = dev.backend or ""
            if dev.state:
                xs[f"{front}/state"] = str(
                    ["unknown", "initialising", "initwait", "initialised", "connected"].index(
                        dev.state
                    )
                )
            xs[f"{dev.backend}/state"] = "4" if dev.backend_state == "connected" else "2"
            xs[f"{dev.backend}/frontend"] = front
    return xs


def _hypercalls(rng: random.Random, n: int = 120) -> list[HypercallEvent]:
    calls = [
        ("xl", 36, 5, 0),
        ("xl", 35, 6, 0),
        ("xenstored", 32, 4, 0),
        ("qemu-system-i38", 41, None, 0),
        ("xl", 36, 5, -3),
        ("xentop", 35, 3, 0),
        ("xenconsoled", 32, 4, 0),
        ("xl", 36, 11, -13),
        ("xl", 36, 5, 0),
    ]
    out = []
    for i in range(n):
        comm, op, sub, ret = calls[i % len(calls)] if i % 11 else ("xl", 36, 5, -3)
        pid = {
            "xl": 812,
            "xenstored": 301,
            "qemu-system-i38": 905,
            "xentop": 990,
            "xenconsoled": 310,
        }[comm]
        flags = (
            (1 if sub is not None else 0)
            | (2 if op in (36, 41) else 0)
            | (4 if op in (35, 36) else 0)
        )
        out.append(
            decode_event(
                {
                    "kind": 5 if op == 41 else 0,
                    "op": op,
                    "subop": sub or 0,
                    "flags": flags,
                    "ret": ret & 0xFFFFFFFFFFFFFFFF,
                    "cmd": 0x305000,
                    "pid": pid,
                    "tid": pid,
                    "comm": comm.encode(),
                    "domid": 1 + i % 4,
                    "latency_ns": rng.randrange(800, 90000),
                    "version": 0x15 if op == 36 else 0x15,
                    "ts_ns": 10**12 + i * 1_000_000,
                    "args": [0] * 5,
                },
                "x86_64-pv",
            )
        )
    return out


def lab(frames: int = 6, seed: int = 7) -> Recording:
    """dom0 and the lab's four guests (the PV guest's memory views are unavailable)."""
    rng = random.Random(seed)
    domains = [
        Domain(
            i,
            name,
            None if i == 0 else _uuid(rng),
            dtype,
            "running" if i == 0 else "blocked",
            mem * 1024,
            mem * 1024,
            vcpus,
            vcpus,
            mem * 1024,
            _devices(i, dtype),
        )
        for i, (name, dtype, mem, vcpus) in enumerate(LAB)
    ]
    specs = [(d.domid, d.name, LAB[d.domid][2], LAB[d.domid][3]) for d in domains]
    host = HostSample(
        T0,
        "xenvmi-lab",
        "6.1.0-35-amd64",
        2,
        7.5,
        0.42,
        1572864,
        1105920,
        466944,
        (
            Daemon("qemu", 905, True, 1.2, 30212, 1, "qemu-system-i386 -xen-domid 1"),
            Daemon("xenconsoled", 310, True, 0.0, 2280),
            Daemon("xenstored", 301, True, 0.3, 4096),
        ),
    )
    node = NodeSample(T0, "4.17.5", 2, 2000, HOST_KIB, 1024 * 1024, len(domains))
    plugins = [
        recorded_plugin(p)
        for p in (
            {
                "name": "pslist-diff",
                "description": "processes hidden from the guest's /proc",
                "needs_domain": True,
            },
            {"name": "xen-audit", "description": "domains whose xenstore and Xen views disagree"},
            {
                "name": "yara-scan",
                "description": "YARA rules over guest memory",
                "available": False,
                "why_not": "needs yara-python: pip install yara-python",
                "needs_domain": True,
            },
        )
    ]
    results: dict[str, dict[str, Any]] = {
        "pslist-diff": {
            "rows": [{"pid": 63, "comm": "xvm-parent", "seen_by": "vmi", "hidden": False}],
            "warnings": [],
        },
        "xen-audit": {
            "rows": [{"domid": 1, "check": "vif state", "detail": "frontend initialising"}],
            "warnings": ["domain 0 has no /vm entry"],
        },
    }
    return Recording(
        frames=_frames(specs, frames, rng),
        domains=domains,
        host=host,
        node=node,
        xenstore=_xenstore(domains),
        hypercalls=_hypercalls(rng),
        guests={name: _guest(name, rng) for name, *_ in LAB[1:]},
        plugins=plugins,
        plugin_results=results,
    )


def many(n: int, frames: int = 4, seed: int = 1) -> Recording:
    """dom0 plus n-1 small paused guests ``bench-NNNN`` (the benchmark's load)."""
    rng = random.Random(seed)
    domains = [Domain(0, "Domain-0", None, "pv", "running", 1536 * 1024, 1536 * 1024, 2, 2)]
    domains += [
        Domain(
            i,
            f"bench-{i:04d}",
            _uuid(rng),
            "pvh",
            "paused",
            32 * 1024,
            32 * 1024,
            1,
            1,
            32 * 1024,
            _devices(i, "pvh"),
        )
        for i in range(1, n)
    ]
    specs = [(d.domid, d.name, (d.memory_kib or 0) // 1024, d.vcpus or 1) for d in domains]
    return Recording(
        frames=_frames(specs, frames, rng, paused_from=1),
        domains=domains,
        host=lab().host,
        xenstore=_xenstore(domains[:50]),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m xenvmi.tui.synthetic",
        description="Write a synthetic recording for --replay.",
    )
    p.add_argument("directory")
    p.add_argument("--domains", type=int, default=0, help="N synthetic domains (default: lab)")
    args = p.parse_args(argv)
    save(many(args.domains) if args.domains else lab(), args.directory)
    print(f"wrote {args.directory}: xenvmi tui --replay {args.directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
