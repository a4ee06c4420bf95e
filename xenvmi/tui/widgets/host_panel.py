"""HostPanel: dom0's CPU and memory, Xen's view of the host, and the Xen daemons' health."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from xenvmi.model.host import Daemon, HostSample, NodeSample
from xenvmi.tui.format import kib, pct


def daemons_text(daemons: tuple[Daemon, ...]) -> Text:
    """xenstored and xenconsoled by name; QEMU device models counted (one per HVM guest)."""
    t = Text()
    qemus = [d for d in daemons if d.name == "qemu"]
    for d in daemons:
        if d.name == "qemu":
            continue
        t.append(" · ")
        if d.alive:
            t.append(d.name, style="green")
            t.append(f" {pct(d.cpu_percent)}%", style="dim")
        else:
            t.append(f"{d.name} DOWN", style="bold red")
    if qemus:
        down = [d for d in qemus if not d.alive]
        t.append(" · ")
        t.append(f"qemu {len(qemus) - len(down)} up", style="green")
        if down:
            t.append(f", {len(down)} down", style="bold red")
    return t


def host_text(host: HostSample | None, node: NodeSample | None, error: str = "") -> Text:
    """Line 1: dom0 as Linux sees it. Line 2: Xen's host memory and the daemons."""
    t = Text()
    if host is not None:
        t.append("dom0 ", style="bold")
        t.append(
            f"{host.hostname[:16]} {host.cpus} CPUs {pct(host.cpu_percent)}% "
            f"load {host.load_1m:.2f} mem {kib(host.memory_used_kib)}/"
            f"{kib(host.memory_total_kib)}"
        )
    if node is not None or host is not None:
        t.append("\n" if host is not None else "")
        if node is not None:
            t.append("Xen ", style="bold")
            t.append(
                f"{node.xen_version} free {kib(node.memory_free_kib)}/{kib(node.memory_total_kib)}"
            )
        if host is not None:
            t.append_text(daemons_text(host.daemons))
    if error:
        t.append(("\n" if len(t) else "") + "host metrics unavailable: ", style="bold yellow")
        t.append(error)
    if not len(t):
        t.append("sampling dom0 ...", style="dim")
    return t


class HostPanel(Static):
    """Updated by the domains screen from HostUpdated / SamplesUpdated messages."""

    def __init__(self, **kw) -> None:
        text = host_text(None, None)
        super().__init__(text, **kw)
        self.host: HostSample | None = None
        self.node: NodeSample | None = None
        self.error = ""
        self._text, self._lines = text, text.plain.count("\n")

    def _show(self, text: Text) -> None:
        """New text, if it is new; the screen is laid out again only when the panel's
        height changes (a layout pass repaints every widget: most of an idle refresh's
        cost in a slow dom0)."""
        if text == self._text:  # nothing new to show: no repaint at all
            return
        lines = text.plain.count("\n")
        self.update(text, layout=lines != self._lines)
        self._text, self._lines = text, lines

    def set_host(self, host: HostSample) -> None:
        self.host, self.error = host, ""
        self._show(host_text(self.host, self.node))

    def set_node(self, node: NodeSample | None) -> None:
        if node is not None:
            self.node = node
            self._show(host_text(self.host, self.node, self.error))

    def set_error(self, reason: str) -> None:
        self.error = reason
        self._show(host_text(self.host, self.node, self.error))
