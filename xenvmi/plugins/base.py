"""What a plugin is (:class:`Plugin`) and what it gets while it runs (:class:`Context`).

A plugin is a class: it declares who it is, what it needs and the dataclass of its rows,
and its ``run(ctx)`` yields rows. Everything else (finding it, checking what it needs,
isolating its failures, rendering its rows) is xenvmi's job, so a plugin file stays a
screenful of code that only knows about the thing it inspects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from xenvmi.errors import NotFoundError, UsageError, XenvmiError
from xenvmi.guest.budget import Budget

#: The plugin API this xenvmi implements; a plugin declares the one it was written for.
API_VERSION = 1

_UNSET: Any = object()


def yes_no(text: str) -> bool:
    """An option's yes/no value ("yes", "no", "1", "0", "true", "false", "on", "off")."""
    if text.lower() in ("1", "yes", "true", "on"):
        return True
    if text.lower() in ("0", "no", "false", "off"):
        return False
    raise ValueError(text)


yes_no.__name__ = "yes/no"


def non_negative(text: str) -> int:
    """An option's whole number >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


non_negative.__name__ = "number >= 0"


@dataclass(frozen=True)
class Option:
    """One option a plugin takes: its help, how its text converts, and its default.

    ``xenvmi run NAME -o key=value`` passes it; a built-in view's own command takes it as
    ``--key VALUE`` (``--key`` alone when ``kind`` is :func:`yes_no`)."""

    help: str
    kind: Callable[[str], Any] = str
    default: Any = None
    metavar: str = "VALUE"


@dataclass(frozen=True)
class Column:
    """One column of a plugin's table: which value it shows and how it reads.

    ``key`` names the row field shown (and is the column's name in ``xenvmi plugins``);
    ``value`` derives the shown value from the whole row instead (a command line that
    falls back to ``[comm]``); ``right`` aligns numbers. The CLI's table and the TUI's
    pane both show :meth:`text`, so a view reads the same everywhere."""

    key: str
    heading: str = ""
    value: Callable[[Any], Any] | None = None
    right: bool | None = None  # None: right-aligned when every value is a number
    width: int | None = None  # the TUI cuts longer cells (the CLI shows them whole)

    @property
    def title(self) -> str:
        return self.heading or self.key

    def raw(self, row: Any) -> Any:
        return self.value(row) if self.value is not None else getattr(row, self.key, None)

    def text(self, row: Any) -> str:
        value = self.raw(row)
        return "-" if value is None else str(value)

    def right_aligned(self, rows: Any) -> bool:
        """Whether the column aligns right over these rows."""
        if self.right is not None:
            return self.right
        values = [self.raw(r) for r in rows]
        return bool(values) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        )


def column_specs(plugin: type[Plugin]) -> tuple[Column, ...]:
    """A plugin's columns as :class:`Column` objects (plain field names included)."""
    import dataclasses

    declared = plugin.columns or tuple(f.name for f in dataclasses.fields(plugin.row))
    return tuple(c if isinstance(c, Column) else Column(c) for c in declared)


def option_specs(plugin: type[Plugin]) -> dict[str, Option]:
    """A plugin's options as :class:`Option` objects (plain help strings included)."""
    return {k: v if isinstance(v, Option) else Option(str(v)) for k, v in plugin.options.items()}


class Plugin:
    """Subclass this, set the class attributes, implement :meth:`run`.

    ``requires`` names capabilities checked before the plugin runs (see
    ``xenvmi.plugins.requirements.CHECKS``): "xenstore", "libvmi", "guest-memory" (LibVMI
    or Xen's own libraries), "drgn", "bcc", "dom0", "root", and "linux-guest" (a Linux
    guest read through VMI: dom0 + guest-memory + drgn).
    ``options`` maps option names to their help (a string) or an :class:`Option`; the
    CLI passes ``-o name=value``. ``columns`` names row fields or gives :class:`Column`
    specs. A built-in view (``xenvmi/views/``) with ``command`` set is also a command of
    its own (``xenvmi ps``), whose help shows ``examples``; the CLI, its JSON, ``xenvmi
    run`` and the TUI all derive from this one class.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1"
    api_version: ClassVar[int] = API_VERSION
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    needs_domain: ClassVar[bool] = False
    row: ClassVar[type] = object  # the dataclass every yielded row is an instance of
    columns: ClassVar[tuple[str | Column, ...] | None] = None  # table; None: all fields
    options: ClassVar[Mapping[str, str | Option]] = {}
    command: ClassVar[bool] = False  # built-in views only: also `xenvmi NAME`
    examples: ClassVar[str] = ""  # that command's --help examples
    legacy_key: ClassVar[str | None] = None  # that command's pre-0.2 JSON key for rows

    def run(self, ctx: Context) -> Iterable[Any]:
        """Yield (or return a list of) ``row`` instances. Raise to fail; warn to degrade."""
        raise NotImplementedError

    @classmethod
    def check(cls) -> str | None:
        """Why this plugin cannot run here beyond its ``requires`` (None: it can)."""
        return None

    @classmethod
    def render_text(cls, rows: list[Any]) -> str | None:
        """The rows as text for a terminal, or None for the table of ``columns``."""
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

    def __init__(
        self,
        plugin: str,
        domain: str | int | None = None,
        options: dict[str, str] | None = None,
        timeout: float | None = None,
        progress: Callable[[str], None] = _quiet,
        declared: Mapping[str, Option] | None = None,
        use_cache: bool = True,
        backend: str | None = None,
        vmlinux: str | None = None,
    ) -> None:
        self.plugin = plugin
        #: A vmlinux with DWARF for a guest kernel without BTF (``--vmlinux``).
        self.vmlinux = vmlinux
        #: The live backend to open the domain with ("libvmi", "native"; None: the
        #: default, see :func:`xenvmi.guests.choose_backend`).
        self.backend = backend
        self.domain = domain
        self.options = dict(options or {})
        self.progress = progress
        #: The plugin's declared options: their kinds and defaults for :meth:`option`.
        self.declared = dict(declared or {})
        self.use_cache = use_cache
        #: The opened guest's own name (a domid or a path resolves to it), once opened.
        self.domain_name: str | None = None
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
    def option(
        self, key: str, default: Any = _UNSET, kind: Callable[[str], Any] | None = None
    ) -> Any:
        """An option converted with ``kind``; a bad value is a usage error. ``default``
        and ``kind`` default to the plugin's :class:`Option` declaration."""
        spec = self.declared.get(key)
        if default is _UNSET:
            default = spec.default if spec is not None else None
        if kind is None:
            kind = spec.kind if spec is not None else str
        if key not in self.options:
            return default
        try:
            return kind(self.options[key])
        except ValueError:
            raise UsageError(
                f"{self.plugin}: option {key}={self.options[key]!r} is not a "
                f"valid {getattr(kind, '__name__', 'value')}"
            ) from None

    def duration(self, key: str = "seconds", default: float = 5.0) -> float:
        """How long to observe: option ``key`` (default ``default``), cut to the run's
        deadline with a warning when that is shorter."""
        seconds = self.option(key, default, float)
        if not seconds > 0:
            raise UsageError(f"{self.plugin}: option {key} must be positive")
        left = self.remaining()
        if left is not None and seconds > left:
            self.warn(
                f"observed {left:.0f}s, not {seconds:g}s: the run's timeout is shorter",
                partial=False,
            )
            seconds = left
        return seconds

    # -- the guest -----------------------------------------------------------------------
    def _need_domain(self) -> str | int:
        if self.domain is None:
            raise UsageError(f"{self.plugin}: needs a DOMAIN")
        return self.domain

    def guest(self):
        """The domain as a :class:`xenvmi.guests.Guest` (opened once, closed after the run)."""
        if self._guest is None:
            from xenvmi import guests

            left = self.remaining()
            self._guest = guests.open_guest(
                self._need_domain(),
                progress=self.progress,
                use_cache=self.use_cache,
                backend=self.backend,
                vmlinux=self.vmlinux,
                discovery_timeout=600.0 if left is None else max(1.0, left),
            )
            self.domain_name = self._guest.name
        return self._guest

    def kernel(self):
        """The guest's kernel as a KernelProgram whose reads obey this run's deadline."""
        g = self.guest()
        kp = g.kernel_program()
        for w in kp.warnings:
            self.warn(w, partial=False)
        kp.budget = self.budget  # drgn's reads check the deadline of the current budget
        g.memory.invalidate()  # a fresh page snapshot for this run
        return kp

    def cancel(self) -> None:
        """End the run early (Ctrl-C): the deadline passes now for the plugin's own walks
        and for the guest view under way."""
        self.budget.deadline = float("-inf")
        if self._guest is not None:
            self._guest.cancel()

    def domain_gone(self) -> str | None:
        """Why the run's domain is no longer there, or None. Reads of a destroyed domain
        fail like holes, so a run that failed or ended partial asks this: otherwise the
        domain's end would be blamed on the guest's data ("no kernel found", "bad list")."""
        if self._guest is None:
            return None
        try:
            self._guest.memory.check_alive()
        except NotFoundError as e:
            return str(e)
        except XenvmiError as e:  # could not ask (xenstore down...): keep the run's own error
            self.warn(f"could not check that {self.domain_name} still exists: {e}", partial=False)
        return None

    def close(self) -> None:
        if self._guest is not None:
            guest, self._guest = self._guest, None
            guest.close()
