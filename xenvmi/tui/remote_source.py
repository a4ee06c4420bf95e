"""RemoteSource: one dom0's data through its own xenvmi over ssh (xenvmi.remote).

The domains come from one long-running ``xenvmi top --batch --json --host`` per host, one
JSON line per refresh, read by a HostWatcher thread that keeps the latest frame, re-reads
the identities (``xenvmi list --json``) when the domids change, and reconnects after a
failure; the sampler only looks at what the watcher has, so a host that is slow or down
never blocks a worker (FleetSource puts several side by side). A guest's views and its
xenstore are one ``--json`` command each, bounded by the same timeouts as on one host.
"""

from __future__ import annotations

import builtins
import threading
import time
from dataclasses import dataclass, field
from io import BufferedReader
from typing import TYPE_CHECKING, Any, TypeVar

from xenvmi.errors import Unavailable, XenvmiError
from xenvmi.model.guest import GuestView, LogRecord, Module, Process, VcpuRegisters
from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample, XsTree
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.plugins import PluginInfo, PluginResult
from xenvmi.remote import Remote, Running, parse, read_line, stop
from xenvmi.safetext import escape
from xenvmi.tui.codec import from_jsonable, list_of
from xenvmi.tui.sources import GUEST_VIEW_TIMEOUT, XS_MAX_NODES, ShouldStop, Stopped

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

#: Seconds a one-shot command (list, xs ls) may take, ssh's connection included (a
#: loaded one-CPU dom0 takes half a minute to start one).
COMMAND_TIMEOUT = 120.0
#: Seconds a guest view may take on the host when the guest's kernel must be found first
#: (as LiveSource allows discovery; the operator can leave the screen at any time).
DISCOVERY_TIMEOUT = 300.0
#: Seconds between attempts to reach a host that failed.
RETRY_SECONDS = 5.0
#: A host whose last frame is this many refreshes old (and at least STALE_MIN s) is stale.
STALE_REFRESHES = 3
STALE_MIN = 15.0
NO_TRACE = "hypercall tracing is per host: run `xenvmi tui` in that dom0 (over ssh -t)"


@dataclass
class HostState:
    """What a HostWatcher knows; read and written under its lock."""

    status: str = "connecting"  # connecting, ok, down (snapshot adds stale)
    reason: str = ""
    node: NodeSample | None = None
    samples: list[DomainSample] = field(default_factory=list)
    domains: list[Domain] = field(default_factory=list)
    host: HostSample | None = None
    frames: int = 0
    last: float = 0.0  # time.monotonic() of the last frame
    #: The domids of the frame that asked for ``domains`` (None: not asked yet), and
    #: whether that ``xenvmi list`` is still running.
    listed_ids: frozenset[int] | None = None
    listing: bool = False
    #: Why the last ``xenvmi list`` failed (tried again RETRY_SECONDS later), and when.
    list_error: str = ""
    list_failed: float = 0.0
    #: Counts the ``domains`` lists received (the fleet re-reads them when it moves).
    lists: int = 0


