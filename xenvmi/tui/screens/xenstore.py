"""The XenStore browser: the whole tree, each directory listed when first expanded
(bounded to XS_MAX_CHILDREN children), the selected node's full value beside it."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, Tree

from xenvmi.tui import messages as m
from xenvmi.tui import workers, xenvmi_app
from xenvmi.tui.sources import XS_MAX_CHILDREN
from xenvmi.tui.widgets.reason import ReasonPanel
from xenvmi.tui.widgets.xs_tree import node_label


class XenStoreScreen(Screen):
    BINDINGS = [Binding("r", "reload", "Reload node")]

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.values: dict[str, str | None] = {}
        self.loaded: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield ReasonPanel("xenstore", id="xs-reason")
        with Horizontal(id="xs-body"):
            yield Tree(Text("/", style="bold"), data="/", id="xs-tree")
            with VerticalScroll(id="xs-value-box"):
                yield Static(Text("select a node", style="dim"), id="xs-value")
        yield Footer()

    def on_mount(self) -> None:
        tree = self.query_one("#xs-tree", Tree)
        tree.focus()
        self._load("/")

    @work(thread=True, exit_on_error=False, group="xs-browse")
    def _load(self, path: str) -> None:
        workers.xs_children(xenvmi_app(self).source, path, self.post_message)

    def _node(self, path: str):
        stack = [self.query_one("#xs-tree", Tree).root]
        while stack:
            node = stack.pop()
            if node.data == path:
                return node
            stack.extend(node.children)
        return None

    def on_xs_children(self, msg: m.XsChildren) -> None:
        node = self._node(msg.path)
        if node is None:
            return
        node.remove_children()
        self.loaded.add(msg.path)
        for name, value, has_children in msg.children:
            path = msg.path.rstrip("/") + "/" + name
            self.values[path] = value
            node.add(node_label(name, value), data=path, allow_expand=has_children)
        if msg.truncated:
            node.add_leaf(Text(f"… only the first {XS_MAX_CHILDREN} shown", style="dim"))
        node.expand()

    def on_source_failed(self, msg: m.SourceFailed) -> None:
        if msg.topic == "xenstore":
            self.query_one("#xs-reason", ReasonPanel).show_reason(msg.reason)
            self.query_one("#xs-body").display = msg.key != "/"

    def on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        path = event.node.data
        if path and path not in self.loaded:
            self._load(path)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        path = event.node.data
        if not path:
            return
        text = Text(path, style="bold")
        text.append("\n")
        value = self.values.get(path)
        text.append("(no value)" if not value else value, style="" if value else "dim")
        self.query_one("#xs-value", Static).update(text)

    def action_reload(self) -> None:
        node = self.query_one("#xs-tree", Tree).cursor_node
        if node is not None and node.data:
            self.loaded.discard(node.data)
            self._load(node.data)
