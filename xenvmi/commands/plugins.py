"""``xenvmi plugins`` and ``xenvmi run PLUGIN [DOMAIN]``: list and run plugins.

Rows render through xenvmi.render like every other command (a table, or ``--json``).
Warnings go to stderr; a failed plugin is one line on stderr and an exit code:
3 no such plugin, 5 it cannot run here (the line says what is missing), 2 bad usage,
1 the plugin raised (or the code of the xenvmi error it raised).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from xenvmi import render
from xenvmi.commands import add_command

if TYPE_CHECKING:  # the commands import the plugin machinery when run, not at start-up
    from xenvmi.plugins import Plugin, PluginResult

LIST_EXAMPLES = """  xenvmi plugins                         what is installed, and why one cannot run here
  xenvmi plugins --json
  xenvmi plugins --schema ps             the JSON Schema of `xenvmi run ps --json`
  xenvmi plugins --plugin-dir ~/my-plugins

plugins come from the xenvmi.plugins entry point group, the checkout's plugins/ folder,
$XENVMI_PLUGIN_PATH (folders separated by ':') and --plugin-dir; see docs/plugins.md.
"""  # noqa: E501  (help text: the examples' columns are what --help prints)

RUN_EXAMPLES = """  xenvmi run netdev xvm-pvh1              a guest's network interfaces
  xenvmi run files xvm-hvm -o pid=1       open files of the guest's pid 1
  xenvmi run devices --json               xenstore device health of every domain
  xenvmi run ps 3 --timeout 300           a built-in view as a plugin, by domain id
  xenvmi run myplugin --plugin-dir ~/my-plugins

exit codes: 0 ok (warnings on stderr), 1 the plugin failed, 2 usage, 3 no such plugin
or domain, 4 not root, 5 a requirement is missing here, 7 guest data unusable.
"""


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "plugins",
        "List installed plugins, what each needs, and why one cannot run here.",
        LIST_EXAMPLES,
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--schema",
        metavar="PLUGIN",
        help="print the JSON Schema of PLUGIN's --json output (docs/views.md)",
    )
    _dirs(p)
    p.set_defaults(func=run_list)
    r = add_command(sub, "run", "Run a plugin and print its rows.", RUN_EXAMPLES)
    r.add_argument("plugin", metavar="PLUGIN", help="plugin name (see `xenvmi plugins`)")
    r.add_argument(
        "domain",
        metavar="DOMAIN",
        nargs="?",
        help="guest name or domain id, for plugins that need one",
    )
    r.add_argument("--json", action="store_true", help="print JSON")
    r.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a plugin option (repeatable; `xenvmi plugins` lists them)",
    )
    r.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="stop the plugin after this long (default 120)",
    )
    r.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    _dirs(r)
    r.set_defaults(func=run_plugin)


def _dirs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also load plugins from DIR (repeatable)",
    )


def _status(info) -> str:
    if info.error:
        return "broken"
    return "ready" if info.available else "unavailable"


def print_schema(name: str, dirs: list[str]) -> int:
    from xenvmi.errors import NotFoundError
    from xenvmi.plugins.loader import discover_entries
    from xenvmi.plugins.schema import result_schema

    cls = next((e.cls for e in discover_entries(dirs) if e.info.name == name and e.cls), None)
    if cls is None:
        raise NotFoundError(f"no loadable plugin named {name!r} (`xenvmi plugins` lists them)")
    print(render.dumps(result_schema(cls)))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from xenvmi import plugins

    if args.schema:
        return print_schema(args.schema, args.plugin_dir)
    infos = plugins.discover(args.plugin_dir)
    if args.json:
        print(render.dumps(infos))
        return 0
    rows = [
        {
            "name": i.name,
            "version": i.version,
            "domain": "yes" if i.needs_domain else "-",
            "requires": ",".join(i.requires) or "-",
            "status": _status(i),
            "description": i.description,
        }
        for i in infos
    ]
    print(
        render.table(rows, ["name", "version", "domain", "requires", "status", "description"])
        if rows
        else "(no plugins found)"
    )
    problems = [i for i in infos if not i.available]
    if problems:
        print()
        for i in problems:
            print(f"{i.name}: {i.error or i.why_not}  [{i.source}]")
    return 0


def _options(pairs: list[str]) -> dict[str, str]:
    from xenvmi.errors import UsageError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"run: -o wants KEY=VALUE, not {pair!r}")
        out[key.strip()] = value
    return out


def run_plugin(args: argparse.Namespace) -> int:
    from xenvmi import plugins
    from xenvmi.errors import UsageError

    if not args.timeout > 0:
        raise UsageError("run: --timeout must be positive")
    quiet = args.quiet or args.json
    progress = (
        (lambda m: None)
        if quiet
        else (lambda m: print(f"xenvmi: {m}", file=sys.stderr, flush=True))
    )
    domain = args.domain
    res = plugins.run(
        args.plugin,
        domain,
        extra_dirs=args.plugin_dir,
        timeout=args.timeout,
        options=_options(args.option),
        progress=progress,
    )
    return print_result(res, args.json, res.plugin_class)


def result_text(res: PluginResult, plugin: type[Plugin] | None) -> str:
    """A run's rows as the terminal shows them: the plugin's own text, else its table."""
    from xenvmi.plugins.base import Column, column_specs

    if not res.rows and res.error is not None:
        return ""  # the error line says it all: an empty view's text would contradict it
    custom = plugin.render_text(res.rows) if plugin is not None else None
    if custom is not None:
        return custom
    if not res.rows:
        return "(no rows)"
    columns = column_specs(plugin) if plugin is not None else tuple(Column(c) for c in res.columns)
    return render.column_table(res.rows, columns)


def result_json(res: PluginResult, extra: dict | None = None) -> dict:
    """One run as the JSON object every run prints (docs/views.md), ``extra`` keys after."""
    return {
        "plugin": res.plugin,
        "version": res.version,
        "domain": res.domain,
        "rows": res.rows,
        "complete": res.complete,
        "warnings": res.warnings,
        "error": res.error,
        "seconds": round(res.seconds, 3),
        **(extra or {}),
    }


def print_result(
    res: PluginResult, as_json: bool, plugin: type[Plugin] | None, extra: dict | None = None
) -> int:
    """Print one plugin run (a view's command or ``xenvmi run``): JSON or text on stdout,
    warnings and the error on stderr; the exit code. JSON is the one shape every run has
    (docs/views.md); ``extra`` adds keys after it."""
    if as_json:
        print(render.dumps(result_json(res, extra)))
    else:
        text = result_text(res, plugin)
        if text:
            print(text)
    for w in res.warnings:
        print(f"xenvmi: warning: {w}", file=sys.stderr)
    if res.error is not None:
        print(f"xenvmi: error: {res.error}", file=sys.stderr)
        return res.exit_code or 1
    if not res.complete:
        of = "" if res.domain is None else f" of {res.domain}"
        print(f"xenvmi: warning: {res.plugin}{of} may be incomplete (see above)", file=sys.stderr)
    return 0
