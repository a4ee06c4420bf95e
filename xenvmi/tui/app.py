"""XenvmiApp: the Textual application tying screens, workers and the data source together.

Screens are Textual modes (domains, hypercalls, xenstore) so each keeps its state and its
worker while another is shown; a domain's screen is pushed on top of the domains mode.
Quitting stops the app's Lifeline first: every worker loop sees it within ~50 ms (a
recording) or one watch slice (WATCH_SLICE, live) and closes its handles.
"""

from __future__ import annotations

from textual.app import App, ScreenStackError
from textual.binding import Binding

from xenvmi.domains import find_domain
from xenvmi.errors import NotFoundError
from xenvmi.tui.commands import XenvmiCommands
from xenvmi.tui.screens.domain_detail import DomainScreen
from xenvmi.tui.screens.domains import DomainsScreen
from xenvmi.tui.screens.help import HelpScreen
from xenvmi.tui.screens.hypercalls import HypercallsScreen
from xenvmi.tui.screens.xenstore import XenStoreScreen
from xenvmi.tui.sources import DataSource
from xenvmi.tui.theme import XENVMI_THEME
from xenvmi.tui.widgets.domain_table import DomainTable
from xenvmi.tui.workers import Lifeline

DEFAULT_REFRESH = 2.0


class XenvmiApp(App):
    TITLE = "xenvmi"
    CSS_PATH = "xenvmi.tcss"
    MODES = {"domains": DomainsScreen, "hypercalls": HypercallsScreen, "xenstore": XenStoreScreen}
    DEFAULT_MODE = "domains"
    COMMANDS = App.COMMANDS | {XenvmiCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("d", "mode('domains')", "Domains", show=False),
        Binding("h", "mode('hypercalls')", "Hypercalls"),
        Binding("x", "mode('xenstore')", "XenStore"),
    ]

    def __init__(
        self, source: DataSource, refresh: float = DEFAULT_REFRESH, domain: str | None = None
    ) -> None:
        super().__init__()
        self.source = source
        self.refresh_seconds = max(0.1, refresh)
        self.pending_domain = domain
        self.life = Lifeline()
        self.known_domains: dict[str, int] = {}

    def on_mount(self) -> None:
        self.register_theme(XENVMI_THEME)
        self.theme = "xenvmi"
        self.sub_title = f"READ-ONLY · {self.source.label}"

    def clear_selection(self) -> None:
        """Textual 8's Input clears the selection as it mounts, which in the default mode's
        first screen is before that screen is on its stack: App.clear_selection catches
        NoScreen there but not ScreenStackError (Textualize/textual#6444), and the TUI died
        at start on Python 3.13 (Debian 13). With no screen there is nothing to clear."""
        try:
            super().clear_selection()
        except ScreenStackError:
            return

    @property
    def domains_screen(self) -> DomainsScreen | None:
        try:
            stack = self.get_screen_stack("domains")
        except KeyError:  # the mode is not installed yet
            stack = []
        return stack[0] if stack and isinstance(stack[0], DomainsScreen) else None

    # -- actions -----------------------------------------------------------------------
    async def action_quit(self) -> None:
        self.life.stop()
        self.exit()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_mode(self, mode: str) -> None:
        if mode != self.current_mode:
            self.switch_mode(mode)

    def open_domain(self, domid: int) -> None:
        """Push the domain screen for ``domid`` over the domains mode."""
        screen = self.domains_screen
        if screen is None:
            return
        if self.current_mode != "domains":
            self.switch_mode("domains")
        while len(self.screen_stack) > 1:
            self.pop_screen()
        table = screen.query_one("#domains", DomainTable)
        sample = table.samples.get(domid)
        domain = screen.domains.get(domid)
        name = domain.name if domain else sample.name if sample else str(domid)
        self.push_screen(DomainScreen(domid, name, domain, sample, host=table.host_of(domid)))

    def open_pending_domain(self) -> None:
        """``--domain NAME``: open it once the first sample named the domains."""
        wanted, self.pending_domain = self.pending_domain, None
        screen = self.domains_screen
        if wanted is None or screen is None:
            return
        samples = list(screen.query_one("#domains", DomainTable).samples.values())
        try:
            found = find_domain(samples, wanted)  # DomainSample has domid and name too
        except NotFoundError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.open_domain(found.domid)

    def sort_domains(self, key: str) -> None:
        screen = self.domains_screen
        if screen is not None:
            self.action_mode("domains")
            screen.action_sort(key)
