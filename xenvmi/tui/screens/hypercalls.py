"""The hypercalls screen: dom0's privcmd calls as they happen (bcc tracer in a worker),
failures highlighted and named, counts per call and per error, filter by process."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, RichLog, Static

from xenvmi.model.hypercall import HypercallEvent
from xenvmi.trace.hypercall_decode import format_event
from xenvmi.trace.hypercall_stats import Stats
from xenvmi.tui import messages as m
from xenvmi.tui import workers, xenvmi_app
from xenvmi.tui.widgets.reason import ReasonPanel

#: Events kept for re-filtering and shown in the stream.
KEEP = 2000


def event_line(ev: HypercallEvent) -> Text:
    """The tracer's one-line form; a failure in red with its errno name up front."""
    if ev.failed:
        line = Text(f"{ev.error or ev.ret:<7} ", style="bold red")
        line.append(format_event(ev), style="red")
        return line
    return Text("        " + format_event(ev))


def event_matches(ev: HypercallEvent, text: str) -> bool:
    """Filter by process: a substring of the command name, or the exact pid."""
    text = text.strip().lower()
    return not text or text in ev.comm.lower() or text == str(ev.pid)


class HypercallsScreen(Screen):
    BINDINGS = [
        Binding("slash", "filter", "Filter process"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("p", "pause", "Pause"),
    ]

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.events: deque[HypercallEvent] = deque(maxlen=KEEP)
        self.stats = Stats()
        self.filter = ""
        self.paused = False
        self.total = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            Text("starting the tracer (compiling BPF takes a few seconds) ...", style="dim"),
            id="hc-status",
        )
        yield ReasonPanel("hypercall tracing", id="hc-reason")
        yield RichLog(id="hc-stream", max_lines=KEEP, wrap=False)
        with Horizontal(id="hc-tables"):
            yield DataTable(id="hc-ops", cursor_type="row")
            yield DataTable(id="hc-errors", cursor_type="row")
        yield Input(placeholder="process name or pid (Enter keeps it, Esc clears)", id="hc-filter")
        yield Footer()

    def on_mount(self) -> None:
        self.life = xenvmi_app(self).life.child()
        self.query_one("#hc-filter", Input).display = False
        self.query_one("#hc-ops", DataTable).add_columns("Call", "Calls", "Err", "µs")
        self.query_one("#hc-errors", DataTable).add_columns("Failed call", "Error", "N")
        self._trace()

    def on_unmount(self) -> None:
        self.life.stop()

    @work(thread=True, exit_on_error=False, group="hypercalls")
    def _trace(self) -> None:
        workers.hypercall_loop(xenvmi_app(self).source, self.life, self.post_message)

    def on_hypercall_batch(self, msg: m.HypercallBatch) -> None:
        if self.paused:
            return
        log = self.query_one("#hc-stream", RichLog)
        for ev in msg.events:
            self.total += 1
            self.events.append(ev)
            self.stats.add(ev)
            if event_matches(ev, self.filter):
                log.write(event_line(ev))
        self._tables()

    def on_source_failed(self, msg: m.SourceFailed) -> None:
        if msg.topic == "hypercalls":
            self.query_one("#hc-reason", ReasonPanel).show_reason(msg.reason)
            self.query_one("#hc-status", Static).update("")
            for w in ("#hc-stream", "#hc-tables"):
                self.query_one(w).display = False

    def _shown_stats(self) -> Stats:
        if not self.filter:
            return self.stats
        stats = Stats()
        for ev in self.events:
            if event_matches(ev, self.filter):
                stats.add(ev)
        return stats

    def _tables(self) -> None:
        stats = self._shown_stats()
        ops = self.query_one("#hc-ops", DataTable)
        ops.clear()
        for c in stats.op_rows()[:100]:
            ops.add_row(
                Text(c.name + (f" {c.subop}" if c.subop else "")),
                Text(str(c.calls), justify="right"),
                Text(str(c.errors), justify="right", style="red" if c.errors else ""),
                Text(f"{c.avg_us:.0f}", justify="right"),
            )
        errs = self.query_one("#hc-errors", DataTable)
        errs.clear()
        for e in stats.error_rows()[:100]:
            errs.add_row(
                Text(e.name + (f" {e.subop}" if e.subop else "")),
                Text(e.error, style="red"),
                Text(str(e.count), justify="right"),
            )
        status = Text(f"{self.total} calls", style="bold")
        status.append(
            f", {sum(e.count for e in self.stats.error_rows())} failed",
            style="bold red" if self.stats.errors else "",
        )
        if self.filter:
            status.append(
                f"  process {self.filter!r}: {stats.calls} of the last {len(self.events)}",
                style="yellow",
            )
        if self.paused:
            status.append("  PAUSED", style="bold yellow")
        self.query_one("#hc-status", Static).update(status)

    def _rewrite(self) -> None:
        log = self.query_one("#hc-stream", RichLog)
        log.clear()
        for ev in self.events:
            if event_matches(ev, self.filter):
                log.write(event_line(ev))
        self._tables()

    def action_filter(self) -> None:
        box = self.query_one("#hc-filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#hc-filter", Input)
        box.value = ""
        box.display = False
        self.query_one("#hc-stream").focus()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self._tables()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter = event.value
        self._rewrite()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = bool(event.value)
        self.query_one("#hc-stream").focus()
