"""``xenvmi list`` and ``xenvmi top``: every domain, and xentop's numbers as text or JSON.

JSON (stable: fields are only ever added):

``xenvmi list --json`` prints one array of Domain objects::

    [{"domid": 1, "name": "xvm-pv", "uuid": "5f0c...", "type": "pv", "state": "blocked",
      "memory_target_kib": 262144, "memory_max_kib": 262144, "vcpus": 1, "vcpus_online": 1,
      "memory_kib": 262144,
      "devices": [{"kind": "vbd", "devid": "51712", "backend_domid": 0,
                   "backend": "/local/domain/0/backend/vbd/1/51712",
                   "state": "connected", "backend_state": "connected"}]}]

``type`` is pv/pvh/hvm/unknown; ``state`` is running, blocked, paused, shutdown, crashed,
dying or runnable (null without libxenstat); memory is KiB (target and max as xl shows
them: libxl's video RAM is added back to the balloon target); device states are xenbus
state names (unknown, initialising, initwait, initialised, connected, closing, closed).

``xenvmi top --batch --json`` prints one JSON object per line, one line per iteration::

    {"iteration": 1, "time": 1795581560.9,
     "node": {"xen_version": "4.17.5", "cpus": 2, "cpu_mhz": 2000, "memory_total_kib": ...,
              "memory_free_kib": ..., "domains": 5, "time": ...},
     "domains": [{"domid": 0, "name": "Domain-0", "state": "-----r", "cpu_ns": ...,
                  "cpu_seconds": 238.1, "cpu_percent": null, "memory_kib": 1572864,
                  "memory_percent": 25.0, "memory_max_kib": 1572864,
                  "memory_max_percent": 25.0, "vcpus": 2, "vcpus_online": 2, "nets": 0,
                  "net_tx_bytes": 0, "net_rx_bytes": 0, "vbds": 0, "vbd_oo": 0,
                  "vbd_rd": 0, "vbd_wr": 0, "vbd_rsect": 0, "vbd_wsect": 0, "ssid": 0,
                  "time": ...}],
     "host": {...}}            # only with --host: dom0's CPU, memory and Xen daemons

``cpu_percent`` is null in the first iteration (as xentop prints 0.0 there), ``state`` has
xentop's letters d s b c p r, ``memory_max_*`` are null for "no limit", ``vbd_*`` null
where xentop prints '-'.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from xenvmi import render
from xenvmi.commands import add_command

if TYPE_CHECKING:  # the CLI imports every command module: keep this one's imports light
    from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample

LIST_EXAMPLES = """\
  xenvmi list                       domid, name, type, state, memory, vCPUs, devices
  xenvmi list --json | jq '.[] | select(.type == "hvm") | .name'
  xenvmi list xvm-pv --json         one domain (by name or domid) as a JSON object
"""

TOP_EXAMPLES = """\
  xenvmi top --batch --iterations 2           like xentop -b -i 2
  xenvmi top --batch --delay 1 --json | jq -c '.domains[] | [.name, .cpu_percent]'
  xenvmi top --batch -i 1 --host              plus dom0's CPU, memory and Xen daemons
"""

TOP_COLUMNS = (
    ("name", "NAME"),
    ("domid", "ID"),
    ("state", "STATE"),
    ("cpu", "CPU(sec)"),
    ("cpu_pct", "CPU(%)"),
    ("mem", "MEM(k)"),
    ("mem_pct", "MEM(%)"),
    ("maxmem", "MAXMEM(k)"),
    ("maxmem_pct", "MAXMEM(%)"),
    ("vcpus", "VCPUS"),
    ("nets", "NETS"),
    ("nettx", "NETTX(k)"),
    ("netrx", "NETRX(k)"),
    ("vbds", "VBDS"),
    ("vbd_oo", "VBD_OO"),
    ("vbd_rd", "VBD_RD"),
    ("vbd_wr", "VBD_WR"),
    ("vbd_rsect", "VBD_RSECT"),
    ("vbd_wsect", "VBD_WSECT"),
    ("ssid", "SSID"),
)


def register(sub) -> None:
    p = add_command(
        sub, "list", "List every domain: identity, type, state, memory, devices.", LIST_EXAMPLES
    )
    p.add_argument("domain", nargs="?", metavar="NAME|DOMID", help="only this domain")
    p.add_argument("--json", action="store_true", help="print JSON (see above for the shape)")
    p.set_defaults(func=run_list)

    p = add_command(
        sub,
        "top",
        "Per-domain CPU, memory, network and disk counters, "
        "xentop's numbers (batch mode; the interactive view is the TUI).",
        TOP_EXAMPLES,
    )
    p.add_argument(
        "-b",
        "--batch",
        action="store_true",
        help="batch output, as xentop -b (the only mode of this command)",
    )
    p.add_argument(
        "-i",
        "--iterations",
        type=count_arg,
        default=None,
        help="stop after N samples (default: until Ctrl-C)",
    )
    p.add_argument(
        "-d",
        "--delay",
        type=seconds_arg,
        default=3.0,
        help="seconds between samples (default 3, like xentop)",
    )
    p.add_argument("--host", action="store_true", help="also dom0's CPU, memory and daemons")
    p.add_argument("--json", action="store_true", help="one JSON object per line per sample")
    p.set_defaults(func=run_top)


def count_arg(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the error into one line)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def seconds_arg(text: str) -> float:
    """argparse type: seconds, 0 to one day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds like 0.5 or 3, got {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"expected 0 to 86400 seconds, got {text}")
    return value


