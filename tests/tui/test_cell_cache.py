"""CellCachedTable: a refresh re-renders only changed cells, and every line it draws is the
line DataTable itself draws (cursor, zebra stripes, focus, scrolling, sort marks)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("textual")

from rich.segment import Segment
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input

from xenvmi.tui.widgets.cell_cache import CellCachedTable

COLUMNS = ("id", "name", "cpu", "state")


def row(i: int, cpu: float) -> list[Text]:
    return [
        Text(str(i), justify="right"),
        Text(f"dom-{i}"),
        Text(f"{cpu:.1f}", justify="right"),
        Text("r-----", style="green"),
    ]


class TableApp(App):
    CSS = "CellCachedTable { height: 8; }"

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        yield CellCachedTable(cursor_type="row", zebra_stripes=True, id="t")
        yield Input(id="other")

    def on_mount(self) -> None:
        table = self.query_one(CellCachedTable)
        for key in COLUMNS:
            table.add_column(key.upper(), key=key)
        for i in range(self.rows):
            table.add_row(*row(i, 0.0), key=str(i))
        table.focus()


def lines(table: CellCachedTable) -> tuple[list, list]:
    """Every line as this table draws it, and as DataTable draws it."""
    ours = [table.render_line(y) for y in range(table.size.height)]
    theirs = [DataTable.render_line(table, y) for y in range(table.size.height)]
    return ours, theirs


def counting(table: CellCachedTable, monkeypatch) -> list:
    calls: list = []
    render_one = table._render_one

    def spy(cell, *rest):
        calls.append(cell.plain)
        return render_one(cell, *rest)

    monkeypatch.setattr(table, "_render_one", spy)
    return calls


def test_only_changed_cells_are_rendered_again(monkeypatch):
    asyncio.run(_test_only_changed_cells_are_rendered_again(monkeypatch))


async def _test_only_changed_cells_are_rendered_again(monkeypatch):
    app = TableApp(6)
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(CellCachedTable)
        await pilot.pause()
        calls = counting(table, monkeypatch)
        ours, theirs = lines(table)
        assert ours == theirs
        assert table.fast_lines
        calls.clear()
        table.update_cell("3", "cpu", Text("4.2", justify="right"))
        ours, theirs = lines(table)
        assert calls == ["4.2"]  # one cell, nothing else
        assert ours == theirs
        assert " 4.2 " in ours[1 + 3].text
        calls.clear()
        lines(table)
        assert calls == []  # nothing changed: nothing rendered


def test_lines_match_datatable_when_the_cursor_focus_and_scroll_move(monkeypatch):
    asyncio.run(_test_lines_match_datatable_when_the_cursor_focus_and_scroll_move(monkeypatch))


async def _test_lines_match_datatable_when_the_cursor_focus_and_scroll_move(monkeypatch):
    app = TableApp(30)
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(CellCachedTable)
        await pilot.pause()
        for step in range(4):
            for i in range(30):
                table.update_cell(str(i), "cpu", Text(f"{i * step:.1f}", justify="right"))
            await pilot.press("down", "down")
            ours, theirs = lines(table)
            assert ours == theirs, f"step {step}"
        await pilot.press("end")  # scrolled: rows below the header move
        await pilot.pause()
        assert table.scroll_offset.y > 0
        ours, theirs = lines(table)
        assert ours == theirs
        app.query_one(Input).focus()  # the cursor's blurred look
        await pilot.pause()
        ours, theirs = lines(table)
        assert ours == theirs
        table.columns[next(iter(table.columns))].label = Text("ID▲")
        table.refresh()
        ours, theirs = lines(table)
        assert ours == theirs
        assert table.fast_lines


def test_a_line_drawn_differently_turns_the_cache_off(monkeypatch):
    asyncio.run(_test_a_line_drawn_differently_turns_the_cache_off(monkeypatch))


async def _test_a_line_drawn_differently_turns_the_cache_off(monkeypatch):
    app = TableApp(4)
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(CellCachedTable)
        await pilot.pause()
        monkeypatch.setattr(table, "_render_one", lambda cell, *rest: [])  # a wrong cell
        table._cells_cache.clear()
        table._checked.clear()
        ours, theirs = lines(table)
        assert not table.fast_lines
        assert ours == theirs


def test_cells_built_directly_equal_richs_and_a_difference_turns_them_off(monkeypatch):
    asyncio.run(_direct_cells(monkeypatch))


async def _direct_cells(monkeypatch):
    app = TableApp(8)
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(CellCachedTable)
        await pilot.pause()
        for step in range(3):  # left and right justified, styled, full and narrower
            for i in range(8):
                table.update_cell(str(i), "cpu", Text(f"{step * 3.3:.1f}", justify="right"))
                table.update_cell(str(i), "name", Text("d" if step else f"dom-{i}"))
            ours, theirs = lines(table)
            assert ours == theirs
        assert table.fast_cells and table._shapes
        monkeypatch.setattr(table, "_direct", lambda cell, *rest: [Segment("?")])
        table._shapes.clear()
        table.update_cell("1", "cpu", Text("9.9", justify="right"))
        ours, theirs = lines(table)
        assert not table.fast_cells
        assert ours == theirs
