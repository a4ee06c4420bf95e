"""What a plugin is (:class:`Plugin`) and what it gets while it runs (:class:`Context`).

A plugin is a class: it declares who it is, what it needs and the dataclass of its rows,
and its ``run(ctx)`` yields rows. Everything else (finding it, checking what it needs,
isolating its failures, rendering its rows) is xenvmi's job, so a plugin file stays a
screenful of code that only knows about the thing it inspects.
"""

from __future__ import annotations

from xenvmi.guest.budget import Budget

import time
from typing import Any, Callable, ClassVar, Iterable

from xenvmi.errors import UsageError

#: The plugin API this xenvmi implements; a plugin declares the one it was written for.
API_VERSION = 1


class Plugin:
    """Subclass this, set the class attributes, implement :meth:`run`.

    ``requires`` names capabilities checked before the plugin runs (see
    ``xenvmi.plugins.requirements.CHECKS``): "xenstore", "libvmi", "drgn", "bcc", "dom0",
    "root", and "linux-guest" (a Linux guest read through VMI: dom0 + libvmi + drgn).
    ``options`` maps option names to their help; the CLI passes ``-o name=value``.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1"
    api_version: ClassVar[int] = API_VERSION
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    needs_domain: ClassVar[bool] = False
    row: ClassVar[type] = object  # the dataclass every yielded row is an instance of
    columns: ClassVar[tuple[str, ...] | None] = None  # table columns; None: all fields
    options: ClassVar[dict[str, str]] = {}

    def run(self, ctx: "Context") -> Iterable[Any]:
        """Yield (or return a list of) ``row`` instances. Raise to fail; warn to degrade."""
        raise NotImplementedError

    @classmethod
    def check(cls) -> str | None:
        """Why this plugin cannot run here beyond its ``requires`` (None: it can)."""
        return None

    @classmethod
    def tui_panel(cls) -> type | None:
        """A Textual widget class showing this plugin's rows, or None (the TUI's table).

        Import Textual inside this method: xenvmi's core never imports it."""
        return None


def _quiet(message: str) -> None:
    return None


class RunBudget(Budget):
    """A run's deadline and warnings: the guest walks' own Budget (drgn-free module)."""


class Context:
    """One run of one plugin: its domain, options, deadline and warnings, and the guest.

    The guest is opened on first use, in the thread running the plugin (LibVMI handles
    belong to their thread), and closed by the runner when the plugin ends."""

    def __init__(self, plugin: str, domain: str | int | None = None,
                 options: dict[str, str] | None = None, timeout: float | None = None,
                 progress: Callable[[str], None] = _quiet) -> None:
        self.plugin = plugin
        self.domain = domain
        self.options = dict(options or {})
        self.progress = progress
        #: Deadline plus warnings; guest reads check it, so walks stop in time.
        self.budget = RunBudget(timeout)
        self._guest = None

    # -- time and warnings ---------------------------------------------------------------
    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        if self.budget.seconds is None:
            return None
        return max(0.0, self.budget.deadline - time.monotonic())

    def expired(self) -> bool:
        return self.budget.expired()

    def warn(self, message: str, partial: bool = True) -> None:
        """Record a problem; ``partial`` marks the result incomplete."""
        self.budget.warn(message, partial)

    @property
    def warnings(self) -> list[str]:
        return self.budget.warnings

    @property
    def complete(self) -> bool:
        return self.budget.complete

    def adopt(self, view: Any) -> list:
        """Take a GuestView's warnings and completeness; return its rows."""
        for w in view.warnings:
            self.warn(w, partial=False)
        if not view.complete:
            self.budget.complete = False
        return view.rows

    # -- options -------------------------------------------------------------------------
    def option(self, key: str, default: Any = None, kind: Callable[[str], Any] = str) -> Any:
        """An option converted with ``kind``; a bad value is a usage error."""
        if key not in self.options:
            return default
        try:
            return kind(self.options[key])
        except ValueError:
            raise UsageError(f"{self.plugin}: option {key}={self.options[key]!r} is not a "
                             f"valid {getattr(kind, '__name__', 'value')}") from None

    # -- the guest -----------------------------------------------------------------------
    def _need_domain(self) -> str | int:
        if self.domain is None:
            raise UsageError(f"{self.plugin}: needs a DOMAIN")
        return self.domain

    def guest(self):
        """The domain as a :class:`xenvmi.vmi.Guest` (opened once, closed after the run)."""
        if self._guest is None:
            from xenvmi import vmi
            left = self.remaining()
            self._guest = vmi.open_guest(self._need_domain(), progress=self.progress,
                                         discovery_timeout=600.0 if left is None
                                         else max(1.0, left))
        return self._guest

    def kernel(self):
        """The guest's kernel as a KernelProgram whose reads obey this run's deadline."""
        g = self.guest()
        kp = g.kernel_program()
        for w in kp.warnings:
            self.warn(w, partial=False)
        kp.budget = self.budget  # drgn's reads check the deadline of the current budget
        g.memory.invalidate()   # a fresh page snapshot for this run
        return kp

    def close(self) -> None:
        if self._guest is not None:
            guest, self._guest = self._guest, None
            guest.close()
