"""Tabs that do not jump back on a slow host."""

from __future__ import annotations

from textual.widgets import TabbedContent, TabPane


class SteadyTabbedContent(TabbedContent):
    """A TabbedContent that follows focus into a pane only while the focus is still there.

    Textual's TabbedContent makes a pane active when a widget in it gets focus: the focus
    event bubbles up to the pane, which posts ``TabPane.Focused``. On a loaded one-CPU
    dom0 that message arrived after the operator had already pressed the next tab's key
    (the lab saw `3` then `5`: the Processes table's focus, given on `3`, dragged the
    screen back from the Kernel log for good). A stale one is dropped here.
    """

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors_with_self:
            event.prevent_default()  # TabbedContent's own handler does not run
            event.stop()
