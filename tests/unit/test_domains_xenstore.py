"""The xenstore backend against a fake xenstored speaking the real wire protocol.

The fake serves a dict tree on a unix socket (xs_wire.h framing: op, req_id, tx_id, len),
answers watches with the initial event, and can be told to go silent, so timeouts, error
mapping, pipelining, watch stop and hostile values are tested without Xen.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pyxs")

from xenvmi.backends.xenstore import XenStore, check_path, safe_text
from xenvmi.errors import NotFoundError, PermissionDenied, Unavailable, UsageError

READ, DIRECTORY, WATCH, UNWATCH, WRITE, WATCH_EVENT, ERROR = 2, 1, 4, 5, 11, 15, 16
HEADER = struct.Struct("<IIII")


class FakeXenstored:
    """Just enough of xenstored: READ, DIRECTORY, WRITE, WATCH, UNWATCH over a dict."""

    def __init__(self, path: str, tree: dict[str, bytes]):
        self.tree = dict(tree)
        self.ops: list[int] = []  # every request's type, in order
        self.silent = False
        self.watches: dict[tuple[bytes, bytes], socket.socket] = {}  # (token, path) -> conn
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _recv(conn, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    @staticmethod
    def _send(conn, op: int, rq: int, payload: bytes) -> None:
        conn.sendall(HEADER.pack(op, rq, 0, len(payload)) + payload)

    def fire(self, path: str) -> None:
        for (token, wpath), conn in list(self.watches.items()):
            if path == wpath.decode() or path.startswith(wpath.decode() + "/"):
                self._send(conn, WATCH_EVENT, 0, path.encode() + b"\0" + token + b"\0")

    def _children(self, path: str) -> list[bytes] | None:
        prefix = path.rstrip("/") + "/"
        if path not in self.tree and not any(k.startswith(prefix) for k in self.tree):
            return None
        names = {k[len(prefix) :].split("/")[0] for k in self.tree if k.startswith(prefix)}
        return sorted(n.encode() for n in names)

    def _accept(self) -> None:
        try:
            while True:
                conn, _ = self.server.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        except OSError:
            pass

    def _serve(self, conn) -> None:
        try:
            while True:
                op, rq, _tx, size = HEADER.unpack(self._recv(conn, HEADER.size))
                payload = self._recv(conn, size) if size else b""
                self.ops.append(op)
                if not self.silent:
                    self._answer(conn, op, rq, payload)
        except (EOFError, OSError):
            pass

    def _answer(self, conn, op: int, rq: int, payload: bytes) -> None:
        parts = payload.split(b"\0")
        path = parts[0].decode()
        if op == READ:
            value = self.tree.get(path)
            if value is None and self._children(path) is None:
                self._send(conn, ERROR, rq, b"ENOENT\0")
            elif path.startswith("/secret"):
                self._send(conn, ERROR, rq, b"EACCES\0")
            else:
                self._send(conn, READ, rq, value or b"")
        elif op == DIRECTORY:
            kids = self._children(path)
            if kids is None:
                self._send(conn, ERROR, rq, b"ENOENT\0")
            else:
                self._send(conn, DIRECTORY, rq, b"".join(k + b"\0" for k in kids))
        elif op == WRITE:
            self.tree[path] = payload[len(parts[0]) + 1 :]
            self._send(conn, WRITE, rq, b"OK\0")
        elif op == WATCH:
            self.watches[parts[1], parts[0]] = conn
            self._send(conn, WATCH, rq, b"OK\0")
            self.fire(path)
        elif op == UNWATCH:
            self.watches.pop((parts[1], parts[0]), None)
            self._send(conn, UNWATCH, rq, b"OK\0")
        else:
            self._send(conn, ERROR, rq, b"EINVAL\0")


TREE = {
    "/local/domain/0/name": b"Domain-0",
    "/local/domain/7/name": b"evil\x1b[2Jguest\xff",
    "/local/domain/7/data/big": b"x" * 4000,
    "/local/domain/7/data/a/b/c/d": b"deep",
    "/secret/key": b"hidden",
}


@pytest.fixture
def xsd(tmp_path):
    path = str(tmp_path / "socket")
    server = FakeXenstored(path, TREE)
    yield server, path
    server.server.close()


def test_read_list_and_safe_decoding(xsd):
    server, path = xsd
    with XenStore(timeout=2, socket_path=path) as xs:
        assert xs.read("/local/domain/0/name") == "Domain-0"
        assert xs.list("/local/domain") == ["0", "7"]
        name = xs.read("/local/domain/7/name")
        assert "\x1b" not in name and name == "evil\\x1b[2Jguest\\xff"
        assert len(xs.read("/local/domain/7/data/big")) == 4000


def test_errors_are_ours(xsd):
    server, path = xsd
    with XenStore(timeout=2, socket_path=path) as xs:
        with pytest.raises(NotFoundError, match="no such path: /nope"):
            xs.read("/nope")
        with pytest.raises(PermissionDenied, match="root"):
            xs.read("/secret/key")
        with pytest.raises(UsageError, match="invalid xenstore path"):
            xs.read("/a b")


def test_pipelined_fetch_maps_missing_to_none(xsd):
    server, path = xsd
    with XenStore(timeout=2, socket_path=path) as xs:
        values, dirs = xs.fetch(
            ["/local/domain/0/name", "/nope", "/secret/key"], ["/local/domain", "/nope"]
        )
    assert values == {"/local/domain/0/name": "Domain-0", "/nope": None, "/secret/key": None}
    assert dirs == {"/local/domain": ["0", "7"], "/nope": None}


def test_walk_is_bounded(xsd):
    server, path = xsd
    with XenStore(timeout=2, socket_path=path) as xs:
        full = xs.walk("/local/domain/7")
        assert not full.truncated
        assert [n.path for n in full.nodes][-1] == "/local/domain/7/name"
        assert any(n.path.endswith("/c/d") and n.value == "deep" for n in full.nodes)
        shallow = xs.walk("/local/domain/7", max_depth=2)
        assert "deeper than 2" in shallow.truncated
        assert max(n.depth for n in shallow.nodes) == 2
        few = xs.walk("/local/domain", max_nodes=3)
        assert len(few.nodes) == 3 and "more than 3 nodes" in few.truncated
        with pytest.raises(NotFoundError):
            xs.walk("/nope")


def test_silent_xenstored_times_out(xsd):
    server, path = xsd
    with XenStore(timeout=0.3, socket_path=path) as xs:
        server.silent = True
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="no answer in 0.3s"):
            xs.read("/local/domain/0/name")
        assert time.monotonic() - t0 < 2


def test_read_only_unless_asked(xsd):
    server, path = xsd
    with XenStore(timeout=2, socket_path=path) as xs:
        with pytest.raises(PermissionDenied, match="read-only"):
            xs.write("/local/domain/0/x", "1")
    assert "/local/domain/0/x" not in server.tree
    with XenStore(timeout=2, socket_path=path, writable=True) as xs:
        xs.write("/local/domain/0/x", "1")
    assert server.tree["/local/domain/0/x"] == b"1"


def test_watch_initial_event_count_and_stray_filter(xsd):
    server, path = xsd
    with XenStore(timeout=2, socket_path=path) as xs:
        with xs.watch(["/local/domain/7", "@introduceDomain"], timeout=5, count=3) as w:
            threading.Timer(0.2, server.fire, ["/local/domain/7/data/new"]).start()
            events = [e.path for e in w]
        assert events[:2] == ["/local/domain/7", "@introduceDomain"]
        assert events[2] == "/local/domain/7/data/new"
        assert server.watches == {}  # removed on the way out
        assert xs.read("/local/domain/0/name") == "Domain-0"  # connection still usable


def test_watch_timeout_and_stop_from_another_thread(xsd):
    server, path = xsd
    with XenStore(timeout=2, socket_path=path) as xs:
        t0 = time.monotonic()
        assert len(list(xs.watch("/local/domain/0", timeout=0.5))) == 1
        assert 0.4 < time.monotonic() - t0 < 2
        watch = xs.watch("/local/domain/0")
        threading.Timer(0.3, watch.stop).start()
        t0 = time.monotonic()
        assert len(list(watch)) <= 1
        assert time.monotonic() - t0 < 2


def test_kept_watch_polled_in_slices(xsd):
    """One WATCH for many short waits: the initial event once, then only real changes,
    each wait bounded by its own timeout; reads still work between the waits."""
    server, path = xsd
    with XenStore(timeout=2, socket_path=path) as xs, xs.watch("/local/domain/7") as w:
        assert w.next(2).path == "/local/domain/7"
        t0 = time.monotonic()
        assert w.next(0.3) is None and w.next(0.3) is None
        assert 0.5 < time.monotonic() - t0 < 2
        assert len(server.watches) == 1
        assert xs.read("/local/domain/0/name") == "Domain-0"
        threading.Timer(0.2, server.fire, ["/local/domain/7/data/x"]).start()
        got = None
        for _ in range(10):
            got = got or w.next(0.3)
        assert got.path == "/local/domain/7/data/x"
        assert w.next(0.1) is None
    assert server.watches == {}


def test_watch_skip_initial_drops_only_the_events_of_setting_it(xsd):
    """xenstored answers each WATCH with one event for its path: with skip_initial those
    are not changes; a later change to the watched path itself still comes out."""
    server, path = xsd
    with (
        XenStore(timeout=2, socket_path=path) as xs,
        xs.watch(["/local/domain/7", "@releaseDomain"], skip_initial=True) as w,
    ):
        assert w.next(0.3) is None
        threading.Timer(0.1, server.fire, ["/local/domain/7"]).start()
        got = None
        for _ in range(10):
            got = got or w.next(0.3)
        assert got.path == "/local/domain/7" and w.received == 1
        threading.Timer(0.1, server.fire, ["@releaseDomain"]).start()
        got = None
        for _ in range(10):
            got = got or w.next(0.3)
        assert got.path == "@releaseDomain"


def test_no_xenstore_and_bad_socket(tmp_path, monkeypatch):
    import xenvmi.backends.xenstore as mod

    monkeypatch.setattr(mod, "SOCKET_PATHS", (str(tmp_path / "none"),))
    monkeypatch.setattr(mod, "XENBUS_PATHS", (str(tmp_path / "none2"),))
    with pytest.raises(Unavailable, match="xenstored started"):
        XenStore().open()
    stale = tmp_path / "stale"
    stale.write_text("")
    with pytest.raises(Unavailable, match="cannot connect"):
        XenStore(socket_path=str(stale)).open()


def test_non_root_is_permission_denied(xsd, monkeypatch):
    import xenvmi.backends.xenstore as mod

    server, path = xsd
    monkeypatch.setattr(mod.os, "access", lambda p, mode: False)
    with pytest.raises(PermissionDenied, match="run as root in dom0"):
        XenStore(socket_path=path).open()


def test_check_path_and_safe_text():
    assert check_path("/local/domain/0") == b"/local/domain/0"
    assert check_path("@releaseDomain", watch=True) == b"@releaseDomain"
    for bad in ("", "/a//b", "/a/", "/a b", "@releaseDomain", "/x\n", "/" + "a" * 3100):
        with pytest.raises(UsageError):
            check_path(bad)
    assert safe_text(b"ok") == "ok"
    assert safe_text(None) is None
    assert safe_text(b"a\x00b\x9bc") == "a\\x00b\\x9bc"
    assert safe_text("x\u202ey\u2028z".encode()) == "x\\u202ey\\u2028z"  # no bidi tricks
    assert safe_text("é\u009b".encode()) == "é\\x9b"
    assert safe_text(b"x" * 10, limit=4) == "xxxx..."


def test_libvmi_open_resolves_names_over_one_connection(xsd, monkeypatch):
    """Opening a guest reads its domid, vm path and type in-process, not with the
    xenstore-read and xl tools (0.4 s each in an emulated dom0)."""
    import xenvmi.backends.domain_lookup as lv  # shared by the LibVMI and native backends
    import xenvmi.backends.xenstore as mod

    server, path = xsd
    monkeypatch.setattr(mod, "SOCKET_PATHS", (path,))
    monkeypatch.setattr(lv, "xenstore_read", lambda p: pytest.fail("tool used"))
    monkeypatch.setattr(lv, "_listed_domains", lambda: pytest.fail("tool used"))
    store = lv._Store()
    assert lv.resolve_domain("evil\\x1b[2Jguest\\xff", store) == ("evil\\x1b[2Jguest\\xff", 7)
    assert lv.resolve_domain("7", store) == ("evil\\x1b[2Jguest\\xff", 7)
    with pytest.raises(NotFoundError, match="no domain 'nope'"):
        lv.resolve_domain("nope", store)
    with pytest.raises(NotFoundError, match="dom0 itself"):
        lv.resolve_domain("Domain-0", store)
    assert store.read("/local/domain/7/nothing") is None
    store.close()


def test_nothing_writes_xenstore_unless_asked(xsd, monkeypatch, capsys):
    """The read commands (and the TUI's reader) send no WRITE; the one writing call of the
    API writes, and a store opened read-only refuses to."""
    import xenvmi.backends.xenstore as mod
    from xenvmi import api, cli

    server, path = xsd
    monkeypatch.setattr(mod, "SOCKET_PATHS", (path,))
    for argv in (
        ["xs", "ls", "-r", "/local/domain"],
        ["xs", "read", "/local/domain/7/name"],
        ["xs", "ls", "/local/domain/7/data", "--json"],
    ):
        assert cli.main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert server.ops and WRITE not in server.ops
    with XenStore(timeout=2, socket_path=path) as xs:
        with pytest.raises(PermissionDenied, match="read-only"):
            xs.write("/local/domain/7/data/x", "1")
    assert WRITE not in server.ops
    api.xs_write("/local/domain/7/data/x", "1")  # asked for: written
    assert server.ops.count(WRITE) == 1 and server.tree["/local/domain/7/data/x"] == b"1"


def test_no_guest_memory_write_path_exists():
    """Guest memory is mapped read-only and no LibVMI write is ever called: there is no
    code path to write a guest, not only no flag."""
    import ast

    root = Path(__file__).resolve().parents[2] / "xenvmi"
    calls = set()
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("write_")
                and node.attr not in ("write_text", "write_bytes")
            ):
                calls.add(f"{f.relative_to(root)}: {node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "PROT_WRITE":
                calls.add(f"{f.relative_to(root)}: PROT_WRITE")
    allowed = {
        "backends/privcmd.py: PROT_WRITE",  # dom0's own hypercall buffer, not a guest's
        "commands/isf.py: write_isf",  # the ISF file the user named
    }
    assert calls == allowed, calls ^ allowed
