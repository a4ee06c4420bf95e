"""XenStore through pyxs, with a timeout on every request and guest data treated as hostile.

pyxs does the packets and transports (unix socket, xenbus device); its client waits forever
and hands each reply over between threads, so requests are driven here on one thread with
``select``: each waits at most ``timeout`` seconds (a wedged xenstored is an error, not a
hung tool), and requests are pipelined (``fetch``): a few round trips for all domains.

Guests write parts of the tree (their ``device/``, ``data/``, ``control/`` nodes), so values
are bounded and decoded with :func:`safe_text` (no terminal escapes reach a screen). The
store is read-only unless opened with ``writable=True``.
"""

from __future__ import annotations

import builtins
import errno
import itertools
import os
import posixpath
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from enum import IntEnum
from typing import Any, NamedTuple, overload

from xenvmi import safetext
from xenvmi.errors import NotFoundError, PermissionDenied, Unavailable, UsageError, XenvmiError
from xenvmi.model.host import WatchEvent, XsNode, XsTree


class Op(IntEnum):
    """The message types xenvmi sends or receives (enum xsd_sockmsg_type, Xen's public
    io/xs_wire.h): pyxs's own table is private, so the few used are named here."""

    DIRECTORY = 1
    READ = 2
    WATCH = 4
    UNWATCH = 5
    WRITE = 11
    WATCH_EVENT = 15
    ERROR = 16


class XsPacket(NamedTuple):
    """struct xsd_sockmsg and its payload, as pyxs's public connection sends it (it reads
    exactly these fields)."""

    op: int
    rq_id: int
    tx_id: int
    size: int
    payload: bytes


#: Request ids: xenstored echoes them; unique per process is enough (one lock per store).
_RQ_IDS = itertools.count(1)

#: Where xenstored listens: Xen's default rundir first, the old /var/run alias second.
SOCKET_PATHS = ("/run/xenstored/socket", "/var/run/xenstored/socket")
#: The kernel's xenbus device: the fallback when there is no socket (e.g. a stub-domain store).
XENBUS_PATHS = ("/dev/xen/xenbus", "/proc/xen/xenbus")
#: XENSTORE_PAYLOAD_MAX in xen/include/public/io/xs_wire.h: no value or reply is longer.
PAYLOAD_MAX = 4096
#: Largest path xenstored accepts (XENSTORE_ABS_PATH_MAX).
PATH_MAX = 3072
_PATH_RE = re.compile(r"[A-Za-z0-9_/@-]+")
_SPECIAL_WATCHES = ("@introduceDomain", "@releaseDomain")
_tokens = itertools.count(1)


@overload
def safe_text(raw: bytes, limit: int = PAYLOAD_MAX) -> str: ...
@overload
def safe_text(raw: bytes | None, limit: int = PAYLOAD_MAX) -> str | None: ...
def safe_text(raw: bytes | None, limit: int = PAYLOAD_MAX) -> str | None:
    """Decode an untrusted value: at most ``limit`` bytes, invalid UTF-8 and every
    non-printable character escaped (:func:`xenvmi.safetext.decode`), so a guest cannot
    drive the terminal."""
    if raw is None:
        return None
    text = safetext.decode(raw[:limit])
    return text + "..." if len(raw) > limit else text


def check_path(path: str, watch: bool = False) -> bytes:
    """Validate a path as xenstored would, so a typo is a usage error, not a protocol one."""
    if watch and path in _SPECIAL_WATCHES:
        return path.encode()
    ok = (
        bool(_PATH_RE.fullmatch(path))
        and len(path) <= PATH_MAX
        and "//" not in path
        and (path == "/" or not path.endswith("/"))
        and not path.startswith("@")
    )
    if not ok:
        hint = " or @introduceDomain/@releaseDomain" if watch else ""
        raise UsageError(
            f"invalid xenstore path {safe_text(path.encode(), 80)!r}: use an "
            f"absolute path like /local/domain/0 (letters, digits, -_/@){hint}"
        )
    return path.encode()


