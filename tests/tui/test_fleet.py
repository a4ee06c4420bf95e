"""``xenvmi tui --host``: several hosts in one table, each read by its own xenvmi over ssh.

The ssh is tests/tui/fake_ssh.py: it checks the argv the TUI builds, then runs the real
xenvmi CLI on the lab recording (so the JSON the TUI parses is what ``xenvmi top``,
``list``, ``ps`` and ``xs ls`` print), and plays a host that refuses or never answers.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from xenvmi.remote import Remote
from xenvmi.tui.app import XenvmiApp
from xenvmi.tui.fleet import FleetSource
from xenvmi.tui.remote_source import RemoteSource
from xenvmi.tui.screens.domain_detail import DomainScreen

FAKE_SSH = str(Path(__file__).parent / "fake_ssh.py")
LAB_DOMAINS = ["Domain-0", "xvm-hvm", "xvm-pv", "xvm-pvh1", "xvm-pvh2"]


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch, tui):
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("FAKE_SSH_RECORDING", str(tui.LAB))
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.delenv("FAKE_SSH_DOWN", raising=False)
    monkeypatch.delenv("FAKE_SSH_HANG", raising=False)
    return log


def fleet_app(*hosts: str, refresh: float = 0.5) -> XenvmiApp:
    sources = [RemoteSource(Remote(h, ssh=FAKE_SSH), refresh) for h in hosts]
    return XenvmiApp(FleetSource(sources), refresh=3600)


def rows(app) -> list[tuple[str, str, str, str]]:
    """(host, ID, name, state) of every row, in table order."""
    table = app.screen.query_one("#domains")
    out = []
    for i in range(table.row_count):
        cells = table.get_row_at(i)
        out.append((cells[0].plain, cells[1].plain, cells[2].plain, cells[4].plain))
    return out


def calls(log: Path) -> list[tuple[int, str, str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(int(p), h, c) for p, h, c in (ln.split(" ", 2) for ln in lines)]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone for our purposes only once reaped; Popen.wait reaps
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


async def wait_rows(tui, pilot, app, predicate, what):
    await tui.wait_for(pilot, lambda: predicate(rows(app)), timeout=30, what=what)


def test_two_hosts_one_table_with_a_host_column(tui, fake_ssh):
    async def body():
        app = fleet_app("root@dom0-a", "root@dom0-b")
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_rows(tui, pilot, app, lambda r: len(r) == 10, "both hosts' rows")
            table = app.screen.query_one("#domains")
            assert [str(c.label).rstrip("▲▼") for c in table.columns.values()][:3] == [
                "Host",
                "ID",
                "Name",
            ]
            got = rows(app)
            for host in ("root@dom0-a", "root@dom0-b"):
                assert sorted(r[2] for r in got if r[0] == host) == LAB_DOMAINS
            assert {r[1] for r in got} == {"0", "1", "2", "3", "4"}  # each host's own domids
            # the types come from each host's `xenvmi list --json`, run beside the stream
            await tui.wait_for(
                pilot,
                lambda: {c.plain for c in table.get_column_at(3)} == {"pv", "hvm", "pvh"},
                timeout=30,
            )
            # the filter matches a host's name too
            await pilot.press("slash", *"dom0-b", "enter")
            assert {r[0] for r in rows(app)} == {"root@dom0-b"}
            await pilot.press("q")
        return calls(fake_ssh)

    made = asyncio.run(body())
    commands = {(h, c.split(" ")[1]) for _pid, h, c in made}
    assert {("root@dom0-a", "top"), ("root@dom0-b", "top")} <= commands
    assert {("root@dom0-a", "list"), ("root@dom0-b", "list")} <= commands


def test_a_host_that_refuses_shows_down_and_the_other_works(tui, fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_DOWN", "root@dom0-b")

    async def body():
        app = fleet_app("root@dom0-a", "root@dom0-b")
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_rows(
                tui,
                pilot,
                app,
                lambda r: len(r) == 6 and ("root@dom0-b", "-", "(down)", "down") in r,
                "dom0-a's rows and dom0-b's down row",
            )
            assert sorted(r[2] for r in rows(app) if r[0] == "root@dom0-a") == LAB_DOMAINS
            panel = str(app.screen.query_one("#host").render())
            assert "root@dom0-b down: ssh: connect to host root@dom0-b port 22" in panel
            assert "Connection refused" in panel
            # opening the down host's row says why, in every tab
            await pilot.press(*["down"] * 5, "enter")
            await tui.wait_for(pilot, lambda: isinstance(app.screen, DomainScreen))
            reason = app.screen.query_one("#pane-processes ReasonPanel")
            await tui.wait_for(pilot, lambda: "Connection refused" in reason.reason, timeout=10)
            assert reason.reason.startswith("root@dom0-b: ssh: connect to host")
            await pilot.press("escape", "q")

    asyncio.run(body())


def test_a_hanging_host_freezes_nothing_and_quitting_ends_its_ssh(tui, fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_HANG", "root@dom0-b")

    async def body():
        app = fleet_app("root@dom0-a", "root@dom0-b")
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_rows(
                tui,
                pilot,
                app,
                lambda r: len(r) == 6 and ("root@dom0-b", "-", "(connecting)", "connecting") in r,
                "dom0-a's rows beside dom0-b connecting",
            )
            first = app.screen.refreshes
            # dom0-a keeps refreshing while dom0-b hangs
            await tui.wait_for(pilot, lambda: app.screen.refreshes >= first + 2, timeout=30)
            t0 = time.monotonic()
            await pilot.press("q")
        return time.monotonic() - t0

    quit_seconds = asyncio.run(body())
    assert quit_seconds < 5, f"quitting took {quit_seconds:.1f}s"
    pids = [pid for pid, _h, _c in calls(fake_ssh)]
    deadline = time.monotonic() + 15
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(p) for p in pids), "an ssh outlived the app"


def test_opening_a_guest_reads_it_on_its_own_host(tui, fake_ssh):
    async def body():
        app = fleet_app("root@dom0-a", "root@dom0-b")
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_rows(tui, pilot, app, lambda r: len(r) == 10, "both hosts' rows")
            target = [r[:3] for r in rows(app)].index(("root@dom0-b", "2", "xvm-pvh1"))
            await pilot.press(*["down"] * target, "enter")
            await tui.wait_for(pilot, lambda: isinstance(app.screen, DomainScreen))
            screen = app.screen
            assert screen.sub_title.endswith("xvm-pvh1 (domain 2 on root@dom0-b)")
            await pilot.press("3")
            table = screen.query_one("#pane-processes DataTable")
            await tui.wait_for(pilot, lambda: table.row_count == 11, timeout=30)
            commands = {table.get_row_at(i)[5].plain for i in range(table.row_count)}
            assert "/bin/xvm-alpha --lab" in commands
            regs = screen.query_one("#regs-text")  # vCPUs: `xenvmi regs --vcpu all --json`
            await tui.wait_for(pilot, lambda: "64-bit mode" in str(regs.render()), timeout=30)
            mods = screen.query_one("#pane-modules DataTable")
            await tui.wait_for(pilot, lambda: mods.row_count > 0, timeout=30)
            await pilot.press("6")
            tree = screen.query_one("#xs-subtree")
            await tui.wait_for(pilot, lambda: tree.root.children, timeout=30)
            assert tree.root.data == "/local/domain/2"  # the host's own domid
            labels = [n.label.plain for n in tree.root.children]
            assert "name = xvm-pvh1" in labels
            await pilot.press("escape", "q")

    asyncio.run(body())
    made = calls(fake_ssh)
    views = [(h, c) for _p, h, c in made if c.split(" ")[1] in ("ps", "lsmod", "dmesg", "regs")]
    assert views and all(h == "root@dom0-b" and c.endswith(" -- 2") for h, c in views), views
    xs = [c for _p, h, c in made if c.startswith("xenvmi xs ls")]
    assert xs and all(c.endswith("-- /local/domain/2") for c in xs), xs


def test_snapshot_of_two_hosts_one_down(snap_compare, tui, fake_ssh, monkeypatch):
    """The table at 120x40: dom0-a's first sample (its `top` waits an hour for the next),
    dom0-b refused (no retry within the test)."""
    pytest.importorskip("pytest_textual_snapshot")
    from xenvmi.tui import remote_source

    monkeypatch.setenv("FAKE_SSH_DOWN", "root@dom0-b")
    monkeypatch.setattr(remote_source, "RETRY_SECONDS", 3600.0)

    def ready(app) -> bool:
        got = rows(app)
        types = {c.plain for c in app.screen.query_one("#domains").get_column_at(3)}
        panel = str(app.screen.query_one("#host").render())
        return len(got) == 6 and "hvm" in types and "Connection refused" in panel

    async def run_before(pilot):
        await tui.wait_for(pilot, lambda: ready(pilot.app), timeout=30)
        await pilot.pause(0.1)

    app = fleet_app("root@dom0-a", "root@dom0-b", refresh=3600)
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_a_hosts_text_is_escaped(tui, fake_ssh, monkeypatch, tmp_path):
    """A host is not trusted to have escaped what it sends: a name with ESC stays inert."""
    import json
    import shutil

    rec = tmp_path / "rec"
    shutil.copytree(tui.LAB, rec)
    evil = "xvm-\x1b[2Jevil"
    frames = json.loads((rec / "samples.json").read_text())
    for f in frames:
        for s in f:
            if s["domid"] == 1:
                s["name"] = evil
    (rec / "samples.json").write_text(json.dumps(frames))
    monkeypatch.setenv("FAKE_SSH_RECORDING", str(rec))

    async def body():
        app = fleet_app("root@dom0-a")
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_rows(tui, pilot, app, lambda r: len(r) == 5, "dom0-a's rows")
            return [r[2] for r in rows(app)]

    names = asyncio.run(body())
    assert "xvm-\\x1b[2Jevil" in names and not any("\x1b" in n for n in names)


def test_the_cli_builds_one_remote_per_host(tui):
    from xenvmi.cli import build_parser
    from xenvmi.commands.tui import fleet_source

    args = build_parser("tui").parse_args(
        [
            "tui",
            "--host",
            "root@dom0-a",
            "--host",
            "dom0-b",
            "--ssh-option",
            "Port=2222",
            "--remote-xenvmi",
            "/opt/xenvmi/venv/bin/python -m xenvmi",
            "--refresh",
            "5",
        ]
    )
    source = fleet_source(args)
    assert source.hosts == ["root@dom0-a", "dom0-b"]
    argv = source.sources[1].remote.argv(["list", "--json"])
    assert argv[-3:] == ["--", "dom0-b", "/opt/xenvmi/venv/bin/python -m xenvmi list --json"]
    assert "Port=2222" in argv and source.sources[0].refresh == 5.0


def test_a_failing_domain_list_leaves_the_samples_and_says_why(tui, fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_FAIL", "list")

    async def body():
        app = fleet_app("root@dom0-a")
        async with app.run_test(size=(140, 40)) as pilot:
            panel = app.screen.query_one("#host")
            await tui.wait_for(
                pilot, lambda: "xenvmi list" in str(panel.render()), timeout=30, what="why"
            )
            assert len(rows(app)) == 5  # xentop's rows still show, without their types
            types = {c.plain for c in app.screen.query_one("#domains").get_column_at(3)}
            assert types == {"?"}
            assert "root@dom0-a ok: xenvmi list: list: no xenstored here" in str(panel.render())
            await pilot.press("q")

    asyncio.run(body())
    lists = [c for _p, _h, c in calls(fake_ssh) if c.startswith("xenvmi list")]
    assert 1 <= len(lists) <= 3  # retried every RETRY_SECONDS, not every frame


def test_identities_that_come_late_still_reach_the_table(tui, fake_ssh, monkeypatch):
    """The first `xenvmi list` fails, the retry works: the types appear though no domid
    changed (the sampler loop re-reads identities when a host's list arrives)."""
    from xenvmi.tui import remote_source

    monkeypatch.setenv("FAKE_SSH_FAIL_ONCE", "list")
    monkeypatch.setattr(remote_source, "RETRY_SECONDS", 0.5)

    async def body():
        app = fleet_app("root@dom0-a")
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.screen.query_one("#domains")
            await tui.wait_for(
                pilot,
                lambda: {c.plain for c in table.get_column_at(3)} == {"pv", "hvm", "pvh"},
                timeout=30,
                what="the types after the retry",
            )
            await pilot.press("q")

    asyncio.run(body())
    lists = [c for _p, _h, c in calls(fake_ssh) if c.startswith("xenvmi list")]
    assert len(lists) >= 2
