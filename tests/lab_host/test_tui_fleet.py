"""``xenvmi tui --host`` against the lab: two ssh connections to its dom0 as two hosts.

Runs on this machine against the running lab (``xenvmi lab up``). The lab's dom0 is
reached twice, as "dom0-a" and "dom0-b" (ssh's HostName option points both at the lab's
loopback port; its key, no known_hosts, as xenvmi/lab/remote.py ssh's), each through its
own ``xenvmi top --batch --json`` stream, and the app's table must show both hosts' rows
matching ``xl list`` (read again and again beside it); a guest opened on dom0-b shows its
xenstore and its processes, read by dom0's xenvmi. Only reading commands run in dom0.
Waits are on progress (rows, panes), bounded by the test's timeout only.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from xenvmi.lab import remote
from xenvmi.lab.paths import LabPaths
from xenvmi.remote import Remote

pytest.importorskip("textual")

from xenvmi.tui.app import XenvmiApp
from xenvmi.tui.fleet import FleetSource
from xenvmi.tui.remote_source import RemoteSource
from xenvmi.tui.screens.domain_detail import DomainScreen

HOSTS = ("root@dom0-a", "root@dom0-b")
GUEST = "xvm-pvh1"
#: Generous: a guest's first discovery on the lab's emulated CPU takes minutes.
WAIT = 1200

pytestmark = pytest.mark.timeout(2400)


def xl_list(paths: LabPaths, port: int) -> set[tuple[str, str]]:
    """(domid, name) of every domain `xl list` shows in dom0."""
    out = remote.run(paths, port, "xl list", timeout=300).stdout.decode()
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return {(r[1], r[0]) for r in rows}


async def wait_for(pilot, predicate, what: str) -> None:
    """Until ``predicate()`` holds: the deadline only stops a stuck test."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}")
        await pilot.pause(0.2)


def table_rows(app) -> list[tuple[str, str, str]]:
    table = app.screen.query_one("#domains")
    return [tuple(c.plain for c in table.get_row_at(i)[:3]) for i in range(table.row_count)]


def test_two_connections_to_the_lab_show_its_domains_per_host():
    paths = LabPaths.default()
    state = paths.load_state()
    assert state is not None and remote.reachable(paths, state.port), (
        "the lab is not running: `xenvmi lab up` first"
    )
    options = (
        "HostName=127.0.0.1",
        f"Port={state.port}",
        f"IdentityFile={paths.key}",
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
    )
    command = (remote.REMOTE_PY, "-m", "xenvmi")
    source = FleetSource(
        [RemoteSource(Remote(h, options, command, connect_timeout=120), 2.0) for h in HOSTS]
    )
    # `xl list` again and again beside the app: other lab tests may start or stop a domain
    latest = [xl_list(paths, state.port)]
    assert len(latest[0]) >= 3 and GUEST in {n for _d, n in latest[0]}, latest[0]
    done = threading.Event()

    def poll_xl() -> None:
        while not done.is_set():
            latest.append(xl_list(paths, state.port))
            done.wait(5)

    def per_host(host: str) -> set[tuple[str, str]]:
        return {(r[1], r[2]) for r in table_rows(app) if r[0] == host}

    async def body():
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_for(
                pilot,
                lambda: all(per_host(h) == latest[-1] for h in HOSTS),
                "both hosts' rows equal to `xl list`",
            )
            target = [r[:3] for r in table_rows(app)]
            domid = next(d for d, n in latest[-1] if n == GUEST)
            await pilot.press(*["down"] * target.index(("root@dom0-b", domid, GUEST)), "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, DomainScreen), "the guest")
            screen = app.screen
            assert screen.sub_title.endswith(f"{GUEST} (domain {domid} on root@dom0-b)")
            await pilot.press("6")
            tree = screen.query_one("#xs-subtree")
            await wait_for(pilot, lambda: bool(tree.root.children), "the guest's xenstore")
            assert f"name = {GUEST}" in [n.label.plain for n in tree.root.children]
            await pilot.press("3")
            procs = screen.query_one("#pane-processes DataTable")
            reason = screen.query_one("#pane-processes ReasonPanel")
            await wait_for(
                pilot, lambda: procs.row_count > 0 or reason.reason, "the guest's processes"
            )
            assert not reason.reason, reason.reason
            commands = {procs.get_row_at(i)[5].plain for i in range(procs.row_count)}
            assert any("xvm-alpha" in c for c in commands), commands  # the lab guest program
            await pilot.press("escape", "q")

    app = XenvmiApp(source, refresh=2.0)
    poller = threading.Thread(target=poll_xl, daemon=True)
    poller.start()
    try:
        asyncio.run(body())
    finally:
        done.set()
        poller.join(timeout=600)