def _xs_error(name: bytes, path: str) -> XenvmiError:
    """An error reply (an errno name) as one of our errors, with the fix in the message."""
    code = getattr(errno, name.rstrip(b"\0").decode("ascii", "replace"), 0)
    shown = safe_text(path.encode(), 200)
    if code == errno.ENOENT:
        return NotFoundError(f"xenstore: no such path: {shown}")
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"xenstore: permission denied on {shown}: run as root in dom0")
    if code == errno.EINVAL:
        return UsageError(f"xenstore: invalid request for {shown}")
    return XenvmiError(f"xenstore: {shown}: {os.strerror(code) if code else name!r}")


class _EventSink:
    """Watch events for one token: bounded (a guest can flood events); overflow drops the
    oldest and counts it."""

    def __init__(self, maxlen: int = 4096):
        self.items: deque = deque(maxlen=maxlen)
        self.dropped = 0

    def put(self, event: tuple[bytes, bytes]) -> None:
        if len(self.items) == self.items.maxlen:
            self.dropped += 1
        self.items.append(event)


class _BoundedUnixTransport:
    """pyxs's unix-socket transport (the same four methods) with a bounded connect: a
    wedged xenstored stops accepting, its listen queue fills, and a plain connect() then
    waits forever (seen: `xenvmi list` hung 10 minutes on a stopped oxenstored)."""

    def __init__(self, path: str, timeout: float) -> None:
        from pyxs.exceptions import ConnectionError as PyXSConnectionError

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            # a full queue is EAGAIN at once on a socket with a timeout, or a timeout
            wedged = isinstance(e, TimeoutError) or e.errno == errno.EAGAIN
            why = "it accepts no connection: stopped or hung?" if wedged else e.strerror
            raise PyXSConnectionError(why) from None

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        view = memoryview(bytearray(size))
        while size:
            received = self.sock.recv_into(view[-size:])
            if not received:
                raise OSError(errno.ECONNRESET, "xenstored closed the connection")
            size -= received
        return view.tobytes()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        finally:
            self.sock.close()


