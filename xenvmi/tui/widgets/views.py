"""Panes of the domain screen: a table, a log or text, each with a status line and a
ReasonPanel that replaces it when the view is unavailable (PV guest, no LibVMI, ...)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, RichLog, Static

from xenvmi.model.guest import LogRecord, VcpuRegisters
from xenvmi.plugins.base import Column, column_specs
from xenvmi.tui.widgets.reason import ReasonPanel
from xenvmi.views.dmesg import stamp_text
from xenvmi.views.regs import registers_text

#: A table's columns: heading, and the cell of a row (rich Text) given all rows.
ColumnSpec = Sequence[tuple[str, Callable[[Any], Text]]]


def _cell(column: Column, right: bool) -> Callable[[Any], Text]:
    def cell(row: Any) -> Text:
        text = column.text(row)
        if column.width is not None:
            text = text[: column.width]
        return Text(text, justify="right" if right else "left")

    return cell


def table_columns(plugin: type, rows: Sequence[Any] = ()) -> ColumnSpec:
    """A view's (or any plugin's) declared columns as the TUI's table columns: the same
    headings and cell text as its CLI table, cut to a column's ``width``."""
    return tuple(
        (c.title.upper(), _cell(c, c.right_aligned(rows) if c.right is None else c.right))
        for c in column_specs(plugin)
    )


def dataclass_columns(rows: Sequence[Any]) -> ColumnSpec:
    """Columns named after the fields of the first row (a recorded plugin's output)."""
    if not rows or not dataclasses.is_dataclass(rows[0]):
        return (("value", lambda r: Text(str(r))),)
    return tuple(
        (f.name, _cell(Column(f.name), Column(f.name).right_aligned(rows)))
        for f in dataclasses.fields(rows[0])
    )


class ViewPane(Vertical):
    """Status line + ReasonPanel + the body widget."""

    def __init__(self, title: str, **kw) -> None:
        super().__init__(**kw)
        self.title = title

    def compose(self) -> ComposeResult:
        yield Static(Text(f"loading {self.title} ...", style="dim"), classes="status")
        yield ReasonPanel(self.title)
        yield from self.body()

    def body(self) -> ComposeResult:
        yield Static()

    def set_status(self, text: str | Text) -> None:
        self.query_one(".status", Static).update(text)

    def fail(self, reason: str) -> None:
        self.set_status(Text(""))
        self.query_one(ReasonPanel).show_reason(reason)
        for child in self.children[2:]:
            child.display = False

    def loaded(self, count: int, noun: str, warnings: Sequence[str], complete: bool) -> None:
        self.query_one(ReasonPanel).clear_reason()
        for child in self.children[2:]:
            child.display = True
        text = Text(f"{count} {noun}", style="bold")
        if not complete:
            text.append(" (incomplete)", style="yellow")
        for w in warnings[:2]:
            text.append(f"  {w}", style="yellow")
        self.set_status(text)


class TablePane(ViewPane):
    """Rows of dataclasses in a DataTable (processes, modules, plugin output)."""

    def __init__(self, title: str, columns: ColumnSpec | None = None, **kw) -> None:
        super().__init__(title, **kw)
        self.columns = columns

    def body(self) -> ComposeResult:
        yield DataTable(cursor_type="row", zebra_stripes=True)

    def show_rows(
        self, rows: Sequence[Any], noun: str, warnings: Sequence[str] = (), complete: bool = True
    ) -> None:
        columns = self.columns or dataclass_columns(rows)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for label, _ in columns:
            table.add_column(label, key=label)
        table.add_rows([fn(r) for _, fn in columns] for r in rows)
        self.loaded(len(rows), noun, warnings, complete)


LEVEL_STYLES = {0: "bold red", 1: "bold red", 2: "bold red", 3: "red", 4: "yellow", 5: "bold"}


def log_line(r: LogRecord) -> Text:
    line = Text(f"{stamp_text(r)} ", style="dim")
    line.append(r.text, style=LEVEL_STYLES.get(r.level, ""))
    return line


class LogPane(ViewPane):
    """The guest's kernel log (dmesg), oldest first."""

    def body(self) -> ComposeResult:
        yield RichLog(max_lines=5000, wrap=False, auto_scroll=True)

    def show_records(
        self, records: Sequence[LogRecord], warnings: Sequence[str] = (), complete: bool = True
    ) -> None:
        log = self.query_one(RichLog)
        log.clear()
        for r in records:
            log.write(log_line(r))
        self.loaded(len(records), "log records", warnings, complete)


def registers_rich(r: VcpuRegisters) -> Text:
    """One vCPU as ``xenvmi regs`` prints it, its first line in bold."""
    text = Text(registers_text(r))
    text.stylize("bold", 0, text.plain.find("\n") if "\n" in text.plain else None)
    return text


class RegistersPane(ViewPane):
    def body(self) -> ComposeResult:
        yield VerticalScroll(Static(id="regs-text"))

    def show_registers(
        self, rows: Sequence[VcpuRegisters], warnings: Sequence[str] = (), complete: bool = True
    ) -> None:
        text = Text("\n\n").join(registers_rich(r) for r in rows)
        self.query_one("#regs-text", Static).update(text)
        self.loaded(len(rows), "vCPUs", warnings, complete)


__all__ = ["LogPane", "RegistersPane", "TablePane", "ViewPane", "table_columns"]