class HostWatcher:
    """The threads that stream one host's samples (and list its domains when the
    domids change, without holding up the stream); ``close`` ends them and their ssh."""

    def __init__(self, remote: Remote, refresh: float) -> None:
        self.remote, self.refresh = remote, refresh
        self.state = HostState()
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self._stop = threading.Event()
        self._proc: Running | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"xenvmi-host-{remote.host}", daemon=True
        )
        self._thread.start()

    def snapshot(self) -> HostState:
        """A copy of the state, marked stale if the frames stopped coming."""
        with self.lock:
            s = HostState(**vars(self.state))
        stale_after = max(STALE_MIN, STALE_REFRESHES * self.refresh)
        if s.status == "ok" and time.monotonic() - s.last > stale_after:
            s.status = "stale"
            s.reason = f"no sample for {time.monotonic() - s.last:.0f}s"
        return s

    def _set(self, **kw) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self.state, k, v)
        self.changed.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream()
            except XenvmiError as exc:
                self._set(status="down", reason=str(exc))
            if self._stop.wait(RETRY_SECONDS):
                return
            self._set(status="connecting")

    def _stream(self) -> None:
        """One ssh connection: read frames until it ends. Its stderr is drained by a
        thread (a host's warnings must not fill the pipe and stall the stream)."""
        args = ["top", "--batch", "--json", "--host", "--delay", f"{self.refresh:g}"]
        proc = self._proc = self.remote.start(args)
        assert proc.stdout is not None and proc.stderr is not None
        tail = bytearray()
        drain = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
        drain.start()
        try:
            while not self._stop.is_set():
                line = read_line(proc.stdout, self.remote.host)
                if not line:
                    break
                node, samples, host = frame(self.remote.host, line)
                ids = frozenset(s.domid for s in samples)
                with self.lock:
                    st = self.state
                    st.status, st.reason, st.node, st.samples = "ok", "", node, samples
                    st.host = host or st.host
                    st.frames += 1
                    st.last = time.monotonic()
                    list_now = (
                        ids != st.listed_ids
                        and not st.listing
                        and st.last - st.list_failed >= RETRY_SECONDS
                    )
                    if list_now:
                        st.listed_ids, st.listing = ids, True
                if list_now:
                    threading.Thread(target=self._list, daemon=True).start()
                self.changed.set()
        finally:
            stop(proc)
            drain.join(timeout=5)
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()
        if not self._stop.is_set():
            raise self.remote.failure(proc.returncode or 1, bytes(tail)) or Unavailable(
                f"{self.remote.host}: the connection ended"
            )

    def _list(self) -> None:
        """The domains' identities (``xenvmi list --json``); after a failure the types
        show '?' and the next frame RETRY_SECONDS later tries again."""
        try:
            got = self.remote.json(["list", "--json"], COMMAND_TIMEOUT, self._stop.is_set)
            domains = rows_of(Domain, got)
        except XenvmiError as exc:
            with self.lock:
                st = self.state
                st.listed_ids, st.listing = None, False
                st.list_error, st.list_failed = f"xenvmi list: {exc}", time.monotonic()
            self.changed.set()
            return
        with self.lock:
            self.state.domains, self.state.listing, self.state.list_error = domains, False, ""
            self.state.lists += 1
        self.changed.set()

    def stop_soon(self) -> None:
        """Ask the thread to end and end its ssh (``close`` then waits for it)."""
        self._stop.set()
        proc = self._proc
        if proc is not None:
            stop(proc)

    def close(self) -> None:
        self.stop_soon()
        self._thread.join(timeout=10)


def _escaped(value: Any) -> Any:
    """``value`` with every string in it escaped (xenvmi.safetext): a host's xenvmi
    escapes what guests control, but a host is not trusted to have done so."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_escaped(v) for v in value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def rows_of(cls: type[T], data: Any) -> list[T]:
    """``list_of`` over a host's JSON, its strings escaped first."""
    return list_of(cls, _escaped(data))


def _drain(pipe: BufferedReader, tail: bytearray) -> None:
    """Read ``pipe`` to its end, keeping its last 4 KiB in ``tail``."""
    for chunk in iter(lambda: pipe.read1(4096), b""):
        tail += chunk
        del tail[:-4096]


Frame = tuple[NodeSample | None, list[DomainSample], HostSample | None]


def frame(host: str, line: bytes) -> Frame:
    """One line of ``xenvmi top --batch --json --host`` (the shape in commands/domains.py)."""
    doc = parse(host, line, "top")
    if not isinstance(doc, dict) or not isinstance(doc.get("domains"), list):
        raise Unavailable(f"{host}: `xenvmi top --json` sent a line without domains")
    node = doc.get("node")
    dom0 = doc.get("host")
    return (
        from_jsonable(NodeSample, node) if node else None,
        rows_of(DomainSample, doc["domains"]),
        from_jsonable(HostSample, dom0) if dom0 else None,
    )


