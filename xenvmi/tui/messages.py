"""Messages: the only way worker threads talk to the UI (``post_message`` is thread-safe).

Each carries plain model dataclasses; handlers run on the UI thread and only render.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from xenvmi.model.host import Domain, DomainSample, HostSample, NodeSample, XsTree
from xenvmi.model.hypercall import HypercallEvent
from xenvmi.plugins import PluginInfo, PluginResult


class SourceFailed(Message):
    """A data source could not deliver; ``reason`` is the one-line message with the fix."""

    def __init__(self, topic: str, reason: str, key: Any = None) -> None:
        super().__init__()
        self.topic, self.reason, self.key = topic, reason, key


class SamplesUpdated(Message):
    """One refresh of the domains table: xentop's samples and, when they changed, identities."""

    def __init__(
        self,
        node: NodeSample | None,
        samples: list[DomainSample],
        domains: list[Domain] | None,
        seconds: float,
    ) -> None:
        super().__init__()
        self.node, self.samples, self.domains, self.seconds = node, samples, domains, seconds


class HostUpdated(Message):
    def __init__(self, host: HostSample) -> None:
        super().__init__()
        self.host = host


class GuestViewLoaded(Message):
    """One guest view (processes, modules, kernel_log, registers) of ``domain``."""

    def __init__(
        self, domain: str, view: str, rows: list, warnings: list[str], complete: bool
    ) -> None:
        super().__init__()
        self.domain, self.view, self.rows = domain, view, rows
        self.warnings, self.complete = warnings, complete


class XsSubtree(Message):
    """A bounded walk of one xenstore subtree (sent again after each watch firing)."""

    def __init__(self, tree: XsTree, changed: list[str]) -> None:
        super().__init__()
        self.tree, self.changed = tree, changed


class XsChildren(Message):
    """The children of one node of the XenStore browser: (name, value, has_children)."""

    def __init__(
        self, path: str, children: list[tuple[str, str | None, bool]], truncated: bool
    ) -> None:
        super().__init__()
        self.path, self.children, self.truncated = path, children, truncated


class HypercallBatch(Message):
    def __init__(self, events: list[HypercallEvent]) -> None:
        super().__init__()
        self.events = events


class PluginsListed(Message):
    def __init__(self, plugins: list[PluginInfo]) -> None:
        super().__init__()
        self.plugins = plugins


class PluginFinished(Message):
    def __init__(self, name: str, output: PluginResult) -> None:
        super().__init__()
        self.name, self.output = name, output
