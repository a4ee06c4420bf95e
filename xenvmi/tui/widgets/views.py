"""Panes of the domain screen: a table, a log or text, each with a status line and a
ReasonPanel that replaces it when the view is unavailable (PV guest, no LibVMI, ...)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, RichLog, Static

from xenvmi.guest.model import LogRecord, Module, Process, VcpuRegisters
from xenvmi.tui.widgets.reason import ReasonPanel

ColumnSpec = Sequence[tuple[str, Callable[[Any], Any]]]


def _t(value: Any, right: bool = False) -> Text:
    text = "-" if value is None else str(value)
    return Text(text, justify="right" if right else "left")


PROCESS_COLUMNS: ColumnSpec = (
    ("PID", lambda p: _t(p.pid, True)), ("PPID", lambda p: _t(p.ppid, True)),
    ("S", lambda p: _t(p.state)), ("UID", lambda p: _t(p.uid, True)),
    ("Comm", lambda p: Text(f"[{p.comm}]" if p.kernel_thread else p.comm)),
    ("Cmdline", lambda p: _t((p.cmdline or "")[:120])))
MODULE_COLUMNS: ColumnSpec = (
    ("Name", lambda m: _t(m.name)), ("Size", lambda m: _t(m.size, True)),
    ("State", lambda m: _t(m.state)), ("Refs", lambda m: _t(m.refcount, True)),
    ("Address", lambda m: _t(None if m.address is None else f"{m.address:#x}")))


def dataclass_columns(rows: Sequence[Any]) -> ColumnSpec:
    """Columns named after the fields of the first row (plugin output)."""
    if not rows or not dataclasses.is_dataclass(rows[0]):
        return (("value", lambda r: _t(r)),)
    return tuple((f.name, (lambda n: lambda r: _t(getattr(r, n, None)))(f.name))
                 for f in dataclasses.fields(rows[0]))


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

    def show_rows(self, rows: Sequence[Any], noun: str, warnings: Sequence[str] = (),
                  complete: bool = True) -> None:
        columns = self.columns or dataclass_columns(rows)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for label, _ in columns:
            table.add_column(label, key=label)
        table.add_rows([fn(r) for _, fn in columns] for r in rows)
        self.loaded(len(rows), noun, warnings, complete)


LEVEL_STYLES = {0: "bold red", 1: "bold red", 2: "bold red", 3: "red", 4: "yellow", 5: "bold"}


def log_line(r: LogRecord) -> Text:
    line = Text(f"[{r.timestamp:12.6f}] ", style="dim")
    line.append(r.text, style=LEVEL_STYLES.get(r.level, ""))
    return line


class LogPane(ViewPane):
    """The guest's kernel log (dmesg), oldest first."""

    def body(self) -> ComposeResult:
        yield RichLog(max_lines=5000, wrap=False, auto_scroll=True)

    def show_records(self, records: Sequence[LogRecord], warnings: Sequence[str] = (),
                     complete: bool = True) -> None:
        log = self.query_one(RichLog)
        log.clear()
        for r in records:
            log.write(log_line(r))
        self.loaded(len(records), "log records", warnings, complete)


def _hex(v: int | None) -> str:
    return "-" if v is None else f"{v:#x}"


def registers_text(r: VcpuRegisters) -> Text:
    """One vCPU's decoded control state, the facts an operator asks first."""
    d = r.decoded
    t = Text()
    t.append(f"vCPU {r.vcpu}", style="bold")
    t.append(f"  {d.cpu_mode or '?'} mode, CPL {d.cpl if d.cpl is not None else '?'}, "
             f"paging {d.paging_mode or '?'}\n")
    t.append(f"  rip {_hex(d.rip)}  rsp {_hex(d.rsp)}\n")
    t.append(f"  rflags {_hex(d.rflags)} {' '.join(d.rflags_flags)}  iopl {d.iopl}\n")
    t.append(f"  cr0 {_hex(d.cr0)} {' '.join(d.cr0_flags)}\n")
    t.append(f"  cr3 {_hex(d.cr3)} (table {_hex(d.page_table_base)})  cr2 {_hex(d.cr2)}\n")
    t.append(f"  cr4 {_hex(d.cr4)} {' '.join(d.cr4_flags)}\n")
    t.append(f"  efer {_hex(d.efer)} {' '.join(d.efer_flags)}\n")
    t.append(f"  lstar {_hex(d.lstar)}  fs_base {_hex(d.fs_base)}  gs_base {_hex(d.gs_base)}")
    return t


class RegistersPane(ViewPane):
    def body(self) -> ComposeResult:
        yield VerticalScroll(Static(id="regs-text"))

    def show_registers(self, rows: Sequence[VcpuRegisters], warnings: Sequence[str] = (),
                       complete: bool = True) -> None:
        text = Text("\n\n").join(registers_text(r) for r in rows)
        self.query_one("#regs-text", Static).update(text)
        self.loaded(len(rows), "vCPUs", warnings, complete)


__all__ = ["LogPane", "MODULE_COLUMNS", "PROCESS_COLUMNS", "RegistersPane", "TablePane",
           "ViewPane", "Module", "Process"]