class RemoteSource:
    """A DataSource for one host; FleetSource (fleet.py) is what the app is given."""

    def __init__(self, remote: Remote, refresh: float = 2.0) -> None:
        self.remote, self.refresh = remote, refresh
        self.label = f"ssh {remote.host}"

    def watcher(self) -> HostWatcher:
        return HostWatcher(self.remote, self.refresh)

    def guest(self, domain: str | int, should_stop: ShouldStop) -> RemoteGuest:
        return RemoteGuest(self.remote, str(domain), should_stop)

    def xenstore(self, should_stop: ShouldStop) -> RemoteXs:
        return RemoteXs(self.remote, should_stop)

    def hypercalls(self, should_stop: ShouldStop) -> RemoteFeed:
        raise Unavailable(NO_TRACE)

    def plugins(self) -> list[PluginInfo]:
        raise Unavailable("plugins are run per host: `ssh HOST xenvmi run PLUGIN DOMAIN`")

    def run_plugin(self, name: str, domain: str | int | None) -> PluginResult:
        raise Unavailable("plugins are run per host: `ssh HOST xenvmi run PLUGIN DOMAIN`")


class RemoteGuest:
    """A guest on a host: each view is ``xenvmi VIEW DOMAIN --json`` there."""

    def __init__(self, remote: Remote, domain: str, should_stop: ShouldStop) -> None:
        self.remote, self.domain, self.should_stop = remote, domain, should_stop

    def _view(self, command: str, cls: type, *extra: str) -> GuestView:
        timeout = GUEST_VIEW_TIMEOUT + DISCOVERY_TIMEOUT
        doc = self.remote.json(
            [command, *extra, "--json", "-q", "--timeout", f"{timeout:g}", "--", self.domain],
            timeout + COMMAND_TIMEOUT,
            self.should_stop,
        )
        if self.should_stop():
            raise Stopped()
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
            raise Unavailable(f"{self.remote.host}: `xenvmi {command} --json` sent no rows")
        if doc.get("error"):
            raise Unavailable(f"{self.remote.host}: {escape(str(doc['error']))}")
        return GuestView(
            str(doc.get("domain") or self.domain),
            rows_of(cls, doc["rows"]),
            bool(doc.get("complete", True)),
            [escape(str(w)) for w in doc.get("warnings") or []],
        )

    def processes(self) -> GuestView[Process]:
        return self._view("ps", Process)

    def modules(self) -> GuestView[Module]:
        return self._view("lsmod", Module)

    def kernel_log(self) -> GuestView[LogRecord]:
        return self._view("dmesg", LogRecord)

    def registers(self) -> GuestView[VcpuRegisters]:
        return self._view("regs", VcpuRegisters, "--vcpu", "all")

    def close(self) -> None:
        pass


class RemoteXs:
    """Xenstore on a host through ``xenvmi xs ls -r --json`` (bounded there and here).
    There is no watch over ssh: ``wait`` idles and the screen re-walks when poked."""

    def __init__(self, remote: Remote, should_stop: ShouldStop) -> None:
        self.remote, self.should_stop = remote, should_stop

    def _ls(self, path: str, recursive: bool, max_nodes: int) -> dict:
        args = ["xs", "ls", *(["-r"] if recursive else []), "--max-nodes", str(max_nodes)]
        doc = self.remote.json([*args, "--json", "--", path], COMMAND_TIMEOUT, self.should_stop)
        if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
            raise Unavailable(f"{self.remote.host}: `xenvmi xs ls --json` sent no nodes")
        return doc

    def list(self, path: str) -> builtins.list[str]:
        nodes = self._ls(path, False, XS_MAX_NODES)["nodes"]
        return [str(n["path"]).rsplit("/", 1)[-1] for n in nodes]

    def read(self, path: str) -> str | None:
        doc = self.remote.json(["xs", "read", "--json", "--", path], COMMAND_TIMEOUT)
        value = doc.get("value") if isinstance(doc, dict) else None
        return None if value is None else str(value)

    def walk(self, path: str, max_nodes: int = XS_MAX_NODES) -> XsTree:
        doc = self._ls(path, True, max_nodes)
        return from_jsonable(
            XsTree,
            _escaped({"top": path, "nodes": doc["nodes"], "truncated": doc.get("truncated", "")}),
        )

    def wait(self, path: str, timeout: float) -> builtins.list[str]:
        raise Unavailable("no xenstore watch over ssh: press r to read again")

    def close(self) -> None:
        pass


class RemoteFeed:
    def poll(self, timeout: float) -> builtins.list[HypercallEvent]:
        raise Unavailable(NO_TRACE)

    def close(self) -> None:
        pass
