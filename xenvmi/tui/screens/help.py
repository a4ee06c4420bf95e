"""The help screen (``?``): every key, what read-only means, where data comes from."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    (
        "Everywhere",
        (
            ("d / h / x", "Domains / Hypercalls / XenStore screens"),
            ("ctrl+p", "command palette: screens, domains, sorting"),
            ("?", "this help"),
            ("q, ctrl+c", "quit"),
        ),
    ),
    (
        "Domains",
        (
            ("↑ ↓, Enter", "select, open the domain"),
            ("/", "filter by name or domid"),
            ("s / S", "next sort column / reverse"),
            ("c m n i", "sort by CPU, memory, name, domid"),
            ("r", "refresh now"),
            ("Esc", "clear the filter"),
        ),
    ),
    (
        "Domain",
        (
            ("1 … 7", "tabs: overview vCPUs ps modules log xenstore plugins"),
            ("r", "reload this tab"),
            ("Enter", "run the selected plugin"),
            ("Esc", "back to the domains"),
        ),
    ),
    (
        "Hypercalls",
        (
            ("/", "filter by process name or pid"),
            ("p", "pause the stream"),
            ("Esc", "clear the filter"),
        ),
    ),
    (
        "XenStore",
        (
            ("Enter / →", "expand a directory (loaded on demand)"),
            ("r", "reload the selected directory"),
        ),
    ),
)

NOTES = (
    "xenvmi tui is READ-ONLY: it never writes xenstore, pauses or changes a domain. "
    "Panels that cannot get their data say why and what to install or start "
    "(run as root in dom0 for everything)."
)


def help_text() -> Text:
    t = Text()
    for section, keys in KEYS:
        t.append(f"{section}\n", style="bold underline")
        for key, what in keys:
            t.append(f"  {key:<12}", style="bold")
            t.append(f"{what}\n")
    t.append("\n" + NOTES, style="italic")
    return t


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(), id="help-text")
