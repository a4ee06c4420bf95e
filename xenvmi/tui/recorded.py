"""RecordedSource: the TUI's DataSource replaying JSON fixtures (no Xen needed).

A recording is a directory of JSON files, each optional except samples.json::

    domains.json     [Domain, ...]                  identity, type, devices
    samples.json     [[DomainSample, ...], ...]     one frame per refresh
    host.json        HostSample
    xenstore.json    {"/local/domain/1/name": "xvm-pv", ...}
    hypercalls.json  [HypercallEvent, ...]
    guests/NAME.json {"processes": [...], "modules": [...], "kernel_log": [...],
                      "registers": [{"vcpu": 0, "raw": {...}}], "errors": {"modules": "..."}}
    plugins.json     {"plugins": [PluginInfo...], "results": {"name": {"rows": [...]}}}
    unavailable.json {"hypercalls": "trace: bcc is not installed (...)", ...}

Each sampler refresh moves to the next frame (``loop`` starts over, else the last frame
stays): a domain missing from a frame has vanished. ``unavailable`` simulates a missing
capability (keys: domains, host, guest, xenstore, hypercalls, plugins): the call raises
Unavailable (or PermissionDenied if the message starts with "permission:") with it.
``delay`` makes every call take that long, to show the UI does not block on its source.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from xenvmi.errors import GuestDataError, NotFoundError, PermissionDenied, Unavailable, XenvmiError
from xenvmi.guest.regs_x86 import decode_x86
from xenvmi.model.guest import GuestView, LogRecord, Module, Process, VcpuRegisters
from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample, XsNode, XsTree
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.plugins import PluginInfo, PluginResult
from xenvmi.render import to_jsonable
from xenvmi.tui.codec import from_jsonable, list_of
from xenvmi.tui.sources import XS_MAX_NODES, ShouldStop, Stopped, children_of


@dataclass
class GuestRecording:
    """What the guest views of one domain returned."""

    processes: list[Process] = field(default_factory=list)
    modules: list[Module] = field(default_factory=list)
    kernel_log: list[LogRecord] = field(default_factory=list)
    registers: list[dict] = field(default_factory=list)  # {"vcpu": n, "raw": {...}}
    errors: dict[str, str] = field(default_factory=dict)  # view name -> message


@dataclass
class Recording:
    """Everything a RecordedSource replays, in memory."""

    frames: list[list[DomainSample]]
    domains: list[Domain] = field(default_factory=list)
    host: HostSample | None = None
    node: NodeSample | None = None
    xenstore: dict[str, str] = field(default_factory=dict)
    hypercalls: list[HypercallEvent] = field(default_factory=list)
    guests: dict[str, GuestRecording] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    plugin_results: dict[str, dict] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def _fail(message: str) -> XenvmiError:
    if message.startswith("permission:"):
        return PermissionDenied(message.split(":", 1)[1].strip())
    return Unavailable(message)


class RecordedSource:
    """DataSource over a Recording; thread-safe (frames advance under a lock)."""

    def __init__(
        self,
        recording: Recording,
        *,
        loop: bool = False,
        delay: float = 0.0,
        label: str = "replay",
        hypercall_batch: int = 50,
    ) -> None:
        if not recording.frames:
            raise GuestDataError("recording: samples.json has no frames")
        self.rec, self.loop, self.delay, self.label = recording, loop, delay, label
        self.hypercall_batch = hypercall_batch
        self._frame = -1
        self._lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------
    def check(self, capability: str) -> None:
        """Raise the recorded reason if ``capability`` is marked unavailable."""
        if self.delay:
            time.sleep(self.delay)
        if capability in self.rec.unavailable:
            raise _fail(self.rec.unavailable[capability])

    def advance(self) -> list[DomainSample]:
        with self._lock:
            last = len(self.rec.frames) - 1
            if self._frame < last:
                self._frame += 1
            elif self.loop:
                self._frame = 0
            return self.rec.frames[max(self._frame, 0)]

    def current(self) -> list[DomainSample]:
        with self._lock:
            return self.rec.frames[max(self._frame, 0)]

    # -- DataSource ------------------------------------------------------------------
    def sampler(self, should_stop: ShouldStop) -> _Sampler:
        return _Sampler(self, should_stop)

    def guest(self, domain: str | int, should_stop: ShouldStop) -> _Guest:
        self.check("guest")
        name = str(domain)
        if name == "0":  # as LibVMI says it
            raise NotFoundError("domain 0 is dom0 itself: give a guest's name or id")
        for d in self.rec.domains:
            if str(d.domid) == name:
                name = d.name
        if name not in self.rec.guests:
            raise Unavailable(f"{name}: nothing recorded for this guest")
        return _Guest(self, name, self.rec.guests[name])

    def xenstore(self, should_stop: ShouldStop) -> _Xs:
        self.check("xenstore")
        return _Xs(self, should_stop)

    def hypercalls(self, should_stop: ShouldStop) -> _Feed:
        self.check("hypercalls")
        return _Feed(self, should_stop)

    def plugins(self) -> list[PluginInfo]:
        self.check("plugins")
        return list(self.rec.plugins)

    def run_plugin(self, name: str, domain: str | int | None) -> PluginResult:
        self.check("plugins")
        raw = self.rec.plugin_results.get(name)
        if raw is None:
            return PluginResult(name, domain, error=f"plugin {name!r}: nothing recorded")
        rows = raw.get("rows", [])
        if rows:
            row_cls = make_dataclass(f"{name}_row", list(rows[0]))
            rows = [row_cls(**r) for r in rows]
        return PluginResult(
            name,
            domain,
            rows,
            list(raw.get("warnings", [])),
            raw.get("error"),
            complete=raw.get("error") is None,
        )


def _idle(seconds: float, should_stop: ShouldStop) -> None:
    """Wait like a watch with nothing to report, but notice a quitting app within 50 ms."""
    end = time.monotonic() + seconds
    while not should_stop() and time.monotonic() < end:
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))


class _Sampler:
    def __init__(self, src: RecordedSource, should_stop: ShouldStop) -> None:
        self.src, self.should_stop = src, should_stop

    def domains(self) -> list[Domain]:
        self.src.check("domains")
        present = {s.domid for s in self.src.current()}
        return [d for d in self.src.rec.domains if d.domid in present]

    def sample(self) -> tuple[NodeSample | None, list[DomainSample]]:
        self.src.check("domains")
        return self.src.rec.node, list(self.src.advance())

    def host(self) -> HostSample:
        self.src.check("host")
        if self.src.rec.host is None:
            raise Unavailable("host: nothing recorded")
        return self.src.rec.host

    def wait_change(self, timeout: float) -> bool:
        _idle(timeout, self.should_stop)  # a recording announces no domains: frames do
        return False

    def close(self) -> None:
        pass


class _Guest:
    def __init__(self, src: RecordedSource, name: str, rec: GuestRecording) -> None:
        self.src, self.name, self.rec = src, name, rec

    def _view(self, what: str, rows: list) -> GuestView:
        self.src.check("guest")
        if what in self.rec.errors:
            raise _fail(self.rec.errors[what])
        return GuestView(self.name, list(rows))

    def processes(self) -> GuestView[Process]:
        return self._view("processes", self.rec.processes)

    def modules(self) -> GuestView[Module]:
        return self._view("modules", self.rec.modules)

    def kernel_log(self) -> GuestView[LogRecord]:
        return self._view("kernel_log", self.rec.kernel_log)

    def registers(self) -> GuestView[VcpuRegisters]:
        rows = [
            VcpuRegisters(self.name, int(r["vcpu"]), decode_x86(r["raw"]), dict(r["raw"]))
            for r in self.rec.registers
        ]
        return self._view("registers", rows)

    def close(self) -> None:
        pass


class _Xs:
    def __init__(self, src: RecordedSource, should_stop: ShouldStop) -> None:
        self.src, self.should_stop = src, should_stop

    def _paths(self) -> list[str]:
        return list(self.src.rec.xenstore)

    def list(self, path: str) -> list[str]:
        self.src.check("xenstore")
        return children_of(self._paths(), path)

    def read(self, path: str) -> str | None:
        self.src.check("xenstore")
        return self.src.rec.xenstore.get(path, "")

    def walk(self, path: str, max_nodes: int = XS_MAX_NODES) -> XsTree:
        self.src.check("xenstore")
        top = path.rstrip("/") or "/"
        under = sorted(p for p in self._paths() if p == top or p.startswith(top + "/"))
        nodes = []
        for p in under[:max_nodes]:
            depth = p[len(top) :].count("/")
            nodes.append(XsNode(p, self.src.rec.xenstore[p], len(children_of(under, p)), depth))
        return XsTree(top, tuple(nodes), "max_nodes" if len(under) > max_nodes else "")

    def wait(self, path: str, timeout: float) -> builtins.list[str]:
        _idle(timeout, self.should_stop)
        return []

    def close(self) -> None:
        pass


class _Feed:
    def __init__(self, src: RecordedSource, should_stop: ShouldStop) -> None:
        self.src, self.should_stop, self.pos = src, should_stop, 0

    def poll(self, timeout: float) -> list[HypercallEvent]:
        if self.should_stop():
            raise Stopped()
        events = self.src.rec.hypercalls
        if self.pos >= len(events) and self.src.loop and events:
            self.pos = 0
        batch = events[self.pos : self.pos + self.src.hypercall_batch]
        self.pos += len(batch)
        _idle(timeout, self.should_stop)  # paced like the tracer: a batch per timeout
        return batch

    def close(self) -> None:
        pass


# -- files ---------------------------------------------------------------------------


def _read(directory: Path, name: str, default: Any) -> Any:
    path = directory / name
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GuestDataError(f"recording: cannot read {path}: {exc}") from None


def recorded_plugin(raw: dict) -> PluginInfo:
    """A recording's plugin listing (the fields the Plugins tab shows) as a PluginInfo."""
    return PluginInfo(
        name=str(raw["name"]),
        version=str(raw.get("version", "?")),
        description=str(raw.get("description", "")),
        requires=(),
        available=bool(raw.get("available", True)),
        why_not=str(raw.get("why_not", "") or ""),
        needs_domain=bool(raw.get("needs_domain", False)),
        source="recording",
    )