class XenStore:
    """A connection to xenstored. Use as a context manager; every call may raise
    ``Unavailable`` (timeout, lost connection), ``NotFoundError``, ``PermissionDenied``.

    Single-threaded on purpose: requests are written, then replies read with ``select``
    against a deadline; watch events that arrive meanwhile are queued for their Watch. A
    lock lets several threads share one connection (one request batch at a time)."""

    def __init__(
        self,
        timeout: float = 5.0,
        writable: bool = False,
        socket_path: str | None = None,
        xenbus_path: str | None = None,
    ):
        self.timeout = timeout
        self.writable = writable
        self._socket_path, self._xenbus_path = socket_path, xenbus_path
        self._conn: Any = None  # a pyxs connection (pyxs has no types)
        self._lock = threading.RLock()
        self._pending: set[int] = set()
        self._replies: dict = {}
        self._sinks: dict[bytes, _EventSink] = {}
        self.transport = ""

    # ------------------------------------------------------------------ connection
    def __enter__(self) -> XenStore:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> XenStore:
        try:
            from pyxs.connection import UnixSocketConnection, XenBusConnection
            from pyxs.exceptions import PyXSError
        except ImportError:
            raise Unavailable("xenstore needs pyxs: pip install 'pyxs>=0.4.1'") from None
        sock = self._socket_path or next((p for p in SOCKET_PATHS if os.path.exists(p)), None)
        bus = self._xenbus_path or next((p for p in XENBUS_PATHS if os.path.exists(p)), None)
        if sock:
            timeout = self.timeout

            class BoundedConnection(UnixSocketConnection):
                def create_transport(self):
                    return _BoundedUnixTransport(self.path, timeout)

            conn, self.transport, path = BoundedConnection(sock), "socket", sock
        elif bus:
            conn, self.transport, path = XenBusConnection(bus), "xenbus", bus
        else:
            raise Unavailable(
                "no xenstore here (no xenstored socket, no /dev/xen/xenbus): run "
                "in a Xen dom0 with xenstored started (/etc/init.d/xen start)"
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise PermissionDenied(f"xenstore: cannot open {path}: run as root in dom0 (sudo)")
        try:
            conn.connect()
        except PyXSError as exc:
            raise Unavailable(
                f"xenstore: cannot connect to {path} ({exc}): is xenstored "
                f"running? (/etc/init.d/xen start)"
            ) from None
        sock_obj = getattr(conn.transport, "sock", None)
        if sock_obj is not None:  # a reply cut short must not block a read forever
            sock_obj.settimeout(self.timeout)
        self._conn = conn
        return self

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            from pyxs.exceptions import PyXSError

            try:
                conn.close()
            except (OSError, PyXSError) as e:  # already broken: nothing left to release
                import logging  # only here: its import is a fair part of `xenvmi list`

                logging.getLogger(__name__).debug("closing the xenstore connection: %s", e)

    def _lost(self, why: str) -> Unavailable:
        self.close()
        return Unavailable(f"xenstore: {why}: is xenstored alive? (/etc/init.d/xen status)")

    # ------------------------------------------------------------------ requests
    def _send(self, op: int, payload: bytes) -> int:
        from pyxs.exceptions import PyXSError

        if self._conn is None:
            raise Unavailable("xenstore: not connected (use XenStore as a context manager)")
        if len(payload) > PAYLOAD_MAX:
            raise UsageError(f"xenstore: request of {len(payload)} bytes exceeds {PAYLOAD_MAX}")
        packet = XsPacket(op, next(_RQ_IDS), 0, len(payload), payload)
        try:
            self._conn.send(packet)
        except PyXSError as exc:
            raise self._lost(f"connection lost ({exc})") from None
        self._pending.add(packet.rq_id)
        return packet.rq_id

    def _pump(self, deadline: float) -> bool:
        """Read one packet if one arrives before ``deadline``: a reply is kept for its
        request, a watch event queued for its watch. False if nothing came."""
        from pyxs.exceptions import PyXSError

        if self._conn is None:
            raise Unavailable("xenstore: connection closed")
        try:
            ready, _, _ = select.select([self._conn], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return False
            packet = self._conn.recv()
        except (PyXSError, OSError, ValueError) as exc:
            raise self._lost(f"connection lost ({exc})") from None
        if packet.op == Op.WATCH_EVENT:
            parts = packet.payload.split(b"\0")
            if len(parts) >= 2 and parts[1] in self._sinks:
                self._sinks[parts[1]].put((parts[0], parts[1]))
        elif packet.rq_id in self._pending:
            self._pending.discard(packet.rq_id)
            self._replies[packet.rq_id] = packet
        return True

    def _wait(self, rq_id: int, op: int, path: str, deadline: float) -> bytes:
        """The reply's payload, or an error; never waits past ``deadline``."""

        while rq_id not in self._replies:
            if not self._pump(deadline) and time.monotonic() >= deadline:
                self._pending.discard(rq_id)
                raise Unavailable(
                    f"xenstore: no answer in {self.timeout:.1f}s for "
                    f"{safe_text(path.encode(), 200)}: is xenstored alive? "
                    f"(/etc/init.d/xen status)"
                )
        reply = self._replies.pop(rq_id)
        if reply.op == Op.ERROR:
            raise _xs_error(reply.payload, path)
        if reply.op != op:
            raise self._lost(f"unexpected reply {reply.op} to request {op}")
        return reply.payload

    def _call(self, op: int, path: str, payload: bytes) -> bytes:
        with self._lock:
            rq_id = self._send(op, payload)
            return self._wait(rq_id, op, path, time.monotonic() + self.timeout)

    def _many(self, requests: Sequence[tuple[int, str]], batch: int = 128) -> dict:
        """Pipeline (op, path) requests; missing or forbidden paths answer None."""
        out: dict = {}
        with self._lock:
            for start in range(0, len(requests), batch):
                chunk = requests[start : start + batch]
                sent = [(op, p, self._send(op, check_path(p) + b"\0")) for op, p in chunk]
                deadline = time.monotonic() + self.timeout
                for op, path, rq_id in sent:
                    try:
                        out[op, path] = self._wait(rq_id, op, path, deadline)
                    except (NotFoundError, PermissionDenied):
                        out[op, path] = None
        return out

    # ------------------------------------------------------------------ reads
    def read_bytes(self, path: str) -> bytes:
        return self._call(Op.READ, path, check_path(path) + b"\0")

    def read(self, path: str) -> str:
        """The value at ``path``, decoded safely (NotFoundError if absent)."""
        return safe_text(self.read_bytes(path))

    def list(self, path: str) -> list[str]:
        """The names of ``path``'s children (NotFoundError if absent)."""
        return _split_names(self._call(Op.DIRECTORY, path, check_path(path) + b"\0"))

    def fetch(
        self, reads: Iterable[str] = (), lists: Iterable[str] = ()
    ) -> tuple[dict[str, str | None], dict[str, builtins.list[str] | None]]:
        """Values of ``reads`` and children of ``lists`` in one pipelined round trip;
        absent or forbidden paths give None."""
        reads, lists = list(dict.fromkeys(reads)), list(dict.fromkeys(lists))
        got = self._many([(Op.READ, p) for p in reads] + [(Op.DIRECTORY, p) for p in lists])
        raw = {p: got[Op.DIRECTORY, p] for p in lists}
        return (
            {p: safe_text(got[Op.READ, p]) for p in reads},
            {p: None if v is None else _split_names(v) for p, v in raw.items()},
        )

    def read_many(self, paths: Iterable[str]) -> dict[str, str | None]:
        return self.fetch(reads=paths)[0]

    def list_many(self, paths: Iterable[str]) -> dict[str, builtins.list[str] | None]:
        return self.fetch(lists=paths)[1]

    def walk(self, top: str, max_depth: int = 16, max_nodes: int = 10000) -> XsTree:
        """Every node under ``top`` (itself included), breadth first, one pipelined round
        trip per level; stops at ``max_depth`` levels below top or ``max_nodes`` nodes."""
        self.list(top)  # NotFoundError for a bad top, before anything else
        nodes: list[XsNode] = []
        level, depth, truncated = [top], 0, ""
        while level:
            if len(nodes) + len(level) > max_nodes:
                level, truncated = level[: max_nodes - len(nodes)], f"more than {max_nodes} nodes"
            values, children = self.fetch(level, level)
            nxt: list[str] = []
            for path in level:
                kids = children.get(path) or []
                nodes.append(XsNode(path, values.get(path), len(kids), depth))
                nxt += [posixpath.join(path, k) for k in kids]
            if truncated:
                break
            depth += 1
            if nxt and depth > max_depth:
                truncated = f"deeper than {max_depth} levels"
                break
            level = nxt
        return XsTree(top, tuple(sorted(nodes, key=lambda n: _path_key(n.path))), truncated)

    # ------------------------------------------------------------------ writes
    def write(self, path: str, value: str | bytes) -> None:
        """Write a value; only on a store opened with ``writable=True``."""
        if not self.writable:
            raise PermissionDenied(
                "xenstore: this connection is read-only (open it with writable=True to write)"
            )
        data = value.encode() if isinstance(value, str) else bytes(value)
        self._call(Op.WRITE, path, check_path(path) + b"\0" + data)

    # ------------------------------------------------------------------ watches
    def watch(
        self,
        paths: str | Sequence[str],
        timeout: float | None = None,
        count: int | None = None,
        skip_initial: bool = False,
    ) -> Watch:
        """Watch paths (or @introduceDomain / @releaseDomain); iterate the result for
        events. xenstored fires one event per path at once when a watch is set; with
        ``skip_initial`` those are dropped, and only changes come out."""
        if isinstance(paths, str):
            paths = [paths]
        checked = [(p, check_path(p, watch=True)) for p in paths]
        if self.transport == "xenbus":
            raise Unavailable(
                "xenstore watches need xenstored's socket, not the xenbus "
                "device: run in dom0 with xenstored started"
            )
        return Watch(self, checked, timeout, count, skip_initial)


class Watch:
    """Events for a set of watched paths, until ``stop()``, the deadline or ``count``.

    Iteration waits in 0.2 s slices, so ``stop()`` from another thread ends it promptly,
    as does a Ctrl-C; either way the watches are removed (bounded by the store's timeout)."""

    def __init__(
        self,
        store: XenStore,
        paths,
        timeout: float | None,
        count: int | None,
        skip_initial: bool = False,
    ):
        self.store, self.paths = store, [p for p, _ in paths]
        #: Watched path -> initial events still to drop (xenstored sends one per WATCH).
        self._initial = {p: 1 for p in self.paths} if skip_initial else {}
        self.token = f"xenvmi-{os.getpid()}-{next(_tokens)}".encode()
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.count, self.received, self._stopped = count, 0, False
        self.sink = _EventSink()
        store._sinks[self.token] = self.sink
        self._watched: list[tuple[str, bytes]] = []
        try:
            for path, raw in paths:
                store._call(Op.WATCH, path, raw + b"\0" + self.token + b"\0")
                self._watched.append((path, raw))
        except BaseException:
            self.stop()
            raise

    @property
    def dropped(self) -> int:
        """Events lost because the consumer fell more than 4096 events behind."""
        return self.sink.dropped

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __iter__(self) -> Iterator[WatchEvent]:
        try:
            while not self._stopped and (self.count is None or self.received < self.count):
                left = 0.2 if self.deadline is None else min(0.2, self.deadline - time.monotonic())
                ev = self.next(max(0.0, left))  # queued events still come past the deadline
                if ev is not None:
                    yield ev
                elif left <= 0:
                    return
        finally:
            self.stop()

    def next(self, timeout: float) -> WatchEvent | None:
        """The next event within ``timeout`` s, or None. For a watch kept open and polled
        in short slices: one WATCH for its whole life, not one (and xenstored's initial
        event) per slice."""
        end = time.monotonic() + timeout
        while not self._stopped:
            while self.sink.items:
                raw_path, raw_token = self.sink.items.popleft()
                path = safe_text(raw_path, 1024)
                if self._initial.get(path):
                    self._initial[path] -= 1
                    continue
                if self._covers(path):
                    self.received += 1
                    return WatchEvent(path=path, token=safe_text(raw_token, 64), time=time.time())
            if time.monotonic() >= end:
                return None
            with self.store._lock:
                self.store._pump(end)
        return None

    def _covers(self, path: str) -> bool:
        """A watch fires for the path and everything below it; drop strays."""
        return any(path == w or path.startswith(w.rstrip("/") + "/") for w in self.paths)

    def stop(self) -> None:
        """Remove the watches; safe to call from any thread, more than once."""
        if self._stopped:
            return
        self._stopped = True
        for path, raw in self._watched:
            try:
                self.store._call(Op.UNWATCH, path, raw + b"\0" + self.token + b"\0")
            except XenvmiError:
                break
        self.store._sinks.pop(self.token, None)


def _split_names(payload: bytes) -> list[str]:
    return [safe_text(n, 256) for n in payload.rstrip(b"\0").split(b"\0") if n]


def _path_key(path: str):
    """Sort numeric components numerically (domain 10 after domain 9)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.split("/")]
