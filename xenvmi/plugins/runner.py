"""Run one plugin, isolated: whatever it does, the caller gets a PluginResult back.

The plugin runs in a thread of its own with a deadline. Cooperative plugins (every guest
walk through ``ctx.budget``) stop at the deadline with a partial result; one that does not
is abandoned after a grace period and reported as timed out. Exceptions become one line in
``PluginResult.error``; rows are checked against the plugin's row dataclass as they come.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xenvmi.errors import NotFoundError, XenvmiError
from xenvmi.plugins import requirements
from xenvmi.plugins.base import Context, Plugin, _quiet, option_specs
from xenvmi.plugins.loader import Entry, _one_line, discover_entries, entry_of

#: Rows kept from one run; more is a runaway plugin, not a result.
MAX_ROWS = 1_000_000


@dataclass
class PluginResult:
    """One run: rows (dataclass instances), warnings, and why it failed or is partial."""

    plugin: str
    domain: str | int | None
    rows: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    complete: bool = False
    seconds: float = 0.0
    exit_code: int = 0  # what the CLI exits with (README's codes)
    version: str = ""
    columns: tuple[str, ...] = ()
    #: The plugin's class when it loaded: its columns and text rendering print the rows.
    plugin_class: type[Plugin] | None = field(default=None, repr=False, compare=False)


def grace(timeout: float) -> float:
    """How long after the deadline a plugin may take to wind down before it is abandoned."""
    return min(10.0, 1.0 + timeout * 0.1)


class _Sink:
    """Shared between the plugin thread and the caller; list appends are atomic."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.error: str | None = None
        self.exit_code = 0
        self.done = threading.Event()


def _body(cls: type[Plugin], ctx: Context, sink: _Sink) -> None:
    try:
        produced = cls().run(ctx)
        for row in produced if produced is not None else ():
            if not (dataclasses.is_dataclass(row) and isinstance(row, cls.row)):
                raise TypeError(
                    f"{cls.name} produced a {type(row).__name__}, not a "
                    f"{cls.row.__name__} dataclass"
                )
            if len(sink.rows) >= MAX_ROWS:
                ctx.warn(f"more than {MAX_ROWS} rows; the rest were dropped")
                break
            sink.rows.append(row)
    except BaseException as e:  # isolation boundary: the plugin may raise anything
        sink.error = _one_line(e)
        sink.exit_code = e.exit_code if isinstance(e, XenvmiError) else 1
    finally:
        if sink.error is not None or not ctx.complete:
            gone = ctx.domain_gone()
            if gone is not None:  # the cause, rather than what it did to the reads
                sink.error, sink.exit_code = gone, NotFoundError.exit_code
        try:
            ctx.close()
        except Exception as e:  # isolation boundary: closing the guest failed
            ctx.warn(f"closing the guest: {_one_line(e)}", partial=False)
        sink.done.set()


def _find(name: str, extra_dirs: Sequence[str | Path]) -> Entry | None:
    matches = [e for e in discover_entries(extra_dirs) if e.info.name == name]
    usable = [e for e in matches if e.cls is not None and e.info.available]
    found = usable or matches
    return found[0] if found else None


def _is_dump_file(domain: str | int | None) -> bool:
    if domain is None:
        return False
    from xenvmi.guests import is_file_target

    return is_file_target(domain)


def run(
    name: str,
    domain: str | int | None = None,
    extra_dirs: Sequence[str | Path] = (),
    timeout: float | None = 120,
    options: dict[str, str] | None = None,
    progress: Callable[[str], None] = _quiet,
    use_cache: bool = True,
    plugin: type[Plugin] | None = None,
    backend: str | None = None,
    vmlinux: str | None = None,
) -> PluginResult:
    """Run plugin ``name`` on ``domain`` (a domain's name or id, or for guest views a dump
    file); never raises for anything the plugin does. ``use_cache=False`` finds the
    guest's kernel anew instead of from the per-boot cache. ``plugin``: its class, when
    the caller has it (a view's own command), so no other plugin is discovered.
    ``vmlinux``: the kernel's DWARF, for a guest kernel without BTF."""
    start = time.monotonic()
    dump_file = _is_dump_file(domain)
    entry = entry_of(plugin, dump_file) if plugin is not None else _find(name, extra_dirs)
    result = PluginResult(plugin=name, domain=domain)

    def fail(error: str, code: int) -> PluginResult:
        result.error, result.exit_code = error, code
        result.seconds = time.monotonic() - start
        return result

    if entry is None:
        return fail(f"no plugin named {name!r} (`xenvmi plugins` lists them)", 3)
    info = entry.info
    result.version, result.columns = info.version, info.columns
    result.plugin_class = entry.cls
    cls = entry.cls
    if cls is None:
        return fail(f"plugin {name} failed to load: {info.error}", 1)
    if info.needs_domain and domain is None:
        return fail(f"plugin {name} needs a DOMAIN (name or id)", 2)
    if dump_file and info.needs_domain and plugin is None:
        why = requirements.unmet(info.requires, dump_file=True)
        if why:
            return fail(f"plugin {name} cannot read a dump here: {'; '.join(why)}", 5)
    elif not info.available:
        only_root = all(r.startswith("root:") for r in info.why_not.split("; "))
        code = 4 if only_root else 5  # the README's exit codes: 4 is "not root"
        return fail(f"plugin {name} cannot run here: {info.why_not}", code)
    unknown = sorted(set(options or {}) - set(info.options))
    if unknown:
        takes = ", ".join(info.options) or "none"
        return fail(f"plugin {name} has no option {', '.join(unknown)} (options: {takes})", 2)

    ctx = Context(
        name,
        domain,
        options,
        timeout,
        progress,
        option_specs(cls),
        use_cache=use_cache,
        backend=backend,
        vmlinux=vmlinux,
    )
    sink = _Sink()
    thread = threading.Thread(
        target=_body, args=(cls, ctx, sink), daemon=True, name=f"xenvmi-plugin-{name}"
    )
    thread.start()
    try:
        finished = sink.done.wait(None if timeout is None else timeout + grace(timeout))
    except KeyboardInterrupt:
        # Let the plugin unwind (a paused guest is resumed in its thread) before leaving.
        ctx.cancel()
        sink.done.wait(grace(timeout or 60.0))
        raise
    result.rows = list(sink.rows)
    result.warnings = list(ctx.warnings)
    if ctx.domain_name is not None:
        result.domain = ctx.domain_name
    if not finished:
        return fail(
            f"TimeoutError: {name} did not stop within its {timeout:g}s timeout "
            "(abandoned; its rows so far are kept)",
            1,
        )
    result.error, result.exit_code = sink.error, sink.exit_code
    result.complete = sink.error is None and ctx.complete
    result.seconds = time.monotonic() - start
    return result
