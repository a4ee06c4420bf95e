"""One domain: Overview, vCPUs, Processes, Modules, Kernel log, XenStore, Plugins.

The guest views come from one dedicated worker thread that opens the guest, serves the
tabs' requests and closes it when the screen goes (LibVMI is not thread-safe); the
XenStore tab has its own watching worker. Nothing here blocks on Xen.
"""

from __future__ import annotations

import queue

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from xenvmi.model.host import Domain, DomainSample
from xenvmi.tui import messages as m
from xenvmi.tui import workers, xenvmi_app
from xenvmi.tui.format import kib, local_domid, pct, xenbus_style
from xenvmi.tui.widgets.plugins_pane import PluginsPane
from xenvmi.tui.widgets.tabs import SteadyTabbedContent
from xenvmi.tui.widgets.views import (
    LogPane,
    RegistersPane,
    TablePane,
    ViewPane,
    table_columns,
)
from xenvmi.tui.widgets.xs_tree import XsSubtreePane
from xenvmi.views.lsmod import Lsmod
from xenvmi.views.ps import Ps

TABS = ("overview", "vcpus", "processes", "modules", "dmesg", "xenstore", "plugins")
#: Tab -> the guest view that fills it.
VIEW_OF_TAB = {
    "vcpus": "registers",
    "processes": "processes",
    "modules": "modules",
    "dmesg": "kernel_log",
}


def overview_text(d: Domain | None, s: DomainSample | None) -> Text:
    t = Text()
    if d is not None:
        t.append(f"{d.name}", style="bold")
        t.append(f"  domid {local_domid(d.domid)}  type {d.type}  state {d.state or '-'}\n")
        t.append(f"uuid {d.uuid or '-'}\n")
        t.append(
            f"memory {kib(d.memory_kib)} (target {kib(d.memory_target_kib)}, "
            f"max {kib(d.memory_max_kib)})  vCPUs {d.vcpus_online or '-'}/"
            f"{d.vcpus or '-'} online"
        )
    if s is not None:
        t.append(
            f"\nCPU {pct(s.cpu_percent)}%  {s.cpu_seconds:.0f}s total  net tx "
            f"{kib(s.net_tx_bytes // 1024)} rx {kib(s.net_rx_bytes // 1024)}"
        )
    return t or Text("no details for this domain yet", style="dim")


class DomainScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "reload", "Reload"),
        *[Binding(str(i + 1), f"tab('{tab}')", tab, show=False) for i, tab in enumerate(TABS)],
    ]

    def __init__(
        self,
        domid: int,
        name: str,
        domain: Domain | None = None,
        sample: DomainSample | None = None,
        host: str = "",
        **kw,
    ) -> None:
        super().__init__(**kw)
        self.domid, self.domain_name, self.host = domid, name, host
        self.domain, self.sample = domain, sample
        self.requests: queue.Queue = queue.Queue()

    def compose(self) -> ComposeResult:
        yield Header()
        with SteadyTabbedContent(id="tabs"):
            with TabPane("Overview", id="overview"):
                with Vertical():
                    yield Static(overview_text(self.domain, self.sample), id="overview-text")
                    yield DataTable(id="devices", cursor_type="row")
            with TabPane("vCPUs", id="vcpus"):
                yield RegistersPane("registers", id="pane-registers")
            with TabPane("Processes", id="processes"):
                yield TablePane("processes", table_columns(Ps), id="pane-processes")
            with TabPane("Modules", id="modules"):
                yield TablePane("modules", table_columns(Lsmod), id="pane-modules")
            with TabPane("Kernel log", id="dmesg"):
                yield LogPane("kernel log", id="pane-kernel_log")
            with TabPane("XenStore", id="xenstore"):
                yield XsSubtreePane("xenstore", id="pane-xenstore")
            with TabPane("Plugins", id="plugins"):
                yield PluginsPane(self.domain_name, id="pane-plugins")
        yield Footer()

    def on_mount(self) -> None:
        on = f" on {self.host}" if self.host else ""
        self.sub_title = f"READ-ONLY · {self.domain_name} (domain {local_domid(self.domid)}{on})"
        self.life = xenvmi_app(self).life.child()
        self._fill_devices()
        for view in workers.GUEST_VIEWS:
            self.requests.put(view)
        self._guest()
        self._xenstore()

    def on_unmount(self) -> None:
        self.requests.put(None)
        self.life.stop()

    @work(thread=True, exit_on_error=False, group="guest")
    def _guest(self) -> None:
        workers.guest_loop(
            xenvmi_app(self).source, str(self.domid), self.life, self.requests, self.post_message
        )

    @work(thread=True, exit_on_error=False, group="xs-subtree")
    def _xenstore(self) -> None:
        workers.xs_subtree_loop(
            xenvmi_app(self).source, f"/local/domain/{self.domid}", self.life, self.post_message
        )

    def _fill_devices(self) -> None:
        table = self.query_one("#devices", DataTable)
        table.add_columns("Device", "Id", "Backend", "Frontend", "Backend state")
        for dev in self.domain.devices if self.domain else ():
            table.add_row(
                Text(dev.kind),
                Text(dev.devid),
                Text("-" if dev.backend_domid is None else f"dom{dev.backend_domid}"),
                Text(dev.state or "-", style=xenbus_style(dev.state)),
                Text(dev.backend_state or "-", style=xenbus_style(dev.backend_state)),
            )

    # -- worker messages ---------------------------------------------------------------
    def on_guest_view_loaded(self, msg: m.GuestViewLoaded) -> None:
        pane = f"#pane-{msg.view}"
        if msg.view == "registers":
            self.query_one(pane, RegistersPane).show_registers(msg.rows, msg.warnings, msg.complete)
        elif msg.view == "kernel_log":
            self.query_one(pane, LogPane).show_records(msg.rows, msg.warnings, msg.complete)
        else:
            self.query_one(pane, TablePane).show_rows(
                msg.rows, msg.view, msg.warnings, msg.complete
            )

    def on_xs_subtree(self, msg: m.XsSubtree) -> None:
        self.query_one(XsSubtreePane).show_tree(msg.tree, msg.changed)

    def on_source_failed(self, msg: m.SourceFailed) -> None:
        if msg.topic == "guest":
            views = workers.GUEST_VIEWS if msg.key is None else [msg.key]
            for view in views:
                self.query_one(f"#pane-{view}", ViewPane).fail(msg.reason)
        elif msg.topic == "xenstore":
            self.query_one(XsSubtreePane).fail(msg.reason)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "plugins":
            self.query_one(PluginsPane).load()
        focusable = [w for w in event.pane.query("DataTable, Tree, RichLog") if w.display]
        if focusable:
            focusable[0].focus()

    # -- actions -----------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_reload(self) -> None:
        tab = self.query_one(TabbedContent).active
        if tab in VIEW_OF_TAB:
            self.query_one(f"#pane-{VIEW_OF_TAB[tab]}", ViewPane).set_status(
                Text("reloading ...", style="dim")
            )
            self.requests.put(VIEW_OF_TAB[tab])
        elif tab == "xenstore":
            self.life.poke()
