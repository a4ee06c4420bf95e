"""``xenvmi xs ls|read|watch``: read and watch xenstore (never writes).

Values come partly from guests, so they are shown escaped: invalid UTF-8 and control
characters appear as ``\\xNN``; listings are bounded (``--max-depth``, ``--max-nodes``).

JSON (stable: fields are only ever added):

- ``xs read PATH --json``: ``{"path": "/local/domain/0/name", "value": "Domain-0"}``
- ``xs ls [-r] PATH --json``: ``{"top": PATH, "nodes": [{"path": ..., "value": ...,
  "children": 2, "depth": 1}, ...], "truncated": ""}``: the nodes below PATH (not PATH
  itself), depth 1 = a child of PATH; ``truncated`` names the bound hit, '' if none.
- ``xs watch PATH... --json``: one line per event, ``{"path": ..., "token": ...,
  "time": 1795581560.9}``; the first event of each path fires at once (xenstored's rule).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

from xenvmi import render
from xenvmi.commands import add_command, usage
from xenvmi.commands.domains import count_arg, seconds_arg

if TYPE_CHECKING:  # imported when a command runs, not when the CLI builds its parser
    from xenvmi.model.host import XsTree

EXAMPLES = """\
  xenvmi xs ls /local/domain              the domids, with values
  xenvmi xs ls -r /local/domain/1/device  every node below, full paths
  xenvmi xs read /local/domain/1/name
  xenvmi xs watch @introduceDomain @releaseDomain --timeout 60
  xenvmi xs watch /local/domain/1/memory/target --count 2 --json
"""


def register(sub) -> None:
    xs = add_command(sub, "xs", "Read and watch xenstore (read-only).", EXAMPLES)
    xsub = xs.add_subparsers(dest="xs_command", metavar="XS_COMMAND", parser_class=type(xs))
    xs.set_defaults(func=usage(xs))

    p = add_command(
        xsub,
        "ls",
        "List the children of a path (-r: everything below it).",
        "  xenvmi xs ls /local/domain/0\n  xenvmi xs ls -r /vm --json\n",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("-r", "--recursive", action="store_true", help="every node below PATH")
    p.add_argument("--max-depth", type=count_arg, default=16, help="levels below PATH (16)")
    p.add_argument("--max-nodes", type=count_arg, default=10000, help="nodes at most (10000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_ls)

    p = add_command(
        xsub, "read", "Print the value at a path.", "  xenvmi xs read /local/domain/0/name\n"
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_read)

    p = add_command(
        xsub,
        "watch",
        "Print changes under paths until --timeout, --count or Ctrl-C.",
        "  xenvmi xs watch @introduceDomain @releaseDomain --count 3\n"
        "  xenvmi xs watch /local/domain --timeout 10 --json\n",
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="a path, @introduceDomain or @releaseDomain"
    )
    p.add_argument("--timeout", type=seconds_arg, default=None, help="stop after S seconds")
    p.add_argument("--count", type=count_arg, default=None, help="stop after N events")
    p.add_argument("--json", action="store_true", help="one JSON object per line per event")
    p.set_defaults(func=run_watch)


def ls_text(tree: XsTree, recursive: bool) -> str:
    """xenstore-ls style: ``name = "value"`` (relative names, or full paths with -r)."""
    lines = []
    for node in tree.nodes:
        if node.depth == 0:
            continue
        name = node.path if recursive else node.path.rsplit("/", 1)[-1]
        lines.append(f'{name} = "{node.value if node.value is not None else ""}"')
    return "\n".join(lines)


def run_ls(args) -> int:
    from xenvmi import api

    depth = args.max_depth if args.recursive else 1
    tree = api.xs_walk(args.path, max_depth=depth, max_nodes=args.max_nodes + 1)
    below = tuple(n for n in tree.nodes if n.depth > 0)
    truncated = tree.truncated if args.recursive or "nodes" in tree.truncated else ""
    if args.json:
        print(render.dumps({"top": tree.top, "nodes": below, "truncated": truncated}))
    else:
        text = ls_text(tree, args.recursive)
        if text:
            print(text)
    if truncated:
        print(
            f"xenvmi: warning: listing stopped early: {truncated} (raise --max-depth/--max-nodes)",
            file=sys.stderr,
        )
    return 0


def run_read(args) -> int:
    from xenvmi import api

    value = api.xs_read(args.path)
    print(render.dumps({"path": args.path, "value": value}) if args.json else value)
    return 0


def run_watch(args) -> int:
    from xenvmi import api

    try:
        for event in api.watch(args.paths, timeout=args.timeout, count=args.count):
            if args.json:
                print(render.json_line(event), flush=True)
            else:
                stamp = datetime.fromtimestamp(event.time).strftime("%H:%M:%S.%f")[:-3]
                print(f"{stamp} {event.path}", flush=True)
    except KeyboardInterrupt:
        return 0
    return 0
