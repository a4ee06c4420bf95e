"""ReasonPanel: what a view shows instead of data when a capability is missing."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ReasonPanel(Static):
    """The one-line reason (with its fix) from a xenvmi error, in place of a traceback."""

    DEFAULT_CLASSES = "reason"

    def __init__(self, title: str, **kw) -> None:
        super().__init__("", **kw)
        self.title = title
        self.reason = ""
        self.display = False

    def show_reason(self, reason: str) -> None:
        self.reason = reason
        text = Text()
        text.append(f"{self.title} unavailable: ", style="bold")
        text.append(reason)  # plain text: the reason may quote guest-controlled names
        self.update(text)
        self.display = True

    def clear_reason(self) -> None:
        self.reason = ""
        self.display = False
