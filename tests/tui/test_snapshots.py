"""Snapshot tests (pytest-textual-snapshot) of each screen on the recorded lab, at 80x24
(a plain terminal) and 120x40. Update after an intended change with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and review the SVGs."""

from __future__ import annotations

import pytest

from xenvmi.tui.screens.domain_detail import DomainScreen

pytest.importorskip("pytest_textual_snapshot")

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def _until(tui, predicate):
    async def run_before(pilot):
        await tui.wait_for(pilot, lambda: predicate(pilot.app))
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_domains_screen(snap_compare, tui, size):
    assert snap_compare(
        tui.make_app(), terminal_size=size, run_before=_until(tui, tui.table_loaded)
    )


@pytest.mark.parametrize("size", SIZES)
def test_domain_processes_tab(snap_compare, tui, size):
    async def run_before(pilot):
        app = pilot.app
        await tui.wait_for(pilot, lambda: tui.table_loaded(app))
        await pilot.press("down", "down", "enter")
        await tui.wait_for(pilot, lambda: isinstance(app.screen, DomainScreen))
        await pilot.press("3")
        await tui.wait_for(
            pilot, lambda: app.screen.query_one("#pane-processes DataTable").row_count == 11
        )
        await pilot.pause(0.1)

    assert snap_compare(tui.make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_hypercalls_screen(snap_compare, tui, size):
    async def run_before(pilot):
        await pilot.press("h")
        await tui.wait_for(pilot, lambda: getattr(pilot.app.screen, "total", 0) == 120)
        await pilot.pause(0.1)

    assert snap_compare(tui.make_app(), terminal_size=size, run_before=run_before)


def test_missing_capabilities_80x24(snap_compare, tui):
    rec = tui.lab()
    rec.unavailable = {
        "domains": "no xenstore here (no xenstored socket, no /dev/xen/xenbus): run in dom0",
        "host": "host metrics need psutil: pip install 'psutil>=5.9'",
    }
    assert snap_compare(
        tui.make_app(rec),
        run_before=_until(
            tui,
            lambda app: (
                app.screen.query_one("#domains-reason").display
                and "psutil" in str(app.screen.query_one("#host").render())
            ),
        ),
    )


def test_help_80x24(snap_compare, tui):
    async def run_before(pilot):
        await tui.wait_for(pilot, lambda: tui.table_loaded(pilot.app))
        await pilot.press("question_mark")
        await pilot.pause(0.1)

    assert snap_compare(tui.make_app(), run_before=run_before)
