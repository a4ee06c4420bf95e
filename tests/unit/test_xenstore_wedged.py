"""A wedged xenstored: it stops accepting and its listen queue fills. Opening the store
must then fail on its own timeout with one line, not wait in connect() forever."""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("pyxs")

from xenvmi.backends.xenstore import XenStore
from xenvmi.errors import Unavailable

pytestmark = pytest.mark.timeout(30)


def test_a_full_listen_queue_is_a_timeout_not_a_hang(tmp_path):
    path = str(tmp_path / "socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)  # never accepts, like a stopped daemon
    queued = []
    try:
        while True:  # fill the queue until a connect would block
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(path)
            except BlockingIOError:
                c.close()
                break
            queued.append(c)
            assert len(queued) < 1000, "the listen queue never filled"
        start = time.monotonic()
        with pytest.raises(Unavailable) as err:
            XenStore(timeout=0.5, socket_path=path).open()
        assert time.monotonic() - start < 5
        assert "accepts no connection" in str(err.value) and "\n" not in str(err.value)
    finally:
        for c in queued:
            c.close()
        server.close()


def test_no_daemon_at_all_is_one_line(tmp_path):
    path = str(tmp_path / "socket")
    open(path, "w").close()  # a path that is no socket: connect is refused at once
    with pytest.raises(Unavailable) as err:
        XenStore(timeout=0.5, socket_path=path).open()
    assert "cannot connect" in str(err.value)
