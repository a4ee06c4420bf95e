"""PluginsPane: the plugins xenvmi.plugins discovers; Enter runs one in a worker."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from xenvmi.plugins import PluginInfo
from xenvmi.tui import messages as m
from xenvmi.tui import workers, xenvmi_app
from xenvmi.tui.widgets.views import TablePane, ViewPane, table_columns


class PluginsPane(ViewPane):
    """Lists plugins on first show; results appear in a table named after the row fields."""

    def __init__(self, domain: str | None, **kw) -> None:
        super().__init__("plugins", **kw)
        self.domain = domain
        self.plugins: dict[str, PluginInfo] = {}
        self.listed = False

    def body(self) -> ComposeResult:
        with Vertical():
            yield DataTable(cursor_type="row", id="plugin-list")
            yield TablePane("plugin output", id="plugin-output")

    def on_mount(self) -> None:
        self.query_one("#plugin-output", TablePane).display = False

    def load(self) -> None:
        if not self.listed:
            self.listed = True
            self._list()

    @work(thread=True, exit_on_error=False, group="plugins")
    def _list(self) -> None:
        workers.list_plugins(xenvmi_app(self).source, self.post_message)

    @work(thread=True, exit_on_error=False, group="plugin-run", exclusive=True)
    def _run(self, name: str, domain: str | None) -> None:
        workers.run_plugin(xenvmi_app(self).source, name, domain, self.post_message)

    def on_plugins_listed(self, msg: m.PluginsListed) -> None:
        msg.stop()
        self.plugins = {p.name: p for p in msg.plugins}
        table = self.query_one("#plugin-list", DataTable)
        table.clear(columns=True)
        table.add_columns("Plugin", "Ready", "Description")
        for p in msg.plugins:
            ready = Text("yes", style="green") if p.available else Text("no", style="red")
            about = p.description if p.available else f"{p.description} ({p.why_not})"
            table.add_row(Text(p.name), ready, Text(about), key=p.name)
        self.loaded(len(msg.plugins), "plugins (Enter runs one)", [], True)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "plugin-list":
            return
        event.stop()
        p = self.plugins.get(str(event.row_key.value))
        if p is None:
            return
        if not p.available:
            self.set_status(Text(f"{p.name} cannot run here: {p.why_not}", style="yellow"))
            return
        self.set_status(Text(f"running {p.name} ...", style="dim"))
        self._run(p.name, self.domain if p.needs_domain else None)

    def on_plugin_finished(self, msg: m.PluginFinished) -> None:
        msg.stop()
        out = self.query_one("#plugin-output", TablePane)
        out.display = True
        if msg.output.error:
            out.fail(f"{msg.name}: {msg.output.error}")
        else:
            cls = msg.output.plugin_class
            out.columns = table_columns(cls) if cls is not None else None
            out.show_rows(msg.output.rows, f"rows from {msg.name}", msg.output.warnings)
        self.set_status(Text(f"{msg.name} finished", style="bold"))

    def on_source_failed(self, msg: m.SourceFailed) -> None:
        if msg.topic != "plugins":
            return
        msg.stop()
        if msg.key is None:
            self.fail(msg.reason)
        else:
            out = self.query_one("#plugin-output", TablePane)
            out.display = True
            out.fail(msg.reason)
