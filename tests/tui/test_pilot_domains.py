"""Pilot tests of the domains screen on the recorded lab: rows, sort, filter, refresh."""

from __future__ import annotations

import asyncio
import dataclasses

from textual.widget import Widget

from xenvmi.model.host import Domain
from xenvmi.tui.screens.domain_detail import DomainScreen


def run(coro):
    return asyncio.run(coro)


def names(app) -> list[str]:
    return names_of(app.screen)


def lab_losing_hvm(tui):
    """The recorded lab whose second frame no longer has xvm-hvm."""
    rec = tui.lab()
    rec.frames = [rec.frames[0], [s for s in rec.frames[1] if s.name != "xvm-hvm"]]
    return rec


def test_table_shows_every_recorded_domain_with_host_panel(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            assert names(app) == ["Domain-0", "xvm-hvm", "xvm-pvh1", "xvm-pvh2", "xvm-pv"]
            host = str(app.screen.query_one("#host").render())
            assert "xenstored" in host and "qemu 1 up" in host and "4.17.5" in host
            assert "READ-ONLY" in app.sub_title
            table = app.screen.query_one("#domains")
            row = [c.plain for c in table.get_row("2")]
            assert row[:4] == ["2", "xvm-pvh1", "pvh", "--b---"]

    run(body())


def test_sort_keys_order_rows_and_flip(tui):
    rec = tui.lab()
    by_cpu = [s.name for s in sorted(rec.frames[0], key=lambda s: -(s.cpu_percent or 0))]

    async def body():
        app = tui.make_app(rec)
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            await pilot.press("c")
            assert names(app) == by_cpu
            await pilot.press("c")  # the same column again: ascending
            assert names(app) == by_cpu[::-1]
            await pilot.press("n")
            assert names(app) == sorted(by_cpu, key=str.lower)
            await pilot.press("S")
            assert names(app) == sorted(by_cpu, key=str.lower, reverse=True)
            status = str(app.screen.query_one("#domains-status").render())
            assert "sorted by Name ▼" in status

    run(body())


def test_filter_by_name_and_clear(tui):
    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            await pilot.press("slash", "p", "v", "h")
            assert names(app) == ["xvm-pvh1", "xvm-pvh2"]
            assert "2 of 5 domains" in str(app.screen.query_one("#domains-status").render())
            await pilot.press("enter")  # keep the filter, back to the table
            assert names(app) == ["xvm-pvh1", "xvm-pvh2"]
            await pilot.press("escape")
            assert len(names(app)) == 5

    run(body())


def test_vanished_domain_leaves_on_next_refresh(tui):
    rec = lab_losing_hvm(tui)

    async def body():
        app = tui.make_app(rec)
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            assert "xvm-hvm" in names(app)
            await pilot.press("r")
            await tui.wait_for(pilot, lambda: len(names(app)) == 4, what="4 rows")
            assert "xvm-hvm" not in names(app)
            assert 1 not in app.screen.histories.cpu  # its history is forgotten too

    run(body())


def test_new_domain_appears_with_its_identity(tui):
    rec = tui.lab()
    extra = dataclasses.replace(rec.frames[0][-1], domid=9, name="xvm-new")
    rec.frames = [rec.frames[0], rec.frames[1] + [extra]]
    rec.domains = rec.domains + [Domain(9, "xvm-new", None, "hvm", "running", 1, 1, 1, 1)]

    async def body():
        app = tui.make_app(rec)
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            await pilot.press("r")
            await tui.wait_for(pilot, lambda: "xvm-new" in names(app))
            row = [c.plain for c in app.screen.query_one("#domains").get_row("9")]
            assert row[2] == "hvm"  # identity re-read because the domids changed

    run(body())


def test_hostile_domain_name_is_shown_literally(tui):
    rec = tui.lab()
    rec.frames = [
        [dataclasses.replace(s, name="[red]evil[/]") if s.domid == 4 else s for s in rec.frames[0]]
    ]

    async def body():
        app = tui.make_app(rec)
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            row = app.screen.query_one("#domains").get_row("4")
            assert row[1].plain == "[red]evil[/]"

    run(body())


def test_domain_option_opens_it(tui):
    async def body():
        app = tui.make_app(domain="xvm-pvh2")
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: isinstance(app.screen, DomainScreen))
            assert app.screen.domain_name == "xvm-pvh2" and app.screen.domid == 3

    run(body())


