"""Pilot tests of the other screens on the recorded lab: domain tabs, hypercalls,
XenStore, plugins, palette, help, missing capabilities and quitting."""

from __future__ import annotations

import asyncio
import time

from xenvmi.tui.screens.domain_detail import DomainScreen


def run(coro):
    return asyncio.run(coro)


async def open_domain(tui, pilot, app, downs: int) -> DomainScreen:
    await tui.wait_for(pilot, lambda: tui.table_loaded(app))
    await pilot.press(*["down"] * downs, "enter")
    await tui.wait_for(pilot, lambda: isinstance(app.screen, DomainScreen))
    return app.screen


def test_enter_opens_domain_and_processes_tab_lists_processes(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            screen = await open_domain(tui, pilot, app, 2)
            assert screen.domain_name == "xvm-pvh1"
            await pilot.press("3")
            table = screen.query_one("#pane-processes DataTable")
            await tui.wait_for(pilot, lambda: table.row_count == 11)
            # the columns and cells of `xenvmi ps` (one definition: xenvmi/views/ps.py)
            heads = [str(c.label) for c in table.columns.values()]
            assert heads == ["PID", "PPID", "S", "UID", "START", "COMMAND"]
            commands = [table.get_row_at(i)[5].plain for i in range(table.row_count)]
            assert {"/bin/xvm-alpha --lab", "/bin/xvm-child", "[kthreadd]"} <= set(commands)
            status = str(screen.query_one("#pane-processes .status").render())
            assert "11 processes" in status
            await pilot.press("escape")
            assert not isinstance(app.screen, DomainScreen)

    run(body())


def test_dmesg_tab_shows_log_lines(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            screen = await open_domain(tui, pilot, app, 2)
            await pilot.press("5")
            log = screen.query_one("#pane-kernel_log RichLog")
            await tui.wait_for(pilot, lambda: len(log.lines) == 6)
            text = "\n".join(line.text for line in log.lines)
            assert "xenvmi-lab: guest xvm-pvh1 is up" in text
            assert "Linux version 6.1.0-35-amd64" in text

    run(body())


def test_vcpu_modules_and_xenstore_tabs(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_domain(tui, pilot, app, 1)
            regs = screen.query_one("#regs-text")
            await tui.wait_for(pilot, lambda: "64-bit mode" in str(regs.render()))
            assert "LMA" in str(regs.render())
            mods = screen.query_one("#pane-modules DataTable")
            await tui.wait_for(pilot, lambda: mods.row_count == 2)
            tree = screen.query_one("#xs-subtree")
            await tui.wait_for(pilot, lambda: tree.root.children)
            labels = [n.label.plain for n in tree.root.children]
            assert "name = xvm-hvm" in labels and "device" in labels

    run(body())


def test_pv_guest_memory_views_show_the_reason(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            screen = await open_domain(tui, pilot, app, 4)
            assert screen.domain_name == "xvm-pv"
            await pilot.press("3")
            reason = screen.query_one("#pane-processes ReasonPanel")
            await tui.wait_for(pilot, lambda: reason.display)
            assert "PV guest: LibVMI cannot read its memory" in reason.reason
            assert not screen.query_one("#pane-processes DataTable").display
            regs = screen.query_one("#regs-text")  # registers still work for PV
            await tui.wait_for(pilot, lambda: "rip" in str(regs.render()))

    run(body())


def test_missing_capabilities_show_reason_panels_not_tracebacks(tui):
    rec = tui.lab()
    rec.unavailable = {
        "domains": "no xenstore here (no xenstored socket, no /dev/xen/xenbus): run in dom0",
        "host": "host metrics need psutil: pip install 'psutil>=5.9'",
        "hypercalls": "trace: bcc is not installed (Debian: apt install python3-bpfcc)",
        "xenstore": "permission:xenstore: cannot open /dev/xen/xenbus: run as root in dom0",
    }

    async def body():
        app = tui.make_app(rec)
        async with app.run_test() as pilot:
            panel = app.screen.query_one("#domains-reason")
            await tui.wait_for(pilot, lambda: panel.display)
            assert "no xenstore here" in panel.reason and "run in dom0" in panel.reason
            assert not app.screen.query_one("#domains").display
            host = app.screen.query_one("#host")
            await tui.wait_for(pilot, lambda: "psutil" in str(host.render()))
            await pilot.press("h")
            hc = app.screen.query_one("#hc-reason")
            await tui.wait_for(pilot, lambda: hc.display)
            assert "apt install python3-bpfcc" in hc.reason
            await pilot.press("x")
            xs = app.screen.query_one("#xs-reason")
            await tui.wait_for(pilot, lambda: xs.display)
            assert "run as root" in xs.reason
            assert app.return_code is None  # still running, nothing crashed

    run(body())


def test_hypercalls_stream_counts_and_process_filter(tui):
    rec = tui.lab()
    failed = sum(1 for e in rec.hypercalls if e.failed)

    async def body():
        app = tui.make_app(rec)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("h")
            await tui.wait_for(pilot, lambda: getattr(app.screen, "total", 0) == 120)
            status = str(app.screen.query_one("#hc-status").render())
            assert f"120 calls, {failed} failed" in status
            errors = app.screen.query_one("#hc-errors")
            named = {errors.get_row_at(i)[1].plain for i in range(errors.row_count)}
            assert named == {"ESRCH", "EACCES"}
            log = app.screen.query_one("#hc-stream")
            assert any(line.text.startswith("ESRCH") for line in log.lines)
            await pilot.press("slash", *"xenstored")
            await pilot.press("enter")
            assert log.lines and all("xenstored[" in line.text for line in log.lines)
            ops = app.screen.query_one("#hc-ops")
            assert [ops.get_row_at(i)[0].plain for i in range(ops.row_count)] == [
                "event_channel_op send"
            ]

    run(body())


def test_xenstore_browser_loads_children_on_expand(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            await pilot.press("x")
            tree = app.screen.query_one("#xs-tree")
            await tui.wait_for(pilot, lambda: tree.root.children)
            assert [n.data for n in tree.root.children] == ["/libxl", "/local", "/tool", "/vm"]
            local = tree.root.children[1]
            assert not local.children  # not loaded until expanded
            local.expand()
            await tui.wait_for(pilot, lambda: local.children)
            assert [n.data for n in local.children] == ["/local/domain"]

    run(body())


def test_plugins_tab_runs_selected_plugin_into_a_table(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_domain(tui, pilot, app, 1)
            await pilot.press("7")
            plist = screen.query_one("#plugin-list")
            await tui.wait_for(pilot, lambda: plist.row_count == 3)
            await pilot.press("enter")  # the first: pslist-diff
            out = screen.query_one("#plugin-output DataTable")
            await tui.wait_for(pilot, lambda: out.row_count == 1)
            assert [c.label.plain for c in out.columns.values()] == [
                "pid",
                "comm",
                "seen_by",
                "hidden",
            ]
            assert out.get_row_at(0)[1].plain == "xvm-parent"

    run(body())


def test_command_palette_opens_a_domain(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            await pilot.press("ctrl+p")
            await pilot.press(*"open domain xvm-pvh2")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await tui.wait_for(pilot, lambda: isinstance(app.screen, DomainScreen))
            assert app.screen.domain_name == "xvm-pvh2"

    run(body())


def test_quitting_is_fast_with_every_worker_busy(tui):
    async def body():
        app = tui.make_app(delay=0.05, loop=True, refresh=0.1)
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            await pilot.press("h")  # tracer worker
            await pilot.press("d", "down", "enter")  # guest + xenstore-watch workers
            await tui.wait_for(pilot, lambda: isinstance(app.screen, DomainScreen))
            t0 = time.monotonic()
            await pilot.press("q")
        return time.monotonic() - t0

    t0 = time.monotonic()
    took = run(body())
    assert took < 1.0, f"quit took {took:.2f}s"
    assert time.monotonic() - t0 < 10


def test_a_late_focus_event_does_not_switch_the_tab_back(tui):
    """On the lab's loaded dom0 the Processes table's focus (given on `3`) reached its
    pane after `5` had shown the Kernel log, and Textual's TabbedContent switched back.
    The same message, posted late here, must leave the Kernel log up."""
    from textual.widgets import TabbedContent, TabPane

    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            screen = await open_domain(tui, pilot, app, 2)
            await pilot.press("3")
            await pilot.press("5")
            tabs = screen.query_one(TabbedContent)
            await tui.wait_for(pilot, lambda: tabs.active == "dmesg")
            processes = screen.query_one("#processes", TabPane)
            tabs.post_message(TabPane.Focused(processes))
            await pilot.pause()
            await pilot.pause()
            assert tabs.active == "dmesg"
            screen.query_one("#pane-processes DataTable").focus()  # a real focus still moves
            await tui.wait_for(pilot, lambda: tabs.active == "processes")

    run(body())


def test_the_tui_listens_on_no_network_socket(tui):
    """Nothing listens unless asked: the TUI, with a guest's screen open, holds no
    listening TCP or UDP socket (Textual's devtools would be one)."""
    import psutil

    def listening() -> list:
        return [
            c
            for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN or not c.raddr
        ]

    before = listening()

    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            await open_domain(tui, pilot, app, 2)
            await pilot.press("3")
            assert listening() == before

    run(body())