def load(directory: str | Path) -> Recording:
    """A Recording from a directory (see the module docstring for the files)."""
    d = Path(directory)
    if not (d / "samples.json").is_file():
        raise Unavailable(
            f"{d}: not a recording (no samples.json); make one with "
            "`python3 -m xenvmi.tui.synthetic DIR`"
        )
    frames = [list_of(DomainSample, f) for f in _read(d, "samples.json", [])]
    host = _read(d, "host.json", None)
    node = _read(d, "node.json", None)
    plugins = _read(d, "plugins.json", {})
    guests = {}
    for g in sorted((d / "guests").glob("*.json")) if (d / "guests").is_dir() else []:
        raw = _read(g.parent, g.name, {})
        guests[g.stem] = GuestRecording(
            list_of(Process, raw.get("processes", [])),
            list_of(Module, raw.get("modules", [])),
            list_of(LogRecord, raw.get("kernel_log", [])),
            list(raw.get("registers", [])),
            dict(raw.get("errors", {})),
        )
    return Recording(
        frames=frames,
        domains=list_of(Domain, _read(d, "domains.json", [])),
        host=from_jsonable(HostSample, host) if host else None,
        node=from_jsonable(NodeSample, node) if node else None,
        xenstore={str(k): str(v) for k, v in _read(d, "xenstore.json", {}).items()},
        hypercalls=list_of(HypercallEvent, _read(d, "hypercalls.json", [])),
        guests=guests,
        plugins=[recorded_plugin(p) for p in plugins.get("plugins", [])],
        plugin_results=dict(plugins.get("results", {})),
        unavailable=dict(_read(d, "unavailable.json", {})),
    )


def save(rec: Recording, directory: str | Path) -> None:
    """Write a Recording as the files ``load`` reads."""
    d = Path(directory)
    (d / "guests").mkdir(parents=True, exist_ok=True)

    def put(name: str, value: Any) -> None:
        (d / name).write_text(json.dumps(to_jsonable(value), indent=1) + "\n")

    put("samples.json", rec.frames)
    put("domains.json", rec.domains)
    if rec.host:
        put("host.json", rec.host)
    if rec.node:
        put("node.json", rec.node)
    put("xenstore.json", rec.xenstore)
    put("hypercalls.json", rec.hypercalls)
    put("plugins.json", {"plugins": rec.plugins, "results": rec.plugin_results})
    if rec.unavailable:
        put("unavailable.json", rec.unavailable)
    for name, g in rec.guests.items():
        put(f"guests/{name}.json", g)