# ----------------------------------------------------------------------------- list


def _devices_text(d: Domain) -> str:
    counts: dict[str, int] = {}
    for dev in d.devices:
        counts[dev.kind] = counts.get(dev.kind, 0) + 1
    return ",".join(f"{k}:{n}" if n > 1 else k for k, n in counts.items()) or "-"


def list_rows(domains: list[Domain]) -> list[dict]:
    """Rows of the text table (MiB like xl list; JSON keeps KiB)."""
    mib = lambda kib: None if kib is None else kib // 1024  # noqa: E731
    return [
        {
            "domid": d.domid,
            "name": d.name,
            "type": d.type,
            "state": d.state,
            "mem": mib(d.memory_kib),
            "target": mib(d.memory_target_kib),
            "max": mib(d.memory_max_kib),
            "vcpus": d.vcpus,
            "devices": _devices_text(d),
        }
        for d in domains
    ]


def run_list(args) -> int:
    from xenvmi import api

    domains = api.list_domains()
    if args.domain is not None:
        from xenvmi.domains import find_domain

        domains = [find_domain(domains, args.domain)]
    if args.json:
        print(render.dumps(domains[0] if args.domain is not None else domains))
        return 0
    print(
        render.table(
            list_rows(domains),
            ["domid", "name", "type", "state", "mem", "target", "max", "vcpus", "devices"],
            ["ID", "NAME", "TYPE", "STATE", "MEM(M)", "TARGET(M)", "MAX(M)", "VCPUS", "DEVICES"],
        )
    )
    return 0


# ----------------------------------------------------------------------------- top


def top_row(s: DomainSample) -> dict:
    """One xentop -b line's values (KiB and whole seconds, as xentop prints them)."""
    return {
        "name": s.name,
        "domid": s.domid,
        "state": s.state,
        "cpu": int(s.cpu_seconds),
        "cpu_pct": s.cpu_percent or 0.0,
        "mem": s.memory_kib,
        "mem_pct": s.memory_percent,
        "maxmem": "no limit" if s.memory_max_kib is None else s.memory_max_kib,
        "maxmem_pct": "n/a" if s.memory_max_percent is None else s.memory_max_percent,
        "vcpus": s.vcpus,
        "nets": s.nets,
        "nettx": s.net_tx_bytes // 1024,
        "netrx": s.net_rx_bytes // 1024,
        "vbds": s.vbds,
        "vbd_oo": s.vbd_oo,
        "vbd_rd": s.vbd_rd,
        "vbd_wr": s.vbd_wr,
        "vbd_rsect": s.vbd_rsect,
        "vbd_wsect": s.vbd_wsect,
        "ssid": s.ssid,
    }


def top_text(node: NodeSample, samples: list[DomainSample], host: HostSample | None) -> str:
    lines = []
    if host is not None:
        lines.append(host_text(host))
    keys, heads = zip(*TOP_COLUMNS)
    lines.append(render.table([top_row(s) for s in samples], list(keys), list(heads)))
    return "\n".join(lines)


def host_text(h: HostSample) -> str:
    daemons = " ".join(
        f"{d.name}{'' if d.domid is None else f'[{d.domid}]'}:"
        f"{'pid ' + str(d.pid) if d.alive else 'DOWN'}"
        for d in h.daemons
    )
    cpu = "-" if h.cpu_percent is None else f"{h.cpu_percent:.1f}%"
    return (
        f"dom0 {h.hostname}: {h.cpus} CPUs {cpu} load {h.load_1m:.2f}, mem "
        f"{h.memory_used_kib // 1024}M used of {h.memory_total_kib // 1024}M; {daemons}"
    )


def run_top(args) -> int:
    from xenvmi import api

    sampler = api.DomainSampler()
    hosts = api.HostSampler() if args.host else None
    iteration = 0
    try:
        while args.iterations is None or iteration < args.iterations:
            if iteration:
                time.sleep(args.delay)
            iteration += 1
            node, samples = sampler.sample()
            host = hosts.sample() if hosts else None
            if args.json:
                record = {
                    "iteration": iteration,
                    "time": node.time,
                    "node": node,
                    "domains": samples,
                }
                if host is not None:
                    record["host"] = host
                print(render.json_line(record), flush=True)
            else:
                print(top_text(node, samples, host), flush=True)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a batch without --iterations ends
    finally:
        sampler.close()
    return 0
