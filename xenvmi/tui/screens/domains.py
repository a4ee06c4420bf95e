"""The domains screen: dom0's host panel, xentop's table (live, sortable, filterable) and
the selected domain's CPU and memory sparklines."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult, ScreenStackError
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from xenvmi.model.host import Domain
from xenvmi.tui import messages as m
from xenvmi.tui import workers, xenvmi_app
from xenvmi.tui.format import BY_KEY
from xenvmi.tui.widgets.domain_table import DomainTable
from xenvmi.tui.widgets.history import Histories, History
from xenvmi.tui.widgets.host_panel import HostPanel
from xenvmi.tui.widgets.reason import ReasonPanel

SORT_CYCLE = ("domid", "name", "cpu", "mem", "nettx", "netrx", "vbd_rd", "vbd_wr", "state")


#: Seconds between samples while a domain screen covers the table.
HIDDEN_REFRESH = 10.0


class DomainsScreen(Screen):
    """Owns the sampler worker (domains + dom0 host + domain watch) for the whole app."""

    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("c", "sort('cpu')", "CPU", show=False),
        Binding("m", "sort('mem')", "Mem", show=False),
        Binding("n", "sort('name')", "Name", show=False),
        Binding("i", "sort('domid')", "ID", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.domains: dict[int, Domain] = {}
        self.histories = Histories()
        self.refreshes = 0
        self.last_seconds = 0.0
        self._pending: m.SamplesUpdated | None = None
        self._covered = False  # under another screen since the last show
        self._status_text: Text | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield HostPanel(id="host")
        yield ReasonPanel("domains", id="domains-reason")
        yield DomainTable(getattr(xenvmi_app(self).source, "hosts", None), id="domains")
        yield Static("", id="domains-status")
        yield History(id="history")
        yield Input(placeholder="filter by name or domid (Enter keeps it, Esc clears)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.life = xenvmi_app(self).life.child()
        self.query_one("#filter", Input).display = False
        self.query_one(DomainTable).focus()
        self._sample()

    def on_unmount(self) -> None:
        self.life.stop()

    @work(thread=True, exit_on_error=False, group="sampler")
    def _sample(self) -> None:
        workers.sampler_loop(xenvmi_app(self).source, self.life, self.post_message, self._interval)

    def _interval(self) -> float:
        """Sample at --refresh while shown; under a domain screen, every HIDDEN_REFRESH s
        at most (the histories keep going, and a one-CPU dom0 keeps its time for the
        guest views the operator is looking at)."""
        if self._on_top():
            return xenvmi_app(self).refresh_seconds
        return max(xenvmi_app(self).refresh_seconds, HIDDEN_REFRESH)

    # -- messages from the worker ------------------------------------------------------
    def on_samples_updated(self, msg: m.SamplesUpdated) -> None:
        if msg.domains is not None:
            self.domains = {d.domid: d for d in msg.domains}
        self.histories.add(msg.samples)
        if not self._on_top():  # drawn when the screen is shown again
            self._pending = msg
            return
        self._show(msg)

    def _on_top(self) -> bool:
        """The top screen? (Screen.is_current also counts a screen Textual keeps painting
        under another, which this one is under a domain screen.)"""
        try:
            return self.app.screen is self
        except ScreenStackError:  # no screen stack yet, or any more
            return True

    def on_screen_suspend(self) -> None:
        self._covered = True

    def on_screen_resume(self) -> None:
        """Back from a screen above: draw what came meanwhile, and sample now. Not on the
        first show (the sampler has just started; a poke then took a second sample at
        once, sometimes, and the first frame a user or a snapshot saw varied)."""
        if not self._covered:
            return
        self._covered = False
        msg, self._pending = self._pending, None
        if msg is not None:
            self._show(msg)
        self.life.poke()  # and a fresh sample now, at the shown rate again

    def _show(self, msg: m.SamplesUpdated) -> None:
        table = self.query_one(DomainTable)
        table.set_data(msg.samples, self.domains)
        self.query_one("#domains-reason", ReasonPanel).clear_reason()
        table.display = True
        self.query_one(HostPanel).set_node(msg.node)
        self.refreshes += 1
        self.last_seconds = msg.seconds
        xenvmi_app(self).known_domains = {
            "/".join(filter(None, (table.host_of(s.domid), s.name))): s.domid for s in msg.samples
        }
        self._status()
        self.query_one(History).show(self.histories, table.selected)
        if xenvmi_app(self).pending_domain is not None:
            xenvmi_app(self).open_pending_domain()

    def on_host_updated(self, msg: m.HostUpdated) -> None:
        self.query_one(HostPanel).set_host(msg.host)

    def on_source_failed(self, msg: m.SourceFailed) -> None:
        if msg.topic == "host":
            self.query_one(HostPanel).set_error(msg.reason)
        elif msg.topic == "domains":
            self.query_one("#domains-reason", ReasonPanel).show_reason(msg.reason)
            table = self.query_one(DomainTable)
            table.display = bool(table.samples)

    def _status(self) -> None:
        table = self.query_one(DomainTable)
        shown = len(table.visible_names)
        text = Text(
            f"{shown} of {len(table.samples)} domains" if table.filter else f"{shown} domains",
            style="bold",
        )
        text.append(f"  sorted by {BY_KEY[table.sort_key].label} {'▼' if table.reverse else '▲'}  ")
        if table.filter:
            text.append("filter ")
            text.append(repr(table.filter), style="bold yellow")
        text.append(f"  refresh {xenvmi_app(self).refresh_seconds:g}s", style="dim")
        if text != self._status_text:  # one line (CSS height 1): no layout pass
            self._status_text = text
            self.query_one("#domains-status", Static).update(text, layout=False)

    # -- the table ---------------------------------------------------------------------
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.query_one(History).show(self.histories, self.query_one(DomainTable).selected)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        sample = self.query_one(DomainTable).selected
        if sample is not None:
            xenvmi_app(self).open_domain(sample.domid)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.action_sort(str(event.column_key.value))

    # -- actions -----------------------------------------------------------------------
    def action_sort(self, key: str) -> None:
        if key in self.query_one(DomainTable).column_keys:
            self.query_one(DomainTable).set_sort(key)
            self._status()

    def action_cycle_sort(self) -> None:
        table = self.query_one(DomainTable)
        cur = SORT_CYCLE.index(table.sort_key) if table.sort_key in SORT_CYCLE else -1
        self.action_sort(SORT_CYCLE[(cur + 1) % len(SORT_CYCLE)])

    def action_reverse_sort(self) -> None:
        table = self.query_one(DomainTable)
        table.set_sort(table.sort_key, not table.reverse)
        self._status()

    def action_refresh(self) -> None:
        self.life.poke()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        # focus now, not via call_later: keys typed right after "/" (fast typists, SSH
        # paste) are already queued and would otherwise hit the table's hotkeys
        self.set_focus(box)

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.query_one(DomainTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.query_one(DomainTable).set_filter(event.value)
            self._status()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.input.display = bool(event.value)
            self.query_one(DomainTable).focus()