def test_ui_answers_keys_while_the_source_is_slow(tui):
    """Every source call takes 0.8 s; help opens at once (the UI thread never waits)."""

    async def body():
        app = tui.make_app(delay=0.8)
        async with app.run_test() as pilot:
            await pilot.press("question_mark")
            await pilot.pause(0.05)
            assert type(app.screen).__name__ == "HelpScreen"
            assert app.screen_stack[0].query_one("#domains").row_count == 0
            await pilot.press("escape")
            await tui.wait_for(pilot, lambda: tui.table_loaded(app), timeout=6)

    run(body())


def test_hidden_table_is_drawn_on_return_and_samples_slower(tui):
    """Under a domain screen the table is not redrawn (the latest sample waits) and the
    sampler slows down; back on it, the waiting sample shows at once."""
    from xenvmi.tui.screens import domains as screen_mod

    rec = lab_losing_hvm(tui)

    async def body():
        app = tui.make_app(rec)
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            table_screen = app.screen
            assert table_screen._interval() == app.refresh_seconds
            await pilot.press("enter")
            await tui.wait_for(pilot, lambda: app.screen is not table_screen)
            assert table_screen._interval() == max(app.refresh_seconds, screen_mod.HIDDEN_REFRESH)
            shown = table_screen.refreshes
            table_screen.life.poke()  # a sample while hidden: kept, not drawn
            await tui.wait_for(pilot, lambda: table_screen._pending is not None)
            assert table_screen.refreshes == shown and "xvm-hvm" in names_of(table_screen)
            await pilot.press("escape")
            await tui.wait_for(pilot, lambda: "xvm-hvm" not in names_of(table_screen))
            assert table_screen._pending is None

    run(body())


def test_first_show_takes_one_sample_until_the_refresh(tui):
    """The first frame shown is the first sample: showing the screen the first time does
    not ask for another one (it did, in a race with the sampler's start: the snapshot of
    this screen showed the first frame or the second)."""

    async def body():
        app = tui.make_app()
        async with app.run_test() as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            await pilot.pause(0.5)
            assert app.source._frame == 0 and app.screen.refreshes == 1

    run(body())


def names_of(screen) -> list[str]:
    return list(screen.query_one("#domains").visible_names)


def test_the_sort_mark_moves_when_the_order_stays(tui):
    """Sorting by name rows already in name order: no row moves, the ▲ moves all the same."""

    async def body():
        app = tui.make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            table = app.screen.query_one("#domains")
            table.set_filter("xvm-pvh")  # xvm-pvh1 (2), xvm-pvh2 (3): the same order by name
            await pilot.pause()
            assert "ID▲" in table.render_line(0).text
            table.set_sort("name")
            await pilot.pause()
            header = table.render_line(0).text
            assert "Name▲" in header and "ID▲" not in header

    run(body())


def test_clearing_a_selection_before_any_screen_is_harmless(tui):
    """Textual's own App.clear_selection raises ScreenStackError while no screen is on the
    stack, which is when the filter Input first clears it in the default mode's screen
    (Textualize/textual#6444): the TUI died at start that way on Python 3.13."""
    import pytest
    from textual.app import App, ScreenStackError

    with pytest.raises(ScreenStackError):
        App().clear_selection()
    tui.make_app().clear_selection()


def test_sparklines_grow_one_cell_a_sample_without_a_layout_pass(tui):
    async def body():
        app = tui.make_app(loop=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await tui.wait_for(pilot, lambda: tui.table_loaded(app))
            spark = app.screen.query_one("#cpu-spark")
            assert spark.size.width == 60  # the box: history.HISTORY cells
            for samples in (2, 3):
                await pilot.press("r")
                await tui.wait_for(pilot, lambda n=samples: spark.cells == n, what="a sample")
                await pilot.pause()
                bars = spark.render_line(0).text
                assert len(bars.rstrip()) == samples, bars  # one cell per sample
            layouts = []
            original = Widget.refresh

            def spy(self, *regions, layout=False, **kw):
                if layout:
                    layouts.append(type(self).__name__)
                return original(self, *regions, layout=layout, **kw)

            Widget.refresh = spy
            try:
                await pilot.press("r")
                await tui.wait_for(pilot, lambda: spark.cells == 4, what="a fourth sample")
                await pilot.pause()
            finally:
                Widget.refresh = original
            assert spark.size.width == 60
            assert layouts == []  # a refresh asked no widget for a layout pass

    run(body())
