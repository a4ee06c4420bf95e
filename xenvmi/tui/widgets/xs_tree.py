"""XenStore trees: a domain's subtree (whole, rebuilt on watch events) and node labels."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from xenvmi.model.host import XsTree
from xenvmi.tui.widgets.views import ViewPane

#: Characters of a value shown in a tree label (the value panel shows it all).
VALUE_WIDTH = 60


def node_label(name: str, value: str | None, changed: bool = False) -> Text:
    label = Text(name, style="bold yellow" if changed else "bold")
    if value:
        shown = value if len(value) <= VALUE_WIDTH else value[:VALUE_WIDTH] + "…"
        label.append(" = ")
        label.append(shown.replace("\n", "⏎"), style="italic")
    return label


def fill(
    tree: Tree,
    top: str,
    nodes: Iterable[tuple[str, str | None]],
    expanded: set[str],
    changed: set[str],
) -> None:
    """Rebuild ``tree`` from (path, value) pairs under ``top``; intermediate directories
    are created as needed; ``expanded`` paths stay open."""
    tree.clear()
    tree.root.data = top
    tree.root.set_label(Text(top, style="bold"))
    made: dict[str, TreeNode] = {top: tree.root}
    values = dict(nodes)
    for path in sorted(values, key=_key):
        if path == top:
            continue
        parts = path[len(top) :].strip("/").split("/")
        parent = tree.root
        here = top.rstrip("/")
        for i, part in enumerate(parts):
            here = f"{here}/{part}"
            node = made.get(here)
            if node is None:
                leaf = i == len(parts) - 1
                node = parent.add(
                    node_label(part, values.get(here), here in changed),
                    data=here,
                    allow_expand=not leaf,
                    expand=here in expanded,
                )
                made[here] = node
            elif not node.allow_expand and i < len(parts) - 1:
                node.allow_expand = True
            parent = node
    tree.root.expand()


def _key(path: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.split("/")]


def expanded_paths(tree: Tree) -> set[str]:
    out, stack = set(), [tree.root]
    while stack:
        node = stack.pop()
        if node.is_expanded and node.data:
            out.add(node.data)
        stack.extend(node.children)
    return out


class XsSubtreePane(ViewPane):
    """/local/domain/<domid>, walked again whenever a watch under it fires."""

    def body(self) -> ComposeResult:
        yield Tree("", id="xs-subtree")

    def show_tree(self, tree: XsTree, changed: Iterable[str]) -> None:
        widget = self.query_one(Tree)
        opened = expanded_paths(widget) or {tree.top}
        fill(widget, tree.top, ((n.path, n.value) for n in tree.nodes), opened, set(changed))
        note = f" (truncated: {tree.truncated})" if tree.truncated else ""
        self.loaded(len(tree.nodes), "nodes" + note, [], not tree.truncated)
